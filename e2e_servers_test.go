package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
	"github.com/signal-mpc/cosigner/node"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/store"
)

// serverName is the store's name for the device on the i-th relay of a
// test: the first is the default (the file's top-level device, as a
// console made before servers were named has).
func serverName(i int) string {
	if i == 0 {
		return store.DefaultServer
	}
	return fmt.Sprintf("relay%d", i)
}

// newMultiSigner links a console to an account of its own on each relay
// (through the provisioning flow, the test playing each phone), all in
// one store.
func newMultiSigner(t *testing.T, name string, relays ...*testRelay) *signer {
	t.Helper()
	ctx := t.Context()
	s := &signer{name: name, path: filepath.Join(t.TempDir(), name+".db")}
	st, err := store.Open(ctx, s.path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i, r := range relays {
		p, err := device.RegisterPrimary(ctx, r.dialer, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := st.Server(serverName(i))
		if err != nil {
			t.Fatal(err)
		}
		scanned := make(chan error, 1)
		if _, err := device.Link(ctx, device.LinkConfig{Dialer: r.dialer, Store: sub, Name: name, PreKeys: 5,
			OnURL: func(url string, _ time.Time) { go func() { scanned <- p.ApproveLink(ctx, r.dialer, url, nil) }() },
		}); err != nil {
			t.Fatal(err)
		}
		if err := <-scanned; err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// onServers makes the signer's console use every relay (in the order its
// store's devices were made on them).
func (s *signer) onServers(relays ...*testRelay) {
	s.tune = func(c *consoleConfig) {
		c.Servers = nil
		for i, r := range relays {
			c.Servers = append(c.Servers, node.Server{Name: serverName(i), Dialer: r.dialer})
		}
		c.LagAfter = 2 * time.Second
	}
}

// handledOnce follows a console's log and fails the test if one envelope
// (by its digest) is handled twice: a copy through a second server, or a
// copy delivered again after a relay restart, must be dropped.
type handledOnce struct {
	mu      sync.Mutex
	handled map[string]int
	copies  int // copies through a second server, dropped
}

func watchHandled(ctx context.Context, s *signer) *handledOnce {
	h := &handledOnce{handled: map[string]int{}}
	sub := s.con.Bus.Subscribe(1 << 14)
	go func() {
		defer sub.Close()
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return
			}
			m, ok := e.(event.Message)
			if !ok || m.Direction != event.In {
				continue
			}
			h.mu.Lock()
			switch m.Note {
			case "":
				h.handled[m.Digest+" "+m.Ceremony+" "+m.Kind]++
			case "copy through a second server: dropped":
				h.copies++
			}
			h.mu.Unlock()
		}
	}()
	return h
}

func (h *handledOnce) check(t *testing.T, who string) int {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, n := range h.handled {
		if n > 1 {
			t.Errorf("%s handled %s %d times", who, k, n)
		}
	}
	return h.copies
}

// takeDown stops a restartable relay: connections to it fail from now on.
func (r *testRelay) takeDown() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = true
	r.proxy.To("")
	r.Stop()
}

// proxyTarget is "" while the relay is down (takeDown), else "up".
func (r *testRelay) proxyTarget() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return ""
	}
	return "up"
}

