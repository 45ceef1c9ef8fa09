package store

import (
	"errors"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/prekey"
)

func TestLastResortKeysListsOnlyLastResortKeysAndRemovalDeletesThem(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDevice(t, "alice") // last resort 2, one one-time Kyber key 3
	ik := d.keys.Identity
	o, err := d.proto.NextKeyOptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next, err := prekey.NewKyberPreKey(nil, o.LastResortID, ik, true, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.proto.SaveKeys(ctx, &prekey.Keys{Identity: ik, LastResort: next}); err != nil {
		t.Fatal(err)
	}
	d.reopen(t)
	got, err := d.proto.LastResortKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != d.keys.LastResort.ID || got[1].ID != next.ID || !got[0].LastResort || !got[1].LastResort {
		t.Fatalf("last-resort keys %v, want ids %d and %d", got, d.keys.LastResort.ID, next.ID)
	}
	if err := d.proto.RemoveKyberPreKey(ctx, d.keys.LastResort.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.proto.LoadKyberPreKey(ctx, d.keys.LastResort.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed last-resort key: %v", err)
	}
	if got, err := d.proto.LastResortKeys(ctx); err != nil || len(got) != 1 || got[0].ID != next.ID {
		t.Fatalf("after removal: %v, %v", got, err)
	}
	if _, err := d.proto.LoadKyberPreKey(ctx, d.keys.KyberPreKeys[0].ID); err != nil {
		t.Fatalf("the one-time Kyber key went with it: %v", err)
	}
}

func TestServerKeysAreUnknownUntilRecordedAndSurviveARestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDevice(t, "alice")
	if s, lr, err := d.proto.ServerKeys(ctx); err != nil || s != 0 || lr != 0 {
		t.Fatalf("before any record: %d, %d, %v; want 0, 0", s, lr, err)
	}
	if err := d.proto.SetServerKeys(ctx, 0, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("key id 0 recorded: %v", err)
	}
	if err := d.proto.SetServerKeys(ctx, 7, prekey.MaxKeyID); err != nil {
		t.Fatal(err)
	}
	d.reopen(t)
	if s, lr, err := d.proto.ServerKeys(ctx); err != nil || s != 7 || lr != prekey.MaxKeyID {
		t.Fatalf("after a restart: %d, %d, %v; want 7, %d", s, lr, err, prekey.MaxKeyID)
	}
}
