package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
)

// wrongShare is a share payload (bls/dkg's layout: field 1, 32 bytes)
// that no honest dealer's commitments match.
func wrongShare(t *testing.T) []byte {
	var e wire.Encoder
	e.Bytes(1, bls.ScalarBytes(bls.ScalarFromUint64(7)))
	b, err := e.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The headless commands exit with a code that says how a ceremony failed:
// alice runs keygen and sign from the command line, bob and carol are
// consoles whose humans (and whose cheating) the test plays.
func TestCeremonyCommandsExitCodesSayWhatWentWrong(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	config := func(name, url, ttl string) string {
		path := filepath.Join(dir, name)
		body := fmt.Sprintf("[server]\nurl = %q\n[device]\nname = \"alice\"\n[keygen]\nresend = \"2s\"\n[signing]\nresend = \"2s\"\nrequest_ttl = %q\n", url, ttl)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfg := config("alice.toml", r.srv.URL(), "1m")
	// A short expiry, for the request nobody answers.
	cfgShort := config("alice-short.toml", r.srv.URL(), "2s")
	// A server address where nothing listens.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	cfgDead := config("alice-dead.toml", dead, "1m")
	alice := func(cfg string, args ...string) (stdout, stderr string, code int) {
		var out, errb bytes.Buffer
		code = run(ctx, append(args, "--config", cfg, "--data", data), nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	if _, errs, code := alice(cfg, "register"); code != 0 {
		t.Fatalf("register: %d %s", code, errs)
	}
	out, errs, code := alice(cfg, "me", "--json")
	if code != 0 {
		t.Fatalf("me: %s", errs)
	}
	aliceCard, err := roster.ParseCard([]byte(out))
	if err != nil {
		t.Fatal(err)
	}

	// Bob lies in the first key generation (wrong shares to both others)
	// and in every partial signature; carol is honest.
	var lieInKeygen atomic.Bool
	lieInKeygen.Store(true)
	bobPartials := make(chan struct{}, 16)
	bob, carol := newSigner(t, r, "bob"), newSigner(t, r, "carol")
	bob.cheat = func(key ed25519.PrivateKey) rewriter {
		partials := badPartials(key)
		return func(to core.Address, e *wire.Envelope, raw []byte) []byte {
			if e.Kind == wire.KindShare && lieInKeygen.Load() {
				lie := *e
				lie.Payload = wrongShare(t)
				if b, err := wire.Seal(&lie, key); err == nil {
					return b
				}
			}
			return partials(to, e, raw)
		}
	}
	bob.observe = func(_ core.Address, raw []byte) {
		if e, err := wire.Decode(raw); err == nil && e.Kind == wire.KindPartial {
			select {
			case bobPartials <- struct{}{}:
			default:
			}
		}
	}
	for _, s := range []*signer{bob, carol} {
		s.start(t, r, false)
		if err := s.con.App.AddCard(ctx, *aliceCard, true); err != nil {
			t.Fatal(err)
		}
		card, _ := json.Marshal(s.con.Card)
		if _, errs, code := alice(cfg, "group", "add", string(card), "--verified"); code != 0 {
			t.Fatalf("group add %s: %s", s.name, errs)
		}
	}
	introduce(t, bob, carol)
	// The humans: keygen proposals are accepted; a request's message says
	// what each does with it.
	for _, s := range []*signer{bob, carol} {
		answerApprovals(ctx, s, func(ar event.ApprovalRequested) (yes, answer bool) {
			switch {
			case ar.Kind == "keygen":
				return true, true
			case ar.Text == "everyone declines":
				return false, true
			case ar.Text == "nobody answers":
				return false, false
			case ar.Text == "bob cheats, carol declines":
				return s == bob, true
			case s == carol:
				// After bob's bad partial, so that alice sees it.
				select {
				case <-bobPartials:
					time.Sleep(100 * time.Millisecond)
				case <-ctx.Done():
				}
			}
			return true, true
		})
	}

	// Nothing can be done without the server.
	if _, errs, code := alice(cfgDead, "keygen", "-t", "2", "--connect-timeout", "1s"); code != exitNoConnection || !strings.Contains(errs, "no connection to the server") {
		t.Fatalf("keygen without a server: exit %d, %s", code, errs)
	}

	_, errs, code = alice(cfg, "keygen", "-t", "2")
	if code != exitBlamed || !strings.Contains(errs, "blaming bob") || !strings.Contains(errs, "too many complaints") {
		t.Fatalf("keygen with a cheating dealer: exit %d, %s", code, errs)
	}
	lieInKeygen.Store(false)
	if _, errs, code := alice(cfg, "keygen", "-t", "2"); code != exitOK {
		t.Fatalf("keygen: exit %d, %s", code, errs)
	}
	waitKeys := func(s *signer) {
		for {
			if keys, _ := s.con.App.Keys(ctx); len(keys) == 1 {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s has no key", s.name)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitKeys(bob)
	waitKeys(carol)

	tests := []struct {
		message string
		cfg     string
		code    int
		stderr  []string
	}{
		{"everyone declines", cfg, exitNotApproved, []string{"declined: ", "bob", "carol"}},
		{"nobody answers", cfgShort, exitNotApproved, []string{"failed: "}},
		{"bob cheats, carol declines", cfg, exitBlamed, []string{"blamed: bob;", "declined: carol"}},
		{"bob cheats, carol signs", cfg, exitOK, []string{"signed without bob"}},
	}
	for _, tt := range tests {
		out, errs, code := alice(tt.cfg, "sign", "--message", tt.message)
		if code != tt.code || slices.ContainsFunc(tt.stderr, func(s string) bool { return !strings.Contains(errs, s) }) {
			t.Fatalf("sign %q: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tt.message, code, tt.code, tt.stderr, out, errs)
		}
		if code == exitOK {
			var sr struct {
				Signers []string `json:"signers"`
				Blamed  []string `json:"blamed"`
			}
			if err := json.Unmarshal([]byte(out), &sr); err != nil || fmt.Sprint(sr.Signers) != "[alice carol]" || fmt.Sprint(sr.Blamed) != "[bob]" {
				t.Fatalf("sign printed %q (%v)", out, err)
			}
		}
	}
	if _, errs, code := alice(cfgDead, "sign", "--message", "offline", "--connect-timeout", "1s"); code != exitNoConnection {
		t.Fatalf("sign without a server: exit %d, %s", code, errs)
	}
}

// The exit codes are in the commands' help.
func TestCeremonyHelpDocumentsTheExitCodes(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"keygen", "sign"} {
		r := runArgs(t, "help", c)
		for code := exitOK; code <= exitNoConnection; code++ {
			if !strings.Contains(r.stdout, fmt.Sprintf("\n  %d  ", code)) {
				t.Errorf("help %s does not document exit code %d", c, code)
			}
		}
		if !strings.Contains(r.stdout, "--connect-timeout") {
			t.Errorf("help %s does not document --connect-timeout", c)
		}
	}
}
