package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.mau.fi/libsignal/keys/identity"
	libprekey "go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/util/keyhelper"

	"github.com/signal-mpc/cosigner/signal/liblog"
	"github.com/signal-mpc/cosigner/signal/prekey"
)

func TestMain(m *testing.M) {
	liblog.Silence()
	if os.Getenv(crashChildEnv) != "" {
		crashChild() // never returns
	}
	os.Exit(m.Run())
}

// fastKDF keeps argon2id cheap in tests (the race detector slows it a lot).
var fastKDF = KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

func openStore(t testing.TB, path string, o Options) *Store {
	t.Helper()
	if o.KDF == (KDFParams{}) {
		o.KDF = fastKDF
	}
	s, err := Open(t.Context(), path, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newIdentity(t testing.TB) *identity.KeyPair {
	t.Helper()
	k, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// device is one party of an in-process conversation.
type device struct {
	path  string
	store *Store
	proto *Protocol
	addr  *protocol.SignalAddress
	keys  *prekey.Keys
	opts  Options
}

func newDevice(t testing.TB, name string) *device {
	t.Helper()
	return newDeviceOpts(t, name, Options{})
}

func newDeviceOpts(t testing.TB, name string, o Options) *device {
	t.Helper()
	dir := t.TempDir()
	d := &device{path: filepath.Join(dir, "state.db"), addr: protocol.NewSignalAddress(name, 2), opts: o}
	d.store = openStore(t, d.path, o)
	ik := newIdentity(t)
	keys, err := prekey.NewKeys(ik, prekey.Options{PreKeys: 3, KyberPreKeys: 1})
	if err != nil {
		t.Fatal(err)
	}
	d.keys = keys
	acct := &Account{ACI: name, DeviceID: 2, Password: "pw", ACIIdentity: ik, ACIRegistrationID: keys.RegistrationID}
	ctx := t.Context()
	if err := d.store.SaveAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	if d.proto, err = d.store.Protocol(ctx, prekey.ACI); err != nil {
		t.Fatal(err)
	}
	if err := d.proto.SaveKeys(ctx, keys); err != nil {
		t.Fatal(err)
	}
	return d
}

// reopen closes and reopens the device's store (a restart).
func (d *device) reopen(t testing.TB) {
	t.Helper()
	if err := d.store.Close(); err != nil {
		t.Fatal(err)
	}
	d.store = openStore(t, d.path, d.opts)
	var err error
	if d.proto, err = d.store.Protocol(t.Context(), prekey.ACI); err != nil {
		t.Fatal(err)
	}
}

// bundleJSON renders d's keys as GET /v2/keys/{aci}/2 would.
func (d *device) bundleJSON(t testing.TB, withPreKey bool) []byte {
	t.Helper()
	b64 := base64.StdEncoding.EncodeToString
	k := d.keys
	sig := k.SignedPreKey.Signature()
	dev := map[string]any{
		"deviceId": d.addr.DeviceID(), "registrationId": k.RegistrationID,
		"signedPreKey": map[string]any{"keyId": k.SignedPreKey.ID(), "publicKey": b64(k.SignedPreKey.KeyPair().PublicKey().Serialize()), "signature": b64(sig[:])},
		"pqPreKey":     map[string]any{"keyId": k.LastResort.ID, "publicKey": b64(k.LastResort.Public), "signature": b64(k.LastResort.Signature[:])},
	}
	if withPreKey {
		dev["preKey"] = map[string]any{"keyId": k.PreKeys[0].ID().Value, "publicKey": b64(k.PreKeys[0].KeyPair().PublicKey().Serialize())}
	}
	b, err := json.Marshal(map[string]any{"identityKey": b64(k.Identity.PublicKey().Serialize()), "devices": []any{dev}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (d *device) builder(peer *protocol.SignalAddress) *session.Builder {
	return session.NewBuilder(d.proto, d.proto, d.proto, d.proto, peer, prekey.Serializer())
}

// connect makes from start a session to to, from to's bundle response.
func connect(t testing.TB, from, to *device, withPreKey bool) {
	t.Helper()
	bundles, err := prekey.ParseBundles(to.bundleJSON(t, withPreKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := from.builder(to.addr).ProcessBundle(t.Context(), bundles.Devices[0].Bundle); err != nil {
		t.Fatalf("ProcessBundle: %v", err)
	}
}

// encrypt returns the wire bytes and libsignal type of a message to peer.
func (d *device) encrypt(t testing.TB, peer *protocol.SignalAddress, msg []byte) ([]byte, uint32) {
	t.Helper()
	ct, err := session.NewCipher(d.builder(peer), peer).Encrypt(t.Context(), msg)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return ct.Serialize(), ct.Type()
}

// decrypt opens wire bytes of the given type from peer.
func (d *device) decrypt(ctx context.Context, peer *protocol.SignalAddress, wire []byte, typ uint32) ([]byte, error) {
	ser := prekey.Serializer()
	c := session.NewCipher(d.builder(peer), peer)
	if typ == protocol.PREKEY_TYPE {
		m, err := protocol.NewPreKeySignalMessageFromBytes(wire, ser.PreKeySignalMessage, ser.SignalMessage)
		if err != nil {
			return nil, err
		}
		return c.DecryptMessage(ctx, m)
	}
	m, err := protocol.NewSignalMessageFromBytes(wire, ser.SignalMessage)
	if err != nil {
		return nil, err
	}
	return c.Decrypt(ctx, m)
}

type bundleT = libprekey.Bundle

var parseBundles = prekey.ParseBundles

func protocolSerializer() *serialize.Serializer { return prekey.Serializer() }
