package core

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/event"
)

// The proposer finishes the keygen and its process stops before its key
// confirmation reached bob (the headless command exits on its result).
// When bob's confirmation, re-sent while he waits, reaches the proposer's
// console again, it answers with its own, once, and bob gets the key.
func TestFinishedKeygenAnswersAPeerStillWaiting(t *testing.T) {
	t.Parallel()
	net, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]
	kindFrom := func(env []byte, k wire.Kind, from *node, sender Address) bool {
		e, err := wire.Decode(env)
		return err == nil && e.Kind == k && sender == from.addr
	}
	var mu sync.Mutex
	var bobsConfirm []byte
	dropped := false
	bob.deliver = func(from Address, env []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if !dropped && kindFrom(env, wire.KindConfirm, alice, from) {
			dropped = true
			return false
		}
		return true
	}
	alice.deliver = func(from Address, env []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if bobsConfirm == nil && kindFrom(env, wire.KindConfirm, bob, from) {
			bobsConfirm = env
		}
		return true
	}
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sub := alice.bus.Subscribe(0)
	defer sub.Close()
	kr, err := alice.app.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	waitKeys(t, ctx, carol, kr.KeyID)
	if err := alice.app.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if keys, _ := bob.app.Keys(ctx); len(keys) != 0 {
		t.Fatal("bob has the key without alice's confirmation")
	}
	mu.Lock()
	again := bobsConfirm
	mu.Unlock()
	// Bob's re-sends; alice answers the first only.
	for range 3 {
		if err := net.Send(bob.addr).Send(ctx, alice.addr, again); err != nil {
			t.Fatal(err)
		}
	}
	waitKeys(t, ctx, bob, kr.KeyID)
	if err := alice.app.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	answers, finished := 0, 0
	for finished < 3 {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("saw %d of bob's re-sends", finished)
		}
		if m, ok := e.(event.Message); ok && m.Kind == "confirm" {
			switch m.Note {
			case "answer to a peer still waiting":
				answers++
			case "ceremony finished":
				finished++
			}
		}
	}
	if answers != 1 {
		t.Fatalf("alice answered %d times, want once", answers)
	}
}
