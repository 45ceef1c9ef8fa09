package core

// Timers: deadlines, expiries and re-sends, once a second.

import (
	"context"
	"encoding/hex"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

// onTick applies deadlines and expiries and re-sends open rounds.
func (a *App) onTick(ctx context.Context) {
	now := a.now()
	for id, st := range a.keygens {
		if a.records[id] != nil && a.records[id].Finished {
			continue
		}
		state := st.s.Progress().State
		if (state == dkg.StateRunning || state == dkg.StateCreated) && now.After(st.deadline) {
			out := a.applyKeygen(st, Input{Kind: InputTimeout})
			if err := a.record(ctx, id, Input{Kind: InputTimeout, Time: now}); err != nil {
				a.log.Warn("record timeout", "err", err)
			}
			a.send(st.s.Proposal().Parties, out)
			a.afterKeygen(ctx, st, true)
			continue
		}
		if now.Sub(st.lastSend) >= a.cfg.ResendEvery {
			st.lastSend = now
			a.send(st.s.Proposal().Parties, st.s.Resend())
		}
	}
	for id, st := range a.signs {
		if st.done {
			continue
		}
		if !now.Before(st.s.Request().Expires) {
			out := a.applySign(st, Input{Kind: InputExpire, Time: now})
			if err := a.record(ctx, id, Input{Kind: InputExpire, Time: now}); err != nil {
				a.log.Warn("record expiry", "err", err)
			}
			a.send(st.key.key.Parties, out)
			if st.s.Progress().Decision == ceremony.DecisionExpired {
				a.publish(event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: "expired"})
			}
			a.afterSign(ctx, st, true)
			continue
		}
		if now.Sub(st.lastSend) >= a.cfg.ResendEvery {
			st.lastSend = now
			a.send(st.key.key.Parties, st.s.Resend())
		}
	}
	a.tickReshares(ctx, now)
	a.forgetAnswers(now)
	a.refreshHead(ctx)
	a.evictEnded(now)
	// Orphans past their time are dropped with a reason.
	var keep []Orphan
	var drop [][]byte
	for _, o := range a.orphans {
		if now.Sub(o.Received) > a.cfg.OrphanTTL {
			drop = append(drop, o.Envelope)
			env, _ := wire.Decode(o.Envelope)
			a.logMessage(event.In, o.From, env, o.Envelope, "dropped: its ceremony never appeared")
			continue
		}
		keep = append(keep, o)
	}
	if len(drop) > 0 {
		a.orphans = keep
		if err := a.cfg.Store.DeleteOrphans(ctx, drop); err != nil {
			a.log.Warn("drop orphans", "err", err)
		}
	}
}

// resend re-sends a restored ceremony's current messages.
func (a *App) resend(id [32]byte) {
	if st, ok := a.keygens[id]; ok {
		st.lastSend = a.now()
		a.send(st.s.Proposal().Parties, st.s.Resend())
	}
	if st, ok := a.signs[id]; ok && !st.done {
		st.lastSend = a.now()
		a.send(st.key.key.Parties, st.s.Resend())
	}
	a.resendReshare(id)
}

// resendOpen re-sends the current messages of every open ceremony.
func (a *App) resendOpen() {
	for id := range a.keygens {
		if r := a.records[id]; r == nil || !r.Finished {
			a.resend(id)
		}
	}
	for id := range a.signs {
		a.resend(id)
	}
	for id := range a.lifecycle().reshares {
		if r := a.records[id]; r == nil || !r.Finished {
			a.resend(id)
		}
	}
}
