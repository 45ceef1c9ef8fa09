package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.mau.fi/libsignal/ecc"

	"github.com/signal-mpc/cosigner/signal/prekey"
)

func testAccount(t testing.TB) *Account {
	return &Account{
		ACI: "8c0f3a7e-5b1d-4e2a-9f6c-0123456789ab", PNI: "11111111-2222-4333-8444-555555555555",
		Number: "+15551234567", DeviceID: 3, Password: "s3cret-password",
		ACIIdentity: newIdentity(t), PNIIdentity: newIdentity(t),
		ACIRegistrationID: 1234, PNIRegistrationID: 4321,
	}
}

func sameAccount(a, b *Account) bool {
	pub := func(x *Account) []byte {
		p1, q1 := pairBytes(x.ACIIdentity)
		p2, q2 := pairBytes(x.PNIIdentity)
		return bytes.Join([][]byte{p1, q1, p2, q2}, nil)
	}
	return a.ACI == b.ACI && a.PNI == b.PNI && a.Number == b.Number && a.DeviceID == b.DeviceID &&
		a.Password == b.Password && a.ACIRegistrationID == b.ACIRegistrationID &&
		a.PNIRegistrationID == b.PNIRegistrationID && bytes.Equal(pub(a), pub(b))
}

func TestAccountSurvivesARestartInBothKeyModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
	}{
		{"key file", Options{}},
		{"passphrase", Options{Passphrase: []byte("correct horse")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "state.db")
			s := openStore(t, path, tt.opts)
			if _, err := s.Account(ctx); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Account before save: %v", err)
			}
			want := testAccount(t)
			if err := s.SaveAccount(ctx, want); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = openStore(t, path, tt.opts)
			got, err := s.Account(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !sameAccount(got, want) {
				t.Fatalf("account after restart %v, want %v", got, want)
			}
		})
	}
}

func TestFilesAreOwnerOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s := openStore(t, path, Options{})
	s.Close()
	for _, p := range []string{path, path + ".key"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	openStore(t, path, Options{}).Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("a widened store file stays %v after open", fi.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestOpeningWithTheWrongSecretFailsClearly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	passPath := filepath.Join(dir, "pass.db")
	openStore(t, passPath, Options{Passphrase: []byte("right")}).Close()
	filePath := filepath.Join(dir, "file.db")
	openStore(t, filePath, Options{}).Close()
	otherKey := filepath.Join(dir, "other.db")
	openStore(t, otherKey, Options{}).Close()

	tests := []struct {
		name string
		path string
		opts Options
		want error
	}{
		{"a wrong passphrase", passPath, Options{Passphrase: []byte("wrong")}, ErrWrongPassphrase},
		{"no passphrase for a passphrase store", passPath, Options{}, ErrPassphraseRequired},
		{"a passphrase for a key-file store", filePath, Options{Passphrase: []byte("right")}, ErrWrongPassphrase},
		{"a missing key file", filePath, Options{KeyFile: filepath.Join(dir, "absent.key")}, ErrKeyFile},
		{"another store's key file", filePath, Options{KeyFile: otherKey + ".key"}, ErrKeyFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the cases share files and bbolt locks them.
			s, err := Open(ctx, tt.path, tt.opts)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
		})
	}
	// The header's KDF parameters, not the caller's, decide.
	s, err := Open(ctx, passPath, Options{Passphrase: []byte("right"), KDF: DefaultKDF})
	if err != nil {
		t.Fatalf("reopen with other KDF options: %v", err)
	}
	s.Close()
}

func TestASecondOpenOfTheSameFileReportsLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	openStore(t, path, Options{})
	_, err := Open(t.Context(), path, Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestSecretsAreNotInTheFileInTheClear(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s := openStore(t, path, Options{Passphrase: []byte("pw")})
	a := testAccount(t)
	if err := s.SaveAccount(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, priv := pairBytes(a.ACIIdentity)
	for what, secret := range map[string][]byte{"password": []byte(a.Password), "private key": priv, "ACI": []byte(a.ACI)} {
		if bytes.Contains(raw, secret) {
			t.Errorf("the %s is in the file in the clear", what)
		}
	}
	if bytes.Contains([]byte(a.String()+a.GoString()), []byte(a.Password)) {
		t.Error("String shows the password")
	}
}

func TestAFailedWriteLeavesThePreviousState(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	s := openStore(t, path, Options{})
	old := testAccount(t)
	if err := s.SaveAccount(ctx, old); err != nil {
		t.Fatal(err)
	}
	p, err := s.Protocol(ctx, prekey.ACI)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := prekey.NewKeys(old.ACIIdentity, prekey.Options{PreKeys: 2, KyberPreKeys: 1})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("disk on fire")
	s.failCommit = func() error { return boom }
	next := testAccount(t)
	next.Password = "new"
	if err := s.SaveAccount(ctx, next); !errors.Is(err, boom) {
		t.Fatalf("SaveAccount = %v, want the injected failure", err)
	}
	if err := p.SaveKeys(ctx, keys); !errors.Is(err, boom) {
		t.Fatalf("SaveKeys = %v, want the injected failure", err)
	}
	s.failCommit = nil
	got, err := s.Account(ctx)
	if err != nil || !sameAccount(got, old) {
		t.Fatalf("after a failed write the account is %v, %v; want the old one", got, err)
	}
	for _, check := range []func() (bool, error){
		func() (bool, error) { return p.ContainsPreKey(ctx, 1) },
		func() (bool, error) { return p.ContainsSignedPreKey(ctx, 1) },
		func() (bool, error) { _, err := p.LoadKyberPreKey(ctx, 1); return err == nil, nil },
	} {
		if ok, err := check(); ok || err != nil {
			t.Fatalf("a key of the failed SaveKeys is visible (%t, %v)", ok, err)
		}
	}
}

func TestATamperedRecordIsReportedCorrupt(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	s := openStore(t, path, Options{})
	if err := s.SaveAccount(ctx, testAccount(t)); err != nil {
		t.Fatal(err)
	}
	// Move the sealed account under another key: the associated data differs.
	moved, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	b := moved.Bucket(bucketAccount)
	v := bytes.Clone(b.Get(keyAccount))
	v[len(v)-1] ^= 1
	if err := b.Put(keyAccount, v); err != nil {
		t.Fatal(err)
	}
	if err := moved.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Account(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Account = %v, want ErrCorrupt", err)
	}
}

func TestPreKeysRoundTripAndRemove(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDevice(t, "alice")
	d.reopen(t)
	p := d.proto
	for _, want := range d.keys.PreKeys {
		got, err := p.LoadPreKey(ctx, want.ID().Value)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.KeyPair().PublicKey().Serialize(), want.KeyPair().PublicKey().Serialize()) ||
			got.KeyPair().PrivateKey().Serialize() != want.KeyPair().PrivateKey().Serialize() {
			t.Fatalf("prekey %d differs after restart", want.ID().Value)
		}
	}
	spk, err := p.LoadSignedPreKey(ctx, d.keys.SignedPreKey.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !ecc.VerifySignature(d.keys.Identity.PublicKey().PublicKey(), spk.KeyPair().PublicKey().Serialize(), spk.Signature()) {
		t.Fatal("stored signed prekey's signature does not verify")
	}
	all, err := p.LoadSignedPreKeys(ctx)
	if err != nil || len(all) != 1 {
		t.Fatalf("LoadSignedPreKeys = %d, %v", len(all), err)
	}
	lr, err := p.LoadKyberPreKey(ctx, d.keys.LastResort.ID)
	if err != nil || !lr.LastResort || !bytes.Equal(lr.Public, d.keys.LastResort.Public) {
		t.Fatalf("last resort: %v, %v", lr, err)
	}
	if err := p.MarkKyberPreKeyUsed(ctx, lr.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := p.LoadKyberPreKey(ctx, lr.ID); err != nil {
		t.Fatalf("the last-resort key was removed on use: %v", err)
	}
	if err := p.RemovePreKey(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := p.LoadPreKey(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed prekey: %v", err)
	}
	if _, err := p.LoadSignedPreKey(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent signed prekey: %v", err)
	}
	if _, err := d.store.Protocol(ctx, prekey.PNI); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("PNI protocol without a PNI identity: %v", err)
	}
}

func TestNewKeysContinueAfterTheStoredOnesAcrossARestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDevice(t, "alice") // 3 one-time, 1 one-time Kyber, ids from 1
	o, err := d.proto.NextKeyOptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if o.PreKeyStart != 4 || o.SignedPreKeyID != 2 || o.LastResortID != 3 {
		t.Fatalf("next ids %+v, want prekey 4, signed 2, kyber 3", o)
	}
	o.PreKeys, o.KyberPreKeys = 2, 2
	more, err := prekey.NewKeys(d.keys.Identity, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.proto.SaveKeys(ctx, more); err != nil {
		t.Fatal(err)
	}
	d.reopen(t)
	o, err = d.proto.NextKeyOptions(ctx)
	if err != nil || o.PreKeyStart != 6 || o.SignedPreKeyID != 3 || o.LastResortID != 6 {
		t.Fatalf("after a second batch and a restart: %+v, %v", o, err)
	}
	for id := uint32(1); id <= 5; id++ {
		if _, err := d.proto.LoadKyberPreKey(ctx, id); err != nil {
			t.Errorf("kyber key %d: %v", id, err)
		}
	}
}
