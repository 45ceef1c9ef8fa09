package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"crypto/ed25519"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/keystore"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/liblog"
	"github.com/signal-mpc/cosigner/signal/relay"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// testRelay runs the self-hosted relay in-process on loopback.
type testRelay struct {
	*relaytest.Relay
	srv    *relay.Server
	dialer *transport.Dialer
	proxy  *relaytest.Proxy // startRestartableRelay only
	dir    string
	mu     sync.Mutex // takeDown and restartUp (e2e_servers_test.go)
	down   bool
}

func startTestRelay(t *testing.T, dir string) *testRelay { return startTestRelayTB(t, dir) }

func startTestRelayTB(t testing.TB, dir string) *testRelay {
	t.Helper()
	liblog.Silence()
	r := relaytest.Start(t, dir)
	return &testRelay{Relay: r, srv: r.Server, dialer: dialerTo(t, r.URL()), dir: dir}
}

func dialerTo(t testing.TB, url string) *transport.Dialer {
	t.Helper()
	d, err := transport.NewDialer(transport.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// startRestartableRelay is startTestRelay behind a relaytest.Proxy, for a
// test that stops the relay and starts it again (restart does).
func startRestartableRelay(t *testing.T, dir string) *testRelay {
	t.Helper()
	r := startTestRelayTB(t, dir)
	r.proxy = relaytest.NewProxy(t, r.Server.Addr().String())
	r.dialer = dialerTo(t, r.proxy.URL())
	return r
}

// restart stops the relay and starts it again on the same data, behind
// the same proxy address.
func (r *testRelay) restart(t *testing.T) {
	t.Helper()
	r.proxy.To("")
	r.Stop()
	r.Relay = relaytest.Start(t, r.dir)
	r.srv = r.Server
	r.proxy.To(r.Server.Addr().String())
}

// answerApprovals plays a console's human: decide says whether to approve
// (yes) or decline (!yes) a request, or to leave it unanswered (!answer).
func answerApprovals(ctx context.Context, s *signer, decide func(ar event.ApprovalRequested) (yes, answer bool)) {
	sub := s.con.Bus.Subscribe(0)
	go func() {
		defer sub.Close()
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return
			}
			ar, ok := e.(event.ApprovalRequested)
			if !ok {
				continue
			}
			var id [32]byte
			raw, _ := hex.DecodeString(ar.ID)
			copy(id[:], raw)
			switch yes, answer := decide(ar); {
			case !answer:
			case yes:
				s.con.App.Approve(ctx, id)
			default:
				s.con.App.Decline(ctx, id, "no")
			}
		}
	}()
}

func (r *testRelay) stop() { r.Stop() }

// signer is one co-signer's console, linked to its own account through the
// real provisioning flow (the test plays the phone).
type signer struct {
	name    string
	path    string
	st      *store.Store
	con     *console
	cancel  context.CancelFunc
	done    chan error
	primary *device.Primary
	// cheat, given the console's key, rewrites what it sends (validly
	// signed, wrong in content); hold keeps its partials back until it is
	// closed;
	// observe sees every envelope that really leaves the console.
	cheat   func(key ed25519.PrivateKey) rewriter
	hold    chan struct{}
	observe func(to core.Address, env []byte)
	// socket, if set, is where the console serves the API; socketApprove
	// lets its callers approve.
	socket        string
	socketApprove bool
	// expand, given the console's key, replaces each envelope it sends by
	// any number of envelopes (none: withheld; two: equivocation).
	expand func(key ed25519.PrivateKey) expander
	// tune changes the console's configuration before it opens (short
	// deadlines for a test that waits for one).
	tune func(*consoleConfig)
}

