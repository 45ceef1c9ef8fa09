package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.mau.fi/libsignal/protocol"

	"github.com/signal-mpc/cosigner/signal/prekey"
)

// addDevice makes the device account on the named server of d's file,
// with its own identity and keys.
func addDevice(t testing.TB, st *Store, server, account string) *device {
	t.Helper()
	ctx := t.Context()
	s, err := st.Server(server)
	if err != nil {
		t.Fatal(err)
	}
	ik := newIdentity(t)
	keys, err := prekey.NewKeys(ik, prekey.Options{PreKeys: 3, KyberPreKeys: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveAccount(ctx, &Account{ACI: account, DeviceID: 2, Password: "pw", ACIIdentity: ik, ACIRegistrationID: keys.RegistrationID}); err != nil {
		t.Fatal(err)
	}
	d := &device{store: s, addr: protocol.NewSignalAddress(account, 2), keys: keys}
	if d.proto, err = s.Protocol(ctx, prekey.ACI); err != nil {
		t.Fatal(err)
	}
	if err := d.proto.SaveKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestServerNamesAreChecked(t *testing.T) {
	t.Parallel()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	for _, tc := range []struct {
		name    string
		wantErr bool
		wantNS  bool
	}{
		{"", false, false},
		{DefaultServer, false, false},
		{"relay-2.home_b", false, true},
		{"my relay", true, false},
		{"a/b", true, false},
		{"\x00", true, false},
		{string(make([]byte, 65)), true, false},
	} {
		v, err := s.Server(tc.name)
		if tc.wantErr {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("Server(%q) = %v, want ErrInvalidArgument", tc.name, err)
			}
			continue
		}
		if err != nil || (v.ns != nil) != tc.wantNS {
			t.Errorf("Server(%q) = %+v, %v", tc.name, v, err)
		}
	}
}

// The default server's device is the file's top level, where every store
// kept its device before servers were named; another's sits apart, and
// both survive a restart.
func TestEachServerHasItsOwnDeviceInTheOneFile(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openStore(t, path, Options{})
	home, far := testAccount(t), testAccount(t)
	far.ACI, far.Password = "0f0f0f0f-0000-4000-8000-000000000002", "other"
	if err := s.SaveAccount(ctx, home); err != nil {
		t.Fatal(err)
	}
	fs, err := s.Server("far")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Account(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a new server's account: %v, want ErrNotFound", err)
	}
	if err := fs.SaveAccount(ctx, far); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path, Options{})
	for name, want := range map[string]*Account{"": home, DefaultServer: home, "far": far} {
		v, err := s.Server(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Account(ctx)
		if err != nil || !sameAccount(got, want) {
			t.Errorf("server %q: account %v, %v", name, got, err)
		}
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketAccount) == nil {
			return errors.New("no top-level account bucket: the default device moved")
		}
		if b, _ := bucketPath(tx, false, [][]byte{bucketServers, []byte("far"), bucketAccount}); b == nil {
			return errors.New("no servers/far/account bucket")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Pins, sessions and inbound records are a device's own: the same remote
// address on two servers is two peers.
func TestPinsSessionsAndInboundAreKeptPerServer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	alice := newDevice(t, "alice")
	far := addDevice(t, alice.store, "far", "alice-far")
	bob := newDevice(t, "bob")
	peer := "peer:1"
	k1, k2 := newIdentity(t).PublicKey().Serialize(), newIdentity(t).PublicKey().Serialize()
	// Inside a transaction the pin is cached: the cache must keep the
	// servers apart too.
	if err := alice.store.Atomic(ctx, func(ctx context.Context) error {
		if err := alice.store.pin(ctx, peer, k1, false); err != nil {
			return err
		}
		_, err := alice.store.pinned(ctx, peer)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := far.store.pin(ctx, peer, k2, false); err != nil {
		t.Fatalf("another server's pin for the same address: %v", err)
	}
	for _, c := range []struct {
		s    *Store
		want []byte
	}{{alice.store, k1}, {far.store, k2}} {
		if got, err := c.s.PinnedIdentity(ctx, peer); err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("server %q: pin %x, %v", c.s.server, got, err)
		}
	}

	connect(t, alice, bob, true)
	if ok, err := alice.proto.ContainsSession(ctx, bob.addr); err != nil || !ok {
		t.Fatalf("default server's session: %t, %v", ok, err)
	}
	if ok, err := far.proto.ContainsSession(ctx, bob.addr); err != nil || ok {
		t.Fatalf("the far server's device sees the default one's session: %t, %v", ok, err)
	}

	if err := far.store.PutInbound(ctx, []byte("guid"), Inbound{Account: "bob", Device: 2, Body: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := alice.store.GetInbound(ctx, []byte("guid")); err != nil || ok {
		t.Fatalf("the default device sees the far one's inbound record: %t, %v", ok, err)
	}
	if _, ok, err := far.store.GetInbound(ctx, []byte("guid")); err != nil || !ok {
		t.Fatalf("the far device's inbound record: %t, %v", ok, err)
	}
}

// Writes to several servers' devices in one operation commit together or
// not at all, as writes to one do.
func TestOneOperationCommitsAcrossServersOrNotAtAll(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	far, err := s.Server("far")
	if err != nil {
		t.Fatal(err)
	}
	a, b := testAccount(t), testAccount(t)
	both := func(ctx context.Context) error {
		if err := s.SaveAccount(ctx, a); err != nil {
			return err
		}
		return far.SaveAccount(ctx, b)
	}
	boom := errors.New("disk on fire")
	s.failCommit = func() error { return boom }
	if err := s.Atomic(ctx, both); !errors.Is(err, boom) {
		t.Fatalf("Atomic = %v, want the injected failure", err)
	}
	s.failCommit = nil
	for _, v := range []*Store{s, far} {
		if _, err := v.Account(ctx); !errors.Is(err, ErrNotFound) {
			t.Fatalf("server %q: a failed operation's account is there (%v)", v.server, err)
		}
	}
	if err := s.Atomic(ctx, both); err != nil {
		t.Fatal(err)
	}
	for v, want := range map[*Store]*Account{s: a, far: b} {
		if got, err := v.Account(ctx); err != nil || !sameAccount(got, want) {
			t.Fatalf("server %q: %v, %v", v.server, got, err)
		}
	}
}

// A store restored from a backup forgets every server's sessions and
// renews every server's keys, not only the default one's.
func TestARestoredStoreResetsEveryServersDevice(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	alice := newDevice(t, "alice")
	far := addDevice(t, alice.store, "far", "alice-far")
	bob := newDevice(t, "bob")
	connect(t, alice, bob, true)
	connect(t, far, bob, true)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := alice.store.Backup(ctx, backup, false); err != nil {
		t.Fatal(err)
	}
	c := openStore(t, backup, Options{KeyFile: alice.path + ".key"})
	if r, ok := c.Restored(); !ok || r.Sessions != 2 {
		t.Fatalf("Restored() = %+v, %t; want both servers' sessions", r, ok)
	}
	for _, name := range []string{DefaultServer, "far"} {
		v, err := c.Server(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := v.Protocol(ctx, prekey.ACI)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := p.ContainsSession(ctx, bob.addr); err != nil || ok {
			t.Errorf("server %q: a session survived the restore (%t, %v)", name, ok, err)
		}
		if stale, err := p.OneTimeStale(ctx); err != nil || !stale {
			t.Errorf("server %q: one-time keys not marked for replacement (%t, %v)", name, stale, err)
		}
	}
}