// Three consoles on two relays. One relay stops in the middle of the key
// generation, and (after it came back) the other in the middle of a
// signing: both complete through the relay still up. Once the stopped
// relay runs again, it delivers what it kept, and no console handles any
// envelope twice.
func TestTwoRelaysCeremoniesCompleteWhenOneStops(t *testing.T) {
	t.Parallel()
	a := startRestartableRelay(t, t.TempDir())
	b := startRestartableRelay(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	// Bob takes relay b down just before his first keygen message leaves;
	// alice or carol, whichever is first, takes relay a down just before
	// her partial signature leaves.
	var downB, downA sync.Once
	var signers []*signer
	var watch []*handledOnce
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newMultiSigner(t, n, a, b)
		s.onServers(a, b)
		switch n {
		case "bob":
			s.observe = func(_ core.Address, env []byte) {
				if e, err := wire.Decode(env); err == nil && e.Kind != wire.KindProposal && e.Kind != wire.KindSignRequest {
					downB.Do(b.takeDown)
				}
			}
		case "alice", "carol":
			s.observe = func(_ core.Address, env []byte) {
				if e, err := wire.Decode(env); err == nil && e.Kind == wire.KindPartial {
					downA.Do(a.takeDown)
				}
			}
		}
		s.start(t, a, true)
		signers = append(signers, s)
		watch = append(watch, watchHandled(ctx, s))
	}
	introduce(t, signers...)
	for _, s := range signers {
		if n := len(s.con.Card.Addresses); n != 2 {
			t.Fatalf("%s's card lists %d addresses, want one per relay", s.name, n)
		}
	}

	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	if b.proxyTarget() != "" {
		t.Fatal("relay b was not stopped during the keygen")
	}
	b.restartUp(t)

	msg := []byte("through whichever relay is up")
	sr, err := signers[1].con.App.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
	if a.proxyTarget() != "" {
		t.Fatal("relay a was not stopped during the signing")
	}
	// Relay a comes back with what it kept: copies, all dropped.
	a.restartUp(t)
	copies := 0
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		copies = 0
		for i, s := range signers {
			copies += watch[i].check(t, s.name)
		}
		if copies > 0 && signers[1].con.Connection().State == "connected" {
			break
		}
	}
	if copies == 0 {
		t.Fatal("no console saw a copy through the second relay")
	}
	for _, s := range signers {
		if err := s.con.App.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range signers {
		watch[i].check(t, s.name)
	}
}

// A group where one signer uses one relay only and the others two: every
// message between the two goes through both, to and from carol through
// the one she shares with them, and a key made and used by all three
// works; with the second relay down, nothing changes for carol.
func TestOneSignerOnOneRelayTheOthersOnTwo(t *testing.T) {
	t.Parallel()
	a := startRestartableRelay(t, t.TempDir())
	b := startRestartableRelay(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	alice := newMultiSigner(t, "alice", a, b)
	alice.onServers(a, b)
	bob := newMultiSigner(t, "bob", b, a) // his first server is b
	bob.onServers(b, a)
	carol := newMultiSigner(t, "carol", a)
	carol.onServers(a)
	signers := []*signer{alice, bob, carol}
	for _, s := range signers {
		s.start(t, a, true)
	}
	introduce(t, signers...)
	kr, err := carol.con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	b.takeDown()
	for i, s := range signers {
		msg := fmt.Appendf(nil, "request %d", i)
		sr, err := s.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
		if err != nil {
			t.Fatalf("%s's request: %v", s.name, err)
		}
		if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
			t.Fatal(err)
		}
	}
}

// restartUp is restart after takeDown.
func (r *testRelay) restartUp(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.restart(t)
	r.down = false
}

// behind puts a misbehaving server in front of r: consoles given the
// result reach r only through it (all of them, so that their cards name
// the same server).
func behind(t *testing.T, r *testRelay) (*testRelay, *misbehaving) {
	t.Helper()
	m := newMisbehaving(t, r.URL())
	return &testRelay{Relay: r.Relay, srv: r.srv, dialer: dialerTo(t, m.URL()), dir: r.dir}, m
}

// Relay b answers 200 to every message alice sends and drops it. The
// group keeps signing through relay a, and bob's console names relay b
// lagging for alice (an event, and its status), while b still delivers
// from carol.
func TestARelayThatDropsOneSignerIsNamedLaggingForHer(t *testing.T) {
	t.Parallel()
	a := startTestRelay(t, t.TempDir())
	b, bad := behind(t, startTestRelay(t, t.TempDir()))
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var signers []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newMultiSigner(t, n, a, b)
		s.onServers(a, b)
		s.start(t, a, true)
		signers = append(signers, s)
	}
	alice, bob := signers[0], signers[1]
	introduce(t, signers...)
	bad.dropSendsOf(alice.con.Card.Addresses[1].Account)
	sub := bob.con.Bus.Subscribe(1 << 12)
	defer sub.Close()
	kr, err := bob.con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	lagging := make(chan event.ServerLagging, 1)
	go func() {
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if l, ok := e.(event.ServerLagging); ok && l.Lagging {
				lagging <- l
				return
			}
		}
	}()
	for i := 0; ; i++ {
		msg := fmt.Appendf(nil, "alice's request %d", i)
		sr, err := alice.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
			t.Fatal(err)
		}
		select {
		case l := <-lagging:
			if l.Server != serverName(1) || l.Peer != "alice" {
				t.Fatalf("lagging: %+v, want relay b (%s) for alice", l, serverName(1))
			}
			st := bob.con.Servers()
			if len(st) != 2 || fmt.Sprint(st[1].Lagging) != "[alice]" || len(st[0].Lagging) != 0 {
				t.Fatalf("bob's servers: %+v", st)
			}
			return
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("bob never named relay b lagging for alice")
		}
	}
}

