package bls_test

import (
	"testing"

	"github.com/signal-mpc/cosigner/bls"
)

var benchMsg = []byte("transfer 32 ETH from the treasury to validator 123456")

func BenchmarkHashToG2(b *testing.B) {
	for b.Loop() {
		bls.HashToG2(benchMsg, bls.SigDST)
	}
}

func BenchmarkSign(b *testing.B) {
	sk, _ := bls.GenerateKey(nil)
	for b.Loop() {
		if _, err := sk.Sign(benchMsg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify includes decoding the key and signature from bytes and
// hashing the message, as a verifier of received bytes does.
func BenchmarkVerify(b *testing.B) {
	sk, _ := bls.GenerateKey(nil)
	sig, _ := sk.Sign(benchMsg)
	pk, sb := sk.PublicKey().Bytes(), sig.Bytes()
	for b.Loop() {
		if err := bls.VerifyBytes(pk, benchMsg, sb); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeG2(b *testing.B) {
	sk, _ := bls.GenerateKey(nil)
	sig, _ := sk.Sign(benchMsg)
	sb := sig.Bytes()
	for b.Loop() {
		if _, err := bls.SignatureFromBytes(sb); err != nil {
			b.Fatal(err)
		}
	}
}
