package tbls_test

import (
	"fmt"
	"testing"

	"github.com/signal-mpc/cosigner/bls/tbls"
)

var benchMsg = []byte("transfer 32 ETH from the treasury to validator 123456")

// BenchmarkVerifyPartialFromBytes is what a combiner does per received
// partial: strict decode (subgroup check) and the pairing check against the
// sender's public share. H(msg) is computed once per request, not per
// partial, so it is outside the loop.
func BenchmarkVerifyPartialFromBytes(b *testing.B) {
	g, shares, _ := dealt(b, 2, 3)
	p, _ := tbls.Sign(&shares[0], benchMsg)
	enc := p.Bytes()
	h := tbls.HashMessage(benchMsg)
	for b.Loop() {
		q, err := tbls.PartialFromBytes(1, enc)
		if err != nil {
			b.Fatal(err)
		}
		if err := g.VerifyPartial(h, q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCombine is the combiner's whole job once t partials are decoded:
// hash the message, interpolate, and one final standard verification (the
// optimistic path; partials are checked one by one only if that fails).
func BenchmarkCombine(b *testing.B) {
	for _, tc := range []struct{ t, n int }{{2, 3}, {10, 15}} {
		b.Run(fmt.Sprintf("%d-of-%d", tc.t, tc.n), func(b *testing.B) {
			g, shares, _ := dealt(b, tc.t, tc.n)
			partials := make([]*tbls.Partial, tc.t)
			for i := range partials {
				partials[i], _ = tbls.Sign(&shares[i], benchMsg)
			}
			for b.Loop() {
				if _, err := g.Combine(benchMsg, partials); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCombineFromBytes adds strict decoding of the t partials to
// BenchmarkCombine: the cost from received bytes to a verified signature.
func BenchmarkCombineFromBytes(b *testing.B) {
	for _, tc := range []struct{ t, n int }{{2, 3}, {10, 15}} {
		b.Run(fmt.Sprintf("%d-of-%d", tc.t, tc.n), func(b *testing.B) {
			g, shares, _ := dealt(b, tc.t, tc.n)
			enc := make([][]byte, tc.t)
			for i := range enc {
				p, _ := tbls.Sign(&shares[i], benchMsg)
				enc[i] = p.Bytes()
			}
			partials := make([]*tbls.Partial, tc.t)
			for b.Loop() {
				for i := range enc {
					p, err := tbls.PartialFromBytes(uint32(i+1), enc[i])
					if err != nil {
						b.Fatal(err)
					}
					partials[i] = p
				}
				if _, err := g.Combine(benchMsg, partials); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPartialSign(b *testing.B) {
	_, shares, _ := dealt(b, 2, 3)
	for b.Loop() {
		if _, err := tbls.Sign(&shares[0], benchMsg); err != nil {
			b.Fatal(err)
		}
	}
}
