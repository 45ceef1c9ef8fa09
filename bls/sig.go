package bls

import (
	"fmt"
	"io"

	bls12381 "github.com/kilic/bls12-381"
)

// SecretKey is a BLS secret key: a non-zero scalar below r.
type SecretKey struct {
	x Scalar
}

// PublicKey is a validated public key: a G1 point in the prime-order
// subgroup, never the identity. The zero value is not a valid key; obtain one
// from PublicKeyFromBytes, SecretKey.PublicKey or NewPublicKey.
type PublicKey struct {
	p G1Point
}

// Signature is a validated signature: a G2 point in the prime-order subgroup,
// never the identity.
type Signature struct {
	p G2Point
}

// GenerateKey draws a secret key from rnd (crypto/rand when nil).
func GenerateKey(rnd io.Reader) (*SecretKey, error) {
	x, err := RandomScalar(rnd)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return &SecretKey{x: *x}, nil
}

// SecretKeyFromBytes decodes a 32-byte big-endian secret key (non-zero, < r).
func SecretKeyFromBytes(b []byte) (*SecretKey, error) {
	x, err := SecretScalarFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return &SecretKey{x: *x}, nil
}

// NewSecretKey wraps a scalar (for example a threshold share) as a secret key.
func NewSecretKey(x *Scalar) (*SecretKey, error) {
	if x.IsZero() {
		return nil, fmt.Errorf("secret key: %w", ErrZeroScalar)
	}
	var k SecretKey
	k.x.Set(x)
	return &k, nil
}

// Bytes encodes the secret key. Handle the result as a secret.
func (sk *SecretKey) Bytes() []byte { return ScalarBytes(&sk.x) }

// Scalar returns a copy of the secret scalar.
func (sk *SecretKey) Scalar() *Scalar { return new(Scalar).Set(&sk.x) }

// Wipe overwrites the secret key in memory; the key is unusable afterwards.
func (sk *SecretKey) Wipe() { wipeScalar(&sk.x) }

// String never prints the secret.
func (sk *SecretKey) String() string { return "bls.SecretKey(redacted)" }

// GoString never prints the secret, even under %#v.
func (sk *SecretKey) GoString() string { return sk.String() }

// PublicKey returns sk*P1.
func (sk *SecretKey) PublicKey() *PublicKey {
	return &PublicKey{p: *MulG1Blinded(G1Generator(), &sk.x)}
}

// Sign returns sk * hash_to_G2(msg, SigDST).
func (sk *SecretKey) Sign(msg []byte) (*Signature, error) {
	return sk.signDST(msg, SigDST)
}

// PopProve returns the proof of possession: sk * hash_to_G2(pk bytes, PopDST).
func (sk *SecretKey) PopProve() (*Signature, error) {
	return sk.signDST(sk.PublicKey().Bytes(), PopDST)
}

func (sk *SecretKey) signDST(msg, dst []byte) (*Signature, error) {
	if sk.x.IsZero() {
		return nil, fmt.Errorf("sign: %w", ErrZeroScalar)
	}
	return &Signature{p: *MulG2Blinded(HashToG2(msg, dst), &sk.x)}, nil
}

// PublicKeyFromBytes decodes and validates a compressed public key
// (KeyValidate of the draft: on the curve, in the subgroup, not the identity).
func PublicKeyFromBytes(b []byte) (*PublicKey, error) {
	p, err := G1FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return &PublicKey{p: *p}, nil
}

// KeyValidate reports whether b is a valid public key encoding.
func KeyValidate(b []byte) error {
	_, err := PublicKeyFromBytes(b)
	return err
}

// NewPublicKey wraps a G1 point as a public key, with the same checks as
// decoding (points computed from outside data must not bypass them).
func NewPublicKey(p *G1Point) (*PublicKey, error) {
	g := bls12381.NewG1()
	if g.IsZero(p) {
		return nil, fmt.Errorf("public key: %w", ErrIdentity)
	}
	if !g.IsOnCurve(p) {
		return nil, fmt.Errorf("public key: %w", ErrNotOnCurve)
	}
	if !g.InCorrectSubgroup(p) {
		return nil, fmt.Errorf("public key: %w", ErrNotInSubgroup)
	}
	var k PublicKey
	k.p.Set(p)
	return &k, nil
}

// NewPublicKeyFromSubgroupPoint wraps a point the caller knows to be in the
// prime-order subgroup (it came from a strict decoder or from arithmetic on
// such points), checking only that it is not the identity. Never use it on
// a point from outside data.
func NewPublicKeyFromSubgroupPoint(p *G1Point) (*PublicKey, error) {
	if bls12381.NewG1().IsZero(p) {
		return nil, fmt.Errorf("public key: %w", ErrIdentity)
	}
	var k PublicKey
	k.p.Set(p)
	return &k, nil
}

// Bytes encodes the public key compressed (48 bytes).
func (pk *PublicKey) Bytes() []byte { return G1Bytes(&pk.p) }

// Point returns a copy of the underlying G1 point.
func (pk *PublicKey) Point() *G1Point { return new(G1Point).Set(&pk.p) }

// Equal reports whether two public keys are the same point.
func (pk *PublicKey) Equal(o *PublicKey) bool { return bls12381.NewG1().Equal(&pk.p, &o.p) }

