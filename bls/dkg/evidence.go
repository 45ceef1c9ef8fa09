package dkg

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"slices"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// A remote abort ends the ceremony whatever it says (any party may refuse
// to go on), but the misbehaviour it alleges is only adopted as this
// console's blame when the signed evidence it carries proves it here: a
// cheater must not be able to abort in an honest party's name. What the
// evidence cannot show on its own (an echo that disagrees with deals this
// console never saw, a key confirmation before this console derived the
// key) stays the other party's claim (AbortError.Claimed).

// evidenceChecks is what checking an abort's evidence needs from an
// engine, the keygen's or the reshare's: the checks it runs on the same
// messages when it receives them.
type evidenceChecks interface {
	Ceremony() [32]byte
	consoleKey(j uint32) (ed25519.PublicKey, bool)
	isDeal(env *wire.Envelope, dealer uint32) bool
	dealFails(dealer uint32, deal *wire.Envelope) bool
	complaintsProven(by, dealer uint32, ev []*wire.Envelope) bool
	justificationFails(dealer uint32, just, deal *wire.Envelope) bool
	confirmationFails(j uint32, env *wire.Envelope) bool
	confirmKind() wire.Kind
}

// provenBlame returns the parties among m.Blamed whose misbehaviour m's
// evidence proves, checked as c would check the same messages had it
// received them; by is the aborting party.
func provenBlame(c evidenceChecks, by uint32, m *abort) []uint32 {
	if len(m.Blamed) != 1 {
		// Every evidence-carrying abort of these engines names one culprit
		// (an inconsistent echo may name several: not provable here).
		return nil
	}
	culprit := m.Blamed[0]
	ev := openEvidence(c, m.Evidence)
	if ev == nil {
		return nil
	}
	ok := false
	switch m.Reason {
	case ReasonEquivocation:
		ok = len(ev) == 2 && ev[0].From == culprit && wire.Equivocation(ev[0], ev[1])
	case ReasonInvalidDeal:
		ok = len(ev) == 1 && c.isDeal(ev[0], culprit) && c.dealFails(culprit, ev[0])
	case ReasonComplaints:
		ok = c.complaintsProven(by, culprit, ev)
	case ReasonBadJustification:
		ok = len(ev) == 2 && ev[0].Kind == wire.KindJustification && ev[0].From == culprit &&
			Round(ev[0].Round) == RoundJustify && ev[0].To == 0 &&
			c.isDeal(ev[1], culprit) && c.justificationFails(culprit, ev[0], ev[1])
	case ReasonBadConfirmation:
		ok = len(ev) == 1 && ev[0].Kind == c.confirmKind() && ev[0].From == culprit &&
			Round(ev[0].Round) == RoundConfirm && ev[0].To == 0 && c.confirmationFails(culprit, ev[0])
	}
	if !ok {
		return nil
	}
	return []uint32{culprit}
}

// openEvidence opens every envelope under the parties' console keys and
// checks that it belongs to c's ceremony; nil if any does not.
func openEvidence(c evidenceChecks, raws [][]byte) []*wire.Envelope {
	if len(raws) == 0 {
		return nil
	}
	out := make([]*wire.Envelope, 0, len(raws))
	for _, raw := range raws {
		env, err := wire.Open(raw, c.consoleKey)
		if err != nil || env.Ceremony != c.Ceremony() {
			return nil
		}
		out = append(out, env)
	}
	return out
}

func (e *Engine) consoleKey(j uint32) (ed25519.PublicKey, bool) { return e.prop.consoleKey(j) }
func (e *Engine) confirmKind() wire.Kind                        { return wire.KindConfirm }

func (e *Engine) isDeal(env *wire.Envelope, dealer uint32) bool {
	return env.Kind == wire.KindDeal && env.From == dealer && env.To == 0 && Round(env.Round) == RoundDeal
}

// dealFails reports whether a dealer's signed deal fails the checks every
// party runs on it.
func (e *Engine) dealFails(dealer uint32, deal *wire.Envelope) bool {
	_, err := e.checkDeal(dealer, deal.Payload)
	return err != nil
}

