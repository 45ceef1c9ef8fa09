package bls_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/internal/vectors"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadVectors(t testing.TB) *vectors.File {
	t.Helper()
	f, err := vectors.Load()
	if err != nil {
		t.Fatalf("load vectors: %v", err)
	}
	return f
}

func TestKnownAnswerFromSpec(t *testing.T) {
	t.Parallel()
	sk, err := bls.SecretKeyFromBytes(mustHex(t, "263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3"))
	if err != nil {
		t.Fatal(err)
	}
	wantPK := mustHex(t, "a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e2644f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a")
	wantSig := mustHex(t, "b6ed936746e01f8ecf281f020953fbf1f01debd5657c4a383940b020b26507f6076334f91e2366c96e9ab279fb5158090352ea1c5b0c9274504f4f0e7053af24802e51e4568d164fe986834f41e55c8e850ce1f98458c0cfc9ab380b55285a55")
	if got := sk.PublicKey().Bytes(); !bytes.Equal(got, wantPK) {
		t.Fatalf("public key = %x, want %x", got, wantPK)
	}
	sig, err := sk.Sign(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if got := sig.Bytes(); !bytes.Equal(got, wantSig) {
		t.Fatalf("signature = %x, want %x", got, wantSig)
	}
}

func TestSignVectors(t *testing.T) {
	t.Parallel()
	f := loadVectors(t)
	if f.Ciphersuite != string(bls.SigDST) || f.PopDST != string(bls.PopDST) {
		t.Fatalf("vector DSTs %q %q differ from ours", f.Ciphersuite, f.PopDST)
	}
	for i, v := range f.Sign {
		sk, err := bls.SecretKeyFromBytes(v.SK)
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		pk := sk.PublicKey()
		if !bytes.Equal(pk.Bytes(), v.PK) {
			t.Errorf("vector %d: pk = %x, want %x", i, pk.Bytes(), v.PK)
		}
		sig, err := sk.Sign(v.Msg)
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if !bytes.Equal(sig.Bytes(), v.Sig) {
			t.Errorf("vector %d: sig = %x, want %x", i, sig.Bytes(), v.Sig)
		}
		pop, err := sk.PopProve()
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if !bytes.Equal(pop.Bytes(), v.Pop) {
			t.Errorf("vector %d: pop = %x, want %x", i, pop.Bytes(), v.Pop)
		}
		if err := bls.VerifyBytes(v.PK, v.Msg, v.Sig); err != nil {
			t.Errorf("vector %d: verify: %v", i, err)
		}
		decodedPop, err := bls.SignatureFromBytes(v.Pop)
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if err := bls.PopVerify(pk, decodedPop); err != nil {
			t.Errorf("vector %d: %v", i, err)
		}
		// A PoP is not a signature over the key bytes under the SIG DST.
		if err := bls.Verify(pk, pk.Bytes(), decodedPop); !errors.Is(err, bls.ErrVerify) {
			t.Errorf("vector %d: pop accepted as a plain signature: %v", i, err)
		}
	}
}

func TestVerifyVectorsFailForTheRightReason(t *testing.T) {
	t.Parallel()
	f := loadVectors(t)
	want := map[string]error{
		"valid":         nil,
		"wrong key":     bls.ErrVerify,
		"wrong message": bls.ErrVerify,
		"identity public key and identity signature": bls.ErrIdentity,
		"signature under the NUL ciphersuite":        bls.ErrVerify,
		"public key without compression flag":        bls.ErrEncoding,
		"truncated signature":                        bls.ErrLength,
	}
	for _, v := range f.Verify {
		wantErr, ok := want[v.Case]
		if !ok {
			t.Errorf("vector case %q has no expected reason in this test", v.Case)
			continue
		}
		err := bls.VerifyBytes(v.PK, v.Msg, v.Sig)
		if v.Valid != (err == nil) {
			t.Errorf("%s: valid=%v but err=%v", v.Case, v.Valid, err)
		}
		if wantErr != nil && !errors.Is(err, wantErr) {
			t.Errorf("%s: err = %v, want %v", v.Case, err, wantErr)
		}
	}
}

func TestDecodingRejectsBadPoints(t *testing.T) {
	t.Parallel()
	sk, _ := bls.GenerateKey(nil)
	pk := sk.PublicKey().Bytes()
	sig, _ := sk.Sign([]byte("m"))
	sigB := sig.Bytes()

	identityG1 := append([]byte{0xc0}, make([]byte, 47)...)
	identityG2 := append([]byte{0xc0}, make([]byte, 95)...)
	badInfinity := append([]byte{0xc0}, make([]byte, 47)...)
	badInfinity[10] = 1
	// x = p (the field modulus) is a non-canonical coordinate.
	nonCanonical := mustHex(t, "9a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab")

	g1Cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, bls.ErrLength},
		{"too short", pk[:47], bls.ErrLength},
		{"too long", append(append([]byte{}, pk...), 0), bls.ErrLength},
		{"identity", identityG1, bls.ErrIdentity},
		{"malformed infinity", badInfinity, bls.ErrEncoding},
		{"no compression flag", append([]byte{pk[0] &^ 0x80}, pk[1:]...), bls.ErrEncoding},
		{"coordinate not reduced", nonCanonical, bls.ErrEncoding},
		{"a signature is not a key", sigB, bls.ErrLength},
	}
	for _, c := range g1Cases {
		if _, err := bls.PublicKeyFromBytes(c.in); !errors.Is(err, c.want) {
			t.Errorf("G1 %s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := bls.SignatureFromBytes(identityG2); !errors.Is(err, bls.ErrIdentity) {
		t.Errorf("G2 identity: err = %v", err)
	}
	if _, err := bls.SignatureFromBytes(sigB[:95]); !errors.Is(err, bls.ErrLength) {
		t.Errorf("G2 truncated: err = %v", err)
	}
	// Flipping the sign bit gives the negated point: valid encoding, but the
	// signature no longer verifies.
	neg := append([]byte{sigB[0] ^ 0x20}, sigB[1:]...)
	if err := bls.VerifyBytes(pk, []byte("m"), neg); !errors.Is(err, bls.ErrVerify) {
		t.Errorf("negated signature: err = %v", err)
	}
}

func TestOffCurveAndOutsideSubgroupAreRejected(t *testing.T) {
	t.Parallel()
	// Small x coordinates: about half have no curve point (x^3+4 is not a
	// square), and nearly all that do lie outside the prime-order subgroup,
	// since the cofactor of G1 is large. Both kinds must be seen and named.
	var offCurve, outside int
	for x := byte(0); x < 64; x++ {
		for _, size := range []int{48, 96} {
			b := make([]byte, size)
			b[0] = 0x80
			b[size-1] = x
			var err error
			if size == 48 {
				_, err = bls.PublicKeyFromBytes(b)
			} else {
				_, err = bls.SignatureFromBytes(b)
			}
			switch {
			case errors.Is(err, bls.ErrNotOnCurve):
				offCurve++
			case errors.Is(err, bls.ErrNotInSubgroup):
				outside++
			default:
				t.Fatalf("size %d x=%d: err = %v, want off curve or outside subgroup", size, x, err)
			}
		}
	}
	if offCurve == 0 || outside == 0 {
		t.Fatalf("saw %d off-curve and %d outside-subgroup encodings; want both", offCurve, outside)
	}
}

func TestScalarRange(t *testing.T) {
	t.Parallel()
	r := mustHex(t, "73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001")
	rMinus1 := mustHex(t, "73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000000")
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"r itself", r, bls.ErrScalarRange},
		{"all ones", bytes.Repeat([]byte{0xff}, 32), bls.ErrScalarRange},
		{"zero", make([]byte, 32), bls.ErrZeroScalar},
		{"short", make([]byte, 31), bls.ErrLength},
		{"r-1", rMinus1, nil},
	}
	for _, c := range cases {
		_, err := bls.SecretKeyFromBytes(c.in)
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := bls.ScalarFromBytes(make([]byte, 32)); err != nil {
		t.Errorf("zero is a valid public scalar: %v", err)
	}
}

