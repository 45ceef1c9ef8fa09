package core

// Reshare, refresh and import: a key moves to a new group (or new shares
// for the same group) at the next epoch, keeping its id and group key; or
// a console splits a key it imports. The ceremony runs like a keygen
// (proposal, approval on every participating console, rounds, blame,
// resume from stored inputs); when it ends here the key switches epoch
// (switchEpoch): the new epoch is stored as its own record and the old
// epoch's secrets are erased in the same write.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/keystore"
)

// lifecycle is the loop-owned state of the reshares.
type lifecycle struct {
	reshares map[[32]byte]*reshareState
	// handedOver: keys this console no longer holds a share of (it left
	// the group at a reshare), at the epoch that replaced its share.
	handedOver map[[32]byte]*ceremony.Key
	// watches: reshares this console takes no part in, waiting for their
	// handover (handover.go).
	watches map[[32]byte]*watchState
}

func (a *App) lifecycle() *lifecycle {
	if a.life == nil {
		a.life = &lifecycle{reshares: map[[32]byte]*reshareState{}, handedOver: map[[32]byte]*ceremony.Key{}}
	}
	return a.life
}

type reshareState struct {
	s         *ceremony.ReshareSession
	round     dkg.Round
	deadline  time.Time
	lastSend  time.Time
	announced bool
	asked     bool
	prompt    event.ApprovalRequested
	switched  bool
	res       *ReshareResult // once done here
	err       error          // once failed here
}

// ReshareRequest asks for a reshare (or a refresh: the same signers and
// threshold) of a key.
type ReshareRequest struct {
	KeyID     [32]byte // zero: the only key
	Threshold int      // t'
	Signers   []string // roster names of the new group (this console's own name when it stays)
	// Dealers names the old signers that deal (at least the old t); empty:
	// the old signers that stay, when they are at least t, else every old
	// signer.
	Dealers []string
}

// ReshareResult is a finished reshare, refresh or import.
type ReshareResult struct {
	Ceremony   [32]byte
	What       string // "reshare", "refresh" or "import"
	KeyID      [32]byte
	GroupKey   []byte
	Epoch      uint32
	T, N       int
	HandedOver bool // this console holds no share of the new epoch
}

// StartReshare proposes a reshare of a key held by this console (proposing
// is this human's acceptance) and waits until it ends.
func (a *App) StartReshare(ctx context.Context, req ReshareRequest) (*ReshareResult, error) {
	id, err := a.BeginReshare(ctx, req)
	if err != nil {
		return nil, err
	}
	return a.WaitReshare(ctx, id)
}

// BeginReshare proposes a reshare and returns its ceremony id at once.
func (a *App) BeginReshare(ctx context.Context, req ReshareRequest) ([32]byte, error) {
	var id [32]byte
	var err error
	if e := a.do(ctx, func() { id, err = a.startReshare(ctx, req) }); e != nil {
		return [32]byte{}, e
	}
	return id, err
}

// ImportKey proposes to split sk, a whole key this console holds, into
// shares of a t-of-n group of the whole roster, this console dealing once.
// The key is never stored; the engine wipes sk once it has dealt (or the
// ceremony ends first). A restart before the import ends cannot resume it.
func (a *App) ImportKey(ctx context.Context, sk *bls.SecretKey, t int) ([32]byte, error) {
	var id [32]byte
	var err error
	if e := a.do(ctx, func() { id, err = a.startImport(ctx, sk, t) }); e != nil {
		sk.Wipe()
		return [32]byte{}, e
	}
	return id, err
}