func newSigner(t *testing.T, r *testRelay, name string) *signer {
	t.Helper()
	ctx := t.Context()
	p, err := device.RegisterPrimary(ctx, r.dialer, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &signer{name: name, path: filepath.Join(t.TempDir(), name+".db"), primary: p}
	st, err := store.Open(ctx, s.path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	scanned := make(chan error, 1)
	if _, err := device.Link(ctx, device.LinkConfig{Dialer: r.dialer, Store: st, Name: name, PreKeys: 5,
		OnURL: func(url string, _ time.Time) { go func() { scanned <- p.ApproveLink(ctx, r.dialer, url, nil) }() },
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-scanned; err != nil {
		t.Fatal(err)
	}
	st.Close()
	return s
}

// start opens the signer's console over its store and runs it.
func (s *signer) start(t *testing.T, r *testRelay, auto bool) {
	t.Helper()
	var err error
	if s.st, err = store.Open(t.Context(), s.path, store.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	cfg := consoleConfig{Name: s.name, Dialer: r.dialer, Store: s.st, AutoApprove: auto,
		RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: 5 * time.Second,
		Socket: s.socket, APIApprove: s.socketApprove}
	if s.tune != nil {
		s.tune(&cfg)
	}
	if s.cheat != nil || s.hold != nil || s.observe != nil || s.expand != nil {
		var rw rewriter
		var ex expander
		if s.cheat != nil || s.expand != nil {
			key, err := core.ConsoleKey(t.Context(), coreVault{Store: s.st})
			if err != nil {
				t.Fatal(err)
			}
			if s.cheat != nil {
				rw = s.cheat(key)
			}
			if s.expand != nil {
				ex = s.expand(key)
			}
		}
		cfg.Outbound = func(m core.Messenger) core.Messenger {
			return &outbound{next: m, rewrite: rw, expand: ex, hold: s.hold, observe: s.observe}
		}
	}
	s.con, err = openConsole(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.con.Run(ctx) }()
	t.Cleanup(s.stop)
}

func (s *signer) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.cancel = nil
	s.st.Close()
}

// introduce gives every signer every other signer's card, as humans do
// with cosigner me and cosigner group add.
func introduce(t *testing.T, signers ...*signer) {
	t.Helper()
	for _, a := range signers {
		for _, b := range signers {
			if a != b {
				if err := a.con.App.AddCard(t.Context(), b.con.Card, true); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func threeSigners(t *testing.T, r *testRelay, auto bool) []*signer {
	t.Helper()
	var out []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newSigner(t, r, n)
		s.start(t, r, auto)
		out = append(out, s)
	}
	introduce(t, out...)
	return out
}

func waitKey(t *testing.T, ctx context.Context, s *signer, id [32]byte) {
	t.Helper()
	for {
		keys, err := s.con.App.Keys(ctx)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for _, k := range keys {
			if k.KeyID == id {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never got the key", s.name)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// The headline: three consoles linked through the real provisioning flow
// to three accounts on the relay run a 2-of-3 keygen and sign, every MPC
// message end-to-end encrypted with Signal sessions, the primaries' devices
// getting fillers.
func TestThreeConsolesKeygenAndSignOverTheRelay(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	signers := threeSigners(t, r, false)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Humans: bob and carol accept the keygen; carol declines the signing.
	for _, s := range signers {
		answerApprovals(ctx, s, func(ar event.ApprovalRequested) (yes, answer bool) {
			return ar.Kind != "sign" || s.name != "carol", true
		})
	}
	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	msg := []byte("withdraw 32 ETH to the cold wallet")
	sr, err := signers[1].con.App.RequestSignature(ctx, kr.KeyID, msg, "weekly sweep")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatalf("signature does not verify with the standard Verify: %v", err)
	}
	slices.Sort(sr.Signers)
	if fmt.Sprint(sr.Signers) != "[alice bob]" {
		t.Fatalf("signers %v", sr.Signers)
	}
}

// A console killed in the middle of the keygen resumes from its store and
// the ceremony completes; the relay keeps what it did not acknowledge.
func TestConsoleKilledMidKeygenResumes(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	signers := threeSigners(t, r, true)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	carol := signers[2]
	carol.stop()
	var kr *core.KeygenResult
	var kerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		kr, kerr = signers[0].con.App.StartKeygen(ctx, 2)
	}()
	time.Sleep(200 * time.Millisecond) // carol's messages pile up at the relay
	carol.start(t, r, true)
	wg.Wait()
	if kerr != nil {
		t.Fatal(kerr)
	}
	waitKey(t, ctx, carol, kr.KeyID)
	// Restart carol once more: the key comes back from her store.
	carol.stop()
	carol.start(t, r, true)
	waitKey(t, ctx, carol, kr.KeyID)
	msg := []byte("after two restarts")
	sr, err := carol.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
}

// The relay restarts while a signature is being collected: its queues
// survive, the consoles reconnect, and the request completes.
func TestRelayRestartMidSigning(t *testing.T) {
	t.Parallel()
	r := startRestartableRelay(t, t.TempDir())
	signers := threeSigners(t, r, true)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	signers[1].stop()
	signers[2].stop()
	done := make(chan error, 1)
	var sr *core.SignResult
	go func() {
		var err error
		sr, err = signers[0].con.App.RequestSignature(ctx, kr.KeyID, []byte("through a relay restart"), "")
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	// The relay goes down and comes back with the same data, behind the
	// same address.
	r.restart(t)
	signers[1].start(t, r, true)
	signers[2].start(t, r, true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, []byte("through a relay restart"), sr.Signature); err != nil {
		t.Fatal(err)
	}
}

// The demo's headless mode prints one JSON object whose signature verifies
// with cosigner verify.
func TestHeadlessDemoSignatureVerifies(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := run(t.Context(), []string{"demo", "--headless", "--message", "demo in a test"}, nil, &out, &errb)
	if code != exitOK {
		t.Fatalf("demo exited %d: %s", code, errb.String())
	}
	var res demoResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("demo output %q: %v", out.String(), err)
	}
	if res.Threshold != 2 || res.Parties != 3 || fmt.Sprint(res.Signers) != "[alice bob]" || res.MessageHex != hex.EncodeToString([]byte("demo in a test")) {
		t.Fatalf("demo result %+v", res)
	}
	var vout, verr bytes.Buffer
	if code := run(t.Context(), []string{"verify", "--pubkey", res.GroupPublicKey, "--signature", res.Signature, "--hex", res.MessageHex}, nil, &vout, &verr); code != exitOK {
		t.Fatalf("verify exited %d: %s", code, verr.String())
	}
}

// The commands, as operators of a self-hosted group use them: each console
// registers its own account on the relay, the signers exchange cards, two
// consoles run headless with auto-approval, and the third runs keygen and
// sign; the printed signature verifies. Bob logs JSON (every line on his
// stderr is an object, a progress line per round among them), carol logs
// from warn up only; both are warned that they approve without asking.
func TestCommandsOnASelfHostedRelay(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	type who struct{ name, cfg, data string }
	var people []who
	for _, n := range []string{"alice", "bob", "carol"} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "config.toml")
		body := fmt.Sprintf("[server]\nurl = %q\n[device]\nname = %q\n[keygen]\nresend = \"2s\"\n[signing]\nresend = \"2s\"\nauto_approve = %v\n",
			r.srv.URL(), n, n != "alice")
		switch n {
		case "bob":
			body += "[log]\nformat = \"json\"\n"
		case "carol":
			body += "[log]\nlevel = \"warn\"\n"
		}
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
		if out, errs, code := cli(p, "register"); code != 0 {
			t.Fatalf("%s register: %d %s %s", p.name, code, out, errs)
		}
		out, errs, code := cli(p, "me", "--json")
		if code != 0 {
			t.Fatalf("%s me: %s", p.name, errs)
		}
		cards = append(cards, strings.TrimSpace(out))
	}
	for i, p := range people {
		for j, c := range cards {
			if i == j {
				continue
			}
			if out, errs, code := cli(p, "group", "add", c, "--verified"); code != 0 {
				t.Fatalf("%s group add: %s %s", p.name, out, errs)
			}
		}
		out, _, _ := cli(p, "group", "list")
		if strings.Count(out, "verified") != 3 {
			t.Fatalf("%s roster:\n%s", p.name, out)
		}
	}
	// Bob and carol keep their consoles running (headless, auto-approve).
	var wg sync.WaitGroup
	bgCtx, stopBg := context.WithCancel(ctx)
	bgErr := make([]bytes.Buffer, len(people))
	for i, p := range people[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			run(bgCtx, []string{"--headless", "--config", p.cfg, "--data", p.data}, nil, &out, &bgErr[i+1])
		}()
	}
	stopped := false
	stopConsoles := func() {
		if !stopped {
			stopped = true
			stopBg()
			wg.Wait()
		}
	}
	defer stopConsoles()
	out, errs, code := cli(people[0], "keygen", "-t", "2")
	if code != 0 {
		t.Fatalf("keygen: %d %s", code, errs)
	}
	var kr struct {
		KeyID     string `json:"key_id"`
		GroupKey  string `json:"group_public_key"`
		Threshold int    `json:"threshold"`
		Parties   int    `json:"parties"`
	}
	if err := json.Unmarshal([]byte(out), &kr); err != nil || kr.Threshold != 2 || kr.Parties != 3 {
		t.Fatalf("keygen printed %q (%v)", out, err)
	}
	out, errs, code = cli(people[0], "sign", "--message", "signed from the command line", "--description", "test")
	if code != 0 {
		t.Fatalf("sign: %d %s", code, errs)
	}
	var sr struct {
		GroupKey  string   `json:"group_public_key"`
		Message   string   `json:"message_hex"`
		Signature string   `json:"signature"`
		Signers   []string `json:"signers"`
	}
	if err := json.Unmarshal([]byte(out), &sr); err != nil || sr.GroupKey != kr.GroupKey || len(sr.Signers) != 2 {
		t.Fatalf("sign printed %q (%v)", out, err)
	}
	var vout, verr bytes.Buffer
	if code := run(ctx, []string{"verify", "--pubkey", sr.GroupKey, "--signature", sr.Signature, "--hex", sr.Message}, nil, &vout, &verr); code != 0 {
		t.Fatalf("verify: %s", verr.String())
	}
	// Bob's trail through his running console's socket (once the signing
	// has ended there too), alice's from her store.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, errs, code := cli(people[1], "audit", "--json")
		if code == 0 && strings.Contains(out, `"outcome":"signed"`) || time.Now().After(deadline) {
			checkAuditCommand(t, out, errs, code)
			break
		}
	}
	stopConsoles()
	checkHeadlessLogs(t, bgErr[1].String(), bgErr[2].String())
	out, errs, code = cli(people[0], "audit", "--json")
	checkAuditCommand(t, out, errs, code)
	// Alice exports her share as an EIP-2335 keystore; it decrypts to a
	// scalar whose public key is her public share.
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("correct horse\n"), 0o600)
	ksPath := filepath.Join(dir, "share.json")
	out, errs, code = cli(people[0], "key", "export", "--out", ksPath, "--password-file", pw, "--kdf", "pbkdf2")
	if code != 0 {
		t.Fatalf("key export: %d %s", code, errs)
	}
	raw, err := os.ReadFile(ksPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(ksPath); fi.Mode().Perm() != 0o600 {
		t.Fatalf("keystore mode %v", fi.Mode())
	}
	secret, file, err := keystore.Decrypt(raw, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	sk, err := bls.SecretKeyFromBytes(secret)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(sk.PublicKey().Bytes()) != file.Pubkey || !strings.Contains(out, file.Pubkey) {
		t.Fatalf("keystore public key %s does not match the share", file.Pubkey)
	}
	if _, _, code := cli(people[0], "key", "export", "--out", ksPath, "--password-file", pw); code == 0 {
		t.Fatal("export overwrote an existing keystore")
	}
}

// checkHeadlessLogs checks the stderr of a headless console logging JSON
// (every line an object, an info "progress" record naming its round, the
// auto-approval warning) and of one logging from warn up (no info line).
func checkHeadlessLogs(t *testing.T, jsonLog, warnLog string) {
	t.Helper()
	var progress, warned bool
	for line := range strings.Lines(jsonLog) {
		var rec struct {
			Level, Msg string
			Round      any
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("a line of the JSON log is not a JSON object: %q (%v)", line, err)
			continue
		}
		if rec.Msg == "progress" && rec.Level == "INFO" {
			name, isName := rec.Round.(string)
			progress = progress || isName && name != ""
		}
		warned = warned || rec.Level == "WARN" && strings.Contains(rec.Msg, "auto_approve")
	}
	if !progress || !warned {
		t.Errorf("the JSON log has progress lines with a round name: %v, the auto-approval warning: %v\n%s", progress, warned, jsonLog)
	}
	if strings.Contains(warnLog, "level=INFO") || !strings.Contains(warnLog, "level=WARN") || !strings.Contains(warnLog, "auto_approve") {
		t.Errorf("the log at level warn has info lines, or no auto-approval warning:\n%s", warnLog)
	}
}

// releaseAfterPartialFrom closes hold once s got a partial signature from
// peer: another console's partial, held by hold, then comes after it
// however loaded the machine is.
func releaseAfterPartialFrom(ctx context.Context, s *signer, peer string, hold chan struct{}) {
	arrivals := s.con.Bus.Subscribe(0)
	go func() {
		defer arrivals.Close()
		for {
			e, err := arrivals.Next(ctx)
			if err != nil {
				return
			}
			if m, ok := e.(event.Message); ok && m.Direction == event.In && m.Kind == "partial" && m.Peer == peer {
				close(hold)
				return
			}
		}
	}()
}

// rewriter decides what a console really sends: given an envelope core
// sends to one peer, it returns the bytes to send instead (raw itself to
// leave it alone).
type rewriter func(to core.Address, env *wire.Envelope, raw []byte) []byte

// expander is a rewriter that may send any number of envelopes in the
// place of one (none withholds it).
type expander func(to core.Address, env *wire.Envelope, raw []byte) [][]byte

// outbound is what a test console sends through: the rewriter, a delay
// for partials, then an observer of what really leaves. The rewriter and
// the observer see every envelope of a bundle on its own.
type outbound struct {
	next    core.Messenger
	rewrite rewriter
	expand  expander
	hold    chan struct{} // partials wait until it is closed
	observe func(to core.Address, env []byte)
}

func (o *outbound) Send(ctx context.Context, to core.Address, msg []byte) error {
	envs, err := wire.Unbundle(msg)
	if err != nil {
		return err
	}
	var sent [][]byte
	for _, raw := range envs {
		e, err := wire.Decode(raw)
		if err == nil && o.rewrite != nil {
			raw = o.rewrite(to, e, raw)
		}
		if err == nil && o.hold != nil && e.Kind == wire.KindPartial {
			select {
			case <-o.hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		more := [][]byte{raw}
		if err == nil && o.expand != nil {
			more = o.expand(to, e, raw)
		}
		for _, m := range more {
			if o.observe != nil {
				// Before sending: whatever a peer received was observed first.
				o.observe(to, m)
			}
		}
		sent = append(sent, more...)
	}
	for _, m := range wire.Pack(sent) {
		if err := o.next.Send(ctx, to, m); err != nil {
			return err
		}
	}
	return nil
}

// badPartials re-signs its console's partial signatures over another
// message: validly signed by its console key, wrong in content.
func badPartials(key ed25519.PrivateKey) rewriter {
	return func(_ core.Address, e *wire.Envelope, raw []byte) []byte {
		if e.Kind != wire.KindPartial {
			return raw
		}
		wrong := &tbls.Partial{Index: e.From, Sig: *bls.HashToG2([]byte("not the message"), bls.SigDST)}
		p, err := tbls.EncodePartial(wrong)
		if err != nil {
			return raw
		}
		bad := *e
		bad.Payload = p
		if b, err := wire.Seal(&bad, key); err == nil {
			return b
		}
		return raw
	}
}

// A console that sends a bad partial through Signal is blamed, with its
// signed partial as evidence, and the two honest signers still sign.
func TestCheatingConsoleIsBlamedOverTheRelay(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	var out []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newSigner(t, r, n)
		if n == "bob" {
			s.cheat = badPartials
		}
		if n == "carol" {
			s.hold = make(chan struct{})
		}
		s.start(t, r, true)
		out = append(out, s)
	}
	introduce(t, out...)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	kr, err := out[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range out {
		waitKey(t, ctx, s, kr.KeyID)
	}
	// Alice asks; bob's bad partial comes before carol's good one: carol's
	// waits until alice got bob's.
	sub := out[0].con.Bus.Subscribe(0)
	defer sub.Close()
	releaseAfterPartialFrom(ctx, out[0], "bob", out[2].hold)
	msg := []byte("pay the auditors")
	sr, err := out[0].con.App.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
	slices.Sort(sr.Signers)
	if fmt.Sprint(sr.Signers) != "[alice carol]" {
		t.Fatalf("signers %v: bob's partial must not be used", sr.Signers)
	}
	if fmt.Sprint(sr.Blamed) != "[bob]" {
		t.Fatalf("blamed %v, want bob", sr.Blamed)
	}
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatal("no result event")
		}
		if d, ok := e.(event.SignDone); ok {
			if fmt.Sprint(d.Blamed) != "[bob]" || !d.Verified {
				t.Fatalf("result shown as %+v", d)
			}
			return
		}
	}
}