func TestAggregateAndFastAggregateVerify(t *testing.T) {
	t.Parallel()
	msg := []byte("aggregate me")
	var pks []*bls.PublicKey
	var sigs []*bls.Signature
	for range 4 {
		sk, err := bls.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		pop, _ := sk.PopProve()
		if err := bls.PopVerify(sk.PublicKey(), pop); err != nil {
			t.Fatal(err)
		}
		s, _ := sk.Sign(msg)
		pks = append(pks, sk.PublicKey())
		sigs = append(sigs, s)
	}
	agg, err := bls.AggregateSignatures(sigs)
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.FastAggregateVerify(pks, msg, agg); err != nil {
		t.Fatalf("fast aggregate verify: %v", err)
	}
	if err := bls.FastAggregateVerify(pks[:3], msg, agg); !errors.Is(err, bls.ErrVerify) {
		t.Fatalf("missing signer accepted: %v", err)
	}
	if err := bls.FastAggregateVerify(pks, []byte("other"), agg); !errors.Is(err, bls.ErrVerify) {
		t.Fatalf("wrong message accepted: %v", err)
	}
	if _, err := bls.AggregateSignatures(nil); !errors.Is(err, bls.ErrEmpty) {
		t.Fatalf("empty aggregate: %v", err)
	}
}