// WaitReshare waits until the reshare or import id ends here.
func (a *App) WaitReshare(ctx context.Context, id [32]byte) (*ReshareResult, error) {
	wait := make(chan result, 1)
	var err error
	if e := a.do(ctx, func() {
		st, ok := a.lifecycle().reshares[id]
		if !ok {
			err = fmt.Errorf("%w: %s", ErrUnknown, ceremony.ShortID(id))
			return
		}
		if st.res == nil && st.err == nil {
			a.waiters[id] = append(a.waiters[id], wait)
			return
		}
		r := result{reshare: st.res, err: st.err}
		a.whenDurable(func(derr error) {
			if derr != nil {
				r = result{err: derr}
			}
			wait <- r
		})
	}); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, err
	}
	select {
	case r := <-wait:
		return r.reshare, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("reshare %s still running: %w", ceremony.ShortID(id), ctx.Err())
	case <-a.stopped:
		return nil, fmt.Errorf("reshare %s: %w", ceremony.ShortID(id), a.stopErr())
	}
}

// memberParty is the roster member name as a ceremony party, checked
// verified (this console's own card excepted).
func (a *App) memberParty(name string) (dkg.Party, error) {
	m, ok := a.cfg.Roster.Lookup(name)
	if !ok {
		return dkg.Party{}, fmt.Errorf("%w: %q is not in the roster", ErrReshare, name)
	}
	p := dkg.Party{Account: m.Card.Account, Device: m.Card.Device, IdentityKey: m.Card.IdentityKey, ConsoleKey: m.Card.ConsoleKey}
	if !a.isSelf(p) && a.verifiedName(p) == "" {
		return dkg.Party{}, fmt.Errorf("%w: %s's card is not verified (compare the fingerprint, then: group verify %s)", ErrReshare, name, name)
	}
	return p, nil
}

func (a *App) isSelf(p dkg.Party) bool {
	return bytes.Equal(p.ConsoleKey, a.cfg.Me.ConsoleKey)
}

func (a *App) startReshare(ctx context.Context, req ReshareRequest) ([32]byte, error) {
	k, err := a.pickKey(req.KeyID)
	if err != nil {
		return [32]byte{}, err
	}
	if a.reshareOpen(k.key.ID) {
		return [32]byte{}, fmt.Errorf("%w: %s", ErrReshareOpen, ceremony.ShortID(k.key.ID))
	}
	var parties []dkg.Party
	for _, name := range req.Signers {
		p, err := a.memberParty(name)
		if err != nil {
			return [32]byte{}, err
		}
		if slices.ContainsFunc(parties, func(q dkg.Party) bool { return bytes.Equal(q.ConsoleKey, p.ConsoleKey) }) {
			return [32]byte{}, fmt.Errorf("%w: %s named twice", ErrReshare, name)
		}
		parties = append(parties, p)
	}
	dkg.SortParties(parties)
	old := k.key.Parties
	staying := func(p dkg.Party) bool {
		return slices.ContainsFunc(parties, func(q dkg.Party) bool { return bytes.Equal(q.ConsoleKey, p.ConsoleKey) })
	}
	var dealers []uint32
	if len(req.Dealers) > 0 {
		for _, name := range req.Dealers {
			m, ok := a.cfg.Roster.Lookup(name)
			if !ok {
				return [32]byte{}, fmt.Errorf("%w: dealer %q is not in the roster", ErrReshare, name)
			}
			j := slices.IndexFunc(old, func(p dkg.Party) bool { return bytes.Equal(p.ConsoleKey, m.Card.ConsoleKey) })
			if j < 0 {
				return [32]byte{}, fmt.Errorf("%w: dealer %s holds no share of the key", ErrReshare, name)
			}
			dealers = append(dealers, uint32(j+1))
		}
		slices.Sort(dealers)
		dealers = slices.Compact(dealers)
	} else {
		for j, p := range old {
			if staying(p) {
				dealers = append(dealers, uint32(j+1))
			}
		}
		if len(dealers) < k.key.T() {
			dealers = allIndices(len(old))
		}
	}
	prop := &dkg.ReshareProposal{
		KeyID: k.key.ID, GroupKey: k.key.Group.Key, Epoch: k.key.Epoch, Old: k.key.OldGroup(), Dealers: dealers,
		Threshold: req.Threshold, Parties: parties,
		RoundTimeout: a.cfg.RoundTimeout.Truncate(time.Second), Created: a.now().Truncate(time.Second),
	}
	rand.Read(prop.Nonce[:])
	pub, _ := a.cfg.ConsoleKey.Public().(ed25519.PublicKey)
	self, ok := prop.IndexOfConsoleKey(pub)
	if !ok {
		return [32]byte{}, fmt.Errorf("%w: this console neither stays nor deals: it cannot propose the reshare", ErrReshare)
	}
	prop.Initiator = self
	if err := prop.Validate(); err != nil {
		return [32]byte{}, fmt.Errorf("%w: %w", ErrReshare, err)
	}
	var keys ceremony.ReshareKeys
	if slices.Contains(prop.DealerIndices(), self) {
		keys.OldShare = k.share.Share
	}
	seed := a.seed()
	s, out, err := ceremony.ProposeReshare(prop, a.cfg.ConsoleKey, seed, keys)
	if err != nil {
		return [32]byte{}, err
	}
	return a.opened(ctx, s, seed, true, out)
}