// Relay b holds every message it delivers for 5 s. A signing completes
// on what relay a delivers: every message the requester handles came
// through a, and b's copies, coming later, are dropped.
func TestASlowRelayDoesNotSlowASigning(t *testing.T) {
	t.Parallel()
	a := startTestRelay(t, t.TempDir())
	b, slow := behind(t, startTestRelay(t, t.TempDir()))
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var signers []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newMultiSigner(t, n, a, b)
		s.onServers(a, b)
		s.start(t, a, true)
		signers = append(signers, s)
	}
	introduce(t, signers...)
	slow.holdDeliveries(5 * time.Second)
	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	bob := signers[1]
	sub := bob.con.Bus.Subscribe(1 << 12)
	defer sub.Close()
	msg := []byte("fast path")
	sr, err := bob.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
	fast, err := roster.CanonicalServer(a.URL())
	if err != nil {
		t.Fatal(err)
	}
	slowURL, err := roster.CanonicalServer(slow.URL())
	if err != nil {
		t.Fatal(err)
	}
	short := fmt.Sprintf("%x", sr.ID[:4])
	handled, copies := 0, 0
	for copies == 0 {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no copy of the signing came through the slow relay (%d handled)", handled)
		}
		m, ok := e.(event.Message)
		if !ok || m.Direction != event.In || m.Ceremony != short {
			continue
		}
		switch {
		case m.Note == "" && m.Server != fast:
			t.Fatalf("bob handled a %s from %s through %s, not the fast relay", m.Kind, m.Peer, m.Server)
		case m.Note == "":
			handled++
		case m.Server == slowURL && m.Note == "copy through a second server: dropped":
			copies++
		}
	}
	if handled == 0 {
		t.Fatal("bob handled nothing of the signing")
	}
}

// Bob sends alice one echo through relay a and a different one, validly
// signed, through relay b: not a copy but equivocation. Alice's keygen
// aborts blaming bob, with the two envelopes as evidence.
func TestDifferentMessagesThroughTwoRelaysAreEquivocation(t *testing.T) {
	t.Parallel()
	a := startTestRelay(t, t.TempDir())
	b := startTestRelay(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var aliceOnB atomic.Pointer[string]
	var signers []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newMultiSigner(t, n, a, b)
		s.onServers(a, b)
		if n == "bob" {
			key := func() ed25519.PrivateKey {
				st, err := store.Open(ctx, s.path, store.Options{NoSync: true})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				k, err := core.ConsoleKey(ctx, coreVault{Store: st})
				if err != nil {
					t.Fatal(err)
				}
				return k
			}()
			tune := s.tune
			s.tune = func(c *consoleConfig) {
				tune(c)
				c.PerServer = func(server string, to device.Address, msg []byte) []byte {
					if p := aliceOnB.Load(); server != serverName(1) || p == nil || to.Account != *p {
						return msg
					}
					envs, err := wire.Unbundle(msg)
					if err != nil {
						return msg
					}
					for i, raw := range envs {
						if e, err := wire.Decode(raw); err == nil && e.Kind == wire.KindEcho {
							if twin, err := resealed(e, key); err == nil {
								envs[i] = twin
							}
						}
					}
					return wire.Pack(envs)[0]
				}
			}
		}
		s.start(t, a, true)
		signers = append(signers, s)
	}
	alice, bob := signers[0], signers[1]
	introduce(t, signers...)
	acct := alice.con.Card.Addresses[1].Account
	aliceOnB.Store(&acct)
	_, err := alice.con.App.StartKeygen(ctx, 2)
	var ke *core.KeygenError
	if !errors.As(err, &ke) || ke.Reason != dkg.ReasonEquivocation || fmt.Sprint(ke.Blamed) != "[bob]" || ke.Remote {
		t.Fatalf("alice's keygen ended with %v; want her own abort for bob's equivocation", err)
	}
	if len(ke.Abort.Evidence) != 2 || bytes.Equal(ke.Abort.Evidence[0], ke.Abort.Evidence[1]) {
		t.Fatalf("evidence: %d envelopes", len(ke.Abort.Evidence))
	}
	for _, raw := range ke.Abort.Evidence {
		if _, err := wire.Open(raw, func(uint32) (ed25519.PublicKey, bool) { return bob.con.Card.ConsoleKey, true }); err != nil {
			t.Fatalf("evidence does not open under bob's key: %v", err)
		}
	}
}

