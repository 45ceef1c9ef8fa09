package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/signalerror"
)

func TestTwoStoresTalkBothWaysAcrossARestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	alice, bob := newDevice(t, "alice"), newDevice(t, "bob")
	if ok, err := alice.proto.ContainsSession(ctx, bob.addr); ok || err != nil {
		t.Fatalf("ContainsSession before any message = %t, %v", ok, err)
	}
	connect(t, alice, bob, true)

	send := func(from, to *device, msg string, wantType uint32) {
		t.Helper()
		wire, typ := from.encrypt(t, to.addr, []byte(msg))
		if typ != wantType {
			t.Fatalf("%s -> %s: type %d, want %d", from.addr, to.addr, typ, wantType)
		}
		got, err := to.decrypt(ctx, from.addr, wire, typ)
		if err != nil {
			t.Fatalf("%s decrypting %q: %v", to.addr, msg, err)
		}
		if string(got) != msg {
			t.Fatalf("got %q, want %q", got, msg)
		}
	}
	send(alice, bob, "hello bob", protocol.PREKEY_TYPE)
	if ok, _ := bob.proto.ContainsPreKey(ctx, bob.keys.PreKeys[0].ID().Value); ok {
		t.Error("the used one-time prekey was not removed")
	}
	send(bob, alice, "hello alice", protocol.WHISPER_TYPE)
	send(alice, bob, "ratchet 1", protocol.WHISPER_TYPE)
	bob.reopen(t)
	send(bob, alice, "after bob's restart", protocol.WHISPER_TYPE)
	send(alice, bob, "to the restarted bob", protocol.WHISPER_TYPE)
	alice.reopen(t)
	for i := range 5 {
		send(alice, bob, fmt.Sprintf("a%d", i), protocol.WHISPER_TYPE)
		send(bob, alice, fmt.Sprintf("b%d", i), protocol.WHISPER_TYPE)
	}
	devs, err := alice.proto.GetSubDeviceSessions(ctx, "bob")
	if err != nil || !slices.Equal(devs, []uint32{2}) {
		t.Fatalf("GetSubDeviceSessions = %v, %v", devs, err)
	}
	pin, err := alice.store.PinnedIdentity(ctx, bob.addr.String())
	if err != nil || !bytes.Equal(pin, bob.keys.Identity.PublicKey().Serialize()) {
		t.Fatalf("bob's pinned identity: %x, %v", pin, err)
	}
}

func TestASessionWithoutAOneTimePreKeyWorks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	alice, bob := newDevice(t, "alice"), newDevice(t, "bob")
	connect(t, alice, bob, false)
	wire, typ := alice.encrypt(t, bob.addr, []byte("no one-time key"))
	if got, err := bob.decrypt(ctx, alice.addr, wire, typ); err != nil || string(got) != "no one-time key" {
		t.Fatalf("decrypt = %q, %v", got, err)
	}
}

func TestAForgedMessageDoesNotDamageTheSession(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	alice, bob := newDevice(t, "alice"), newDevice(t, "bob")
	connect(t, alice, bob, true)
	wire, typ := alice.encrypt(t, bob.addr, []byte("first"))
	if _, err := bob.decrypt(ctx, alice.addr, wire, typ); err != nil {
		t.Fatal(err)
	}
	// A message from a third party claiming to be alice, with a new ratchet
	// key: libsignal advances the record before the MAC check fails.
	mallory := newDevice(t, "mallory")
	connect(t, mallory, bob, false)
	forged, _ := mallory.encrypt(t, bob.addr, []byte("x"))
	ser := protocolSerializer()
	pk, err := protocol.NewPreKeySignalMessageFromBytes(forged, ser.PreKeySignalMessage, ser.SignalMessage)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.decrypt(ctx, alice.addr, pk.WhisperMessage().Serialize(), protocol.WHISPER_TYPE); err == nil {
		t.Fatal("a forged message decrypted")
	}
	wire, typ = alice.encrypt(t, bob.addr, []byte("second"))
	if got, err := bob.decrypt(ctx, alice.addr, wire, typ); err != nil || string(got) != "second" {
		t.Fatalf("after the forgery: %q, %v", got, err)
	}
	// Bob's next ratchet step would use a root key the forgery advanced.
	wire, typ = bob.encrypt(t, alice.addr, []byte("reply"))
	if got, err := alice.decrypt(ctx, bob.addr, wire, typ); err != nil || string(got) != "reply" {
		t.Fatalf("bob's reply after the forgery: %q, %v", got, err)
	}
}