// complaintsProven reports whether at least t parties complained about
// dealer in signed echoes of this ceremony: the evidence's echoes, plus
// the aborting party, whose signed abort stands for its own complaint (as
// a local abort leaves out the aborting console's own echo) unless it is
// the dealer itself: a dealer that counts the complaints against it and
// aborts is proven wrong by the others' echoes alone.
func (e *Engine) complaintsProven(by, dealer uint32, ev []*wire.Envelope) bool {
	var complainers []uint32
	if by != dealer {
		complainers = append(complainers, by)
	}
	for _, env := range ev {
		if env.Kind != wire.KindEcho || Round(env.Round) != RoundEcho || env.To != 0 || env.From == dealer {
			return false
		}
		m, err := decodeEcho(env.Payload, e.n)
		if err != nil || !slices.Contains(m.Complaints, dealer) {
			return false
		}
		if !slices.Contains(complainers, env.From) {
			complainers = append(complainers, env.From)
		}
	}
	return len(complainers) >= e.t
}

// confirmationFails reports whether a key confirmation fails the checks
// of afterConfirm: unreadable, for another key, or a proof that does not
// verify against the sender's public share. It needs this console's own
// key, so before finalize nothing is proven.
func (e *Engine) confirmationFails(j uint32, env *wire.Envelope) bool {
	if e.result == nil {
		return false
	}
	m, err := decodeConfirm(env.Payload)
	if err != nil || !bytes.Equal(m.KeyHash, e.keyHash) {
		return true
	}
	p, err := tbls.PartialFromBytes(j, m.Proof)
	return err != nil || e.result.Group.VerifyPartial(e.popHash, p) != nil
}

// justificationFails reports whether a dealer's signed justification is
// unreadable or reveals a share that does not match its signed deal (or
// the deal itself fails). That it answered the right complainers needs the
// echoes, which the evidence does not carry: not judged here.
func (e *Engine) justificationFails(dealer uint32, just, deal *wire.Envelope) bool {
	comms, err := e.checkDeal(dealer, deal.Payload)
	if err != nil {
		return true
	}
	m, err := decodeJustification(just.Payload, e.n)
	if err != nil {
		return true
	}
	for _, rs := range m.Shares {
		s, err := bls.ScalarFromBytes(rs.Value)
		if err == nil {
			err = comms.VerifyShare(rs.To, s)
			bls.WipeScalar(s)
		}
		if err != nil {
			return true
		}
	}
	return false
}

// LateAbort checks a peer's abort that arrives after this party finished
// (StateDone): the last round has no round after it, so a peer can find a
// party cheating (an equivocating key confirmation) after others already
// stored the key. It returns the abort when its signed evidence proves, as
// Handle would check it, that a party misbehaved: the key came out of a
// ceremony an honest party aborted with proof, and must not be used. An
// abort without proof (a timeout, a decline, a bare claim) returns nil: it
// changes nothing here.
func (e *Engine) LateAbort(raw []byte) (*AbortError, error) {
	return lateAbort(e, e.state, e.self, e.n, raw)
}

// lateAbort is LateAbort for either engine: c in state, self its party
// index, n its number of parties.
func lateAbort(c evidenceChecks, state State, self uint32, n int, raw []byte) (*AbortError, error) {
	if state != StateDone {
		return nil, fmt.Errorf("%w: a late abort of a ceremony in state %s", ErrUnexpected, state)
	}
	env, err := wire.Open(raw, c.consoleKey)
	if err != nil {
		return nil, fmt.Errorf("dkg: %w", err)
	}
	if env.Ceremony != c.Ceremony() {
		return nil, ErrWrongCeremony
	}
	if env.Kind != wire.KindAbort || env.To != 0 || env.From == self {
		return nil, fmt.Errorf("%w: %s from party %d is not a peer's abort", ErrUnexpected, env.Kind, env.From)
	}
	m, err := decodeAbort(env.Payload, n)
	if err != nil {
		return nil, err
	}
	a := &AbortError{Reason: m.Reason, By: env.From, Round: Round(env.Round), Detail: fmt.Sprintf("party %d aborted: %s", env.From, truncate(m.Detail)),
		Evidence: m.Evidence}
	if !a.misbehaviour() {
		return nil, nil
	}
	if a.Blamed = provenBlame(c, env.From, m); len(a.Blamed) == 0 {
		return nil, nil
	}
	return a, nil
}
