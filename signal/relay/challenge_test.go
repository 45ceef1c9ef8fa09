package relay

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// challengeRelay is a relay whose accounts may send 2 messages (then one a
// second) and are challenged after 3 refusals.
func challengeRelay(t *testing.T, after int) (tr *testRelay, clock *fakeClock, dir string) {
	t.Helper()
	clock = newFakeClock()
	dir = t.TempDir()
	tr = startRelay(t, Config{Now: clock.now, DataDir: dir, MessageRate: 1, MessageBurst: 2, ChallengeAfter: after})
	return tr, clock, dir
}

func sendOnce(t *testing.T, tr *testRelay, from, to *testDevice) (int, []byte) {
	t.Helper()
	return tr.do(t, "PUT", "/v1/messages/"+to.aci, from.auth(), sendBodyOf(message(1, to.regID, []byte("x"))))
}

type challengeBody struct {
	Token   string   `json:"token"`
	Options []string `json:"options"`
}

func TestASenderThatIgnoresRetryAfterMustAnswerTheOperatorsChallenge(t *testing.T) {
	t.Parallel()
	tr, clock, dir := challengeRelay(t, 3)
	alice, bob := tr.register(t, ""), tr.register(t, "")
	for i := range 2 {
		if s, body := sendOnce(t, tr, alice, bob); s != http.StatusOK {
			t.Fatalf("send %d within the burst: %d %s", i, s, body)
		}
	}
	for i := range 3 {
		if s, _ := sendOnce(t, tr, alice, bob); s != http.StatusTooManyRequests {
			t.Fatalf("refusal %d: %d, want 429", i, s)
		}
	}
	s, out := sendOnce(t, tr, alice, bob)
	if s != http.StatusPreconditionRequired {
		t.Fatalf("send after 3 refusals: %d %s, want 428", s, out)
	}
	ch := decode[challengeBody](t, out)
	if len(ch.Token) != challengeChars || len(ch.Options) != 1 || ch.Options[0] != "captcha" {
		t.Fatalf("428 body %s: want a %d-character token and the captcha option", out, challengeChars)
	}
	// The challenge holds whatever the budget: the account must answer it.
	clock.advance(time.Hour)
	if s, again := sendOnce(t, tr, alice, bob); s != http.StatusPreconditionRequired || decode[challengeBody](t, again).Token != ch.Token {
		t.Fatalf("send an hour later: %d %s, want 428 with the same token", s, again)
	}
	if s, _ := tr.do(t, "PUT", "/v1/provisioning/somewhere", alice.auth(), map[string]string{"body": "AA=="}); s != http.StatusPreconditionRequired {
		t.Errorf("provisioning message while challenged: %d, want 428", s)
	}
	// Other accounts are not concerned.
	if s, _ := sendOnce(t, tr, bob, alice); s != http.StatusOK {
		t.Errorf("another account's send: %d, want 200", s)
	}

	answer := func(body any) (int, []byte) { return tr.do(t, "PUT", "/v1/challenge", alice.auth(), body) }
	for _, bad := range []struct {
		name string
		body any
		want int
	}{
		{"wrong code", map[string]string{"type": "captcha", "token": ch.Token, "captcha": "AAAA-AAAA-AAAA-AAAA"}, http.StatusPreconditionRequired},
		{"push challenge", map[string]string{"type": "rateLimitPushChallenge", "challenge": "x"}, http.StatusBadRequest},
		{"unknown type", map[string]string{"type": "recaptcha", "token": ch.Token, "captcha": "x"}, http.StatusBadRequest},
		{"no captcha", map[string]string{"type": "captcha", "token": ch.Token}, http.StatusBadRequest},
		{"not JSON", []byte("{"), http.StatusBadRequest},
	} {
		if s, out := answer(bad.body); s != bad.want {
			t.Errorf("%s: %d %s, want %d", bad.name, s, out, bad.want)
		}
	}
	if s, _ := tr.do(t, "PUT", "/v1/challenge", "", map[string]string{"type": "captcha", "token": ch.Token, "captcha": "x"}); s != http.StatusUnauthorized {
		t.Errorf("answer without credentials: %d, want 401", s)
	}
	if s, _ := sendOnce(t, tr, alice, bob); s != http.StatusPreconditionRequired {
		t.Fatalf("send after wrong answers: %d, want 428", s)
	}

	code, err := ChallengeCode(dir, ch.Token)
	if err != nil {
		t.Fatal(err)
	}
	// People read codes out: dashes, spaces and case do not matter, in the
	// code or in the token.
	typed := strings.ToLower(strings.ReplaceAll(code, "-", " "))
	if s, out := answer(map[string]string{"type": "captcha", "token": strings.ToLower(ch.Token), "captcha": typed}); s != http.StatusOK {
		t.Fatalf("right code %q: %d %s, want 200", typed, s, out)
	}
	// With a full budget again: the burst, at once.
	for i := range 2 {
		if s, out := sendOnce(t, tr, alice, bob); s != http.StatusOK {
			t.Fatalf("send %d after the answer: %d %s, want 200", i, s, out)
		}
	}
	// Answering again (another device of the account, say) is no error.
	if s, _ := answer(map[string]string{"type": "captcha", "token": ch.Token, "captcha": code}); s != http.StatusOK {
		t.Errorf("second answer: %d, want 200", s)
	}
}

