package core

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/event"
)

// The proposer finishes the keygen and its process stops before its key
// confirmation reached bob (the headless command exits on its result).
// When bob's confirmation, re-sent while he waits, reaches the proposer's
// console again, it answers with its own, once per resend interval (an
// answer can be lost too), and bob gets the key.
func TestFinishedKeygenAnswersAPeerStillWaiting(t *testing.T) {
	t.Parallel()
	net, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]
	var later atomic.Int64 // how far alice's clock is ahead
	alice.now = func() time.Time { return time.Now().Add(time.Duration(later.Load())) }
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
	// A resend interval later (an hour here), bob's next re-send is
	// answered again.
	later.Store(int64(time.Hour + time.Minute))
	if err := net.Send(bob.addr).Send(ctx, alice.addr, again); err != nil {
		t.Fatal(err)
	}
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal("alice did not answer bob's re-send a resend interval later")
		}
		if m, ok := e.(event.Message); ok && m.Kind == "confirm" && m.Note == "answer to a peer still waiting" {
			break
		}
	}
}

// The requester's process stops right after its signature, before the
// result reached alice. Restarted, it answers alice's partial (which she
// re-sends while she waits) with the result, and alice gets the signature.
func TestFinishedSigningAnswersAPeerStillWaiting(t *testing.T) {
	t.Parallel()
	net, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob := nodes[0], nodes[1]
	kindFrom := func(env []byte, k wire.Kind, from *node, sender Address) bool {
		e, err := wire.Decode(env)
		return err == nil && e.Kind == k && sender == from.addr
	}
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	var mu sync.Mutex
	var alicesPartial []byte
	alice.mu.Lock()
	alice.deliver = func(from Address, env []byte) bool {
		return !kindFrom(env, wire.KindSignResult, bob, from) // lost with bob's process
	}
	alice.mu.Unlock()
	bob.mu.Lock()
	bob.deliver = func(from Address, env []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if alicesPartial == nil && kindFrom(env, wire.KindPartial, alice, from) {
			alicesPartial = env
		}
		return true
	}
	bob.mu.Unlock()
	sub := alice.bus.Subscribe(0)
	defer sub.Close()
	sr, err := bob.app.RequestSignature(ctx, kr.KeyID, []byte("late"), "")
	if err != nil {
		t.Fatal(err)
	}
	eventually := func(what string, ok func() bool) {
		for !ok() {
			select {
			case <-ctx.Done():
				t.Fatal(what)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	eventually("alice's partial reached bob", func() bool { mu.Lock(); defer mu.Unlock(); return alicesPartial != nil })
	if err := bob.app.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	bob.stop()
	alice.mu.Lock()
	alice.deliver = nil
	alice.mu.Unlock()
	bob.start(t, true)
	mu.Lock()
	again := alicesPartial
	mu.Unlock()
	if err := net.Send(alice.addr).Send(ctx, bob.addr, again); err != nil {
		t.Fatal(err)
	}
	id := sr.ID
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal("alice never got the signature")
		}
		if d, ok := e.(event.SignDone); ok && d.ID == hex.EncodeToString(id[:]) {
			if d.Signature == "" || !d.Verified {
				t.Fatalf("alice's signing ended %+v", d)
			}
			return
		}
	}
}

func TestTheAnswersRememberedStayBounded(t *testing.T) {
	t.Parallel()
	base := time.Unix(1000, 0)
	for _, tc := range []struct {
		name string
		at   func(i int) time.Time
	}{
		{"answered over time", func(i int) time.Time { return base.Add(time.Duration(i) * time.Millisecond) }},
		{"answered at one instant", func(int) time.Time { return base }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := &App{answered: map[answerKey]time.Time{}}
			key := func(i int) answerKey {
				var c [32]byte
				binary.BigEndian.PutUint32(c[:], uint32(i))
				return answerKey{ceremony: c, party: 2}
			}
			for i := range maxAnswered {
				a.answered[key(i)] = tc.at(i)
			}
			newest := key(maxAnswered - 1)
			a.forgetOldestAnswers()
			if n := len(a.answered); n > maxAnswered/2 || n == 0 {
				t.Fatalf("%d answers remembered after forgetting, want 1..%d", n, maxAnswered/2)
			}
			if _, ok := a.answered[newest]; !ok && tc.at(0) != tc.at(1) {
				t.Fatal("the newest answer was forgotten")
			}
		})
	}
}
