package core

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/event"
)

// failNow makes every later write of v fail, as a full disk does.
func (v *memVault) failNow(err error) {
	v.mu.Lock()
	v.fail = err
	v.mu.Unlock()
}

// The requester's disk fills while the partial that completes its request
// is recorded: the signature exists in memory only, so the request must
// not be reported signed (a restart would not show it); the caller gets the
// store's error instead.
func TestASignatureWhoseInputsAreNotDurableIsNotReported(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]
	v := newMemVault()
	alice.store = NewVaultStore(v)
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	bob.stop()
	bob.start(t, false)
	carol.stop()
	carol.start(t, false) // away
	sub := alice.bus.Subscribe(64)
	defer sub.Close()
	answerSome(ctx, bob, func(event.ApprovalRequested) (bool, bool, string) {
		v.failNow(errors.New("no space left on device"))
		return true, true, ""
	})
	_, err := alice.app.RequestSignature(ctx, kr.KeyID, []byte("sweep"), "")
	if !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("RequestSignature = %v, want the store's failure", err)
	}
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal("alice's console never reported the store failure")
		}
		if d, ok := e.(event.SignDone); ok {
			t.Fatalf("the signing was announced although its record failed: %+v", d)
		}
		if _, ok := e.(event.Error); ok {
			break
		}
	}
}

// The initiator's disk fills while the last key confirmation is recorded:
// the key is not announced, and the keygen reports the store's error.
func TestAKeyWhoseInputsAreNotDurableIsNotAnnounced(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice := nodes[0]
	v := newMemVault()
	alice.store = NewVaultStore(v)
	var mu sync.Mutex
	confirms := 0
	alice.deliver = func(_ Address, env []byte) bool {
		if e, err := wire.Decode(env); err == nil && e.Kind == wire.KindConfirm {
			mu.Lock()
			confirms++
			if confirms == 2 {
				v.failNow(errors.New("no space left on device"))
			}
			mu.Unlock()
		}
		return true
	}
	var sub *event.Subscription
	alice.onBus = func(b *event.Bus) { sub = b.Subscribe(256) }
	for _, nd := range nodes {
		nd.start(t, true)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := alice.app.StartKeygen(ctx, 2)
	if !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("StartKeygen = %v, want the store's failure", err)
	}
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal("alice's console never reported the store failure")
		}
		if d, ok := e.(event.KeygenDone); ok {
			t.Fatalf("the key was announced although its record failed: %+v", d)
		}
		if _, ok := e.(event.Error); ok {
			break
		}
	}
}

// After a store failure stopped the App, calls fail at once with it
// instead of waiting for a loop that is gone.
func TestCallsAfterAStoreFailureFailAtOnce(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice := nodes[0]
	v := newMemVault()
	alice.store = NewVaultStore(v)
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	v.failNow(errors.New("no space left on device"))
	if _, err := alice.app.StartKeygen(ctx, 2); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("first keygen = %v, want the store's failure", err)
	}
	<-alice.app.stopped // the App stopped
	if _, err := alice.app.StartKeygen(ctx, 2); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("keygen after the failure = %v, want the store's failure at once", err)
	}
	if _, err := alice.app.Keys(ctx); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("keys after the failure = %v", err)
	}
}