func (a *App) startImport(ctx context.Context, sk *bls.SecretKey, t int) ([32]byte, error) {
	parties, err := a.cfg.Roster.Parties()
	if err != nil {
		sk.Wipe()
		return [32]byte{}, err
	}
	for _, p := range parties {
		if !a.isSelf(p) && a.verifiedName(p) == "" {
			sk.Wipe()
			return [32]byte{}, fmt.Errorf("%w: %s's card is not verified", ErrReshare, a.name(Address{Account: p.Account, Device: p.Device}))
		}
	}
	pk := sk.PublicKey()
	prop := &dkg.ReshareProposal{Import: true, KeyID: tbls.KeyID(pk), GroupKey: pk, Threshold: t, Parties: parties,
		RoundTimeout: a.cfg.RoundTimeout.Truncate(time.Second), Created: a.now().Truncate(time.Second)}
	rand.Read(prop.Nonce[:])
	if _, held := a.keys[prop.KeyID]; held {
		sk.Wipe()
		return [32]byte{}, fmt.Errorf("%w: this console already holds a share of key %s", ErrReshare, ceremony.ShortID(prop.KeyID))
	}
	pub, _ := a.cfg.ConsoleKey.Public().(ed25519.PublicKey)
	self, ok := prop.IndexOfConsoleKey(pub)
	if !ok {
		sk.Wipe()
		return [32]byte{}, fmt.Errorf("%w: this console is not in its own roster", ErrConfig)
	}
	prop.Initiator = self
	seed := a.seed()
	s, out, err := ceremony.ProposeReshare(prop, a.cfg.ConsoleKey, seed, ceremony.ReshareKeys{Secret: sk})
	if err != nil {
		return [32]byte{}, fmt.Errorf("%w: %w", ErrReshare, err)
	}
	return a.opened(ctx, s, seed, true, out)
}

// opened records a reshare this console proposed or accepted to look at,
// then sends what it gives.
func (a *App) opened(ctx context.Context, s *ceremony.ReshareSession, seed [32]byte, own bool, out []ceremony.Outgoing) ([32]byte, error) {
	if own && s.Proposal().Import {
		// The importer never resumes (it keeps no key), and its seed with
		// any one signer's sub-share would give the whole key: not stored.
		seed = [32]byte{}
	}
	rec := &CeremonyRecord{ID: s.ID(), Kind: KindReshare, Opening: s.ProposalEnvelope(), Seed: seed, KeyID: s.Proposal().KeyID, Own: own, Created: a.now(), By: callerOf(ctx)}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return [32]byte{}, fmt.Errorf("core: store reshare proposal: %w", err)
	}
	a.records[rec.ID] = rec
	st := &reshareState{s: s, announced: own}
	a.lifecycle().reshares[rec.ID] = st
	st.lastSend = a.now()
	// The importer's sub-shares leave from here and are kept nowhere.
	a.send(s.Participants(), out)
	a.adoptOrphans(ctx, rec.ID)
	a.afterReshare(ctx, st, true)
	return rec.ID, nil
}

