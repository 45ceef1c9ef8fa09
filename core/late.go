package core

import (
	"context"
	"crypto/ed25519"
	"time"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

// answerKey is one peer of one ceremony.
type answerKey struct {
	ceremony [32]byte
	party    uint32
}

// answerFinished answers a peer that still sends messages of a ceremony
// this console finished: the peer waits for this console's last message (a
// keygen's key confirmation or abort, a signing's result), which may never
// have left, since the process can stop right after the result and a
// finished ceremony is not re-sent on the timer. At most once per peer and
// resend interval: two finished consoles must not answer each other
// forever, and an answer that was lost in turn is given again.
func (a *App) answerFinished(from Address, env *wire.Envelope, raw []byte) {
	if env.Kind == wire.KindAbort {
		return
	}
	var parties []dkg.Party
	var final []ceremony.Outgoing
	if st, ok := a.keygens[env.Ceremony]; ok {
		parties, final = st.s.Proposal().Parties, st.s.Final()
	} else if st, ok := a.signs[env.Ceremony]; ok {
		parties, final = st.key.key.Proposal.Parties, st.s.Final()
	}
	if len(final) == 0 {
		return
	}
	if a.checkSender(parties, from, env.From) != nil {
		return
	}
	k := answerKey{env.Ceremony, env.From}
	if at, ok := a.answered[k]; ok && a.now().Sub(at) < a.cfg.ResendEvery {
		return
	}
	if _, err := wire.Open(raw, func(j uint32) (ed25519.PublicKey, bool) {
		if j == 0 || int(j) > len(parties) {
			return nil, false
		}
		return parties[j-1].ConsoleKey, true
	}); err != nil {
		return
	}
	if a.answered == nil {
		a.answered = map[answerKey]time.Time{}
	}
	a.answered[k] = a.now()
	// To the party, not to the server the re-send came through: the
	// Messenger sends through every server the two share.
	to := partyAddr(parties, env.From)
	for _, o := range final {
		if o.To != 0 && o.To != env.From {
			continue
		}
		out, _ := wire.Decode(o.Envelope)
		if a.enqueue(outbound{to: to, ceremony: env.Ceremony, env: o.Envelope}) {
			a.logMessage(event.Out, to, out, o.Envelope, "answer to a peer still waiting")
		}
	}
}

// forgetAnswers drops the answers older than the resend interval: they no
// longer hold anything back, and the map stays as small as the traffic.
func (a *App) forgetAnswers(now time.Time) {
	for k, at := range a.answered {
		if now.Sub(at) >= a.cfg.ResendEvery {
			delete(a.answered, k)
		}
	}
}

// Flush waits until every envelope handed to the Messenger so far was sent
// (or given up on), or ctx ends. A command that exits after its result
// calls it so that its last messages (a key confirmation, a signature
// result) reach the others.
func (a *App) Flush(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for a.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
