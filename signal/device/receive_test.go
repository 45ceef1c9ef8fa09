package device

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"sync"
	"testing"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// dropRecorder is a device's OnDrop and DeliverFunc for tests that feed it
// envelopes by hand.
type dropRecorder struct {
	mu        sync.Mutex
	drops     []error
	delivered int
}

func (r *dropRecorder) onDrop(_ Address, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drops = append(r.drops, err)
}

func (r *dropRecorder) deliver(context.Context, Address, []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered++
	return nil
}

// take returns the drops and deliveries since the last call.
func (r *dropRecorder) take() ([]error, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	drops, n := r.drops, r.delivered
	r.drops, r.delivered = nil, 0
	return drops, n
}

// receiverFor is a second, not running Device on a linked console's store
// whose receive handling a test calls directly, as the connection would.
func receiverFor(t *testing.T, dialer *transport.Dialer, c *console) (*Device, *dropRecorder) {
	t.Helper()
	rec := &dropRecorder{}
	d, err := New(t.Context(), Config{Dialer: dialer, Store: c.st, Deliver: rec.deliver, OnDrop: rec.onDrop, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return d, rec
}

func envelope(t testing.TB, typ signalpb.Envelope_Type, content []byte) []byte {
	t.Helper()
	guid := make([]byte, 16)
	if _, err := rand.Read(guid); err != nil {
		t.Fatal(err)
	}
	dev := uint32(3)
	sender := []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x47, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01}
	b, err := proto.Marshal(&signalpb.Envelope{Type: &typ, SourceDevice: &dev, SourceServiceId: sender, ServerGuid: guid, Content: content})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tagged(b ...byte) []byte { return append(append([]byte{}, MPCTag...), b...) }

// Short and malformed session messages are attacker-controlled bytes: the
// receive path answers them with an error, never a panic (libsignal before
// v0.2.2 panicked on a prekey message under 2 bytes; the store turns a
// panic inside an operation into store.ErrPanicked, so that error must not
// be what comes out either), and handles the envelope as it handles every
// envelope it cannot use: acknowledged, counted, reported, not delivered.
func TestShortOrGarbageSessionMessagesAreDroppedNotPanics(t *testing.T) {
	t.Parallel()
	dialer := startRelay(t)
	d, rec := receiverFor(t, dialer, linkConsole(t, dialer))
	ctx := t.Context()
	for _, tc := range []struct {
		name     string
		typ      signalpb.Envelope_Type
		content  []byte
		untagged bool // dropped unread as other Signal traffic
	}{
		{"empty prekey content", signalpb.Envelope_PREKEY_BUNDLE, nil, true},
		{"one byte of prekey content", signalpb.Envelope_PREKEY_BUNDLE, []byte{0x33}, true},
		{"the tag alone", signalpb.Envelope_PREKEY_BUNDLE, tagged(), true},
		{"a one-byte prekey message", signalpb.Envelope_PREKEY_BUNDLE, tagged(0x33), false},
		{"a zero prekey message byte", signalpb.Envelope_PREKEY_BUNDLE, tagged(0x00), false},
		{"a prekey message of a version byte and broken protobuf", signalpb.Envelope_PREKEY_BUNDLE, tagged(0x33, 0xff), false},
		{"a prekey message of an empty protobuf", signalpb.Envelope_PREKEY_BUNDLE, tagged(0x33, 0x00, 0x00), false},
		{"a prekey message of an unknown version", signalpb.Envelope_PREKEY_BUNDLE, tagged(0xff, 0x08, 0x01), false},
		{"a one-byte signal message", signalpb.Envelope_CIPHERTEXT, tagged(0x33), false},
		{"a signal message shorter than its MAC", signalpb.Envelope_CIPHERTEXT, tagged(0x33, 1, 2, 3, 4, 5, 6, 7), false},
		// Keys present but empty or cut short: libsignal reads a key's
		// type byte without a length check.
		{"a prekey message with an empty base key", signalpb.Envelope_PREKEY_BUNDLE, tagged(preKeyMessage(t, []byte{}, ecKey(), signalMessage(t, ecKey()))...), false},
		{"a prekey message with an empty identity key", signalpb.Envelope_PREKEY_BUNDLE, tagged(preKeyMessage(t, ecKey(), []byte{}, signalMessage(t, ecKey()))...), false},
		{"a prekey message with a one-byte base key", signalpb.Envelope_PREKEY_BUNDLE, tagged(preKeyMessage(t, []byte{0x05}, ecKey(), signalMessage(t, ecKey()))...), false},
		{"a prekey message whose message has an empty ratchet key", signalpb.Envelope_PREKEY_BUNDLE, tagged(preKeyMessage(t, ecKey(), ecKey(), signalMessage(t, []byte{}))...), false},
		{"a signal message with an empty ratchet key", signalpb.Envelope_CIPHERTEXT, tagged(signalMessage(t, []byte{})...), false},
		{"a signal message with a ratchet key and trailing bytes", signalpb.Envelope_CIPHERTEXT, tagged(signalMessage(t, append(ecKey(), 1, 2))...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.Stats()
			if status := d.receive(ctx, envelope(t, tc.typ, tc.content)); status != http.StatusOK {
				t.Fatalf("answered %d; an envelope that can never be used must be acknowledged", status)
			}
			after := d.Stats()
			drops, delivered := rec.take()
			if delivered != 0 {
				t.Fatal("a malformed message reached the application")
			}
			if tc.untagged {
				if after.Untagged != before.Untagged+1 || after.Undecrypt != before.Undecrypt || len(drops) != 0 {
					t.Fatalf("stats %+v -> %+v, drops %v: want it counted as untagged traffic only", before, after, drops)
				}
				return
			}
			if after.Undecrypt != before.Undecrypt+1 || after.Untagged != before.Untagged || len(drops) != 1 {
				t.Fatalf("stats %+v -> %+v, drops %v: want one undecryptable message, reported", before, after, drops)
			}
			if errors.Is(drops[0], store.ErrPanicked) || !errors.Is(drops[0], ErrEnvelope) {
				t.Fatalf("dropped with %v, want a malformed-envelope error (not a recovered panic)", drops[0])
			}
		})
	}
}

// ecKey is a well-formed serialized EC public key (type byte and 32 bytes).
func ecKey() []byte { return append([]byte{0x05}, bytes.Repeat([]byte{0x42}, 32)...) }

// signalMessage is a version-3 signal message with the given ratchet key and
// a MAC that does not verify.
func signalMessage(t testing.TB, ratchetKey []byte) []byte {
	t.Helper()
	counter := uint32(0)
	body, err := proto.Marshal(&serialize.SignalMessage{RatchetKey: ratchetKey, Counter: &counter, PreviousCounter: &counter, Ciphertext: []byte("ciphertext")})
	if err != nil {
		t.Fatal(err)
	}
	return append(append([]byte{0x33}, body...), bytes.Repeat([]byte{0x77}, protocol.MacLength)...)
}

// preKeyMessage is a version-3 prekey message with the given keys.
func preKeyMessage(t testing.TB, baseKey, identityKey, message []byte) []byte {
	t.Helper()
	reg, signed, one := uint32(1), uint32(1), uint32(1)
	body, err := proto.Marshal(&serialize.PreKeySignalMessage{RegistrationId: &reg, SignedPreKeyId: &signed, PreKeyId: &one,
		BaseKey: baseKey, IdentityKey: identityKey, Message: message})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{0x33}, body...)
}