func (a *App) reshareOpen(keyID [32]byte) bool {
	for id, st := range a.lifecycle().reshares {
		if st.s.Proposal().KeyID == keyID && st.res == nil && st.err == nil && (a.records[id] == nil || !a.records[id].Finished) {
			return true
		}
	}
	return false
}

// reshareTrust is what a console checks before it takes part: the new
// group's cards verified, the old-only dealers known with their pinned
// keys, and on a console holding the key, the proposal's old group equal
// to its record (dkg.ErrRecordMismatch otherwise).
func (a *App) reshareTrust(p *dkg.ReshareProposal) error {
	parts := p.Participants()
	if err := a.cfg.Roster.Trust(&dkg.Proposal{Parties: parts}); err != nil {
		return err
	}
	for j, q := range parts {
		if j < p.N() && !a.isSelf(q) && a.verifiedName(q) == "" {
			return fmt.Errorf("%w: %s's card is not verified", ErrReshare, a.name(Address{Account: q.Account, Device: q.Device}))
		}
	}
	k, held := a.keys[p.KeyID]
	if p.Import {
		if held {
			return fmt.Errorf("%w: this console already holds a share of key %s", ErrReshare, ceremony.ShortID(p.KeyID))
		}
		return nil
	}
	if held {
		return p.CheckRecord(k.key.ID, k.key.Epoch, k.key.OldGroup())
	}
	if slices.ContainsFunc(p.Old.Parties, a.isSelf) {
		return fmt.Errorf("%w: this console is in the old group but holds no share of key %s", dkg.ErrRecordMismatch, ceremony.ShortID(p.KeyID))
	}
	return nil
}

// reshareKeys gives this console's old share to a session it deals in.
func (a *App) reshareKeys(p *dkg.ReshareProposal) ceremony.ReshareKeys {
	k, held := a.keys[p.KeyID]
	if p.Import || !held {
		return ceremony.ReshareKeys{}
	}
	pub, _ := a.cfg.ConsoleKey.Public().(ed25519.PublicKey)
	self, ok := p.IndexOfConsoleKey(pub)
	if !ok || !slices.Contains(p.DealerIndices(), self) {
		return ceremony.ReshareKeys{}
	}
	return ceremony.ReshareKeys{OldShare: k.share.Share}
}

// openReshare takes a peer's reshare or import proposal.
func (a *App) openReshare(ctx context.Context, from Address, env *wire.Envelope, raw []byte) error {
	prop, _, err := ceremony.DecodeReshareProposal(raw)
	if err == nil && a.takesNoPart(prop) {
		// Relayed with the confirmations by a participant: its signature
		// is the initiator's, whoever forwards it.
		return a.openWatch(ctx, from, env, raw, prop)
	}
	if err == nil {
		err = a.checkSender(prop.Participants(), from, env.From)
	}
	if err == nil && a.reshareOpen(prop.KeyID) {
		err = fmt.Errorf("%w: %s", ErrReshareOpen, ceremony.ShortID(prop.KeyID))
	}
	if err == nil {
		err = a.checkRestored(prop.Created)
	}
	var s *ceremony.ReshareSession
	if err == nil {
		s, err = ceremony.OpenReshareProposal(raw, a.cfg.ConsoleKey, a.seed(), a.reshareKeys(prop), a.reshareTrust)
	}
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		a.publish(event.Error{Time: a.now(), Text: fmt.Sprintf("reshare proposal from %s refused: %v", a.name(from), err)})
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	a.logMessage(event.In, from, env, raw, "")
	_, err = a.opened(ctx, s, s.Seed(), false, nil)
	return err
}

