package device

import (
	"errors"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/relay"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
	"github.com/signal-mpc/cosigner/signal/transport"
)

func TestAChallengedSenderGetsTheTokenAndSendsAgainOnceItAnswers(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	dir := t.TempDir()
	// A budget of 4 sends an account (the link's provisioning message takes
	// one), refilled at one a second, and a challenge after 2 refusals.
	r := relaytest.StartConfig(t, relay.Config{DataDir: dir, Now: clock.Now, MessageRate: 1, MessageBurst: 4, ChallengeAfter: 2})
	d, err := transport.NewDialer(transport.Config{URL: r.URL()})
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	var challenge *ChallengeError
	sent := 0
	for i := 0; challenge == nil; i++ {
		err := alice.dev.Send(ctx, bob.dev.Address(), []byte("hello"))
		switch {
		case i > 10:
			t.Fatalf("send %d: %v; never challenged", i, err)
		case err == nil:
			sent++
		case errors.Is(err, ErrRateLimited):
			var rl *RateLimitError
			if !errors.As(err, &rl) || rl.RetryAfter() < time.Second || !errors.Is(err, ErrSend) {
				t.Fatalf("send %d: %v: want a RateLimitError with the server's Retry-After", i, err)
			}
		case errors.As(err, &challenge):
			if !errors.Is(err, ErrSend) || !errors.Is(err, ErrChallengeRequired) {
				t.Errorf("challenge error %v does not match ErrSend and ErrChallengeRequired", err)
			}
		default:
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if len(challenge.Options) != 1 || challenge.Options[0] != "captcha" || challenge.ChallengeToken() != challenge.Token {
		t.Errorf("challenge %+v: want the token and the captcha option", challenge)
	}
	clock.Advance(time.Minute)
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("still?")); !errors.Is(err, ErrChallengeRequired) {
		t.Fatalf("send before answering: %v, want ErrChallengeRequired", err)
	}
	if err := alice.dev.AnswerChallenge(ctx, challenge.Token, "AAAA-AAAA-AAAA-AAAA"); !errors.Is(err, ErrChallengeFailed) {
		t.Fatalf("wrong answer: %v, want ErrChallengeFailed", err)
	}
	if err := alice.dev.AnswerChallenge(ctx, challenge.Token, ""); !errors.Is(err, ErrChallengeFailed) {
		t.Fatalf("empty answer: %v, want ErrChallengeFailed", err)
	}
	code, err := relay.ChallengeCode(dir, challenge.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.dev.AnswerChallenge(ctx, challenge.Token, code); err != nil {
		t.Fatalf("the operator's code: %v", err)
	}
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("answered")); err != nil {
		t.Fatalf("send after answering: %v", err)
	}
	if sent == 0 {
		t.Error("no send went through before the refusals")
	}
	if got := bob.in.wait(t, sent+1); got[sent] != "answered" {
		t.Errorf("bob's messages %q, want %d hellos, then %q", got, sent, "answered")
	}
}

func TestA428BodyIsReadWithCare(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		token      string // "" when the error carries no usable token
	}{
		{"Signal's shape", `{"token":"t0k3n","options":["captcha","pushChallenge"]}`, "t0k3n"},
		{"no body", ``, ""},
		{"no token", `{"options":["captcha"]}`, ""},
		{"a token with a control character", "{\"token\":\"a\\u001b[2Jb\",\"options\":[]}", ""},
		{"a token with a space", `{"token":"a b","options":[]}`, ""},
	} {
		err := parseChallenge([]byte(tc.body))
		if !errors.Is(err, ErrChallengeRequired) {
			t.Errorf("%s: %v, want ErrChallengeRequired", tc.name, err)
		}
		var ce *ChallengeError
		switch {
		case tc.token == "" && errors.As(err, &ce):
			t.Errorf("%s: carries token %q, want none", tc.name, ce.Token)
		case tc.token != "" && (!errors.As(err, &ce) || ce.Token != tc.token):
			t.Errorf("%s: %v, want token %q", tc.name, err, tc.token)
		}
	}
}

func TestRetryAfterIsReadInSecondsAndBounded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"7", 7 * time.Second},
		{" 30 ", 30 * time.Second},
		{"", time.Second},
		{"0", time.Second},
		{"-5", time.Second},
		{"soon", time.Second},
		{"Wed, 21 Oct 2026 07:28:00 GMT", time.Second},
		{"99999999999999999999", time.Second}, // does not parse as an int
		{"9999999999", maxRetryAfter},
	} {
		if got := retryAfter(tc.header); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.header, got, tc.want)
		}
	}
}