func TestAnAnswerToAnotherAccountsChallengeIsRefused(t *testing.T) {
	t.Parallel()
	tr, _, dir := challengeRelay(t, 1)
	alice, bob, carol := tr.register(t, ""), tr.register(t, ""), tr.register(t, "")
	challenge := func(d *testDevice) string {
		for range 10 {
			if s, out := sendOnce(t, tr, d, carol); s == http.StatusPreconditionRequired {
				return decode[challengeBody](t, out).Token
			}
		}
		t.Fatal("never challenged")
		return ""
	}
	aliceTok, bobTok := challenge(alice), challenge(bob)
	if aliceTok == bobTok {
		t.Fatal("two accounts got the same token")
	}
	bobCode, err := ChallengeCode(dir, bobTok)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := tr.do(t, "PUT", "/v1/challenge", alice.auth(), map[string]string{"type": "captcha", "token": bobTok, "captcha": bobCode}); s != http.StatusPreconditionRequired {
		t.Errorf("alice answering bob's challenge: %d, want 428", s)
	}
	if s, _ := sendOnce(t, tr, alice, carol); s != http.StatusPreconditionRequired {
		t.Errorf("alice's send after answering another challenge: %d, want 428", s)
	}
}

func TestChallengeAnswersAreRateLimited(t *testing.T) {
	t.Parallel()
	tr, clock, _ := challengeRelay(t, 3)
	alice := tr.register(t, "")
	wrong := map[string]string{"type": "captcha", "token": strings.Repeat("A", challengeChars), "captcha": "AAAA-AAAA-AAAA-AAAA"}
	for i := range answerAttempts {
		if s, _ := tr.do(t, "PUT", "/v1/challenge", alice.auth(), wrong); s != http.StatusPreconditionRequired {
			t.Fatalf("attempt %d: %d, want 428", i, s)
		}
	}
	req, _ := http.NewRequest("PUT", tr.base+"/v1/challenge", strings.NewReader(`{"type":"captcha","token":"x","captcha":"y"}`))
	req.Header.Set("Authorization", alice.auth())
	resp, err := tr.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("attempt over the limit: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	clock.advance(time.Minute)
	if s, _ := tr.do(t, "PUT", "/v1/challenge", alice.auth(), wrong); s != http.StatusPreconditionRequired {
		t.Errorf("attempt a minute later: %d, want 428", s)
	}
}

func TestChallengesCanBeTurnedOff(t *testing.T) {
	t.Parallel()
	tr, _, _ := challengeRelay(t, -1)
	alice, bob := tr.register(t, ""), tr.register(t, "")
	for i := range 50 {
		s, _ := sendOnce(t, tr, alice, bob)
		if i >= 2 && s != http.StatusTooManyRequests {
			t.Fatalf("send %d: %d, want 429 (never 428 with challenges off)", i, s)
		}
	}
}

func TestChallengeCodesComeFromTheRelaysOwnKey(t *testing.T) {
	t.Parallel()
	_, _, dir := challengeRelay(t, 3)
	_, _, other := challengeRelay(t, 3)
	fi, err := os.Stat(filepath.Join(dir, challengeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("challenge key mode %o, want 600", mode)
	}
	tok := strings.Repeat("B", challengeChars)
	a, err := ChallengeCode(dir, tok)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := ChallengeCode(dir, strings.ToLower(tok)); again != a {
		t.Errorf("the same token gave %q and %q", a, again)
	}
	if b, _ := ChallengeCode(other, tok); b == a {
		t.Error("two relays gave the same code for one token")
	}
	if c, _ := ChallengeCode(dir, strings.Repeat("C", challengeChars)); c == a {
		t.Error("two tokens gave the same code")
	}
	if _, err := ChallengeCode(dir, "not a token"); !errors.Is(err, ErrChallengeToken) {
		t.Errorf("bad token: %v, want ErrChallengeToken", err)
	}
	if _, err := ChallengeCode(t.TempDir(), tok); !errors.Is(err, ErrStore) {
		t.Errorf("a folder without a key: %v, want ErrStore", err)
	}
}

func TestAnAnsweredAccountStartsWithAFullBudget(t *testing.T) {
	t.Parallel()
	tr, _, dir := challengeRelay(t, 1) // the clock stands still: nothing refills by itself
	alice, bob := tr.register(t, ""), tr.register(t, "")
	var token string
	for i := 0; token == ""; i++ {
		if i > 10 {
			t.Fatal("never challenged")
		}
		if s, out := sendOnce(t, tr, alice, bob); s == http.StatusPreconditionRequired {
			token = decode[challengeBody](t, out).Token
		}
	}
	code, err := ChallengeCode(dir, token)
	if err != nil {
		t.Fatal(err)
	}
	tr.mustDo(t, http.StatusOK, "PUT", "/v1/challenge", alice.auth(), map[string]string{"type": "captcha", "token": token, "captcha": code})
	for i := range 2 { // the burst
		if s, out := sendOnce(t, tr, alice, bob); s != http.StatusOK {
			t.Fatalf("send %d after the answer: %d %s, want 200 (a full budget)", i, s, out)
		}
	}
	if s, _ := sendOnce(t, tr, alice, bob); s != http.StatusTooManyRequests {
		t.Fatalf("the send after the burst: %d, want 429", s)
	}
}
