package dkg

import (
	"errors"
	"slices"
	"testing"

	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// reshareAbort is an abort signed by participant p blaming blamed.
func reshareAbort(t *testing.T, p *rparty, round Round, reason AbortReason, blamed []uint32, evidence ...[]byte) []byte {
	t.Helper()
	payload, err := (&abort{Reason: reason, Blamed: blamed, Detail: "accusation", Evidence: evidence}).encode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.engine.seal(wire.KindAbort, round, 0, payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAReshareAbortBlamesOnlyOnProof(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "abort-proof", h, []int{1, 2, 3}, 2, []int{1, 2, 3})
	ps := reshareParties(t, "abort-proof", prop, h, nil)
	out3, err := ps[2].engine.Start()
	if err != nil {
		t.Fatal(err)
	}
	goodDeal := out3[1].Envelope
	badDeal := mutateDeal(t, goodDeal, ps[2].key, func(c share.Commitments) { addGenerator(&c[0]) })
	tests := []struct {
		name     string
		evidence []byte
		blamed   []uint32
		claimed  []uint32
	}{
		{"a valid deal proves nothing", goodDeal, nil, []uint32{3}},
		{"a deal with a wrong constant term is proof", badDeal, []uint32{3}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps := reshareParties(t, "abort-proof", prop, h, nil)
			if _, err := ps[0].engine.Start(); err != nil {
				t.Fatal(err)
			}
			raw := reshareAbort(t, ps[1], RoundDeal, ReasonInvalidDeal, []uint32{3}, tc.evidence)
			if _, err := ps[0].engine.Handle(raw); err != nil {
				t.Fatal(err)
			}
			var a *AbortError
			if !errors.As(ps[0].engine.Err(), &a) {
				t.Fatalf("not aborted: %v", ps[0].engine.Err())
			}
			if !slices.Equal(a.Blamed, tc.blamed) || !slices.Equal(a.Claimed, tc.claimed) || a.By != 2 {
				t.Fatalf("blamed %v claimed %v by %d, want %v and %v by 2", a.Blamed, a.Claimed, a.By, tc.blamed, tc.claimed)
			}
			if errors.Is(a, ErrMisbehaviour) != (tc.blamed != nil) {
				t.Fatalf("ErrMisbehaviour = %v", errors.Is(a, ErrMisbehaviour))
			}
		})
	}
}

func TestALateReshareAbortCountsOnlyWithProof(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "late-abort", h, []int{1, 2, 3}, 2, []int{1, 2, 3})
	_, ps := runReshare(t, "late-abort", prop, h)
	r, _ := ps[0].engine.Result()
	confirm3 := r.Confirmations[2]
	other := reseal(t, confirm3, ps[2].key, func(env *wire.Envelope) {
		env.Payload = append(env.Payload[:len(env.Payload)-1:len(env.Payload)-1], env.Payload[len(env.Payload)-1]^1)
	})
	proven := reshareAbort(t, ps[1], RoundConfirm, ReasonEquivocation, []uint32{3}, confirm3, other)
	a, err := ps[0].engine.LateAbort(proven)
	if err != nil || a == nil || !slices.Equal(a.Blamed, []uint32{3}) {
		t.Fatalf("proven late abort: %v, %v", a, err)
	}
	for name, raw := range map[string][]byte{
		"timeout":              reshareAbort(t, ps[1], RoundConfirm, ReasonTimeout, []uint32{3}),
		"bare accusation":      reshareAbort(t, ps[1], RoundConfirm, ReasonBadConfirmation, []uint32{3}),
		"a valid confirmation": reshareAbort(t, ps[1], RoundConfirm, ReasonBadConfirmation, []uint32{3}, confirm3),
	} {
		if a, err := ps[0].engine.LateAbort(raw); err != nil || a != nil {
			t.Errorf("%s: %v, %v; want nothing", name, a, err)
		}
	}
}
