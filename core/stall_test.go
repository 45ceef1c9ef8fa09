package core

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core/event"
)

// blockedUntil is a Messenger whose sends hang (until their context ends)
// while blocked is set: the messages wait in the console's send lanes.
type blockedUntil struct {
	next    Messenger
	blocked *atomic.Bool
}

func (b blockedUntil) Send(ctx context.Context, to Address, env []byte) error {
	if b.blocked.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return b.next.Send(ctx, to, env)
}

// droppedWhile is a Messenger that reports success but loses what it is
// given while drop is set (a send that failed for good, without a crash).
type droppedWhile struct {
	next Messenger
	drop *atomic.Bool
}

func (d droppedWhile) Send(ctx context.Context, to Address, env []byte) error {
	if d.drop.Load() {
		return nil
	}
	return d.next.Send(ctx, to, env)
}

// untilRound waits for a keygen progress event of the given round.
func untilRound(t *testing.T, ctx context.Context, sub *event.Subscription, round string) {
	t.Helper()
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no keygen progress in round %s: %v", round, err)
		}
		if p, ok := e.(event.Progress); ok && p.Kind == "keygen" && p.Round == round {
			return
		}
	}
}

// Carol moves on to the echo round while her acceptance, deal and shares
// still wait in her send lanes, and her process stops: they are lost. The
// others stay in the accept round. Restarted, carol sends again what they
// lack (not only her current round's echo), and the keygen completes.
func TestKeygenCompletesAfterAConsoleStopsWithItsFirstMessagesUnsent(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	carol := nodes[2]
	var blocked atomic.Bool
	blocked.Store(true)
	carol.messenger = func(m Messenger) Messenger { return blockedUntil{m, &blocked} }
	var sub *event.Subscription
	carol.onBus = func(b *event.Bus) { sub = b.Subscribe(64) }
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var kerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, kerr = nodes[0].app.StartKeygen(ctx, 2)
	}()
	untilRound(t, ctx, sub, "echo")
	sub.Close()
	carol.stop()
	blocked.Store(false)
	carol.start(t, true)
	wg.Wait()
	if kerr != nil {
		t.Fatalf("keygen: %v", kerr)
	}
	keys, err := carol.app.Keys(ctx)
	for len(keys) == 0 && err == nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
		keys, err = carol.app.Keys(ctx)
	}
	if len(keys) != 1 {
		t.Fatalf("carol has %d keys (%v)", len(keys), err)
	}
}

// The same loss without a crash: carol's first messages are lost on their
// way while she moves on. Her periodic re-sends carry them again.
func TestKeygenCompletesAfterAConsolesFirstMessagesAreLost(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	carol := nodes[2]
	var drop atomic.Bool
	drop.Store(true)
	carol.messenger = func(m Messenger) Messenger { return droppedWhile{m, &drop} }
	var sub *event.Subscription
	carol.onBus = func(b *event.Bus) { sub = b.Subscribe(64) }
	for _, nd := range nodes {
		nd.resendEvery = time.Second
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var kr *KeygenResult
	var kerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		kr, kerr = nodes[0].app.StartKeygen(ctx, 2)
	}()
	untilRound(t, ctx, sub, "echo")
	sub.Close()
	drop.Store(false)
	wg.Wait()
	if kerr != nil {
		t.Fatalf("keygen: %v", kerr)
	}
	for _, nd := range nodes {
		waitKeys(t, ctx, nd, kr.KeyID)
	}
}

// Bob approves a signing request and his process stops while his partial
// signature still waits in its send lane. Restarted, he sends it again,
// and the request is signed (carol, away, never answers).
func TestSigningCompletesAfterASignerStopsWithItsPartialUnsent(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]
	var blocked atomic.Bool
	bob.messenger = func(m Messenger) Messenger { return blockedUntil{m, &blocked} }
	var sub *event.Subscription
	bob.onBus = func(b *event.Bus) { sub = b.Subscribe(64) }
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	carol.stop()
	carol.start(t, false) // away: her approval never comes
	blocked.Store(true)
	var sr *SignResult
	var serr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sr, serr = alice.app.RequestSignature(ctx, kr.KeyID, []byte("pay the auditors"), "")
	}()
	for approved := false; !approved; {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("bob never approved: %v", err)
		}
		r, ok := e.(event.ApprovalResolved)
		approved = ok && r.Decision == "approved"
	}
	sub.Close()
	bob.stop()
	blocked.Store(false)
	bob.start(t, true)
	wg.Wait()
	if serr != nil {
		t.Fatalf("signing: %v", serr)
	}
	if len(sr.Signers) != 2 {
		t.Fatalf("signers %v", sr.Signers)
	}
}