func (a *App) handleReshare(ctx context.Context, st *reshareState, from Address, env *wire.Envelope, raw []byte) error {
	parts := st.s.Participants()
	if err := a.checkSender(parts, from, env.From); err != nil {
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
	a.send(parts, out)
	a.afterReshare(ctx, st, true)
	return nil
}

func reshareWhat(p *dkg.ReshareProposal) string {
	switch {
	case p.Import:
		return "import"
	case p.Refresh():
		return "refresh"
	}
	return "reshare"
}

// reshareText is what the approval prompt says the ceremony does.
func (a *App) reshareText(p *dkg.ReshareProposal) string {
	newNames := joinNames(a.names(p.Parties, allIndices(p.N())))
	switch {
	case p.Import:
		return fmt.Sprintf("import key %s (public key %x) as a %d-of-%d key with %s; the importer held the whole key", ceremony.ShortID(p.KeyID), p.GroupKey.Bytes(), p.Threshold, p.N(), newNames)
	case p.Refresh():
		return fmt.Sprintf("refresh key %s (epoch %d, %d-of-%d with %s): new shares of the same key", ceremony.ShortID(p.KeyID), p.Epoch, p.Threshold, p.N(), newNames)
	}
	var dealers []string
	for _, i := range p.Dealers {
		dealers = append(dealers, a.name(partyAddr(p.Old.Parties, i)))
	}
	return fmt.Sprintf("reshare key %s from %d-of-%d (%s, epoch %d) to %d-of-%d with %s; dealers %s",
		ceremony.ShortID(p.KeyID), p.Old.Threshold, len(p.Old.Parties), joinNames(a.names(p.Old.Parties, allIndices(len(p.Old.Parties)))), p.Epoch,
		p.Threshold, p.N(), newNames, joinNames(dealers))
}

// afterReshare publishes progress, asks for approval when needed, and
// switches the key's epoch or reports the failure when it ends.
func (a *App) afterReshare(ctx context.Context, st *reshareState, live bool) {
	id := st.s.ID()
	p := st.s.Progress()
	parts := st.s.Participants()
	if p.Round != st.round || st.deadline.IsZero() {
		st.round = p.Round
		st.deadline = a.now().Add(a.cfg.RoundTimeout)
	}
	if live && st.res == nil && st.err == nil {
		a.publish(event.Progress{Ceremony: ceremony.ShortID(id), Kind: reshareWhat(st.s.Proposal()), Round: p.Round.String(), Step: p.Step, Total: p.Total,
			Got: a.names(parts, p.Got), Waiting: a.names(parts, p.Waiting), Deadline: st.deadline})
	}
	switch {
	case st.s.Done():
		a.switchEpoch(ctx, st, live)
	case st.s.Err() != nil:
		if st.err != nil {
			return
		}
		st.err = a.reshareError(st.s)
		var told []event.Event
		if live {
			if st.asked {
				st.asked = false
				told = append(told, event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: "ended: the " + reshareWhat(st.s.Proposal()) + " stopped"})
			}
			told = append(told, event.Error{Time: a.now(), Text: st.err.Error()}, reshareFailed(id, st.err))
		}
		a.finish(ctx, id, result{err: st.err}, told)
	case p.State == dkg.StateCreated && !st.announced:
		st.announced, st.asked = true, true
		prop := st.s.Proposal()
		st.prompt = event.ApprovalRequested{
			ID: hex.EncodeToString(id[:]), Kind: reshareWhat(prop), Requester: a.name(partyAddr(parts, prop.Initiator)),
			KeyID: ceremony.ShortID(prop.KeyID), Text: a.reshareText(prop), Expires: a.now().Add(a.cfg.RoundTimeout),
		}
		a.publish(st.prompt)
		// signing.auto_approve does not cover reshares: only a rule or a
		// person accepts one.
		if live {
			a.reshareByRule(ctx, st)
		}
	}
}

