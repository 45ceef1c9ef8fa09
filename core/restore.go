package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

// errBeforeRestore: a keygen proposal was made before this console's
// store was restored from a backup (Config.RestoredAt); openProposal
// wraps it in ErrRejected.
var errBeforeRestore = errors.New("made before this console was restored from a backup (it may have answered it from the state it lost): propose again")

// restoredText is the reason recorded in a ceremony abandoned at a restore.
const restoredText = "this console's store was restored from a backup made while the ceremony ran: it no longer takes part"

// AbandonBeforeRestore retires, in tx, every ceremony that was not finished
// when the backup this store was restored from was made (at backup): each
// is finished with an InputRestored input. The console must not take part
// in them again: it would answer from a state the others have seen move
// on (inputs it accepted after the backup are lost), and a keygen's seed
// would be used a second time. The App then neither rebuilds nor answers
// them. It returns how many it retired.
func AbandonBeforeRestore(tx VaultTx, backup time.Time) (int, error) {
	type open struct {
		r    *CeremonyRecord
		next uint64
	}
	var opened []open
	err := tx.Scan(bucketCeremonies, nil, func(_, v []byte) error {
		r, next, err := decodeCeremony(v)
		if err != nil {
			return err
		}
		if !r.Finished {
			opened = append(opened, open{r, next})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("core: abandon ceremonies: %w", err)
	}
	for _, o := range opened {
		in := Input{Kind: InputRestored, Text: restoredText, Time: backup}
		if err := tx.Put(bucketInputs, inputKey(o.r.ID, o.next), encodeInput(in)); err != nil {
			return 0, err
		}
		o.r.Finished = true
		if err := tx.Put(bucketCeremonies, o.r.ID[:], encodeCeremony(o.r, o.next+1)); err != nil {
			return 0, err
		}
	}
	return len(opened), nil
}

// abandoned reports whether r was retired at a restore.
func abandoned(r *CeremonyRecord) bool {
	return len(r.Inputs) > 0 && r.Inputs[len(r.Inputs)-1].Kind == InputRestored
}

// checkRestored refuses a proposal made (created, by the proposer's
// clock; zero when it does not say) before the restore.
func (a *App) checkRestored(created time.Time) error {
	if a.cfg.RestoredAt.IsZero() || created.After(a.cfg.RestoredAt) {
		return nil
	}
	return errBeforeRestore
}

// restore rebuilds the stored ceremonies that are not history (keygens,
// open signings) by replaying their inputs; ended signings are read from
// their ended records when needed, never replayed.
func (a *App) restore(ctx context.Context) error {
	a.refreshHead(ctx)
	if err := a.restoreEpochKeys(ctx); err != nil {
		return err
	}
	// max_per_hour counts of the ended signings; the replayed ones add
	// their own (noteRuleUses).
	uses, err := a.cfg.Store.RuleUses(ctx, a.now().Add(-RateWindow))
	if err != nil {
		return fmt.Errorf("core: load rule uses: %w", err)
	}
	for _, u := range uses {
		if limited(a.cfg.SigningRules, u.Rule) {
			a.uses.add(u.Rule, u.Requester, u.Time)
		}
	}
	recs, err := a.cfg.Store.Ceremonies(ctx)
	if err != nil {
		return fmt.Errorf("core: load ceremonies: %w", err)
	}
	// Keygens first: signing needs their keys.
	slices.SortStableFunc(recs, func(x, y *CeremonyRecord) int { return int(x.Kind) - int(y.Kind) })
	for _, r := range recs {
		if err := a.replay(ctx, r); err != nil {
			a.log.Error("cannot restore ceremony", "id", ceremony.ShortID(r.ID), "err", err)
			a.publish(event.Error{Time: a.now(), Text: fmt.Sprintf("cannot restore ceremony %s: %v", ceremony.ShortID(r.ID), err)})
		}
	}
	if err := a.convertFinished(ctx, recs); err != nil {
		return err
	}
	if !a.cfg.NoHistoryAtStart {
		if err := a.publishHistory(ctx); err != nil {
			return err
		}
	}
	orphans, err := a.cfg.Store.Orphans(ctx)
	if err != nil {
		return fmt.Errorf("core: load orphans: %w", err)
	}
	a.orphans = orphans
	// What was handled before the restart is known by its bytes, not by
	// the server that brought it: a copy through another server that comes
	// only now is not handled twice.
	for _, r := range recs {
		a.seenBefore(r.Opening)
		for _, in := range r.Inputs {
			if in.Kind == InputEnvelope {
				a.seenBefore(in.Envelope)
			}
		}
	}
	for _, o := range orphans {
		a.seenBefore(o.Envelope)
	}
	return nil
}

func (a *App) replay(ctx context.Context, r *CeremonyRecord) error {
	a.records[r.ID] = r
	if erased(r) {
		return nil // its key moved to a later epoch (keys.go)
	}
	if abandoned(r) {
		// Finished, so its envelopes are refused; not rebuilt, so nothing
		// of its state (or its seed) is ever used or answered again.
		a.log.Info("ceremony abandoned at a restore from a backup", "id", ceremony.ShortID(r.ID))
		return nil
	}
	switch r.Kind {
	case KindKeygen:
		var s *ceremony.KeygenSession
		var err error
		if r.Own {
			env, derr := wire.Decode(r.Opening)
			if derr != nil {
				return derr
			}
			prop, derr := dkg.DecodeProposal(env.Payload)
			if derr != nil {
				return derr
			}
			s, _, err = ceremony.ProposeKeygen(prop, a.cfg.ConsoleKey, r.Seed)
		} else {
			s, err = ceremony.OpenKeygenProposal(r.Opening, a.cfg.ConsoleKey, r.Seed, a.cfg.Roster.Trust)
		}
		if err != nil {
			return err
		}
		// Not announced: a proposal still awaiting this human is shown again.
		st := &keygenState{s: s}
		a.keygens[r.ID] = st
		for _, in := range r.Inputs {
			a.applyKeygen(st, in)
		}
		a.afterKeygen(ctx, st, false)
		for _, in := range r.Inputs {
			if in.Kind == InputDisputed {
				if ab, err := st.s.LateAbort(in.Envelope); err == nil && ab != nil {
					a.dispute(st, ab, false)
				}
			}
		}
	case KindSign:
		k, ok := a.keys[r.KeyID]
		if !ok {
			return fmt.Errorf("%w: %s", ErrNoKey, ceremony.ShortID(r.KeyID))
		}
		s, err := ceremony.OpenSignRequest(a.signConfig(k, &r.Head), r.Opening)
		if errors.Is(err, ceremony.ErrEpoch) {
			// Asked at an epoch the key has left: it ended at the switch.
			return a.endAtOldEpoch(ctx, r)
		}
		if err != nil {
			return err
		}
		// A finished request stays ended: it is not shown to the human
		// again, nor answerable.
		st := &signState{s: s, key: k, done: r.Finished}
		a.signs[r.ID] = st
		if r.Own {
			s.Approve()
		}
		for _, in := range r.Inputs {
			a.applySign(st, in)
		}
		a.noteRuleUses(st, r)
		a.afterSign(ctx, st, false)
	case KindReshare:
		if err := a.replayReshare(ctx, r); err != nil {
			return err
		}
	}
	if !r.Finished {
		a.resend(r.ID)
	}
	return nil
}

func (a *App) applyKeygen(st *keygenState, in Input) []ceremony.Outgoing {
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

func (a *App) applySign(st *signState, in Input) []ceremony.Outgoing {
	var out []ceremony.Outgoing
	switch in.Kind {
	case InputEnvelope:
		out, _ = st.s.Handle(in.Envelope)
	case InputAccept:
		out, _ = st.s.Approve()
	case InputDecline:
		out, _ = st.s.Decline(in.Text)
	case InputExpire:
		out, _ = st.s.Tick(in.Time)
	}
	return out
}

// maxRestoredResults bounds the signing results replayed to the console at
// start (its history view keeps as many).
const maxRestoredResults = 500

// publishHistory tells the console about the signing requests that ended
// before this run, oldest first, as restored history.
func (a *App) publishHistory(ctx context.Context) error {
	evs, err := a.history(ctx, maxRestoredResults)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		ev.Restored = true
		a.publish(ev)
	}
	return nil
}
