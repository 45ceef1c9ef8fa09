package core

// Ceremonies: starting them, answering them, and what follows each step.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

type keygenState struct {
	s         *ceremony.KeygenSession
	round     dkg.Round
	deadline  time.Time
	lastSend  time.Time
	announced bool
	asked     bool // its proposal awaits this console's human
	// prompt is what was shown when it was asked (Approvals lists it).
	prompt event.ApprovalRequested
	// disputed: finished here, then a peer's abort proved a party cheated
	// (dispute.go); its key is not used.
	disputed bool
}

type signState struct {
	s         *ceremony.SignSession
	key       *keyState
	lastSend  time.Time
	announced bool
	done      bool
	// prompt is what was shown when it was announced (Approvals lists it
	// while this human has not answered).
	prompt event.ApprovalRequested
}

type keyState struct {
	key   *ceremony.Key
	share *ceremony.SignConfig
}

func (a *App) now() time.Time { return a.cfg.Now() }

func (a *App) seed() [32]byte {
	var s [32]byte
	rand.Read(s[:])
	return s
}

// afterKeygen publishes progress, asks for approval when needed, and
// finishes the ceremony when it ends.
func (a *App) afterKeygen(ctx context.Context, st *keygenState, live bool) {
	id := st.s.ID()
	p := st.s.Progress()
	if p.Round != st.round || st.deadline.IsZero() {
		st.round = p.Round
		st.deadline = a.now().Add(a.cfg.RoundTimeout)
	}
	if live {
		a.publish(event.Progress{Ceremony: ceremony.ShortID(id), Kind: "keygen", Round: p.Round.String(), Step: p.Step, Total: p.Total,
			Got: a.names(st.s.Proposal().Parties, p.Got), Waiting: a.names(st.s.Proposal().Parties, p.Waiting), Deadline: st.deadline})
	}
	switch {
	case st.s.Done():
		key, share, err := st.s.Result()
		if err != nil {
			a.finish(ctx, id, result{err: err}, nil)
			return
		}
		k := &keyState{key: key, share: &ceremony.SignConfig{Key: key, Self: st.s.Self(), Share: share, ConsoleKey: a.cfg.ConsoleKey}}
		a.keys[key.ID] = k
		if live {
			if err := a.cfg.Store.PutKey(ctx, KeyRecord{Ceremony: id, KeyID: key.ID, Created: a.now()}); err != nil {
				a.publish(event.Error{Time: a.now(), Text: "store key: " + err.Error()})
			}
		}
		r := &KeygenResult{Ceremony: id, KeyID: key.ID, GroupKey: key.Group.Key.Bytes(), T: key.T(), N: key.N()}
		var told []event.Event
		if live {
			told = append(told, event.KeygenDone{Ceremony: ceremony.ShortID(id), KeyID: ceremony.ShortID(key.ID), GroupKey: hex.EncodeToString(r.GroupKey), T: r.T, N: r.N})
		}
		a.finish(ctx, id, result{keygen: r}, told)
	case st.s.Err() != nil:
		err := a.keygenError(st.s)
		var told []event.Event
		if live {
			if st.asked {
				// It ended before this console's human answered: the
				// prompt goes.
				st.asked = false
				told = append(told, event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: "ended: the key generation stopped"})
			}
			told = append(told, event.Error{Time: a.now(), Text: err.Error()}, keygenFailed(id, err))
		}
		a.finish(ctx, id, result{err: err}, told)
	case p.State == dkg.StateCreated && !st.announced:
		st.announced, st.asked = true, true
		prop := st.s.Proposal()
		st.prompt = event.ApprovalRequested{
			ID: hex.EncodeToString(id[:]), Kind: "keygen", Requester: a.name(Address{Account: prop.Parties[prop.Initiator-1].Account, Device: prop.Parties[prop.Initiator-1].Device}),
			Text:    fmt.Sprintf("generate a %d-of-%d key with %s", prop.Threshold, prop.N(), joinNames(a.names(prop.Parties, allIndices(prop.N())))),
			Expires: a.now().Add(a.cfg.RoundTimeout),
		}
		a.publish(st.prompt)
		switch {
		case a.cfg.AutoApprove:
			a.decide(ctx, id, true, "", "signing.auto_approve")
		case live:
			a.keygenByRule(ctx, st)
		}
	}
}