// The commands on two relays: each console registers on both (register,
// then register --server backup, which refuses a second account there),
// hands out a card with both addresses, and the group makes a key; with
// the first relay down, sign still reaches the second and completes.
func TestCommandsOnTwoRelays(t *testing.T) {
	t.Parallel()
	a := startRestartableRelay(t, t.TempDir())
	b := startTestRelay(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	type who struct{ name, cfg, data string }
	var people []who
	for _, n := range []string{"alice", "bob", "carol"} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "config.toml")
		body := fmt.Sprintf("[[servers]]\nname = \"home\"\nurl = %q\n\n[[servers]]\nname = \"backup\"\nurl = %q\n\n"+
			"[device]\nname = %q\n[keygen]\nresend = \"2s\"\n[signing]\nresend = \"2s\"\nauto_approve = %v\n",
			a.proxy.URL(), b.URL(), n, n != "alice")
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		people = append(people, who{n, cfg, filepath.Join(dir, "data")})
	}
	cli := func(p who, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(ctx, append(args, "--config", p.cfg, "--data", p.data), nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	var cards []string
	for _, p := range people {
		for _, args := range [][]string{{"register"}, {"register", "--server", "backup"}} {
			if out, errs, code := cli(p, args...); code != 0 {
				t.Fatalf("%s %v: %d %s %s", p.name, args, code, out, errs)
			}
		}
		if _, errs, code := cli(p, "register", "--server", "backup"); code == 0 || !strings.Contains(errs, "already has an account on server backup") {
			t.Fatalf("%s registered twice on backup: %d %s", p.name, code, errs)
		}
		out, errs, code := cli(p, "me", "--json")
		if code != 0 {
			t.Fatalf("%s me: %s", p.name, errs)
		}
		c, err := roster.ParseCard([]byte(strings.TrimSpace(out)))
		if err != nil || len(c.Addresses) != 2 || !c.Signed() {
			t.Fatalf("%s's card %s: %v", p.name, out, err)
		}
		cards = append(cards, strings.TrimSpace(out))
		// For humans: one line per server.
		if out, _, _ := cli(p, "me"); strings.Count(out, "server ") != 2 || !strings.Contains(out, c.Addresses[1].Server+"  "+c.Addresses[1].Account) {
			t.Fatalf("%s's me:\n%s", p.name, out)
		}
	}
	for i, p := range people {
		for j, c := range cards {
			if i != j {
				if out, errs, code := cli(p, "group", "add", c, "--verified"); code != 0 {
					t.Fatalf("%s group add: %s %s", p.name, out, errs)
				}
			}
		}
	}
	var wg sync.WaitGroup
	bgCtx, stopBg := context.WithCancel(ctx)
	defer func() { stopBg(); wg.Wait() }()
	for _, p := range people[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errb bytes.Buffer
			run(bgCtx, []string{"--headless", "--config", p.cfg, "--data", p.data}, nil, &out, &errb)
		}()
	}
	if _, errs, code := cli(people[0], "keygen", "-t", "2"); code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	a.takeDown()
	out, errs, code := cli(people[0], "sign", "--message", "with the home relay down", "--connect-timeout", "30s")
	if code != 0 {
		t.Fatalf("sign with the first relay down: %d %s", code, errs)
	}
	var sr struct {
		GroupKey  string `json:"group_public_key"`
		Message   string `json:"message_hex"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal([]byte(out), &sr); err != nil {
		t.Fatalf("sign printed %q (%v)", out, err)
	}
	var vout, verr bytes.Buffer
	if code := run(ctx, []string{"verify", "--pubkey", sr.GroupKey, "--signature", sr.Signature, "--hex", sr.Message}, nil, &vout, &verr); code != 0 {
		t.Fatalf("verify: %s", verr.String())
	}
}
