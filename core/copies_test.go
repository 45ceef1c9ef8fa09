package core

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
)

// A console on several servers gets each message once per server it
// shares with the sender. Alice's keygen is finished; bob's confirmation
// comes to her through server A (a re-send: answered), then the same bytes
// through server B (a copy: dropped, no answer, even a resend interval
// later), then through A again (bob re-sent it: answered). After a restart,
// a copy through a third server is dropped too: the envelope was handled.
func TestACopyThroughAnotherServerGetsNoAnswerOfItsOwn(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]
	var later atomic.Int64
	alice.now = func() time.Time { return time.Now().Add(time.Duration(later.Load())) }
	var mu sync.Mutex
	var bobsConfirm []byte
	alice.deliver = func(from Address, env []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if e, err := wire.Decode(env); err == nil && e.Kind == wire.KindConfirm && from == bob.addr && bobsConfirm == nil {
			bobsConfirm = env
		}
		return true
	}
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr, err := alice.app.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitKeys(t, ctx, nd, kr.KeyID)
	}
	mu.Lock()
	confirm := bobsConfirm
	mu.Unlock()
	if confirm == nil {
		t.Fatal("alice never got bob's confirmation")
	}
	via := func(server string) Address {
		a := bob.addr
		a.Server = server
		return a
	}
	// note is what alice's log says of the copy, and whether she answered.
	note := func(from Address) (string, bool) {
		t.Helper()
		sub := alice.bus.Subscribe(0)
		defer sub.Close()
		if err := alice.app.Deliver(ctx, from, confirm); err != nil && from.Server == "" {
			t.Fatal(err)
		}
		if err := alice.app.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		got, answered := "", false
		for {
			sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
			e, err := sub.Next(sctx)
			scancel()
			if err != nil {
				return got, answered
			}
			if m, ok := e.(event.Message); ok && m.Kind == "confirm" {
				if m.Direction == event.In {
					got = m.Note
				} else if m.Note == "answer to a peer still waiting" {
					answered = true
				}
			}
		}
	}
	const a, b, c = "https://a.example", "https://b.example", "https://c.example"
	later.Store(int64(2 * time.Hour))
	if n, answered := note(via(a)); n != "ceremony finished" || !answered {
		t.Fatalf("bob's re-send through A: %q, answered %v", n, answered)
	}
	later.Store(int64(4 * time.Hour))
	if n, answered := note(via(b)); n != "copy through a second server: dropped" || answered {
		t.Fatalf("the copy through B: %q, answered %v", n, answered)
	}
	if n, answered := note(via(a)); n != "ceremony finished" || !answered {
		t.Fatalf("bob's next re-send through A: %q, answered %v", n, answered)
	}
	alice.stop()
	alice.start(t, true)
	later.Store(int64(6 * time.Hour))
	if n, answered := note(via(c)); n != "copy through a second server: dropped" || answered {
		t.Fatalf("after a restart, the copy through C: %q, answered %v", n, answered)
	}
	_ = carol
}

