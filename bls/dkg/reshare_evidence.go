package dkg

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// provenBlame is evidence.go's rule for the reshare engine: a remote
// abort's accusation becomes this console's blame only when the signed
// evidence it carries proves it here.
func (e *ReshareEngine) provenBlame(by uint32, m *abort) []uint32 {
	if len(m.Blamed) != 1 {
		return nil
	}
	culprit := m.Blamed[0]
	ev := e.openEvidence(m.Evidence)
	if ev == nil {
		return nil
	}
	ok := false
	switch m.Reason {
	case ReasonEquivocation:
		ok = len(ev) == 2 && ev[0].From == culprit && wire.Equivocation(ev[0], ev[1])
	case ReasonInvalidDeal:
		ok = len(ev) == 1 && e.isDealEnvelope(ev[0], culprit) && e.dealFails(culprit, ev[0])
	case ReasonComplaints:
		ok = e.complaintsProven(by, culprit, ev)
	case ReasonBadJustification:
		ok = len(ev) == 2 && ev[0].Kind == wire.KindJustification && ev[0].From == culprit &&
			Round(ev[0].Round) == RoundJustify && ev[0].To == 0 && e.isDealEnvelope(ev[1], culprit) &&
			e.justificationFails(culprit, ev[0], ev[1])
	case ReasonBadConfirmation:
		ok = len(ev) == 1 && ev[0].Kind == wire.KindReshareConfirm && ev[0].From == culprit &&
			Round(ev[0].Round) == RoundConfirm && ev[0].To == 0 && e.confirmationFails(culprit, ev[0])
	}
	if !ok {
		return nil
	}
	return []uint32{culprit}
}

func (e *ReshareEngine) openEvidence(raws [][]byte) []*wire.Envelope {
	if len(raws) == 0 {
		return nil
	}
	out := make([]*wire.Envelope, 0, len(raws))
	for _, raw := range raws {
		env, err := wire.Open(raw, consoleKeyOf(e.parts))
		if err != nil || env.Ceremony != e.id {
			return nil
		}
		out = append(out, env)
	}
	return out
}

func (e *ReshareEngine) dealFails(dealer uint32, deal *wire.Envelope) bool {
	_, err := e.checkDeal(dealer, deal.Payload)
	return err != nil
}

// complaintsProven: at least t' new signers complained about dealer in
// signed echoes (the aborting party's abort standing for its own, unless
// it is the dealer).
func (e *ReshareEngine) complaintsProven(by, dealer uint32, ev []*wire.Envelope) bool {
	var complainers []uint32
	if by != dealer && e.isNew(by) {
		complainers = append(complainers, by)
	}
	for _, env := range ev {
		if env.Kind != wire.KindEcho || Round(env.Round) != RoundEcho || env.To != 0 || env.From == dealer {
			return false
		}
		m, err := e.decodeEcho(env.From, env.Payload)
		if err != nil || !slices.Contains(m.Complaints, dealer) {
			return false
		}
		if !slices.Contains(complainers, env.From) {
			complainers = append(complainers, env.From)
		}
	}
	return len(complainers) >= e.t
}

// justificationFails: the revealed shares do not lie on the dealer's signed
// commitments (or the deal itself fails).
func (e *ReshareEngine) justificationFails(dealer uint32, just, deal *wire.Envelope) bool {
	comms, err := e.checkDeal(dealer, deal.Payload)
	if err != nil {
		return true
	}
	saved, had := e.comms[dealer]
	e.comms[dealer] = comms
	bad := e.badJustification(dealer, just.Payload, nil) != ""
	if had {
		e.comms[dealer] = saved
	} else {
		delete(e.comms, dealer)
	}
	return bad
}

// confirmationFails needs this console's own view of the new key: before
// finalize nothing is proven.
func (e *ReshareEngine) confirmationFails(j uint32, env *wire.Envelope) bool {
	if e.result == nil {
		return false
	}
	m, err := decodeReshareConfirm(env.Payload, e.t)
	if err != nil || !slices.EqualFunc(m.Commitments, e.newComms, bytes.Equal) {
		return true
	}
	p, err := tbls.PartialFromBytes(j, m.Proof)
	return err != nil || e.result.Group.VerifyPartial(e.popHash, p) != nil
}

// LateAbort is Engine.LateAbort for a reshare: a peer's abort after this
// party finished counts only when its signed evidence proves a party
// misbehaved; the new shares must then not be used (and the old ones not
// erased).
func (e *ReshareEngine) LateAbort(raw []byte) (*AbortError, error) {
	if e.state != StateDone {
		return nil, fmt.Errorf("%w: a late abort of a ceremony in state %s", ErrUnexpected, e.state)
	}
	env, err := wire.Open(raw, consoleKeyOf(e.parts))
	if err != nil {
		return nil, fmt.Errorf("dkg: %w", err)
	}
	if env.Ceremony != e.id {
		return nil, ErrWrongCeremony
	}
	if env.Kind != wire.KindAbort || env.To != 0 || env.From == e.self {
		return nil, fmt.Errorf("%w: %s from party %d is not a peer's abort", ErrUnexpected, env.Kind, env.From)
	}
	m, err := decodeAbort(env.Payload, len(e.parts))
	if err != nil {
		return nil, err
	}
	a := &AbortError{Reason: m.Reason, By: env.From, Round: Round(env.Round), Detail: fmt.Sprintf("party %d aborted: %s", env.From, truncate(m.Detail)),
		Evidence: m.Evidence}
	if !a.misbehaviour() {
		return nil, nil
	}
	if a.Blamed = e.provenBlame(env.From, m); len(a.Blamed) == 0 {
		return nil, nil
	}
	return a, nil
}