// SignatureFromBytes decodes and validates a compressed signature (on the
// curve, in the subgroup, not the identity).
func SignatureFromBytes(b []byte) (*Signature, error) {
	p, err := G2FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return &Signature{p: *p}, nil
}

// NewSignature wraps a G2 point as a signature, rejecting the identity and
// points outside the subgroup.
func NewSignature(p *G2Point) (*Signature, error) {
	g := bls12381.NewG2()
	if g.IsZero(p) {
		return nil, fmt.Errorf("signature: %w", ErrIdentity)
	}
	if !g.IsOnCurve(p) {
		return nil, fmt.Errorf("signature: %w", ErrNotOnCurve)
	}
	if !g.InCorrectSubgroup(p) {
		return nil, fmt.Errorf("signature: %w", ErrNotInSubgroup)
	}
	var s Signature
	s.p.Set(p)
	return &s, nil
}

// NewSignatureFromSubgroupPoint wraps a point the caller knows to be in the
// prime-order subgroup (a combination of decoded, subgroup-checked points),
// checking only that it is not the identity. Never use it on a point from
// outside data.
func NewSignatureFromSubgroupPoint(p *G2Point) (*Signature, error) {
	if bls12381.NewG2().IsZero(p) {
		return nil, fmt.Errorf("signature: %w", ErrIdentity)
	}
	var s Signature
	s.p.Set(p)
	return &s, nil
}

// Bytes encodes the signature compressed (96 bytes).
func (s *Signature) Bytes() []byte { return G2Bytes(&s.p) }

// Point returns a copy of the underlying G2 point.
func (s *Signature) Point() *G2Point { return new(G2Point).Set(&s.p) }

// Equal reports whether two signatures are the same point.
func (s *Signature) Equal(o *Signature) bool { return bls12381.NewG2().Equal(&s.p, &o.p) }

// Verify is CoreVerify of the POP ciphersuite: nil when sig is sk*H(msg) for
// the sk behind pk, an error wrapping ErrVerify otherwise. Both arguments are
// already validated by construction.
func Verify(pk *PublicKey, msg []byte, sig *Signature) error {
	return verifyDST(pk, msg, sig, SigDST)
}

// PopVerify checks a proof of possession for pk.
func PopVerify(pk *PublicKey, proof *Signature) error {
	if err := verifyDST(pk, pk.Bytes(), proof, PopDST); err != nil {
		return fmt.Errorf("proof of possession: %w", err)
	}
	return nil
}

// VerifyBytes decodes its inputs and verifies; the error says which input is
// at fault (public key, signature, or the check itself).
func VerifyBytes(pk, msg, sig []byte) error {
	p, err := PublicKeyFromBytes(pk)
	if err != nil {
		return err
	}
	s, err := SignatureFromBytes(sig)
	if err != nil {
		return err
	}
	return Verify(p, msg, s)
}

func verifyDST(pk *PublicKey, msg []byte, sig *Signature, dst []byte) error {
	if !PairingCheck(&pk.p, HashToG2(msg, dst), &sig.p) {
		return ErrVerify
	}
	return nil
}

// PairingCheck reports whether e(a, h) == e(P1, s). Callers must have
// rejected identity points: kilic's Engine skips identity pairs silently.
// kilic normalises the points it is given in place, so it gets copies: the
// caller's points may be shared with other goroutines.
func PairingCheck(a *G1Point, h *G2Point, s *G2Point) bool {
	var ac G1Point
	var hc, sc G2Point
	ac.Set(a)
	hc.Set(h)
	sc.Set(s)
	e := bls12381.NewEngine()
	return e.AddPairInv(e.G1.One(), &sc).AddPair(&ac, &hc).Check()
}

// AggregateSignatures adds signatures (over the same or different messages).
func AggregateSignatures(sigs []*Signature) (*Signature, error) {
	if len(sigs) == 0 {
		return nil, fmt.Errorf("aggregate signatures: %w", ErrEmpty)
	}
	g := bls12381.NewG2()
	acc := g.New().Set(&sigs[0].p)
	for _, s := range sigs[1:] {
		g.Add(acc, acc, &s.p)
	}
	if g.IsZero(acc) {
		// Signatures that cancel out are an attack, not an aggregate.
		return nil, fmt.Errorf("aggregate signatures: %w", ErrIdentity)
	}
	return &Signature{p: *g.Affine(acc)}, nil
}

// AggregatePublicKeys adds public keys. Only sound for keys whose proofs of
// possession were checked (rogue-key attacks otherwise).
func AggregatePublicKeys(pks []*PublicKey) (*PublicKey, error) {
	if len(pks) == 0 {
		return nil, fmt.Errorf("aggregate public keys: %w", ErrEmpty)
	}
	g := bls12381.NewG1()
	acc := g.New().Set(&pks[0].p)
	for _, k := range pks[1:] {
		g.Add(acc, acc, &k.p)
	}
	if g.IsZero(acc) {
		return nil, fmt.Errorf("aggregate public keys: %w", ErrIdentity)
	}
	return &PublicKey{p: *g.Affine(acc)}, nil
}

// FastAggregateVerify checks one aggregate signature by several signers over
// the same message. Every key must have passed PopVerify beforehand.
func FastAggregateVerify(pks []*PublicKey, msg []byte, sig *Signature) error {
	agg, err := AggregatePublicKeys(pks)
	if err != nil {
		return fmt.Errorf("fast aggregate verify: %w", err)
	}
	return Verify(agg, msg, sig)
}
