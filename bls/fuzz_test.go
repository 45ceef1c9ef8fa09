package bls_test

import (
	"bytes"
	"testing"

	"github.com/signal-mpc/cosigner/bls"
)

// FuzzDecode feeds the same bytes to every decoder: whatever decodes must
// re-encode to exactly the input (one encoding per value).
func FuzzDecode(f *testing.F) {
	sk, _ := bls.GenerateKey(nil)
	sig, _ := sk.Sign([]byte("fuzz"))
	f.Add(sk.PublicKey().Bytes())
	f.Add(sig.Bytes())
	f.Add(sk.Bytes())
	f.Add(append([]byte{0xc0}, make([]byte, 47)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if pk, err := bls.PublicKeyFromBytes(b); err == nil && !bytes.Equal(pk.Bytes(), b) {
			t.Fatalf("public key re-encodes differently: %x", b)
		}
		if s, err := bls.SignatureFromBytes(b); err == nil && !bytes.Equal(s.Bytes(), b) {
			t.Fatalf("signature re-encodes differently: %x", b)
		}
		if x, err := bls.ScalarFromBytes(b); err == nil && !bytes.Equal(bls.ScalarBytes(x), b) {
			t.Fatalf("scalar re-encodes differently: %x", b)
		}
		if k, err := bls.SecretKeyFromBytes(b); err == nil && !bytes.Equal(k.Bytes(), b) {
			t.Fatalf("secret key re-encodes differently: %x", b)
		}
		_ = bls.VerifyBytes(b, b, b)
	})
}
