package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/core/config"
	"github.com/signal-mpc/cosigner/core/event"
)

// rulesFrom loads a configuration file holding body and returns a tune
// that gives a console the approval rules the file's settings give it
// (env.consoleConfig).
func rulesFrom(t *testing.T, body string) func(*consoleConfig) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p, t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cfg: c, dir: c.Device.DataDir}
	return func(cfg *consoleConfig) {
		full := e.consoleConfig(cfg.Dialer, cfg.Store)
		cfg.SigningRules, cfg.KeygenRules = full.SigningRules, full.KeygenRules
	}
}

// With no person at any console, the configured rules run a keygen and
// approve alice's release request; the approval names its rule.
func TestApprovalRulesFromTheConfigOverTheRelay(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	keygenOnly := rulesFrom(t, "[[keygen.rule]]\nverified_parties = true\n")
	bobs := rulesFrom(t, `[[keygen.rule]]
verified_parties = true
[[signing.rule]]
requester = "alice"
message_regex = "^release v"
`)
	var signers []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newSigner(t, r, n)
		s.tune = keygenOnly
		if n == "bob" {
			s.tune = bobs
		}
		s.start(t, r, false)
		signers = append(signers, s)
	}
	introduce(t, signers...)
	alice, bob := signers[0], signers[1]
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	var resolved []event.ApprovalResolved
	sub := bob.con.Bus.Subscribe(0)
	go func() {
		defer sub.Close()
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if ar, ok := e.(event.ApprovalResolved); ok {
				mu.Lock()
				resolved = append(resolved, ar)
				mu.Unlock()
			}
		}
	}()

	kr, err := alice.con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	msg := []byte("release v1.0")
	sr, err := alice.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
	slices.Sort(sr.Signers)
	if fmt.Sprint(sr.Signers) != "[alice bob]" {
		t.Fatalf("signers %v", sr.Signers)
	}
	// Bob's events say which rule answered: the keygen's, then the
	// signing's (ApprovalResolved must be delivered).
	for {
		mu.Lock()
		got := fmt.Sprint(resolved)
		done := len(resolved) >= 2
		mu.Unlock()
		if done {
			if got != fmt.Sprintf("[{%x accepted keygen.rule[0]} {%x approved signing.rule[0]}]", kr.Ceremony, sr.ID) {
				t.Fatalf("bob's resolutions %s", got)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("bob's resolutions %s", got)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// signing.auto_approve logs that it is deprecated; rules in force are
// logged too.
func TestStartLogsAutoApproveDeprecationAndRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		want, not  []string
	}{
		{"auto_approve", "[signing]\nauto_approve = true\n", []string{"auto_approve is deprecated", "auto_approve is on"}, []string{"rules in force"}},
		{"rules", "[[signing.rule]]\nrequester = \"alice\"\n[[keygen.rule]]\nverified_parties = true\n", []string{"rules in force", "signing_rules=1", "keygen_rules=1"}, []string{"auto_approve"}},
		{"neither", "", nil, []string{"auto_approve", "rules in force"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := config.Load(p, t.TempDir(), "")
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			e := &env{cfg: c, log: newLogger(&buf, c.Log)}
			e.warnAutoApprove()
			for _, w := range tc.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log %q lacks %q", buf.String(), w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(buf.String(), n) {
					t.Errorf("log %q has %q", buf.String(), n)
				}
			}
		})
	}
}