// reshareError names the parties of an abort.
func (a *App) reshareError(s *ceremony.ReshareSession) error {
	var ab *dkg.AbortError
	if !errors.As(s.Err(), &ab) {
		return s.Err()
	}
	parts := s.Participants()
	e := &KeygenError{What: reshareWhat(s.Proposal()), Ceremony: s.ID(), Reason: ab.Reason, Round: ab.Round, Blamed: a.names(parts, ab.Blamed),
		Claimed: a.names(parts, ab.Claimed), By: a.name(partyAddr(parts, ab.By)), Remote: ab.By != s.Self(), Abort: ab,
		Detail: nameParties(ab.Detail, func(j uint32) (string, bool) {
			if j == 0 || int(j) > len(parts) {
				return "", false
			}
			return a.name(partyAddr(parts, j)), true
		})}
	if ab.Reason == dkg.ReasonDeclined {
		// A decline is an answer, not a fault: nobody is blamed.
		e.Blamed = nil
	}
	return e
}

func reshareFailed(id [32]byte, err error) event.ReshareFailed {
	k := keygenFailed(id, err)
	return event.ReshareFailed{Ceremony: k.Ceremony, Reason: k.Reason, Round: k.Round, By: k.By, Blamed: k.Blamed, Claimed: k.Claimed, Text: k.Text}
}

// decideReshare records this console's answer to a reshare proposal.
func (a *App) decideReshare(ctx context.Context, st *reshareState, in Input, yes bool, reason string) error {
	id := st.s.ID()
	if st.s.Progress().State != dkg.StateCreated {
		return fmt.Errorf("%w: %s %s was already answered", ceremony.ErrDecided, reshareWhat(st.s.Proposal()), ceremony.ShortID(id))
	}
	var out []ceremony.Outgoing
	var err error
	if yes {
		out, err = st.s.Accept()
	} else {
		out, err = st.s.Decline(reason)
	}
	if err != nil {
		return fmt.Errorf("core: reshare %s: %w", ceremony.ShortID(id), err)
	}
	if err := a.record(ctx, id, in); err != nil {
		return err
	}
	st.asked = false
	a.publish(event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: map[bool]string{true: "accepted", false: "declined"}[yes], Rule: ruleOf(in.By)})
	st.lastSend = a.now()
	a.send(st.s.Participants(), out)
	a.afterReshare(ctx, st, true)
	return nil
}

// reshareByRule accepts a proposal this console just saw live when a
// reshare rule exists and every party is verified.
func (a *App) reshareByRule(ctx context.Context, st *reshareState) {
	if len(a.cfg.ReshareRules) == 0 {
		return
	}
	id := st.s.ID()
	all := true
	for _, p := range st.s.Participants() {
		all = all && (a.isSelf(p) || a.verifiedName(p) != "")
	}
	name, ok := MatchReshare(a.cfg.ReshareRules, all)
	if !ok {
		a.log.Info("reshare rule did not approve: a party is not verified", "ceremony", ceremony.ShortID(id))
		return
	}
	if err := a.decide(ctx, id, true, "", name); err != nil {
		a.log.Warn("approval by rule failed", "ceremony", ceremony.ShortID(id), "rule", name, "err", err)
		return
	}
	a.log.Info("accepted by rule", "ceremony", ceremony.ShortID(id), "rule", name)
}