func (a *App) afterSign(ctx context.Context, st *signState, live bool) {
	id := st.s.ID()
	p := st.s.Progress()
	parties := st.key.key.Parties
	if live {
		a.publish(event.Progress{Ceremony: ceremony.ShortID(id), Kind: "sign", Round: p.Outcome.String(), Step: len(p.Approved), Total: st.key.key.T(),
			Got: a.names(parties, p.Approved), Waiting: a.names(parties, p.Waiting), Declined: a.names(parties, p.Declined),
			Requester: a.name(partyAddr(parties, p.Requester)), Unseen: a.names(parties, p.Unseen), Deadline: st.s.Request().Expires})
	}
	if p.Decision == ceremony.DecisionPending && !st.announced && !st.done && p.Outcome == ceremony.OutcomeCollecting {
		st.announced = true
		req := st.s.Request()
		sum := sha256.Sum256(req.Message)
		text := ""
		if utf8.Valid(req.Message) && printable(string(req.Message)) {
			text = string(req.Message)
		}
		st.prompt = event.ApprovalRequested{
			ID: hex.EncodeToString(id[:]), Kind: "sign", Requester: a.name(partyAddr(parties, p.Requester)),
			KeyID: ceremony.ShortID(req.KeyID), Text: text, Hex: hex.EncodeToString(req.Message), SHA256: hex.EncodeToString(sum[:]),
			Description: req.Description, Expires: req.Expires,
		}
		a.publish(st.prompt)
		switch {
		case a.cfg.AutoApprove:
			a.decide(ctx, id, true, "", "signing.auto_approve")
		case live:
			a.signByRule(ctx, st)
		}
	}
	if st.done || p.Outcome == ceremony.OutcomeCollecting {
		return
	}
	st.done = true
	req := st.s.Request()
	var told []event.Event
	if live && st.announced && p.Decision == ceremony.DecisionPending {
		// The request ended before this console's human answered: the
		// prompt goes, and an answer now is refused (decide).
		decision := "ended unsigned: " + p.Reason
		if p.Outcome == ceremony.OutcomeSigned {
			decision = "signed without this console"
		}
		told = append(told, event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: decision})
	}
	if p.Outcome == ceremony.OutcomeSigned {
		res := st.s.Result()
		r := &SignResult{ID: id, KeyID: req.KeyID, GroupKey: st.key.key.Group.Key.Bytes(), Message: req.Message, Signature: res.Signature.Bytes(),
			Signers: a.names(parties, res.Signers), Blamed: a.names(parties, res.Blamed)}
		if live {
			told = append(told, a.signDone(st))
		}
		// Stay open a little for the others (resends answer late peers);
		// the record is finished now, so a restart does not reopen it.
		a.finish(ctx, id, result{sign: r}, told)
		return
	}
	err := &SignError{ID: id, Reason: p.Reason, Declined: a.names(parties, p.Declined), Blamed: a.names(parties, p.Blamed), Expired: p.Expired}
	if live {
		told = append(told, a.signDone(st))
	}
	a.finish(ctx, id, result{err: err}, told)
}

// finish records that a ceremony ended and, once that and every input
// before it are durable, tells its waiters r and publishes told: nothing is
// announced, nor printed by a command, that a restart would not show again.
// When the store fails instead, the waiters get its error and nothing is
// announced.
//
// Its ended record (history.go) is written when it first ends here, not
// when a restart replays its end; a signing then leaves memory a little
// after its record is durable (evictEnded).
func (a *App) finish(ctx context.Context, id [32]byte, r result, told []event.Event) {
	var durable *atomic.Bool
	// A reshare that went through was marked finished already, by the
	// write that switched its key's epoch (commitEpoch); its ended record
	// is still to be written (FinishCeremony writes one at most once).
	if rec, ok := a.records[id]; ok && (!rec.Finished || rec.Kind == KindReshare) {
		rec.Finished = true
		if end := a.endedOf(id, rec, false); end != nil {
			if end.Reason == "" && r.err != nil && end.Outcome != EndSigned && end.Outcome != EndGenerated && end.Outcome != EndReshared {
				end.Reason = clip(r.err.Error(), maxEndedReason)
			}
			if err := a.cfg.Store.FinishCeremony(ctx, id, end, a.cfg.ConsoleKey); err != nil {
				a.log.Warn("finish ceremony", "err", err)
			}
		}
		if rec.Kind == KindSign {
			durable = a.keepRecent(id)
		}
	}
	waiters := a.waiters[id]
	delete(a.waiters, id)
	if len(waiters) == 0 && len(told) == 0 && durable == nil {
		return
	}
	what := "signing request"
	if _, ok := a.keygens[id]; ok {
		what = "key generation"
	}
	a.whenDurable(func(err error) {
		if err != nil {
			for _, w := range waiters {
				w <- result{err: fmt.Errorf("%s %s ended, but its record could not be stored: %w", what, ceremony.ShortID(id), err)}
			}
			return
		}
		if durable != nil {
			durable.Store(true)
		}
		for _, e := range told {
			a.publish(e)
		}
		for _, w := range waiters {
			w <- r
		}
	})
}

