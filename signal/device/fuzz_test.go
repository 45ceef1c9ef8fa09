package device

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
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
