package core

import (
	"context"
	"fmt"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

// A keygen's last round is the key confirmation: a party caught cheating
// in it (two different confirmations to one peer) is found by that peer
// only, which aborts, while the others may already have stored the key.
// The key then came out of a ceremony an honest party aborted with proof:
// the protocol re-runs the ceremony rather than shrink the group silently,
// so a console that receives such an abort after finishing disputes the
// key: it is recorded, no longer signed with, and the human is told.

// lateAbort takes a peer's abort of a keygen this console finished. It
// reports whether the abort proved a party cheated (the key is then
// disputed, and the abort recorded).
func (a *App) lateAbort(ctx context.Context, from Address, env *wire.Envelope, raw []byte) (bool, error) {
	st, ok := a.keygens[env.Ceremony]
	if !ok || env.Kind != wire.KindAbort || !st.s.Done() || st.disputed {
		return false, nil
	}
	if a.checkSender(st.s.Proposal().Parties, from, env.From) != nil {
		return false, nil
	}
	ab, err := st.s.LateAbort(raw)
	if err != nil || ab == nil {
		return false, nil
	}
	if err := a.record(ctx, env.Ceremony, Input{Kind: InputDisputed, Envelope: raw, Time: a.now()}); err != nil {
		return false, err
	}
	a.logMessage(event.In, from, env, raw, "abort after the key was made: the key is disputed")
	a.dispute(st, ab, true)
	return true, nil
}

// dispute stops using a finished keygen's key (loop goroutine); live
// tells the console.
func (a *App) dispute(st *keygenState, ab *dkg.AbortError, live bool) {
	st.disputed = true
	key, _, err := st.s.Result()
	if err != nil {
		return
	}
	delete(a.keys, key.ID)
	if !live {
		return
	}
	parties := st.s.Proposal().Parties
	blamed := a.names(parties, ab.Blamed)
	by := a.name(partyAddr(parties, ab.By))
	text := fmt.Sprintf("key %s is disputed: after it was made here, %s's abort proved %s cheated in the key generation (%s); "+
		"this console no longer signs with it: run a new key generation", ceremony.ShortID(key.ID), by, joinNames(blamed), ab.Reason)
	failed := event.KeygenFailed{Ceremony: ceremony.ShortID(st.s.ID()), Reason: "disputed", Round: ab.Round.String(), By: by,
		Blamed: blamed, Text: text}
	errEv := event.Error{Time: a.now(), Text: text}
	// Told once the dispute is on disk, as every ending is.
	a.whenDurable(func(err error) {
		if err == nil {
			a.publish(failed)
			a.publish(errEv)
		}
	})
}
