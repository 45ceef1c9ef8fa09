package dkg

import (
	"bytes"
	"crypto/ed25519"
	"slices"

	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

func (e *ReshareEngine) consoleKey(j uint32) (ed25519.PublicKey, bool) {
	return consoleKeyOf(e.parts)(j)
}
func (e *ReshareEngine) confirmKind() wire.Kind { return wire.KindReshareConfirm }

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
	return lateAbort(e, e.state, e.self, len(e.parts), raw)
}
