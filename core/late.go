package core

import (
	"context"
	"crypto/ed25519"
	"slices"
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
		parties, final = st.key.key.Parties, st.s.Final()
	} else if st, ok := a.lifecycle().reshares[env.Ceremony]; ok {
		parties, final = st.s.Participants(), st.s.Final()
	}
	a.answerWith(from, env, raw, parties, final)
}

// answerWith answers a peer of a finished ceremony with final, at most
// once per resend interval.
func (a *App) answerWith(from Address, env *wire.Envelope, raw []byte, parties []dkg.Party, final []ceremony.Outgoing) {
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
	if len(a.answered) >= maxAnswered {
		a.forgetOldestAnswers()
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

// maxAnswered bounds the answers remembered (the resend interval may be
// long, and each signing's unneeded partial brings one): past it the older
// half is forgotten, which at worst answers a peer once more.
const maxAnswered = 1024

// forgetOldestAnswers drops the older half of the answers remembered.
func (a *App) forgetOldestAnswers() {
	times := make([]time.Time, 0, len(a.answered))
	for _, at := range a.answered {
		times = append(times, at)
	}
	slices.SortFunc(times, time.Time.Compare)
	cut := times[len(times)/2]
	for k, at := range a.answered {
		if at.Before(cut) {
			delete(a.answered, k)
		}
	}
	for k := range a.answered { // many at one instant
		if len(a.answered) <= maxAnswered/2 {
			break
		}
		delete(a.answered, k)
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
