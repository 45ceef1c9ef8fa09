package core

// Inbound: envelopes from peers, routed to their ceremony, and the ones
// that come before their ceremony.

import (
	"context"
	"fmt"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
)

// handle routes one envelope from a peer. stored envelopes are persisted
// before Deliver returns.
func (a *App) handle(ctx context.Context, from Address, raw []byte, fresh bool) error {
	env, err := wire.Decode(raw)
	if err != nil {
		a.logMessage(event.In, from, nil, raw, "malformed: "+err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if fresh && a.crossCopy(from, raw) {
		// Handled when its first copy came: no answer, no orphan.
		a.logMessage(event.In, from, env, raw, "copy through a second server: dropped")
		return nil
	}
	if r, ok := a.records[env.Ceremony]; ok && r.Finished {
		if taken, err := a.lateAbort(ctx, from, env, raw); err != nil || taken {
			return err
		}
		a.logMessage(event.In, from, env, raw, "ceremony finished")
		a.answerFinished(from, env, raw)
		return fmt.Errorf("%w: ceremony %s is finished", ErrRejected, ceremony.ShortID(env.Ceremony))
	}
	if st, ok := a.keygens[env.Ceremony]; ok {
		return a.handleKeygen(ctx, st, from, env, raw)
	}
	if st, ok := a.signs[env.Ceremony]; ok {
		return a.handleSign(ctx, st, from, env, raw)
	}
	if st, ok := a.lifecycle().reshares[env.Ceremony]; ok {
		return a.handleReshare(ctx, st, from, env, raw)
	}
	if w, ok := a.lifecycle().watch()[env.Ceremony]; ok {
		return a.handleWatch(ctx, w, from, env, raw)
	}
	// A ceremony that has left memory: its replayed request must not open
	// it again, nor its late messages wait as orphans.
	e, err := a.endedRecord(ctx, env.Ceremony)
	if err != nil {
		return err
	}
	if e != nil {
		a.logMessage(event.In, from, env, raw, "ceremony finished")
		a.answerEnded(from, env, raw, e)
		return fmt.Errorf("%w: ceremony %s is finished", ErrRejected, ceremony.ShortID(env.Ceremony))
	}
	switch env.Kind {
	case wire.KindReshareProposal:
		return a.openReshare(ctx, from, env, raw)
	case wire.KindProposal:
		return a.openProposal(ctx, from, env, raw)
	case wire.KindSignRequest:
		return a.openRequest(ctx, from, env, raw)
	}
	return a.keepOrphan(ctx, from, env, raw, fresh)
}

// checkSender binds the Signal sender to the party index in the envelope:
// the party is its console key, and any address on its pinned card (on
// the server the envelope came through) is the party, so keys made before
// a signer added a server work over the new one too.
func (a *App) checkSender(parties []dkg.Party, from Address, idx uint32) error {
	if idx == 0 || int(idx) > len(parties) {
		return fmt.Errorf("%w: party %d", ErrNotSigner, idx)
	}
	p := parties[idx-1]
	if from.Server == "" && p.Account == from.Account && p.Device == from.Device {
		return nil // the address the ceremony was made with, on the one server
	}
	if m, ok := a.member(from); ok && m.Card.ConsoleKey.Equal(p.ConsoleKey) {
		return nil
	}
	return fmt.Errorf("%w: party %d is not %s", ErrNotSigner, idx, from)
}

// member is the roster member that holds from's address: on its server
// when from names one, else on any.
func (a *App) member(from Address) (*roster.Member, bool) {
	if from.Server != "" {
		return a.cfg.Roster.ByAddress(from.Server, from.Account, from.Device)
	}
	if n := a.cfg.Roster.NameOf(from.Account, from.Device); n != "" {
		return a.cfg.Roster.Lookup(n)
	}
	return nil, false
}

func (a *App) handleKeygen(ctx context.Context, st *keygenState, from Address, env *wire.Envelope, raw []byte) error {
	if err := a.checkSender(st.s.Proposal().Parties, from, env.From); err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	out, err := st.s.Handle(raw)
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if err := a.record(ctx, env.Ceremony, Input{Kind: InputEnvelope, Envelope: raw}); err != nil {
		return err
	}
	a.logMessage(event.In, from, env, raw, "")
	a.send(st.s.Proposal().Parties, out)
	a.afterKeygen(ctx, st, true)
	return nil
}

func (a *App) handleSign(ctx context.Context, st *signState, from Address, env *wire.Envelope, raw []byte) error {
	if err := a.checkSender(st.key.key.Parties, from, env.From); err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	out, err := st.s.Handle(raw)
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if err := a.record(ctx, env.Ceremony, Input{Kind: InputEnvelope, Envelope: raw}); err != nil {
		return err
	}
	a.logMessage(event.In, from, env, raw, "")
	a.send(st.key.key.Parties, out)
	a.afterSign(ctx, st, true)
	return nil
}

func (a *App) record(ctx context.Context, id [32]byte, in Input) error {
	if err := a.cfg.Store.AppendInput(ctx, id, in); err != nil {
		return fmt.Errorf("core: store input: %w", err)
	}
	if r, ok := a.records[id]; ok {
		r.Inputs = append(r.Inputs, in)
	}
	return nil
}

func (a *App) openProposal(ctx context.Context, from Address, env *wire.Envelope, raw []byte) error {
	s, err := ceremony.OpenKeygenProposal(raw, a.cfg.ConsoleKey, a.seed(), a.cfg.Roster.Trust)
	if err == nil {
		err = a.checkSender(s.Proposal().Parties, from, env.From)
	}
	if err == nil {
		err = a.checkRestored(s.Proposal().Created)
	}
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		a.publish(event.Error{Time: a.now(), Text: fmt.Sprintf("keygen proposal from %s refused: %v", a.name(from), err)})
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	rec := &CeremonyRecord{ID: s.ID(), Kind: KindKeygen, Opening: raw, Seed: a.sessionSeed(s), Created: a.now()}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return fmt.Errorf("core: store proposal: %w", err)
	}
	a.records[rec.ID] = rec
	a.logMessage(event.In, from, env, raw, "")
	st := &keygenState{s: s}
	a.keygens[rec.ID] = st
	a.adoptOrphans(ctx, rec.ID)
	a.afterKeygen(ctx, st, true)
	return nil
}

// sessionSeed is the seed the session was built with; OpenKeygenProposal
// took a fresh one, which is kept with the record.
func (a *App) sessionSeed(s *ceremony.KeygenSession) [32]byte { return s.Seed() }

func (a *App) openRequest(ctx context.Context, from Address, env *wire.Envelope, raw []byte) error {
	req, err := tbls.DecodeRequest(env.Payload)
	var k *keyState
	if err == nil {
		var ok bool
		if k, ok = a.keys[req.KeyID]; !ok {
			err = fmt.Errorf("%w: %s", ErrNoKey, ceremony.ShortID(req.KeyID))
		}
	}
	var s *ceremony.SignSession
	if err == nil {
		err = a.checkSender(k.key.Parties, from, env.From)
	}
	if err == nil {
		s, err = ceremony.OpenSignRequest(a.signConfig(k, nil), raw)
	}
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	rec := &CeremonyRecord{ID: s.ID(), Kind: KindSign, Opening: raw, KeyID: k.key.ID, Created: a.now(), Head: s.OwnHead()}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return fmt.Errorf("core: store request: %w", err)
	}
	a.records[rec.ID] = rec
	a.logMessage(event.In, from, env, raw, "")
	st := &signState{s: s, key: k}
	a.signs[rec.ID] = st
	a.adoptOrphans(ctx, rec.ID)
	a.afterSign(ctx, st, true)
	return nil
}

