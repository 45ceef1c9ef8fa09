package device

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
	"github.com/signal-mpc/cosigner/signal/store"
)

// FuzzParseEnvelope feeds arbitrary delivered envelopes to the parser: it
// must never panic, every error must be one of the documented ones, and an
// accepted envelope must be tagged and name a sane sender.
func FuzzParseEnvelope(f *testing.F) {
	typ := signalpb.Envelope_CIPHERTEXT
	dev := uint32(2)
	good, _ := proto.Marshal(&signalpb.Envelope{Type: &typ, SourceDevice: &dev, Content: append(append([]byte{}, MPCTag...), 0x33, 1, 2),
		SourceServiceId: bytes.Repeat([]byte{7}, 16), ServerGuid: bytes.Repeat([]byte{1}, 16)})
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrUntagged) && !errors.Is(err, ErrEnvelope) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if e.from.Device == 0 || e.from.Device > 127 || len(e.from.Account) != 36 || len(e.ct) == 0 || len(e.key()) == 0 {
			t.Fatalf("accepted a bad envelope: %+v", e)
		}
	})
}

func FuzzUnpad(f *testing.F) {
	f.Add(pad([]byte("x")))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := unpad(b)
		if err == nil && len(out) >= len(b) {
			t.Fatal("unpad grew its input")
		}
	})
}

func FuzzParseChallenge(f *testing.F) {
	f.Add([]byte(`{"token":"t0k3n","options":["captcha","pushChallenge"]}`))
	f.Add([]byte(`{"token":"","options":null}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := parseChallenge(b)
		if !errors.Is(err, ErrChallengeRequired) {
			t.Fatalf("a 428 gave %v, not ErrChallengeRequired", err)
		}
		var ce *ChallengeError
		if !errors.As(err, &ce) {
			return
		}
		if ce.Token == "" || len(ce.Token) > maxChallengeToken || len(ce.Options) > maxChallengeOptions {
			t.Fatalf("challenge %+v out of bounds", ce)
		}
		for _, r := range ce.Token + strings.Join(ce.Options, "") {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character %q reached the challenge %+v", r, ce)
			}
		}
	})
}

// FuzzReceive feeds arbitrary session messages, in tagged prekey (type 3)
// and signal (type 1) envelopes, through a linked device's receive path:
// the envelope is acknowledged, nothing reaches the application, and a
// drop is never a panic the store recovered from.
func FuzzReceive(f *testing.F) {
	ctx := context.Background()
	dialer := startRelayTB(f)
	p, err := RegisterPrimary(ctx, dialer, "", nil)
	if err != nil {
		f.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(f.TempDir(), "d.db"), store.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	scanned := make(chan error, 1)
	if _, err := Link(ctx, LinkConfig{Dialer: dialer, Store: st, Name: "fuzz", PreKeys: 1,
		OnURL: func(url string, _ time.Time) { go func() { scanned <- p.ApproveLink(ctx, dialer, url, nil) }() },
	}); err != nil {
		f.Fatal(err)
	}
	if err := <-scanned; err != nil {
		f.Fatal(err)
	}
	rec := &dropRecorder{}
	d, err := New(ctx, Config{Dialer: dialer, Store: st, Deliver: rec.deliver, OnDrop: rec.onDrop})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{nil, {0x33}, {0x33, 0x00, 0x00}, {0xff, 0x08, 0x01}} {
		f.Add(true, seed)
		f.Add(false, seed)
	}
	f.Add(true, preKeyMessage(f, []byte{}, ecKey(), signalMessage(f, ecKey())))
	f.Add(false, signalMessage(f, []byte{}))
	f.Add(true, preKeyMessage(f, ecKey(), ecKey(), signalMessage(f, ecKey())))
	f.Fuzz(func(t *testing.T, prekeyType bool, msg []byte) {
		typ := signalpb.Envelope_CIPHERTEXT
		if prekeyType {
			typ = signalpb.Envelope_PREKEY_BUNDLE
		}
		if status := d.receive(ctx, envelope(t, typ, tagged(msg...))); status != http.StatusOK {
			t.Fatalf("answered %d", status)
		}
		drops, delivered := rec.take()
		if delivered != 0 {
			t.Fatal("a forged message reached the application")
		}
		for _, err := range drops {
			if errors.Is(err, store.ErrPanicked) {
				t.Fatalf("dropped with a recovered panic: %v", err)
			}
		}
	})
}
