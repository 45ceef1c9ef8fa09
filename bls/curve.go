// Package bls implements BLS signatures on BLS12-381 in the minimal-pubkey-size,
// proof-of-possession ciphersuite of draft-irtf-cfrg-bls-signature: the one
// Ethereum uses. Public keys are G1 points (48 bytes compressed), signatures
// G2 points (96 bytes compressed).
//
// The package also exports the strict point and scalar codecs and the hashing
// that the threshold sub-packages (share, dkg, tbls) build on, so that every
// byte string from outside goes through one set of checks.
//
// kilic/bls12-381 keeps scratch buffers inside its G1, G2 and Engine values, so
// this package makes fresh ones per call and never shares them between
// goroutines. Every exported function here is safe for concurrent use.
package bls

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/big"

	bls12381 "github.com/kilic/bls12-381"
)

// Encoding sizes.
const (
	ScalarSize = 32 // big-endian scalar below r
	G1Size     = 48 // compressed G1 point (public keys, commitments)
	G2Size     = 96 // compressed G2 point (signatures, partials, proofs)
)

// Domain separation tags of the ciphersuite.
var (
	// SigDST is the signature DST of the POP ciphersuite.
	SigDST = []byte("BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_")
	// PopDST is the proof-of-possession DST of the POP ciphersuite.
	PopDST = []byte("BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_")
)

// order is the group order r.
var order = bls12381.NewG1().Q()

// Scalar is an element of Fr in normal (non-Montgomery) form, as kilic's
// Fr.Add, Mul, Inverse and MulScalar expect.
type Scalar = bls12381.Fr

// G1Point and G2Point are kilic's point types, re-exported so the threshold
// packages need not name kilic for plain values.
type (
	G1Point = bls12381.PointG1
	G2Point = bls12381.PointG2
)

// ScalarFromBytes decodes a 32-byte big-endian scalar, rejecting values >= r.
// kilic's Fr.FromBytes would silently keep r itself unreduced, so the range
// check is done here on the integer. Zero is accepted: callers that need a
// non-zero secret use SecretScalarFromBytes.
func ScalarFromBytes(b []byte) (*Scalar, error) {
	if len(b) != ScalarSize {
		return nil, fmt.Errorf("scalar: %w: got %d bytes, want %d", ErrLength, len(b), ScalarSize)
	}
	if new(big.Int).SetBytes(b).Cmp(order) >= 0 {
		return nil, fmt.Errorf("scalar: %w: not below the group order", ErrScalarRange)
	}
	return bls12381.NewFr().FromBytes(b), nil
}

// SecretScalarFromBytes is ScalarFromBytes that also rejects zero.
func SecretScalarFromBytes(b []byte) (*Scalar, error) {
	s, err := ScalarFromBytes(b)
	if err != nil {
		return nil, err
	}
	if s.IsZero() {
		return nil, fmt.Errorf("scalar: %w", ErrZeroScalar)
	}
	return s, nil
}

// ScalarBytes encodes s as 32 bytes big-endian.
func ScalarBytes(s *Scalar) []byte { return s.ToBytes() }

// ScalarFromUint64 returns the scalar v (small party indices, exponents).
func ScalarFromUint64(v uint64) *Scalar {
	return &Scalar{v}
}

// RandomScalar draws a uniform non-zero scalar from rnd (crypto/rand.Reader
// when rnd is nil).
func RandomScalar(rnd io.Reader) (*Scalar, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	for range 16 {
		s, err := bls12381.NewFr().Rand(rnd)
		if err != nil {
			return nil, fmt.Errorf("random scalar: %w", err)
		}
		if !s.IsZero() {
			return s, nil
		}
	}
	// 16 zeros in a row from a uniform source over r values does not happen.
	return nil, errors.New("random scalar: source returned only zeros")
}

// G1FromBytes decodes a compressed G1 point: canonical encoding, on the
// curve, in the subgroup, and not the identity.
func G1FromBytes(b []byte) (*G1Point, error) {
	if len(b) != G1Size {
		return nil, fmt.Errorf("%w: got %d bytes, want %d", ErrLength, len(b), G1Size)
	}
	if err := checkFlags(b); err != nil {
		return nil, err
	}
	g := bls12381.NewG1()
	p, err := g.FromCompressed(b)
	if err != nil {
		return nil, classifyDecodeError(err)
	}
	if g.IsZero(p) {
		return nil, ErrIdentity
	}
	return p, nil
}

// G2FromBytes decodes a compressed G2 point with the same rules as G1FromBytes.
func G2FromBytes(b []byte) (*G2Point, error) {
	if len(b) != G2Size {
		return nil, fmt.Errorf("%w: got %d bytes, want %d", ErrLength, len(b), G2Size)
	}
	if err := checkFlags(b); err != nil {
		return nil, err
	}
	g := bls12381.NewG2()
	p, err := g.FromCompressed(b)
	if err != nil {
		return nil, classifyDecodeError(err)
	}
	if g.IsZero(p) {
		return nil, ErrIdentity
	}
	return p, nil
}

// checkFlags rejects encodings kilic would also reject, but with an error we
// can name: the compression flag must be set; an infinity encoding is the
// identity (rejected by the callers either way, but named as such).
func checkFlags(b []byte) error {
	if b[0]&0x80 == 0 {
		return fmt.Errorf("%w: compression flag not set", ErrEncoding)
	}
	if b[0]&0x40 != 0 {
		if b[0] != 0xc0 {
			return fmt.Errorf("%w: malformed infinity encoding", ErrEncoding)
		}
		for _, v := range b[1:] {
			if v != 0 {
				return fmt.Errorf("%w: malformed infinity encoding", ErrEncoding)
			}
		}
		return ErrIdentity
	}
	return nil
}

