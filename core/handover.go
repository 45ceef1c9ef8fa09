package core

// Handover: the old signers that take no part in a reshare (they neither
// stay nor deal) learn that it ended from the proposal and the new
// signers' confirmations, which prove (dkg.VerifyHandover) that every new
// signer holds a share of the same key. Then they erase their old share
// and show the key as handed over. One that was offline gets them from
// its queue when it comes back.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

// watchState is a reshare this console only watches for its handover.
type watchState struct {
	prop    *dkg.ReshareProposal
	opening []byte
	confs   map[uint32][]byte // by new index
	done    bool
}

func (l *lifecycle) watch() map[[32]byte]*watchState {
	if l.watches == nil {
		l.watches = map[[32]byte]*watchState{}
	}
	return l.watches
}

// oldOnly returns the old signers that take no part in the reshare.
func oldOnly(p *dkg.ReshareProposal) []dkg.Party {
	if p.Import || p.Old == nil {
		return nil
	}
	parts := p.Participants()
	var out []dkg.Party
	for _, q := range p.Old.Parties {
		if !slices.ContainsFunc(parts, func(r dkg.Party) bool { return bytes.Equal(r.ConsoleKey, q.ConsoleKey) }) {
			out = append(out, q)
		}
	}
	return out
}

// handOver sends the proposal and the confirmations to the old signers
// that took no part. The initiator and the first new signer send them (two,
// so that one crash does not leave them uninformed; the receivers drop
// the second copy).
func (a *App) handOver(s *ceremony.ReshareSession, confirmations [][]byte) {
	if s.Self() != s.Proposal().Initiator && s.Self() != 1 {
		return
	}
	to := oldOnly(s.Proposal())
	if len(to) == 0 {
		return
	}
	out := []ceremony.Outgoing{{Kind: wire.KindReshareProposal, Envelope: s.ProposalEnvelope()}}
	for _, c := range confirmations {
		out = append(out, ceremony.Outgoing{Kind: wire.KindReshareConfirm, Round: uint32(dkg.RoundConfirm), Envelope: c})
	}
	a.send(to, out)
}

// takesNoPart reports whether this console is an old signer the reshare
// leaves out (it holds the key and is not a participant).
func (a *App) takesNoPart(p *dkg.ReshareProposal) bool {
	pub, _ := a.cfg.ConsoleKey.Public().(ed25519.PublicKey)
	if _, ok := p.IndexOfConsoleKey(pub); ok {
		return false
	}
	_, held := a.keys[p.KeyID]
	return held && slices.ContainsFunc(oldOnly(p), a.isSelf)
}

// openWatch records a reshare this console takes no part in: it waits for
// its confirmations. The proposal must describe this console's record.
func (a *App) openWatch(ctx context.Context, from Address, env *wire.Envelope, raw []byte, p *dkg.ReshareProposal) error {
	k := a.keys[p.KeyID]
	err := p.CheckRecord(k.key.ID, k.key.Epoch, k.key.OldGroup())
	if err == nil {
		err = a.cfg.Roster.Trust(&dkg.Proposal{Parties: p.Participants()})
	}
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		a.publish(event.Error{Time: a.now(), Text: fmt.Sprintf("handover of key %s refused: %v", ceremony.ShortID(p.KeyID), err)})
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	rec := &CeremonyRecord{ID: env.Ceremony, Kind: KindReshare, Opening: raw, KeyID: p.KeyID, Created: a.now()}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return fmt.Errorf("core: store reshare proposal: %w", err)
	}
	a.records[rec.ID] = rec
	a.logMessage(event.In, from, env, raw, "a reshare without this console: waiting for its handover")
	a.lifecycle().watch()[rec.ID] = &watchState{prop: p, opening: raw, confs: map[uint32][]byte{}}
	a.adoptOrphans(ctx, rec.ID)
	return nil
}

// handleWatch takes a confirmation of a watched reshare; with all n' of
// them it hands the key over.
func (a *App) handleWatch(ctx context.Context, w *watchState, from Address, env *wire.Envelope, raw []byte) error {
	if err := w.add(env, raw); err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if err := a.record(ctx, env.Ceremony, Input{Kind: InputEnvelope, Envelope: raw}); err != nil {
		return err
	}
	a.logMessage(event.In, from, env, raw, "")
	a.completeWatch(ctx, env.Ceremony, w, true)
	return nil
}

// add keeps one new signer's signed confirmation.
func (w *watchState) add(env *wire.Envelope, raw []byte) error {
	if w.done {
		return fmt.Errorf("%w: handed over already", ErrRejected)
	}
	parts := w.prop.Participants()
	if _, err := wire.Open(raw, func(j uint32) (ed25519.PublicKey, bool) {
		if j == 0 || int(j) > len(parts) {
			return nil, false
		}
		return parts[j-1].ConsoleKey, true
	}); err != nil {
		return err
	}
	if env.Kind != wire.KindReshareConfirm || env.To != 0 || env.From == 0 || int(env.From) > w.prop.N() {
		return fmt.Errorf("%w: %s from party %d is not a new signer's confirmation", ErrNotSigner, env.Kind, env.From)
	}
	if _, dup := w.confs[env.From]; dup {
		return fmt.Errorf("%w: duplicate confirmation", dkg.ErrDuplicate)
	}
	w.confs[env.From] = raw
	return nil
}

// completeWatch hands the key over once every new signer's confirmation
// is here and they prove the handover.
func (a *App) completeWatch(ctx context.Context, id [32]byte, w *watchState, live bool) {
	if w.done || len(w.confs) < w.prop.N() {
		return
	}
	confs := make([][]byte, 0, w.prop.N())
	for j := uint32(1); j <= uint32(w.prop.N()); j++ {
		confs = append(confs, w.confs[j])
	}
	res, err := dkg.VerifyHandover(w.prop, confs)
	if err != nil {
		a.publish(event.Error{Time: a.now(), Text: fmt.Sprintf("handover of key %s does not verify: %v; the old share is kept", ceremony.ShortID(w.prop.KeyID), err)})
		return
	}
	w.done = true
	key := ceremony.NewReshareKey(w.prop, res)
	ek := &EpochKey{KeyID: key.ID, Ceremony: id, Proposal: w.opening, Confirmations: res.Confirmations, Created: a.now()}
	if err := a.commitEpoch(ctx, id, key, nil, ek, live); err != nil {
		a.finish(ctx, id, result{err: err}, nil)
		return
	}
	var told []event.Event
	if live {
		told = append(told, event.ReshareDone{Ceremony: ceremony.ShortID(id), What: reshareWhat(w.prop), KeyID: ceremony.ShortID(key.ID),
			GroupKey: hex.EncodeToString(key.Group.Key.Bytes()), Epoch: key.Epoch, T: key.T(), N: key.N(), HandedOver: true})
	}
	a.finish(ctx, id, result{}, told)
}

// replayWatch rebuilds a watched reshare from its stored confirmations.
func (a *App) replayWatch(ctx context.Context, r *CeremonyRecord, p *dkg.ReshareProposal) error {
	if _, held := a.keys[p.KeyID]; !held {
		return nil // handed over, or the key moved on: history
	}
	w := &watchState{prop: p, opening: r.Opening, confs: map[uint32][]byte{}}
	a.lifecycle().watch()[r.ID] = w
	for _, in := range r.Inputs {
		if in.Kind != InputEnvelope {
			continue
		}
		if env, err := wire.Decode(in.Envelope); err == nil {
			_ = w.add(env, in.Envelope)
		}
	}
	a.completeWatch(ctx, r.ID, w, false)
	return nil
}
