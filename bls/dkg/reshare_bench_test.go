package dkg

import (
	"testing"
)

// BenchmarkReshareParty is one party's whole reshare from received bytes:
// NewReshare (the old record's check, lambda_i * X_i for every dealer),
// its deal, every envelope the others send it (signatures, strict
// decoding, constant-term and sub-share checks, echo, finalize, and the
// key confirmation with its pairing checks) until it holds its new share.
// The party measured is participant 1, both a dealer and a new signer.
// Inputs are recorded from a real run first, so the loop measures this
// party alone.
func BenchmarkReshareParty(b *testing.B) {
	for _, tc := range []struct {
		name       string
		oldT, newT int
		oldN, newN int
	}{
		{"2-of-3 to 3-of-5", 2, 3, 3, 5},
		{"3-of-5 to 7-of-10", 3, 7, 5, 10},
		{"10-of-15 refresh", 10, 10, 15, 15},
	} {
		b.Run(tc.name, func(b *testing.B) {
			old, all := consoles(tc.oldN), consoles(tc.newN)
			h := dealtKey(b, tc.oldT, old)
			prop := proposeReshare(b, tc.name, h, old, tc.newT, all)
			ps := reshareParties(b, tc.name, prop, h, nil)
			nw := newRNetwork(b, ps)
			nw.startAll()
			nw.run()
			me := ps[0]
			for b.Loop() {
				e, err := NewReshare(me.cfg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.Start(); err != nil {
					b.Fatal(err)
				}
				for _, in := range me.inputs {
					if _, err := e.Handle(in); err != nil {
						b.Fatal(err)
					}
				}
				if e.State() != StateDone {
					b.Fatalf("state %s: %v", e.State(), e.Err())
				}
			}
		})
	}
}

func consoles(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}