// keepOrphan stores an envelope for a ceremony not seen yet (a partial that
// overtook its request). It is bounded in number and age.
func (a *App) keepOrphan(ctx context.Context, from Address, env *wire.Envelope, raw []byte, fresh bool) error {
	if !fresh {
		return nil
	}
	if len(a.orphans) >= a.cfg.MaxOrphans {
		a.logMessage(event.In, from, env, raw, "unknown ceremony, too many kept already")
		return fmt.Errorf("%w: unknown ceremony %s and the waiting room is full", ErrRejected, ceremony.ShortID(env.Ceremony))
	}
	o := Orphan{From: from, Envelope: raw, Received: a.now()}
	if err := a.cfg.Store.PutOrphan(ctx, o); err != nil {
		return fmt.Errorf("core: store orphan: %w", err)
	}
	a.orphans = append(a.orphans, o)
	a.logMessage(event.In, from, env, raw, "unknown ceremony: kept for later")
	return nil
}

// adoptOrphans feeds the kept envelopes of a ceremony that just appeared.
func (a *App) adoptOrphans(ctx context.Context, id [32]byte) {
	var mine, rest []Orphan
	for _, o := range a.orphans {
		if env, err := wire.Decode(o.Envelope); err == nil && env.Ceremony == id {
			mine = append(mine, o)
		} else {
			rest = append(rest, o)
		}
	}
	if len(mine) == 0 {
		return
	}
	a.orphans = rest
	var envs [][]byte
	for _, o := range mine {
		envs = append(envs, o.Envelope)
		_ = a.handle(ctx, o.From, o.Envelope, false)
	}
	if err := a.cfg.Store.DeleteOrphans(ctx, envs); err != nil {
		a.log.Warn("delete orphans", "err", err)
	}
}