// A party is its console key: a message from any address on its signed
// card, on that address's server, is the party's, so a key made with its
// first address works over a server it added later; another signer's
// address, or the party's account on a server its card does not name, is
// not the party.
func TestSenderIsTheConsoleKeyOfAnyAddressOnItsCard(t *testing.T) {
	t.Parallel()
	const a, b = "https://a.example", "https://b.example"
	ident := func(i byte) []byte { return append([]byte{5}, bytes.Repeat([]byte{i}, 32)...) }
	keyOf := func(i byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i}, 32)) }
	bob, err := roster.SignCard("bob", 1, keyOf(2), []roster.Address{
		{Server: a, Account: "bob-a", Device: 2, IdentityKey: ident(2)},
		{Server: b, Account: "bob-b", Device: 3, IdentityKey: ident(3)}})
	if err != nil {
		t.Fatal(err)
	}
	carol, err := roster.SignCard("carol", 1, keyOf(4), []roster.Address{
		{Server: b, Account: "carol-b", Device: 2, IdentityKey: ident(4)}})
	if err != nil {
		t.Fatal(err)
	}
	var r roster.Roster
	r.SetLegacyServer(a)
	for _, c := range []roster.Card{bob, carol} {
		if err := r.Add(c, true); err != nil {
			t.Fatal(err)
		}
	}
	app := &App{cfg: Config{Roster: &r}}
	// The key was made with bob's first address.
	parties := []dkg.Party{{Account: "bob-a", Device: 2, IdentityKey: ident(2), ConsoleKey: bob.ConsoleKey},
		{Account: "carol-b", Device: 2, IdentityKey: ident(4), ConsoleKey: carol.ConsoleKey}}
	for _, tc := range []struct {
		name string
		from Address
		idx  uint32
		ok   bool
	}{
		{"bob's first address on its server", Address{Account: "bob-a", Device: 2, Server: a}, 1, true},
		{"bob's address on the server he added", Address{Account: "bob-b", Device: 3, Server: b}, 1, true},
		{"bob's first account on a server his card does not name it on", Address{Account: "bob-a", Device: 2, Server: b}, 1, false},
		{"carol's address claiming bob's index", Address{Account: "carol-b", Device: 2, Server: b}, 1, false},
		{"carol as herself", Address{Account: "carol-b", Device: 2, Server: b}, 2, true},
		{"no server said: the ceremony's address", Address{Account: "bob-a", Device: 2}, 1, true},
		{"an index out of range", Address{Account: "bob-a", Device: 2, Server: a}, 3, false},
	} {
		err := app.checkSender(parties, tc.from, tc.idx)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && !errors.Is(err, ErrNotSigner) {
			t.Errorf("%s: %v is not ErrNotSigner", tc.name, err)
		}
	}
}

// A partial that overtakes its request is kept for later, once: its copy
// through a second server is not kept again, nor, after a restart, a copy
// through a third.
func TestACopyOfAKeptEnvelopeIsNotKeptAgain(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob")
	alice, bob := nodes[0], nodes[1]
	alice.start(t, true)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	raw, err := wire.Seal(&wire.Envelope{Version: wire.Version, Kind: wire.KindPartial, Ceremony: [32]byte{9}, Round: 1, From: 2, To: 1,
		Payload: []byte{1, 2, 3}}, bob.key)
	if err != nil {
		t.Fatal(err)
	}
	via := func(server string) Address { a := bob.addr; a.Server = server; return a }
	for i, step := range []struct {
		server  string
		restart bool
		note    string
	}{
		{"https://a.example", false, "unknown ceremony: kept for later"},
		{"https://b.example", false, "copy through a second server: dropped"},
		{"https://c.example", true, "copy through a second server: dropped"},
	} {
		if step.restart {
			alice.stop()
			alice.start(t, true)
		}
		sub := alice.bus.Subscribe(0)
		if err := alice.app.Deliver(ctx, via(step.server), raw); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("step %d: no log line for the envelope", i)
			}
			if m, ok := e.(event.Message); ok && m.Direction == event.In {
				if m.Note != step.note {
					t.Fatalf("step %d (through %s): %q, want %q", i, step.server, m.Note, step.note)
				}
				break
			}
		}
		sub.Close()
		if os, err := alice.store.Orphans(ctx); err != nil || len(os) != 1 {
			t.Fatalf("step %d: %d envelopes kept (%v)", i, len(os), err)
		}
	}
}

// The copies kept are bounded in number and age, oldest dropped first.
func TestTheCopiesKeptAreBoundedInNumberAndAge(t *testing.T) {
	t.Parallel()
	var l copyLog
	start := time.Unix(1000, 0)
	for i := range maxCopies + 10 {
		l.add([32]byte{byte(i), byte(i >> 8), 1}, &copySeen{at: start})
	}
	if len(l.seen) != maxCopies || len(l.order) != maxCopies {
		t.Fatalf("%d kept (%d in order), want %d", len(l.seen), len(l.order), maxCopies)
	}
	if _, ok := l.seen[[32]byte{0, 0, 1}]; ok {
		t.Fatal("the oldest entry is still kept")
	}
	l.add([32]byte{9, 9, 9}, &copySeen{at: start.Add(copyTTL + time.Second)})
	if len(l.seen) != 1 || len(l.order) != 1 {
		t.Fatalf("%d kept after every other entry aged out, want 1", len(l.seen))
	}
}
