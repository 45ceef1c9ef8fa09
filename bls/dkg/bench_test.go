package dkg

import (
	"fmt"
	"testing"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

var benchSizes = []struct{ t, n int }{{2, 3}, {3, 5}, {7, 10}, {10, 15}}

// BenchmarkDKGCompute is one party's DKG arithmetic as threshold-bls.md
// section 4 counts it: deal (polynomial, t commitments, proof of knowledge,
// n-1 shares), verify every other dealer's proof of knowledge and share
// against its commitments, and finalize (sum the shares and commitments,
// derive the group key and every public share). The other dealers' messages
// are decoded beforehand; BenchmarkPartyEndToEnd adds decoding, envelope
// signatures and the key confirmation round.
func BenchmarkDKGCompute(b *testing.B) {
	for _, tc := range benchSizes {
		b.Run(fmt.Sprintf("n=%d,t=%d", tc.n, tc.t), func(b *testing.B) {
			name := fmt.Sprintf("bench-%d-%d", tc.t, tc.n)
			prop, ps := testGroup(b, name, tc.t, tc.n)
			nw := newNetwork(b, ps)
			nw.startAll()
			nw.run()
			type dealt struct {
				comms          share.Commitments
				c0, rBytes     []byte
				r              *bls.G1Point
				mu, shareToOne *bls.Scalar
			}
			me := ps[0].engine
			var others []dealt
			for i := uint32(2); i <= uint32(tc.n); i++ {
				d, err := decodeDeal(me.inbox[wire.KindDeal][i].env.Payload, tc.t)
				if err != nil {
					b.Fatal(err)
				}
				r, _ := bls.G1FromBytes(d.R)
				mu, _ := bls.ScalarFromBytes(d.Mu)
				others = append(others, dealt{comms: me.comms[i], c0: d.Commitments[0], rBytes: d.R, r: r, mu: mu, shareToOne: me.shares[i]})
			}
			for b.Loop() {
				e, err := New(Config{Proposal: prop, Self: 1, Key: ps[0].key, Seed: seedFor(name, 1)})
				if err != nil {
					b.Fatal(err)
				}
				poly, comms, _, err := e.makeDeal()
				if err != nil {
					b.Fatal(err)
				}
				for j := uint32(2); j <= uint32(tc.n); j++ {
					poly.Eval(j)
				}
				x := poly.Eval(1)
				all := []share.Commitments{comms}
				for k, o := range others {
					if !verifyKnowledge(e.id, uint32(k+2), o.comms, o.c0, o.r, o.rBytes, o.mu) {
						b.Fatal("proof of knowledge")
					}
					if err := o.comms.VerifyShare(1, o.shareToOne); err != nil {
						b.Fatal(err)
					}
					x.Add(x, o.shareToOne)
					all = append(all, o.comms)
				}
				sum, err := share.Sum(all)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tbls.NewGroup(sum, tc.n); err != nil {
					b.Fatal(err)
				}
				poly.Wipe()
			}
		})
	}
}

// BenchmarkPartyEndToEnd is one party's whole computation in a ceremony
// from received bytes: it starts, deals, and handles every envelope the
// others send it (Ed25519 checks, strict subgroup-checked decoding of every
// commitment, deal and share verification, echo, finalize, and the key
// confirmation with its pairing checks) until it holds the confirmed key.
// The messages are recorded from a real run first, so the loop measures this
// party alone.
func BenchmarkPartyEndToEnd(b *testing.B) {
	for _, tc := range benchSizes {
		b.Run(fmt.Sprintf("n=%d,t=%d", tc.n, tc.t), func(b *testing.B) {
			name := fmt.Sprintf("bench-%d-%d", tc.t, tc.n)
			prop, ps := testGroup(b, name, tc.t, tc.n)
			nw := newNetwork(b, ps)
			nw.startAll()
			nw.run()
			inputs := ps[0].inputs
			for b.Loop() {
				e, err := New(Config{Proposal: prop, Self: 1, Key: ps[0].key, Seed: seedFor(name, 1)})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.Start(); err != nil {
					b.Fatal(err)
				}
				for _, in := range inputs {
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