func TestAChangedIdentityKeyIsBlockedUntilTrusted(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	alice, bob := newDevice(t, "alice"), newDevice(t, "bob")
	connect(t, alice, bob, true)
	wire, typ := alice.encrypt(t, bob.addr, []byte("hi"))
	if _, err := bob.decrypt(ctx, alice.addr, wire, typ); err != nil {
		t.Fatal(err)
	}
	// Bob re-installs: same address, new identity key.
	bob2 := newDevice(t, "bob")
	err := alice.builder(bob.addr).ProcessBundle(ctx, mustBundle(t, bob2))
	if !errors.Is(err, ErrIdentityChanged) {
		t.Fatalf("ProcessBundle with a changed identity = %v, want ErrIdentityChanged", err)
	}
	// The old pin stays, across a restart too.
	alice.reopen(t)
	pin, _ := alice.store.PinnedIdentity(ctx, bob.addr.String())
	if !bytes.Equal(pin, bob.keys.Identity.PublicKey().Serialize()) {
		t.Fatal("the pin was replaced silently")
	}
	if err := alice.builder(bob.addr).ProcessBundle(ctx, mustBundle(t, bob2)); !errors.Is(err, ErrIdentityChanged) {
		t.Fatalf("after restart: %v", err)
	}
	// A message from the new bob to alice is refused the same way.
	connect(t, bob2, alice, true)
	w2, t2 := bob2.encrypt(t, alice.addr, []byte("it's me"))
	if _, err := alice.decrypt(ctx, bob.addr, w2, t2); !errors.Is(err, ErrIdentityChanged) && !errors.Is(err, signalerror.ErrUntrustedIdentity) {
		t.Fatalf("decrypt from the changed identity = %v", err)
	}
	// After a human verified it:
	if err := alice.store.TrustIdentity(ctx, bob.addr.String(), bob2.keys.Identity.PublicKey().Serialize()); err != nil {
		t.Fatal(err)
	}
	if got, err := alice.decrypt(ctx, bob.addr, w2, t2); err != nil || string(got) != "it's me" {
		t.Fatalf("after TrustIdentity: %q, %v", got, err)
	}
}

func mustBundle(t *testing.T, d *device) *bundleT {
	t.Helper()
	b, err := parseBundles(d.bundleJSON(t, true))
	if err != nil {
		t.Fatal(err)
	}
	return b.Devices[0].Bundle
}

func TestLoadSessionNeverReturnsNil(t *testing.T) {
	t.Parallel()
	d := newDevice(t, "alice")
	r, err := d.proto.LoadSession(t.Context(), protocol.NewSignalAddress("nobody", 1))
	if err != nil || r == nil || !r.IsFresh() {
		t.Fatalf("LoadSession of an unknown address = %v, %v", r, err)
	}
}

func TestUnknownAddressesLeaveNothingInMemory(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDevice(t, "alice")
	for i := range 100 {
		addr := protocol.NewSignalAddress(fmt.Sprintf("stranger-%d", i), 1)
		if ok, err := d.proto.ContainsSession(ctx, addr); ok || err != nil {
			t.Fatalf("ContainsSession = %t, %v", ok, err)
		}
		if _, err := d.proto.LoadSession(ctx, addr); err != nil {
			t.Fatal(err)
		}
		if ok, err := d.proto.IsTrustedIdentity(ctx, addr, d.keys.Identity.PublicKey()); !ok || err != nil {
			t.Fatalf("IsTrustedIdentity of an unpinned address = %t, %v", ok, err)
		}
	}
	d.store.mu.Lock()
	n, m := len(d.store.sessions), len(d.store.pins)
	d.store.mu.Unlock()
	if n != 0 || m != 0 {
		t.Fatalf("%d sessions and %d pins cached for addresses never stored", n, m)
	}
}
