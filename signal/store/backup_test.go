package store

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.mau.fi/libsignal/protocol"

	"github.com/signal-mpc/cosigner/signal/prekey"
)

func putApp(t *testing.T, s *Store, key, value string) {
	t.Helper()
	if err := s.AppUpdate(t.Context(), func(tx *AppTx) error { return tx.Put("test.records", []byte(key), []byte(value)) }); err != nil {
		t.Fatal(err)
	}
}

func getApp(t *testing.T, s *Store, key string) string {
	t.Helper()
	var v []byte
	if err := s.AppView(t.Context(), func(tx *AppTx) error {
		var err error
		v, err = tx.Get("test.records", []byte(key))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func TestABackupOpensWithTheSameKeyAndHoldsTheSameRecords(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts Options
	}{
		{"key file", Options{}},
		{"passphrase", Options{Passphrase: []byte("correct horse")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dir := t.TempDir()
			d := newDeviceOpts(t, "alice", tt.opts)
			putApp(t, d.store, "share", "secret share")
			copyPath := filepath.Join(dir, "backup.db")
			if err := d.store.Backup(ctx, copyPath, false); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(copyPath)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("the copy: %v, %v; want mode 0600", fi, err)
			}
			b, _ := os.ReadFile(copyPath)
			if bytes.Contains(b, []byte("secret share")) {
				t.Fatal("the copy holds a record in the clear")
			}
			if key, err := os.ReadFile(d.path + ".key"); err == nil && bytes.Contains(b, key) {
				t.Fatal("the copy holds the key file")
			}

			o := tt.opts
			o.KeyFile = d.path + ".key"
			c := openStore(t, copyPath, o)
			want, err := d.store.Account(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Account(ctx)
			if err != nil || !sameDevice(got, want) {
				t.Fatalf("the copy's account %v (%v), want %v", got, err, want)
			}
			if v := getApp(t, c, "share"); v != "secret share" {
				t.Errorf("the copy's record is %q", v)
			}
			p, err := c.Protocol(ctx, prekey.ACI)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.LoadSignedPreKey(ctx, d.keys.SignedPreKey.ID()); err != nil {
				t.Errorf("the copy's signed prekey: %v", err)
			}
		})
	}
}

func TestABackupNeverOverwritesAFileUnlessToldTo(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	s := openStore(t, filepath.Join(dir, "state.db"), Options{})
	fillStore(t, s, 1000)
	path := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Backup(ctx, path, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Backup over a file: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatalf("the file was changed to %d bytes", len(b))
	}
	if err := s.Backup(ctx, path, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) == "precious" {
		t.Fatal("Backup with replace left the file")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// A console restored from a backup: its sessions are gone (the peers'
// ratchets moved on), the application is told once, in the same
// transaction, and the console talks to its peer again through a new
// session.
func TestARestoredStoreStartsItsSessionsAfreshAndTellsTheApplicationOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	alice, bob := newDevice(t, "alice"), newDevice(t, "bob")
	send := func(from, to *device, msg string) error {
		t.Helper()
		wire, typ := from.encrypt(t, to.addr, []byte(msg))
		got, err := to.decrypt(ctx, from.addr, wire, typ)
		if err == nil && string(got) != msg {
			t.Fatalf("got %q, want %q", got, msg)
		}
		return err
	}
	connect(t, alice, bob, true)
	for _, m := range []string{"one", "two"} {
		if err := send(alice, bob, m); err != nil {
			t.Fatal(err)
		}
		if err := send(bob, alice, m); err != nil {
			t.Fatal(err)
		}
	}
	putApp(t, alice.store, "before", "begun before the backup")
	backup := filepath.Join(t.TempDir(), "backup.db")
	before := time.Now()
	if err := alice.store.Backup(ctx, backup, false); err != nil {
		t.Fatal(err)
	}
	// Life goes on after the backup.
	for _, m := range []string{"three", "four"} {
		if err := send(alice, bob, m); err != nil {
			t.Fatal(err)
		}
		if err := send(bob, alice, m); err != nil {
			t.Fatal(err)
		}
	}
	putApp(t, alice.store, "after", "begun after the backup")
	acct, err := alice.store.Account(ctx)
	if err != nil {
		t.Fatal(err)
	}

	if !alice.store.RestoredAt().IsZero() {
		t.Fatal("a store never restored has a RestoredAt")
	}
	// The disk is lost; the backup comes back.
	alice.store.Close()
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alice.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var told []time.Time
	alice.opts.AfterRestore = func(_ context.Context, tx *AppTx, at time.Time) error {
		told = append(told, at)
		v, err := tx.Get("test.records", []byte("before"))
		if err != nil {
			return err
		}
		return tx.Put("test.records", []byte("before"), append(v, " (abandoned)"...))
	}
	alice.reopen(t)
	if len(told) != 1 || told[0].Before(before.Add(-time.Second)) || told[0].After(time.Now()) {
		t.Fatalf("the application was told %v, want once with the backup's time", told)
	}
	r, ok := alice.store.Restored()
	if !ok || r.Sessions != 1 || !r.BackupTime.Equal(told[0]) {
		t.Fatalf("Restored() = %+v, %t", r, ok)
	}
	restoredAt := alice.store.RestoredAt()
	if restoredAt.Before(told[0]) || restoredAt.After(time.Now()) {
		t.Fatalf("RestoredAt() = %v, want the time of the reset", restoredAt)
	}
	if has, err := alice.proto.ContainsSession(ctx, bob.addr); has || err != nil {
		t.Fatalf("the session with bob survived the restore (%t, %v)", has, err)
	}
	if v := getApp(t, alice.store, "before"); v != "begun before the backup (abandoned)" {
		t.Errorf("the record from before the backup is %q", v)
	}
	if v := getApp(t, alice.store, "after"); v != "" {
		t.Errorf("a record from after the backup is there: %q", v)
	}
	if got, err := alice.store.Account(ctx); err != nil || !sameDevice(got, acct) {
		t.Fatalf("the account after the restore: %v (%v)", got, err)
	}

	// Bob's old session is of no use to alice; her new one, from his
	// signed prekey, is taken up by him.
	if err := send(bob, alice, "old session"); err == nil {
		t.Fatal("alice decrypted a message of the session from before the restore")
	}
	connect(t, alice, bob, false)
	wire, typ := alice.encrypt(t, bob.addr, []byte("new session"))
	if typ != protocol.PREKEY_TYPE {
		t.Fatalf("alice's first message after the restore is of type %d, want a prekey message", typ)
	}
	if got, err := bob.decrypt(ctx, alice.addr, wire, typ); err != nil || string(got) != "new session" {
		t.Fatalf("bob: %q, %v", got, err)
	}
	if err := send(bob, alice, "welcome back"); err != nil {
		t.Fatal(err)
	}

	// Once only.
	alice.reopen(t)
	if len(told) != 1 {
		t.Fatalf("the application was told again: %v", told)
	}
	if _, ok := alice.store.Restored(); ok {
		t.Error("Restored() after a second open says the store was just restored")
	}
	if got := alice.store.RestoredAt(); !got.Equal(restoredAt) {
		t.Errorf("RestoredAt() after a second open = %v, want %v", got, restoredAt)
	}
	if has, _ := alice.proto.ContainsSession(ctx, bob.addr); !has {
		t.Error("the new session did not survive a restart")
	}
}

// sameDevice compares what newDevice saves.
func sameDevice(a, b *Account) bool {
	return a.ACI == b.ACI && a.DeviceID == b.DeviceID && a.Password == b.Password &&
		a.ACIRegistrationID == b.ACIRegistrationID &&
		a.ACIIdentity.PrivateKey().Serialize() == b.ACIIdentity.PrivateKey().Serialize()
}
