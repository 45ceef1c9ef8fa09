package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core/roster"
	"github.com/signal-mpc/cosigner/signal/liblog"
	"github.com/signal-mpc/cosigner/signal/relay"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
	"github.com/signal-mpc/cosigner/signal/store"
)

// A relay challenges alice's account (it kept sending while refused); her
// headless keygen stops at once with the token, the operator's code opens
// her sends again through 'cosigner challenge', and the keygen then runs.
func TestAChallengedConsoleSaysSoAndWorksAgainOnceAnswered(t *testing.T) {
	t.Parallel()
	liblog.Silence()
	relayDir := t.TempDir()
	// The relay's clock runs ahead on demand: budgets refill when the test
	// says, not when the machine gets round to it.
	var ahead atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	rr := relaytest.StartConfig(t, relay.Config{DataDir: relayDir, Now: now, MessageRate: 1, MessageBurst: 40, ChallengeAfter: 5})
	r := &testRelay{Relay: rr, srv: rr.Server, dialer: dialerTo(t, rr.URL()), dir: relayDir}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "alice.toml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "[server]\nurl = %q\n[device]\nname = \"alice\"\n", rr.URL()), 0o600); err != nil {
		t.Fatal(err)
	}
	alice := func(args ...string) (stdout, stderr string, code int) {
		var out, errb bytes.Buffer
		code = run(ctx, append(args, "--config", cfg, "--data", data), nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	if _, errs, code := alice("register"); code != 0 {
		t.Fatalf("register: %d %s", code, errs)
	}
	out, errs, code := alice("me", "--json")
	if code != 0 {
		t.Fatalf("me: %s", errs)
	}
	aliceCard, err := roster.ParseCard([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	bob, carol := newSigner(t, r, "bob"), newSigner(t, r, "carol")
	for _, s := range []*signer{bob, carol} {
		s.start(t, r, true)
		if err := s.con.App.AddCard(ctx, *aliceCard, true); err != nil {
			t.Fatal(err)
		}
		card, _ := json.Marshal(s.con.Card)
		if _, errs, code := alice("group", "add", string(card), "--verified"); code != 0 {
			t.Fatalf("group add %s: %s", s.name, errs)
		}
	}
	introduce(t, bob, carol)

	token := exhaustSends(t, ctx, rr.URL(), filepath.Join(data, "device.db"), filepath.Join(data, "store.key"))

	_, errs, code = alice("keygen", "-t", "2", "--connect-timeout", "10s")
	if code != exitNoConnection || !strings.Contains(errs, token) || !strings.Contains(errs, "cosigner challenge --token "+token) {
		t.Fatalf("keygen while challenged: exit %d, want %d with the token %s and what to run\n%s", code, exitNoConnection, token, errs)
	}
	if _, errs, code := alice("challenge", "--token", token, "--code", "AAAA-AAAA-AAAA-AAAA"); code != exitFailure || !strings.Contains(errs, "did not accept") {
		t.Fatalf("challenge with a wrong code: exit %d, %s", code, errs)
	}
	if _, errs, code := alice("challenge", "--token", token); code != exitUsage || !strings.Contains(errs, "give --token and --code") {
		t.Fatalf("challenge without a code: exit %d, %s", code, errs)
	}
	// Alice's spent budget refills meanwhile (a minute at one send a
	// second): once answered, what was held back goes out.
	ahead.Add(int64(time.Minute))
	answer, err := relay.ChallengeCode(relayDir, token)
	if err != nil {
		t.Fatal(err)
	}
	if out, errs, code := alice("challenge", "--token", token, "--code", answer); code != exitOK || out != "challenge answered\n" {
		t.Fatalf("challenge with the operator's code: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if out, errs, code := alice("keygen", "-t", "2"); code != exitOK || !strings.Contains(out, `"group_public_key"`) {
		t.Fatalf("keygen after the answer: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
}

// exhaustSends spends the send budget of the account in the store at path
// with sends to an account that does not exist (each costs a token and
// writes nothing), then keeps sending while refused until the relay
// challenges it, and returns the challenge's token.
func exhaustSends(t *testing.T, ctx context.Context, url, path, keyFile string) string {
	t.Helper()
	st, err := store.Open(ctx, path, store.Options{KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	acct, err := st.Account(ctx)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	body := `{"messages":[{"type":1,"destinationDeviceId":1,"destinationRegistrationId":1,"content":"AQ=="}],"timestamp":1}`
	client := &http.Client{Timeout: 10 * time.Second}
	for range 1000 {
		req, err := http.NewRequestWithContext(ctx, "PUT", url+"/v1/messages/00000000-0000-4000-8000-000000000000", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(fmt.Sprintf("%s.%d", acct.ACI, acct.DeviceID), acct.Password)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusTooManyRequests:
		case http.StatusPreconditionRequired:
			var c struct{ Token string }
			if err := json.Unmarshal(b, &c); err != nil || c.Token == "" {
				t.Fatalf("428 without a token: %s", b)
			}
			return c.Token
		default:
			t.Fatalf("send: %d %s", resp.StatusCode, b)
		}
	}
	t.Fatal("never challenged")
	return ""
}
