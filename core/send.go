package core

// Sending: the per-peer send lanes, retries, and the batching of what one
// step sends to one peer.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

type outbound struct {
	to       Address
	ceremony [32]byte // its messages to one peer keep their order
	env      []byte
	// durable waits for the records of the inputs that produced env: a
	// message leaves only once its cause is on disk, so a restart never
	// contradicts what peers already saw.
	durable func(context.Context) error
	// prepared is the send's local work, started when it was queued (nil:
	// none).
	prepared Prepared
}

// sendLanes is how many sends to one peer may be under way at once. A
// send waits for its commit and the server's answer (about a millisecond
// each), so one at a time would cap what a console can ask of a peer;
// messages of one ceremony take one lane and keep their order.
const sendLanes = 4

// lane is one of the sendLanes lanes to a peer.
type lane struct {
	to Address
	n  byte
}

// laneCapacity bounds the envelopes waiting in one lane.
const laneCapacity = 1024

// enqueue hands an envelope to its lane (loop goroutine only), starting
// the lane's worker on first use: messages of one ceremony to one peer
// keep their order, other ceremonies overtake, and a slow or unreachable
// peer does not hold up the others (the Messenger may be called for
// several peers at once). The loop hands over directly, with no goroutine
// in between. It reports false when the lane is full or the App is not
// running.
func (a *App) enqueue(o outbound) bool {
	ch := a.laneOf(o)
	if ch == nil {
		return false
	}
	a.pending.Add(1) // before the lane can take it
	select {
	case ch <- &o:
		return true
	default:
		a.pending.Add(-1)
		return false
	}
}

// laneOf returns o's lane, started if needed; nil when not running.
func (a *App) laneOf(o outbound) chan *outbound {
	if a.runCtx == nil {
		return nil
	}
	l := lane{o.to, o.ceremony[0] % sendLanes}
	ch, ok := a.lanes[l]
	if !ok { // bounded by the roster: only parties are sent to
		// Pointers: a lane's buffer is allocated whole, for every peer.
		ch = make(chan *outbound, laneCapacity)
		a.lanes[l] = ch
		ctx := a.runCtx
		a.laneWG.Add(1)
		go func() {
			defer a.laneWG.Done()
			a.peerSender(ctx, ch)
		}()
	}
	return ch
}

// envCeremony is the ceremony of a decoded envelope (zero when it did not
// decode: such envelopes share one lane).
func envCeremony(env *wire.Envelope) [32]byte {
	if env == nil {
		return [32]byte{}
	}
	return env.Ceremony
}

// peerSender delivers one peer's envelopes, each once its cause is
// durable. A failed send is tried again a few times with growing waits;
// open ceremonies also re-send their current round periodically, which
// covers a peer that lost a message for good.
func (a *App) peerSender(ctx context.Context, in <-chan *outbound) {
	type retry struct {
		o       outbound
		attempt int
		at      time.Time
	}
	var retries []retry
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ordered, _ := a.cfg.Messenger.(OrderedMessenger)
	preparing, _ := a.cfg.Messenger.(PreparingMessenger)
	try := func(o outbound, attempt int) {
		durable := o.durable
		if durable == nil || attempt > 0 {
			durable = func(context.Context) error { return nil }
		}
		// Never send what a restart would not reproduce: the records of
		// the inputs behind a message are durable before it leaves.
		var err error
		if preparing != nil && o.prepared != nil && attempt == 0 {
			err = preparing.SendPrepared(ctx, o.prepared, durable)
		} else if ordered != nil {
			err = ordered.SendAfter(ctx, o.to, o.env, durable)
		} else if err = durable(ctx); err == nil {
			err = a.cfg.Messenger.Send(ctx, o.to, o.env)
		}
		if errors.Is(err, ErrStoreFailed) {
			a.pending.Add(-1)
			a.storeFailed(err)
			return
		}
		if err == nil || ctx.Err() != nil {
			a.pending.Add(-1)
			return
		}
		a.noteSendError(err)
		if attempt >= 5 {
			a.log.Warn("send failed, giving up", "to", o.to.String(), "err", err)
			a.pending.Add(-1)
			return
		}
		wait := time.Duration(1<<attempt) * time.Second
		var limited interface{ RetryAfter() time.Duration }
		if errors.As(err, &limited) {
			// The server said when: earlier tries would only be refused
			// again (and a relay challenges an account that keeps trying).
			wait = max(wait, limited.RetryAfter())
		}
		a.log.Info("send failed, will retry", "to", o.to.String(), "in", wait, "err", err)
		retries = append(retries, retry{o, attempt + 1, time.Now().Add(wait)})
	}
	for {
		next := time.Hour
		for _, r := range retries {
			next = min(next, time.Until(r.at))
		}
		timer.Reset(max(next, 0))
		select {
		case <-ctx.Done():
			return
		case o := <-in:
			try(*o, 0)
		case <-timer.C:
			due := retries
			retries = nil
			for _, r := range due {
				if time.Now().Before(r.at) {
					retries = append(retries, r)
					continue
				}
				try(r.o, r.attempt)
			}
		}
	}
}

// send queues outgoing envelopes for the parties they address; each waits
// for the writes made so far.
func (a *App) send(parties []dkg.Party, out []ceremony.Outgoing) {
	if len(out) == 0 {
		return
	}
	// What one step sends to one peer in one ceremony leaves as one Signal
	// message (wire.Pack), in the order the engine gave.
	type batch struct {
		to       Address
		ceremony [32]byte
		envs     [][]byte
		decoded  []*wire.Envelope
	}
	var batches []*batch
	find := func(to Address, c [32]byte) *batch {
		for _, b := range batches {
			if b.to == to && b.ceremony == c {
				return b
			}
		}
		b := &batch{to: to, ceremony: c}
		batches = append(batches, b)
		return b
	}
	for _, o := range out {
		env, _ := wire.Decode(o.Envelope)
		for i, p := range parties {
			idx := uint32(i + 1)
			to := Address{Account: p.Account, Device: p.Device}
			if to == a.self || (o.To != 0 && o.To != idx) {
				continue
			}
			b := find(to, envCeremony(env))
			b.envs = append(b.envs, o.Envelope)
			b.decoded = append(b.decoded, env)
		}
	}
	durable := a.cfg.Store.Durable()
	preparing, _ := a.cfg.Messenger.(PreparingMessenger)
	for _, b := range batches {
		msgs := wire.Pack(b.envs)
		note := ""
		if len(msgs) < len(b.envs) {
			note = fmt.Sprintf("%d envelopes in %d message(s)", len(b.envs), len(msgs))
		}
		ob := outbound{to: b.to, ceremony: b.ceremony, durable: durable}
		queued := true
		if ch := a.laneOf(ob); ch == nil || len(ch)+len(msgs) > cap(ch) {
			queued = false
		} else {
			for _, m := range msgs {
				ob.env, ob.prepared = m, nil
				if preparing != nil {
					ob.prepared = preparing.Prepare(a.runCtx, b.to, m)
				}
				if !a.enqueue(ob) {
					queued = false
				}
			}
		}
		if !queued {
			note = "send queue full: will be re-sent"
		}
		for i, env := range b.decoded {
			a.logMessage(event.Out, b.to, env, b.envs[i], note)
		}
	}
}