// switchEpoch ends a reshare that finished here: the new epoch's record
// (with this console's share, if it has one) is stored and, in the same
// write, the old epoch's secrets are erased; the old share is wiped from
// memory; signing requests still open at the old epoch end unsigned.
func (a *App) switchEpoch(ctx context.Context, st *reshareState, live bool) {
	if st.switched {
		return
	}
	st.switched = true
	id := st.s.ID()
	key, sh, res, err := st.s.Result()
	if err != nil {
		st.err = err
		a.finish(ctx, id, result{err: err}, nil)
		return
	}
	ek := &EpochKey{KeyID: key.ID, Ceremony: id, Proposal: st.s.ProposalEnvelope(), Confirmations: res.Confirmations, Created: a.now()}
	if sh != nil {
		ek.Self, ek.Share = sh.Index, bls.ScalarBytes(&sh.Value)
	}
	if err := a.commitEpoch(ctx, id, key, sh, ek, live); err != nil {
		st.err = err
		a.finish(ctx, id, result{err: err}, nil)
		return
	}
	prop := st.s.Proposal()
	st.res = &ReshareResult{Ceremony: id, What: reshareWhat(prop), KeyID: key.ID, GroupKey: key.Group.Key.Bytes(), Epoch: key.Epoch,
		T: key.T(), N: key.N(), HandedOver: sh == nil}
	var told []event.Event
	if live {
		told = append(told, event.ReshareDone{Ceremony: ceremony.ShortID(id), What: st.res.What, KeyID: ceremony.ShortID(key.ID),
			GroupKey: hex.EncodeToString(st.res.GroupKey), Epoch: key.Epoch, T: key.T(), N: key.N(), HandedOver: sh == nil})
	}
	a.handOver(st.s, res.Confirmations)
	a.finish(ctx, id, result{reshare: st.res}, told)
}

// commitEpoch moves a key to the epoch a reshare made: the new record
// (ek, with this console's share sh, or none) is stored and the old
// epoch's secrets erased in one write, the old share wiped from memory,
// and the signing requests still open at the old epoch end unsigned.
func (a *App) commitEpoch(ctx context.Context, id [32]byte, key *ceremony.Key, sh *share.Share, ek *EpochKey, live bool) error {
	erase := [][32]byte{id}
	old, held := a.keys[key.ID]
	if held && old.key.Ceremony != id {
		erase = append(erase, old.key.Ceremony)
	}
	// Earlier reshares of the key that failed hold seeds and sub-shares
	// dealt from the old shares: they go too.
	for rid, r := range a.records {
		if r.Kind == KindReshare && r.KeyID == key.ID && rid != id && r.Finished && !erased(r) {
			erase = append(erase, rid)
		}
	}
	es, err := a.epochStore()
	if err == nil {
		err = es.PutEpochKey(ctx, ek, erase)
	}
	clear(ek.Share)
	if err != nil {
		err = fmt.Errorf("core: store the key's new epoch: %w", err)
		a.publish(event.Error{Time: a.now(), Text: err.Error()})
		return err
	}
	for _, cid := range erase {
		if r, ok := a.records[cid]; ok {
			r.Seed, r.Inputs, r.Finished = [32]byte{}, []Input{{Kind: InputErased}}, true
		}
	}
	if held {
		delete(a.keygens, old.key.Ceremony)
	}
	life := a.lifecycle()
	if sh != nil {
		a.keys[key.ID] = &keyState{key: key, share: &ceremony.SignConfig{Key: key, Self: sh.Index, Share: sh, ConsoleKey: a.cfg.ConsoleKey}}
		delete(life.handedOver, key.ID)
	} else {
		delete(a.keys, key.ID)
		life.handedOver[key.ID] = key
	}
	if held {
		reason := fmt.Sprintf("key %s moved to epoch %d", ceremony.ShortID(key.ID), key.Epoch)
		for _, ss := range a.signs {
			if ss.key == old && !ss.done && ss.s.Retire(reason) {
				a.afterSign(ctx, ss, live)
			}
		}
		if old.share != nil && old.share.Share != nil {
			bls.WipeScalar(&old.share.Share.Value)
		}
	}
	a.log.Info("key moved to a new epoch", "key", ceremony.ShortID(key.ID), "epoch", key.Epoch, "handed_over", sh == nil)
	return nil
}