// startKeygen proposes a key generation from this console. approve:
// proposing is this human's acceptance (else the proposal waits in this
// console's approval queue like anyone else's).
func (a *App) startKeygen(ctx context.Context, t int, approve bool) ([32]byte, chan result, error) {
	parties, err := a.cfg.Roster.Parties()
	if err != nil {
		return [32]byte{}, nil, err
	}
	prop := &dkg.Proposal{Threshold: t, Parties: parties, RoundTimeout: a.cfg.RoundTimeout.Truncate(time.Second), Created: a.now().Truncate(time.Second)}
	rand.Read(prop.Nonce[:])
	idx, ok := prop.IndexOf(a.self.Account, a.self.Device)
	if !ok {
		return [32]byte{}, nil, fmt.Errorf("%w: this console is not in its own roster", ErrConfig)
	}
	prop.Initiator = idx
	seed := a.seed()
	propose := ceremony.ProposeKeygen
	if !approve {
		propose = ceremony.ProposeKeygenPending
	}
	s, out, err := propose(prop, a.cfg.ConsoleKey, seed)
	if err != nil {
		return [32]byte{}, nil, err
	}
	// Own: accepted by proposing; a proposal that waits for this human is
	// restored like a peer's.
	rec := &CeremonyRecord{ID: s.ID(), Kind: KindKeygen, Opening: s.ProposalEnvelope(), Seed: seed, Own: approve, Created: a.now(), By: callerOf(ctx)}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return [32]byte{}, nil, fmt.Errorf("core: store proposal: %w", err)
	}
	a.records[rec.ID] = rec
	st := &keygenState{s: s, announced: approve}
	a.keygens[rec.ID] = st
	wait := make(chan result, 1)
	a.waiters[rec.ID] = append(a.waiters[rec.ID], wait)
	st.lastSend = a.now()
	a.send(parties, out)
	a.adoptOrphans(ctx, rec.ID)
	a.afterKeygen(ctx, st, true)
	return rec.ID, wait, nil
}

// startSign opens a signing request from this console. approve: asking is
// this human's approval (else the request waits in this console's approval
// queue like anyone else's: a script asked, a person decides).
func (a *App) startSign(ctx context.Context, keyID [32]byte, msg []byte, desc string, approve bool) ([32]byte, chan result, error) {
	k, err := a.pickKey(keyID)
	if err != nil {
		return [32]byte{}, nil, err
	}
	var id [32]byte
	rand.Read(id[:])
	req := tbls.Request{Message: msg, Description: desc, Expires: a.now().Add(a.cfg.RequestTTL).Truncate(time.Second)}
	s, out, err := ceremony.ProposeSignRequest(a.signConfig(k, nil), id, req)
	if err != nil {
		return [32]byte{}, nil, err
	}
	// Own marks a request this human approved by asking; one that waits
	// for an answer is restored like a peer's (OpenSignRequest gives the
	// same session for this console's own envelope).
	rec := &CeremonyRecord{ID: id, Kind: KindSign, Opening: s.RequestEnvelope(), KeyID: k.key.ID, Own: approve, Created: a.now(),
		Head: s.OwnHead(), By: callerOf(ctx)}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return [32]byte{}, nil, fmt.Errorf("core: store request: %w", err)
	}
	a.records[id] = rec
	st := &signState{s: s, key: k, announced: approve}
	a.signs[id] = st
	wait := make(chan result, 1)
	a.waiters[id] = append(a.waiters[id], wait)
	st.lastSend = a.now()
	a.send(k.key.Parties, out)
	if !approve {
		a.adoptOrphans(ctx, id)
		a.afterSign(ctx, st, true)
		return id, wait, nil
	}
	// Asking is this human's approval. It is not recorded as an input: a
	// restored request of our own is approved again (Own), and BLS partial
	// signatures are deterministic.
	own, err := s.Approve()
	if err != nil {
		return [32]byte{}, nil, err
	}
	a.send(k.key.Parties, own)
	a.adoptOrphans(ctx, id)
	a.afterSign(ctx, st, true)
	return id, wait, nil
}