// classifyDecodeError maps kilic's untyped decode errors onto our sentinels.
// kilic returns plain errors.New values, so the text is all there is to go on;
// anything unrecognised stays an encoding error.
func classifyDecodeError(err error) error {
	switch err.Error() {
	case "point is not on curve":
		return ErrNotOnCurve
	case "point is not on correct subgroup":
		return ErrNotInSubgroup
	default:
		return fmt.Errorf("%w: %v", ErrEncoding, err)
	}
}

// G1Bytes encodes p compressed. It works on a copy: kilic's ToCompressed
// normalises its argument in place, which would race with concurrent readers.
func G1Bytes(p *G1Point) []byte {
	var c G1Point
	c.Set(p)
	return bls12381.NewG1().ToCompressed(&c)
}

// G2Bytes encodes p compressed, on a copy for the same reason as G1Bytes.
func G2Bytes(p *G2Point) []byte {
	var c G2Point
	c.Set(p)
	return bls12381.NewG2().ToCompressed(&c)
}

// HashToG2 is hash_to_curve for BLS12381G2_XMD:SHA-256_SSWU_RO_ (RFC 9380)
// with the given DST.
func HashToG2(msg, dst []byte) *G2Point {
	p, err := bls12381.NewG2().HashToCurve(msg, dst)
	if err != nil {
		// kilic fails only for a DST over 255 bytes; ours are fixed and short.
		panic(fmt.Sprintf("bls: hash to G2 with a %d-byte DST: %v", len(dst), err))
	}
	return p
}

// HashToScalar maps msg to Fr: expand_message_xmd (RFC 9380 section 5.3.1,
// SHA-256) to 48 bytes, reduced mod r, as hash_to_field does with L = 48.
// kilic keeps its expander private, and it is a dozen lines, so it lives here.
func HashToScalar(msg, dst []byte) *Scalar {
	wide := expandMessageXMD(msg, dst, 48)
	v := new(big.Int).SetBytes(wide)
	v.Mod(v, order)
	var buf [ScalarSize]byte
	v.FillBytes(buf[:])
	return bls12381.NewFr().FromBytes(buf[:])
}

// expandMessageXMD implements expand_message_xmd with SHA-256 for outLen <=
// 255*32 and len(dst) <= 255, the only sizes this package asks for.
func expandMessageXMD(msg, dst []byte, outLen int) []byte {
	if len(dst) > 255 || outLen > 255*sha256.Size || outLen <= 0 {
		panic("bls: expand_message_xmd parameters out of range")
	}
	dstPrime := append(append([]byte{}, dst...), byte(len(dst)))
	h := sha256.New()
	h.Write(make([]byte, h.BlockSize())) // Z_pad
	h.Write(msg)
	h.Write([]byte{byte(outLen >> 8), byte(outLen), 0})
	h.Write(dstPrime)
	b0 := h.Sum(nil)

	ell := (outLen + sha256.Size - 1) / sha256.Size
	out := make([]byte, 0, ell*sha256.Size)
	prev := make([]byte, sha256.Size)
	for i := 1; i <= ell; i++ {
		h.Reset()
		for j := range prev {
			prev[j] ^= b0[j] // for i = 1, prev is zero so this is b0
		}
		h.Write(prev)
		h.Write([]byte{byte(i)})
		h.Write(dstPrime)
		prev = h.Sum(prev[:0])
		out = append(out, prev...)
	}
	return out[:outLen]
}

// MulG2Blinded returns x*p computed as (x-u)*p + u*p for a fresh random u.
// kilic's scalar multiplication is not constant time; blinding keeps the
// secret x out of the timing of either multiplication.
func MulG2Blinded(p *G2Point, x *Scalar) *G2Point {
	u := blindingScalar()
	d := bls12381.NewFr()
	d.Sub(x, u)
	g := bls12381.NewG2()
	a, b := g.New(), g.New()
	g.MulScalar(a, p, d)
	g.MulScalar(b, p, u)
	g.Add(a, a, b)
	wipeScalar(d)
	wipeScalar(u)
	return g.Affine(a)
}

// MulG1Blinded is MulG2Blinded in G1 (public keys and commitments of secrets).
func MulG1Blinded(p *G1Point, x *Scalar) *G1Point {
	u := blindingScalar()
	d := bls12381.NewFr()
	d.Sub(x, u)
	g := bls12381.NewG1()
	a, b := g.New(), g.New()
	g.MulScalar(a, p, d)
	g.MulScalar(b, p, u)
	g.Add(a, a, b)
	wipeScalar(d)
	wipeScalar(u)
	return g.Affine(a)
}

// blindingScalar draws from crypto/rand, which since Go 1.24 never returns an
// error (the runtime aborts instead), so there is no error to pass on.
func blindingScalar() *Scalar {
	u, err := RandomScalar(rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("bls: crypto/rand failed: %v", err))
	}
	return u
}

// G1Generator returns a fresh copy of the G1 generator P1.
func G1Generator() *G1Point { return bls12381.NewG1().One() }

// wipeScalar overwrites a secret scalar in memory.
func wipeScalar(s *Scalar) { s.Zero() }

// WipeScalar overwrites a secret scalar in memory; threshold packages call it
// on polynomial coefficients and shares they no longer need.
func WipeScalar(s *Scalar) { wipeScalar(s) }