func TestSecretKeyNeverPrints(t *testing.T) {
	t.Parallel()
	sk, _ := bls.GenerateKey(nil)
	for _, s := range []string{sk.String(), sk.GoString()} {
		if bytes.Contains([]byte(s), []byte(hex.EncodeToString(sk.Bytes()))) {
			t.Fatal("secret key printed")
		}
	}
}

// RFC 9380 appendix K.1, expand_message_xmd(SHA-256), DST
// "QUUX-V01-CS02-with-expander-SHA256-128", len_in_bytes = 0x20, msg = "".
func TestExpandMessageXMDKnownAnswer(t *testing.T) {
	t.Parallel()
	got := bls.ExpandMessageXMDForTest([]byte(""), []byte("QUUX-V01-CS02-with-expander-SHA256-128"), 0x20)
	want := mustHex(t, "68a985b87eb6b46952128911f2a4412bbc302a9d759667f87f7a21d803f07235")
	if !bytes.Equal(got, want) {
		t.Fatalf("expand_message_xmd = %x, want %x", got, want)
	}
	got = bls.ExpandMessageXMDForTest([]byte("abc"), []byte("QUUX-V01-CS02-with-expander-SHA256-128"), 0x80)
	want = mustHex(t, "abba86a6129e366fc877aab32fc4ffc70120d8996c88aee2fe4b32d6c7b6437a647e6c3163d40b76a73cf6a5674ef1d890f95b664ee0afa5359a5c4e07985635bbecbac65d747d3d2da7ec2b8221b17b0ca9dc8a1ac1c07ea6a1e60583e2cb00058e77b7b72a298425cd1b941ad4ec65e8afc50303a22c0f99b0509b4c895f40")
	if !bytes.Equal(got, want) {
		t.Fatalf("expand_message_xmd(abc, 128) = %x, want %x", got, want)
	}
}

// Keys and signatures are shared between goroutines in the console (one
// key verifies many messages); the race detector checks nothing writes them.
func TestConcurrentVerifyOfSharedValues(t *testing.T) {
	t.Parallel()
	sk, _ := bls.GenerateKey(nil)
	pk := sk.PublicKey()
	sig, _ := sk.Sign([]byte("shared"))
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			if err := bls.Verify(pk, []byte("shared"), sig); err != nil {
				errs <- err
				return
			}
			_ = pk.Bytes()
			_ = sig.Bytes()
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
