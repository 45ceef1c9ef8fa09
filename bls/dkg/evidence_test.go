package dkg

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// forgedAbort is an abort signed by party from (a cheater) blaming blamed.
func forgedAbort(t *testing.T, p *party, round Round, reason AbortReason, blamed []uint32, evidence ...[]byte) []byte {
	t.Helper()
	payload, err := (&abort{Reason: reason, Blamed: blamed, Detail: "forged", Evidence: evidence}).encode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.engine.seal(wire.KindAbort, round, 0, payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A cheater cannot abort in an honest party's name: the ceremony stops,
// but without proof the accusation stays the cheater's claim.
func TestAnUnprovenAccusationIsNotBlame(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		reason   AbortReason
		evidence func(deal1, echo2 []byte) [][]byte
	}{
		{"an invalid deal, with a valid one as evidence", ReasonInvalidDeal, func(d, _ []byte) [][]byte { return [][]byte{d} }},
		{"an invalid deal, with no evidence", ReasonInvalidDeal, func(_, _ []byte) [][]byte { return nil }},
		{"equivocation, with one deal twice", ReasonEquivocation, func(d, _ []byte) [][]byte { return [][]byte{d, d} }},
		{"complaints, with an echo that complains of nobody", ReasonComplaints, func(_, e []byte) [][]byte { return [][]byte{e} }},
		{"a bad justification, with a deal and no justification", ReasonBadJustification, func(d, _ []byte) [][]byte { return [][]byte{d, d} }},
		{"a bad key confirmation, with a deal as evidence", ReasonBadConfirmation, func(d, _ []byte) [][]byte { return [][]byte{d} }},
		{"evidence that is no envelope", ReasonInvalidDeal, func(_, _ []byte) [][]byte { return [][]byte{[]byte("not an envelope")} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var deal1, echo2 []byte
			_, ps := testGroup(t, "forged-abort", 2, 3)
			nw := newNetwork(t, ps)
			// Everyone gets to the key confirmation, which never arrives.
			nw.tamper = func(d delivery) [][]byte {
				switch kindOf(d.env) {
				case wire.KindConfirm:
					return nil
				case wire.KindDeal:
					if d.from == 1 {
						deal1 = d.env
					}
				case wire.KindEcho:
					if d.from == 2 {
						echo2 = d.env
					}
				}
				return [][]byte{d.env}
			}
			nw.startAll()
			nw.run()
			if ps[1].engine.Round() != RoundConfirm || deal1 == nil || echo2 == nil {
				t.Fatalf("setup: party 2 in round %s", ps[1].engine.Round())
			}
			// Party 3 accuses honest party 1.
			if _, err := ps[1].engine.Handle(forgedAbort(t, ps[2], ps[2].engine.Round(), tc.reason, []uint32{1}, tc.evidence(deal1, echo2)...)); err != nil {
				t.Fatal(err)
			}
			var a *AbortError
			if !errors.As(ps[1].engine.Err(), &a) {
				t.Fatalf("the abort did not stop party 2: %v", ps[1].engine.Err())
			}
			if len(a.Blamed) != 0 || !slices.Equal(a.Claimed, []uint32{1}) || a.By != 3 || errors.Is(a, ErrMisbehaviour) {
				t.Fatalf("party 2: blamed %v, claimed %v, by %d (%v); want party 3's unproven claim against party 1", a.Blamed, a.Claimed, a.By, a)
			}
		})
	}
}

// With proof the remote blame is adopted: a relayed conviction for a deal
// that fails its checks.
func TestAProvenAccusationIsBlame(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "proven-abort", 2, 3)
	nw := newNetwork(t, ps)
	var bad []byte
	// Dealer 1's deal to party 3 carries a broken proof of knowledge; party
	// 3 is kept from aborting on its own (its outputs are dropped), and its
	// conviction is then handed to party 2 by hand.
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 3 {
			return nil
		}
		if d.from == 1 && d.to == 3 && kindOf(d.env) == wire.KindDeal {
			bad = reseal(t, d.env, ps[0].key, func(e *wire.Envelope) { e.Payload = brokenProof(t, e.Payload) })
			return [][]byte{bad}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	var a3 *AbortError
	if !errors.As(ps[2].engine.Err(), &a3) || a3.Reason != ReasonInvalidDeal {
		t.Fatalf("party 3: %v, want an invalid deal", ps[2].engine.Err())
	}
	if _, err := ps[1].engine.Handle(forgedAbort(t, ps[2], a3.Round, ReasonInvalidDeal, []uint32{1}, bad)); err != nil {
		t.Fatal(err)
	}
	var a *AbortError
	if !errors.As(ps[1].engine.Err(), &a) || !slices.Equal(a.Blamed, []uint32{1}) || len(a.Claimed) != 0 || !errors.Is(a, ErrMisbehaviour) {
		t.Fatalf("party 2: %v, want dealer 1 blamed on the evidence", ps[1].engine.Err())
	}
}

// brokenProof makes a deal's proof of knowledge refer to another secret.
func brokenProof(t *testing.T, payload []byte) []byte {
	t.Helper()
	m, err := decodeDeal(payload, 2)
	if err != nil {
		t.Fatal(err)
	}
	m.Commitments[0], m.Commitments[1] = m.Commitments[1], m.Commitments[0]
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A relayed conviction for a bad key confirmation is checked against this
// console's own key: proven once it has derived it.
func TestAProvenBadConfirmationIsBlame(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "proven-confirm", 2, 3)
	nw := newNetwork(t, ps)
	var abort1 []byte
	nw.tamper = func(d delivery) [][]byte {
		switch k := kindOf(d.env); {
		case d.from == 3 && d.to == 1 && k == wire.KindConfirm:
			// Party 3's proof to party 1 is for another key.
			return [][]byte{foreignProof(t, d.env, ps[2].key)}
		case d.from == 1 && d.to == 2 && (k == wire.KindConfirm || k == wire.KindAbort):
			// Party 2 waits for party 1 with its own key derived.
			if k == wire.KindAbort {
				abort1 = d.env
			}
			return nil
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	expectAbort(t, ps[0], ReasonBadConfirmation, []uint32{3})
	if ps[1].engine.Round() != RoundConfirm || abort1 == nil {
		t.Fatalf("setup: party 2 in round %s, abort captured %v", ps[1].engine.Round(), abort1 != nil)
	}
	if _, err := ps[1].engine.Handle(abort1); err != nil {
		t.Fatal(err)
	}
	var a *AbortError
	if !errors.As(ps[1].engine.Err(), &a) || !slices.Equal(a.Blamed, []uint32{3}) || len(a.Claimed) != 0 || !errors.Is(a, ErrMisbehaviour) {
		t.Fatalf("party 2: %v, want party 3 blamed on the evidence", ps[1].engine.Err())
	}
}

// foreignProof re-signs a key confirmation with a proof of possession of
// another key in it: validly signed, wrong in content.
func foreignProof(t testing.TB, raw []byte, key ed25519.PrivateKey) []byte {
	t.Helper()
	return reseal(t, raw, key, func(e *wire.Envelope) {
		m, err := decodeConfirm(e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		sk, err := bls.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		pop, err := sk.PopProve()
		if err != nil {
			t.Fatal(err)
		}
		m.Proof = pop.Bytes()
		if e.Payload, err = m.encode(); err != nil {
			t.Fatal(err)
		}
	})
}

// A dealer that draws t complaints and aborts itself (an honest engine
// with a broken deal does) is blamed on the others' echoes: which console
// aborts first must not decide whether the dealer is blamed. Its abort
// does not count as a complaint: one echo is not enough.
func TestADealerAbortingOnItsOwnComplaintsIsBlamed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		echoes func(echo2, echo3 []byte) [][]byte
		proven bool
	}{
		{"both echoes", func(e2, e3 []byte) [][]byte { return [][]byte{e2, e3} }, true},
		{"one echo", func(_, e3 []byte) [][]byte { return [][]byte{e3} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, ps := testGroup(t, "self-abort", 2, 3)
			nw := newNetwork(t, ps)
			var echo2, echo3 []byte
			// Dealer 1 sends wrong shares to both others; party 2 gets no
			// echo (nor anyone's abort), so it cannot count the complaints
			// itself.
			nw.tamper = func(d delivery) [][]byte {
				switch {
				case d.from == 1 && kindOf(d.env) == wire.KindShare:
					return [][]byte{reseal(t, d.env, ps[0].key, func(e *wire.Envelope) {
						e.Payload = sharePayload(t, bls.ScalarFromUint64(uint64(d.to)))
					})}
				case kindOf(d.env) == wire.KindEcho && d.from == 2:
					echo2 = d.env
				case kindOf(d.env) == wire.KindEcho && d.from == 3:
					echo3 = d.env
				}
				if d.to == 2 && (kindOf(d.env) == wire.KindEcho || kindOf(d.env) == wire.KindAbort) {
					return nil
				}
				return [][]byte{d.env}
			}
			nw.startAll()
			nw.run()
			if ps[1].engine.State() == StateAborted || echo2 == nil || echo3 == nil {
				t.Fatalf("setup: party 2 %s, echoes %v %v", ps[1].engine.State(), echo2 != nil, echo3 != nil)
			}
			if _, err := ps[1].engine.Handle(forgedAbort(t, ps[0], RoundEcho, ReasonComplaints, []uint32{1}, tc.echoes(echo2, echo3)...)); err != nil {
				t.Fatal(err)
			}
			var a *AbortError
			if !errors.As(ps[1].engine.Err(), &a) || a.By != 1 {
				t.Fatalf("party 2: %v, want dealer 1's abort", ps[1].engine.Err())
			}
			blamed, claimed := slices.Equal(a.Blamed, []uint32{1}), slices.Equal(a.Claimed, []uint32{1})
			if tc.proven != blamed || tc.proven == claimed {
				t.Fatalf("party 2: blamed %v, claimed %v; want proven %v", a.Blamed, a.Claimed, tc.proven)
			}
		})
	}
}

// An abort that arrives after this party finished is taken up only when
// its evidence proves a party cheated (the key must then not be used):
// here party 2's two different key confirmations, which party 1 saw and
// party 3 did not. A timeout, a decline or an unproven claim changes
// nothing.
func TestALateAbortCountsOnlyWithProof(t *testing.T) {
	t.Parallel()
	ps := runHappy(t, "late-abort", 2, 3)
	p1, p2, p3 := ps[0], ps[1], ps[2]
	confirm := p2.engine.Final()[0].Envelope
	other := reseal(t, confirm, p2.key, func(e *wire.Envelope) { e.Payload = append(bytes.Clone(e.Payload), 0) })
	id := p1.engine.Ceremony()
	abortBy := func(m *abort) []byte {
		t.Helper()
		payload, err := m.encode()
		if err != nil {
			t.Fatal(err)
		}
		b, err := wire.Seal(&wire.Envelope{Kind: wire.KindAbort, Ceremony: id, Round: uint32(RoundConfirm), From: p1.idx, Payload: payload}, p1.key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	proven := abortBy(&abort{Reason: ReasonEquivocation, Blamed: []uint32{2}, Detail: "party 2 signed two different confirm messages", Evidence: [][]byte{confirm, other}})
	a, err := p3.engine.LateAbort(proven)
	if err != nil || a == nil || !slices.Equal(a.Blamed, []uint32{2}) || a.By != 1 || a.Reason != ReasonEquivocation {
		t.Fatalf("a proven late abort: %+v, %v; want party 2 blamed by party 1", a, err)
	}
	for name, m := range map[string]*abort{
		"timeout":                     {Reason: ReasonTimeout, Blamed: []uint32{2}, Detail: "no confirm message"},
		"decline":                     {Reason: ReasonDeclined, Blamed: []uint32{1}},
		"claim without proof":         {Reason: ReasonEquivocation, Blamed: []uint32{2}, Evidence: [][]byte{confirm, confirm}},
		"proof against another party": {Reason: ReasonEquivocation, Blamed: []uint32{3}, Evidence: [][]byte{confirm, other}},
	} {
		if a, err := p3.engine.LateAbort(abortBy(m)); err != nil || a != nil {
			t.Errorf("%s: %+v, %v; want nothing taken up", name, a, err)
		}
	}
	if _, err := p3.engine.LateAbort(confirm); err == nil {
		t.Error("a confirmation taken as a late abort")
	}
	if _, err := p1.engine.LateAbort(reseal(t, proven, p3.key, func(e *wire.Envelope) { e.From = 3 })); err != nil {
		t.Errorf("a late abort from party 3 to party 1: %v", err)
	}
}
