package core

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/wire"
)

// Carol's console is restored from a backup made in the middle of a
// keygen: the keygen is finished as abandoned in the same transaction as
// the restore, and her console neither resumes it nor answers its
// messages: its state and seed are the backup's, which the others have
// seen move on.
func TestAConsoleRestoredFromABackupNeverTakesPartAgainInACeremonyBegunBeforeIt(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, carol := nodes[0], nodes[2]
	var mu sync.Mutex
	handled := 0
	backedUp := make(chan struct{})
	carol.deliver = func(Address, []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if handled++; handled == 4 {
			close(backedUp)
		}
		return handled <= 4
	}
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kctx, stopKeygen := context.WithCancel(ctx)
	defer stopKeygen()
	go alice.app.StartKeygen(kctx, 2)
	select {
	case <-backedUp:
	case <-ctx.Done():
		t.Fatal("carol never got 4 messages")
	}
	carol.stop()

	// Her store now is the backup: restored, then opened.
	v := carol.store.(*VaultStore).v
	var n int
	backup := time.Now()
	if err := v.Update(ctx, func(tx VaultTx) error {
		var err error
		n, err = AbandonBeforeRestore(tx, backup)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("abandoned %d ceremonies, want the keygen", n)
	}
	recs, err := NewVaultStore(v).Ceremonies(ctx)
	if err != nil || len(recs) != 1 {
		t.Fatalf("carol's records: %d, %v", len(recs), err)
	}
	rec := recs[0]
	last := rec.Inputs[len(rec.Inputs)-1]
	if !rec.Finished || last.Kind != InputRestored || last.Text == "" || !last.Time.Equal(backup) {
		t.Fatalf("the keygen's record: finished %t, last input %+v", rec.Finished, last)
	}

	var sent []*wire.Envelope
	var sentMu sync.Mutex
	carol.messenger = func(m Messenger) Messenger {
		return messengerFunc(func(ctx context.Context, to Address, env []byte) error {
			for _, e := range envelopesOf(env) {
				if e.Ceremony == rec.ID {
					sentMu.Lock()
					sent = append(sent, e)
					sentMu.Unlock()
				}
			}
			return m.Send(ctx, to, env)
		})
	}
	carol.store = NewVaultStore(v)
	carol.mu.Lock()
	carol.deliver = nil
	carol.mu.Unlock()
	carol.start(t, true)
	if err := carol.app.Deliver(ctx, alice.addr, rec.Opening); !errors.Is(err, ErrRejected) {
		t.Fatalf("carol took the abandoned keygen's proposal again: %v", err)
	}
	if err := carol.app.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sentMu.Lock()
	defer sentMu.Unlock()
	if len(sent) != 0 {
		t.Fatalf("the restored console sent %d messages of the abandoned keygen (first: %v)", len(sent), sent[0].Kind)
	}
}

// A proposal that awaited carol's answer when her backup was made is not
// asked again after the restore, and answering it anyway sends nothing.
func TestAProposalAwaitingAnAnswerAtTheBackupIsNotAnswerableAfterTheRestore(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	carol := nodes[2]
	nodes[0].start(t, true)
	nodes[1].start(t, true)
	carol.start(t, false)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kctx, stopKeygen := context.WithCancel(ctx)
	defer stopKeygen()
	go nodes[0].app.StartKeygen(kctx, 2)
	var rec *CeremonyRecord
	for rec == nil {
		recs, err := carol.store.Ceremonies(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 {
			rec = recs[0]
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("carol never got the proposal")
		case <-time.After(5 * time.Millisecond):
		}
	}
	carol.stop()
	v := carol.store.(*VaultStore).v
	if err := v.Update(ctx, func(tx VaultTx) error {
		_, err := AbandonBeforeRestore(tx, time.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var sent int
	var sentMu sync.Mutex
	carol.messenger = func(m Messenger) Messenger {
		return messengerFunc(func(ctx context.Context, to Address, env []byte) error {
			for _, e := range envelopesOf(env) {
				if e.Ceremony == rec.ID {
					sentMu.Lock()
					sent++
					sentMu.Unlock()
				}
			}
			return m.Send(ctx, to, env)
		})
	}
	carol.store = NewVaultStore(v)
	carol.start(t, false)
	if err := carol.app.Approve(ctx, rec.ID); err == nil {
		t.Fatal("carol accepted the abandoned keygen after the restore")
	}
	if err := carol.app.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sentMu.Lock()
	defer sentMu.Unlock()
	if sent != 0 {
		t.Fatalf("carol sent %d messages of the abandoned keygen", sent)
	}
}

// After a restore, a keygen proposal made before it is refused: the
// console may have answered it from the state it lost. One made after it
// is taken.
func TestAKeygenProposedBeforeTheRestoreIsRefused(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		restored time.Duration // RestoredAt, from now
		refused  bool
	}{
		{"proposed before the restore", time.Hour, true},
		{"proposed after the restore", -time.Hour, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, nodes := newTestNet(t, "alice", "bob", "carol")
			alice, carol := nodes[0], nodes[2]
			proposal := make(chan []byte, 1)
			carol.deliver = func(from Address, env []byte) bool {
				for _, e := range envelopesOf(env) {
					if e.Kind == wire.KindProposal {
						select {
						case proposal <- env:
						default:
						}
					}
				}
				return false
			}
			carol.configure = func(c *Config) { c.RestoredAt = time.Now().Add(tt.restored) }
			for _, nd := range nodes {
				nd.start(t, false)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			go alice.app.StartKeygen(ctx, 2)
			var env []byte
			select {
			case env = <-proposal:
			case <-ctx.Done():
				t.Fatal("no proposal")
			}
			err := carol.app.Deliver(ctx, alice.addr, env)
			recs, rerr := carol.store.Ceremonies(ctx)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if tt.refused {
				if !errors.Is(err, ErrRejected) || !errors.Is(err, errBeforeRestore) || len(recs) != 0 {
					t.Fatalf("Deliver: %v, %d records; want refused, nothing recorded", err, len(recs))
				}
				return
			}
			if err != nil || len(recs) != 1 {
				t.Fatalf("Deliver: %v, %d records; want taken", err, len(recs))
			}
		})
	}
}

// envelopesOf decodes the envelopes of a message (one, or a bundle).
func envelopesOf(msg []byte) []*wire.Envelope {
	envs, err := wire.Unbundle(msg)
	if err != nil {
		return nil
	}
	var out []*wire.Envelope
	for _, raw := range envs {
		if e, err := wire.Decode(raw); err == nil {
			out = append(out, e)
		}
	}
	return out
}