// replayReshare rebuilds a stored reshare from its inputs.
func (a *App) replayReshare(ctx context.Context, r *CeremonyRecord) error {
	prop, _, err := ceremony.DecodeReshareProposal(r.Opening)
	if err != nil {
		return err
	}
	if prop.Import && r.Own {
		if r.Finished {
			return nil
		}
		// The importer kept neither the key nor its sub-shares: it cannot
		// deal again. The others' deadline ends the import.
		err := fmt.Errorf("import %s was interrupted by a restart: the key is never stored, so this console cannot resume it; run key import again", ceremony.ShortID(r.ID))
		a.publish(event.Error{Time: a.now(), Text: err.Error()})
		a.finish(ctx, r.ID, result{err: err}, nil)
		return nil
	}
	if a.takesNoPart(prop) {
		return a.replayWatch(ctx, r, prop)
	}
	var s *ceremony.ReshareSession
	if r.Own {
		s, _, err = ceremony.ProposeReshare(prop, a.cfg.ConsoleKey, r.Seed, a.reshareKeys(prop))
	} else {
		s, err = ceremony.OpenReshareProposal(r.Opening, a.cfg.ConsoleKey, r.Seed, a.reshareKeys(prop), a.reshareTrust)
	}
	if err != nil {
		if r.Finished {
			// An ended reshare of a key that has moved on since: history.
			a.log.Info("ended reshare not rebuilt", "id", ceremony.ShortID(r.ID), "err", err)
			return nil
		}
		return err
	}
	st := &reshareState{s: s}
	a.lifecycle().reshares[r.ID] = st
	for _, in := range r.Inputs {
		a.applyReshare(st, in)
	}
	a.afterReshare(ctx, st, false)
	return nil
}

func (a *App) applyReshare(st *reshareState, in Input) []ceremony.Outgoing {
	var out []ceremony.Outgoing
	switch in.Kind {
	case InputEnvelope:
		out, _ = st.s.Handle(in.Envelope)
	case InputAccept:
		out, _ = st.s.Accept()
	case InputDecline:
		out, _ = st.s.Decline(in.Text)
	case InputTimeout:
		out, _ = st.s.Timeout()
	}
	return out
}

// tickReshares applies round deadlines and re-sends open rounds.
func (a *App) tickReshares(ctx context.Context, now time.Time) {
	for id, st := range a.lifecycle().reshares {
		if r := a.records[id]; r != nil && r.Finished {
			continue
		}
		state := st.s.Progress().State
		if (state == dkg.StateRunning || state == dkg.StateCreated) && now.After(st.deadline) {
			out := a.applyReshare(st, Input{Kind: InputTimeout})
			if err := a.record(ctx, id, Input{Kind: InputTimeout, Time: now}); err != nil {
				a.log.Warn("record timeout", "err", err)
			}
			a.send(st.s.Participants(), out)
			a.afterReshare(ctx, st, true)
			continue
		}
		if now.Sub(st.lastSend) >= a.cfg.ResendEvery {
			st.lastSend = now
			a.send(st.s.Participants(), st.s.Resend())
		}
	}
}

// resendReshare re-sends a restored reshare's current messages.
func (a *App) resendReshare(id [32]byte) {
	if st, ok := a.lifecycle().reshares[id]; ok {
		st.lastSend = a.now()
		a.send(st.s.Participants(), st.s.Resend())
	}
}

// reshareApprovals lists the reshare proposals waiting for this human
// (loop).
func (a *App) reshareApprovals() []Approval {
	var out []Approval
	for id, st := range a.lifecycle().reshares {
		if !st.asked || (a.records[id] != nil && a.records[id].Finished) {
			continue
		}
		out = append(out, approvalOf(id, st.s.Proposal().KeyID, st.prompt))
	}
	return out
}

// ImportKeystore decrypts an EIP-2335 keystore holding a whole key
// (keystore.DecryptKey: a wrong password, a corrupt or unsupported file,
// or a key that fails KeyValidate is refused, wrapping keystore.ErrKey or
// its other sentinels, and nothing is stored) and proposes to split it
// (ImportKey). The decrypted key never reaches the store.
func (a *App) ImportKeystore(ctx context.Context, keystoreJSON []byte, password string, t int) ([32]byte, error) {
	sk, _, err := keystore.DecryptKey(keystoreJSON, password)
	if err != nil {
		return [32]byte{}, fmt.Errorf("key import: %w", err)
	}
	return a.ImportKey(ctx, sk, t)
}