func (a *App) pickKey(keyID [32]byte) (*keyState, error) {
	if keyID != ([32]byte{}) {
		k, ok := a.keys[keyID]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrNoKey, ceremony.ShortID(keyID))
		}
		return k, nil
	}
	if len(a.keys) != 1 {
		return nil, fmt.Errorf("%w: %d keys, name one", ErrNoKey, len(a.keys))
	}
	for _, k := range a.keys {
		return k, nil
	}
	return nil, ErrNoKey
}

// decide records this console's answer, by whom it was given (by: see
// Input.By), and acts on it.
func (a *App) decide(ctx context.Context, id [32]byte, yes bool, reason, by string) error {
	in := Input{Kind: InputDecline, Text: reason, Time: a.now(), By: by}
	if yes {
		in = Input{Kind: InputAccept, Time: a.now(), By: by}
	}
	if st, ok := a.lifecycle().reshares[id]; ok {
		return a.decideReshare(ctx, st, in, yes, reason)
	}
	if st, ok := a.keygens[id]; ok {
		if st.s.Progress().State != dkg.StateCreated {
			// Answered already (here or through another attached console),
			// or ended.
			return fmt.Errorf("%w: keygen %s was already answered", ceremony.ErrDecided, ceremony.ShortID(id))
		}
		var out []ceremony.Outgoing
		var err error
		if yes {
			out, err = st.s.Accept()
		} else {
			out, err = st.s.Decline(reason)
		}
		if err != nil {
			return fmt.Errorf("core: keygen %s: %w", ceremony.ShortID(id), err)
		}
		if err := a.record(ctx, id, in); err != nil {
			return err
		}
		st.asked = false
		a.publish(event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: map[bool]string{true: "accepted", false: "declined"}[yes], Rule: ruleOf(by)})
		st.lastSend = a.now()
		a.send(st.s.Proposal().Parties, out)
		a.afterKeygen(ctx, st, true)
		return nil
	}
	if st, ok := a.signs[id]; ok {
		if st.done {
			return fmt.Errorf("%w: request %s", ErrEnded, ceremony.ShortID(id))
		}
		var out []ceremony.Outgoing
		var err error
		if yes {
			out, err = st.s.Approve()
		} else {
			out, err = st.s.Decline(reason)
		}
		if err != nil {
			return err
		}
		if err := a.record(ctx, id, in); err != nil {
			return err
		}
		a.publish(event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: map[bool]string{true: "approved", false: "declined"}[yes], Rule: ruleOf(by)})
		st.lastSend = a.now()
		a.send(st.key.key.Parties, out)
		a.afterSign(ctx, st, true)
		return nil
	}
	e, err := a.endedRecord(ctx, id)
	if err != nil {
		return err
	}
	if e != nil {
		if e.Kind == KindKeygen {
			return fmt.Errorf("%w: keygen %s was already answered", ceremony.ErrDecided, ceremony.ShortID(id))
		}
		return fmt.Errorf("%w: request %s", ErrEnded, ceremony.ShortID(id))
	}
	return fmt.Errorf("%w: %s", ErrUnknown, ceremony.ShortID(id))
}

// signDone is the event of a signing request that has ended.
func (a *App) signDone(st *signState) event.SignDone {
	id, req, p := st.s.ID(), st.s.Request(), st.s.Progress()
	parties := st.key.key.Parties
	e := event.SignDone{ID: hex.EncodeToString(id[:]), KeyID: ceremony.ShortID(req.KeyID), Message: hex.EncodeToString(req.Message),
		Blamed: a.names(parties, p.Blamed), Approvals: a.approvals(st)}
	if p.Outcome == ceremony.OutcomeSigned {
		res := st.s.Result()
		e.Signature, e.Signers, e.Blamed, e.Verified = hex.EncodeToString(res.Signature.Bytes()), a.names(parties, res.Signers), a.names(parties, res.Blamed), true
	} else {
		e.Failure = p.Reason
	}
	return e
}
