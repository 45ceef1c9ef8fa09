package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/tui"
)

// shortDir is a temporary folder with a short path: a Unix socket's path
// is limited to about 100 bytes, which t.TempDir()'s can pass.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func dial(t *testing.T, ctx context.Context, path string) *api.Client {
	t.Helper()
	c, err := api.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Three signers serve their sockets. A script asks for a signature
// through alice's; two clients attached to bob's both see the request;
// one approves and the other sees it decided at once, and cannot approve
// it again; the script gets the verified signature.
func TestAScriptAsksThroughTheSocketAndAnAttachedClientApproves(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	dir := shortDir(t)
	var signers []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newSigner(t, r, n)
		s.socket, s.socketApprove = filepath.Join(dir, n+".sock"), true
		s.start(t, r, false)
		signers = append(signers, s)
	}
	introduce(t, signers...)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	alice, bob, carol := signers[0], signers[1], signers[2]
	// The keygen: proposed through alice's socket, accepted through the
	// others'.
	script := dial(t, ctx, alice.socket)
	var kg api.KeygenResult
	if err := script.Call(ctx, api.MethodKeygen, api.KeygenParams{Threshold: 2}, &kg); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*signer{bob, carol} {
		cl := dial(t, ctx, s.socket)
		id := waitApproval(t, ctx, cl, "keygen")
		if id != kg.ID {
			t.Fatalf("%s's queue has %s, want the keygen %s", s.name, id, kg.ID)
		}
		if err := cl.Call(ctx, api.MethodApprove, api.IDParams{ID: id}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := script.Call(ctx, api.MethodWait, api.IDParams{ID: kg.ID}, &kg); err != nil || kg.KeyID == "" {
		t.Fatalf("keygen: %+v, %v", kg, err)
	}

	client1, client2 := dial(t, ctx, bob.socket), dial(t, ctx, bob.socket)
	if err := client2.Call(ctx, api.MethodSubscribe, nil, nil); err != nil {
		t.Fatal(err)
	}
	type signed struct {
		r   api.SignResult
		err error
	}
	got := make(chan signed, 1)
	go func() {
		var r api.SignResult
		err := script.Call(ctx, api.MethodSign, api.SignParams{Text: "release v2", Description: "from the pipeline", Wait: true}, &r)
		got <- signed{r, err}
	}()
	id := waitApproval(t, ctx, client1, "sign")
	if id2 := waitApproval(t, ctx, client2, "sign"); id2 != id {
		t.Fatalf("the two clients see %s and %s", id, id2)
	}
	if err := client1.Call(ctx, api.MethodApprove, api.IDParams{ID: id}, nil); err != nil {
		t.Fatal(err)
	}
	// Client 2 sees it decided.
	for decided := false; !decided; {
		select {
		case e := <-client2.Events():
			if d, ok := e.(event.ApprovalResolved); ok && d.ID == id {
				decided = d.Decision == "approved"
			}
		case <-ctx.Done():
			t.Fatal("client 2 never saw the request decided")
		}
	}
	var rerr *api.Error
	if err := client2.Call(ctx, api.MethodApprove, api.IDParams{ID: id}, nil); !errors.As(err, &rerr) {
		t.Fatalf("a second approval through another client: %v, want an error", err)
	}
	res := <-got
	if res.err != nil {
		t.Fatal(res.err)
	}
	key, _ := hex.DecodeString(kg.GroupPublicKey)
	sig, _ := hex.DecodeString(res.r.Signature)
	if err := bls.VerifyBytes(key, []byte("release v2"), sig); err != nil {
		t.Fatalf("the script's signature does not verify: %v", err)
	}
	if len(res.r.Signers) != 2 {
		t.Fatalf("signers %v", res.r.Signers)
	}
}

// waitApproval waits until the client's queue holds a request of kind and
// returns its id.
func waitApproval(t *testing.T, ctx context.Context, cl *api.Client, kind string) string {
	t.Helper()
	for {
		var ap api.ApprovalsResult
		if err := cl.Call(ctx, api.MethodApprovals, nil, &ap); err != nil {
			t.Fatal(err)
		}
		for _, a := range ap.Approvals {
			if a.Kind == kind {
				return a.ID
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s approval came", kind)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// The headless commands go through the daemon that runs on their data
// directory: no lock error, the same JSON and exit codes; the daemon stops
// cleanly (exit 0) on its signal.
func TestCommandsGoThroughTheRunningDaemon(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	type who struct{ name, cfg, data string }
	base := shortDir(t)
	var people []who
	for _, n := range []string{"alice", "bob", "carol"} {
		dir := filepath.Join(base, n)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "config.toml")
		body := fmt.Sprintf("[server]\nurl = %q\n[device]\nname = %q\n[keygen]\nresend = \"2s\"\n[signing]\nresend = \"2s\"\nauto_approve = %v\n",
			r.srv.URL(), n, n != "alice")
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		people = append(people, who{n, cfg, filepath.Join(dir, "d")})
	}
	cli := func(c context.Context, p who, args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(c, append(args, "--config", p.cfg, "--data", p.data), nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	var cards []string
	for _, p := range people {
		if out, errs, code := cli(ctx, p, "register"); code != 0 {
			t.Fatalf("%s register: %d %s %s", p.name, code, out, errs)
		}
		out, errs, code := cli(ctx, p, "me", "--json")
		if code != 0 {
			t.Fatalf("%s me: %s", p.name, errs)
		}
		cards = append(cards, strings.TrimSpace(out))
	}
	for i, p := range people {
		for j, c := range cards {
			if i != j {
				if out, errs, code := cli(ctx, p, "group", "add", c, "--verified"); code != 0 {
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
			cli(bgCtx, p, "--headless")
		}()
	}
	daemonCtx, stopDaemon := context.WithCancel(ctx)
	daemonDone := make(chan int, 1)
	var daemonErr string
	go func() {
		_, errs, code := cli(daemonCtx, people[0], "daemon")
		daemonErr = errs
		daemonDone <- code
	}()
	sock := filepath.Join(people[0].data, api.SocketName)
	for {
		if c, err := api.Dial(ctx, sock); err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the daemon never served its socket")
		case <-time.After(20 * time.Millisecond):
		}
	}
	out, errs, code := cli(ctx, people[0], "keygen", "-t", "2")
	if code != 0 || !strings.Contains(errs, "through the running cosigner") {
		t.Fatalf("keygen through the daemon: %d %s", code, errs)
	}
	var kr struct {
		GroupKey string `json:"group_public_key"`
		Parties  int    `json:"parties"`
	}
	if err := json.Unmarshal([]byte(out), &kr); err != nil || kr.Parties != 3 {
		t.Fatalf("keygen printed %q (%v)", out, err)
	}
	out, errs, code = cli(ctx, people[0], "sign", "--message", "through the daemon")
	if code != 0 {
		t.Fatalf("sign through the daemon: %d %s", code, errs)
	}
	var sr struct {
		Signature string   `json:"signature"`
		Signers   []string `json:"signers"`
	}
	if err := json.Unmarshal([]byte(out), &sr); err != nil || len(sr.Signers) != 2 {
		t.Fatalf("sign printed %q (%v)", out, err)
	}
	key, _ := hex.DecodeString(kr.GroupKey)
	sig, _ := hex.DecodeString(sr.Signature)
	if err := bls.VerifyBytes(key, []byte("through the daemon"), sig); err != nil {
		t.Fatal(err)
	}
	// The other commands that read or change the store go through it too.
	if out, errs, code := cli(ctx, people[0], "me", "--json"); code != 0 || strings.TrimSpace(out) != cards[0] {
		t.Fatalf("me through the daemon: %d %q %s, want the card %s", code, out, errs, cards[0])
	}
	if out, errs, code := cli(ctx, people[0], "keys", "--json"); code != 0 || !strings.Contains(out, `"threshold":2`) {
		t.Fatalf("keys through the daemon: %d %s %s", code, out, errs)
	}
	if out, errs, code := cli(ctx, people[0], "group", "list"); code != 0 || strings.Count(out, "verified") != 3 {
		t.Fatalf("group list through the daemon: %d %s %s", code, out, errs)
	}
	if out, errs, code := cli(ctx, people[0], "group", "verify", "bob"); code != 0 || !strings.Contains(out, "bob verified") {
		t.Fatalf("group verify through the daemon: %d %s %s", code, out, errs)
	}
	if _, errs, code := cli(ctx, people[0], "group", "verify", "mallory"); code != 1 || !strings.Contains(errs, "unknown signer") {
		t.Fatalf("group verify of a stranger through the daemon: %d %s", code, errs)
	}
	pwFile := filepath.Join(base, "pw")
	if err := os.WriteFile(pwFile, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ksPath := filepath.Join(base, "alice-share.json")
	out, errs, code = cli(ctx, people[0], "key", "export", "--out", ksPath, "--password-file", pwFile, "--kdf", "pbkdf2")
	var ks struct {
		Keystore string `json:"keystore"`
		Index    uint32 `json:"index"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &ks) != nil || ks.Keystore != ksPath || ks.Index == 0 {
		t.Fatalf("key export through the daemon: %d %q %s", code, out, errs)
	}
	if fi, err := os.Stat(ksPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the keystore written through the daemon: %v %v", fi, err)
	}
	if _, errs, code := cli(ctx, people[0], "key", "export", "--out", ksPath, "--password-file", pwFile); code != 1 || !strings.Contains(errs, "never replaces") {
		t.Fatalf("a second export over the first: %d %s", code, errs)
	}
	copyPath := filepath.Join(base, "alice-backup.db")
	if _, errs, code := cli(ctx, people[0], "backup", copyPath); code != 0 || !strings.Contains(errs, "the key is not in it") {
		t.Fatalf("backup through the daemon: %d %s", code, errs)
	}
	if fi, err := os.Stat(copyPath); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("the backup written through the daemon: %v %v", fi, err)
	}
	if _, errs, code := cli(ctx, people[0], "backup", copyPath); code != 1 || !strings.Contains(errs, "exists") {
		t.Fatalf("a second backup over the first: %d %s", code, errs)
	}
	if _, errs, code := cli(ctx, people[0], "backup", "--force", filepath.Join(people[0].data, "device.db")); code != 1 || !strings.Contains(errs, "own device.db") {
		t.Fatalf("a backup over the store itself: %d %s", code, errs)
	}
	// The key is resolved before the request is said to be sent, with the
	// message the in-process command gives.
	if _, errs, code := cli(ctx, people[0], "sign", "--hex", "0a", "--key", "ffff"); code != 1 || !strings.Contains(errs, `no key "ffff": this console holds`) ||
		strings.Contains(errs, "request sent") {
		t.Fatalf("an unknown key through the daemon: %d %s", code, errs)
	}
	stopDaemon()
	if code := <-daemonDone; code != 0 {
		t.Fatalf("the daemon stopped with %d: %s", code, daemonErr)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the socket is still there after a clean stop: %v", err)
	}
}

// A console attached to bob's co-signer follows it through a restart in
// the middle of a signing: it says it is detached, attaches again by
// itself, and sees the signing complete.
func TestAnAttachedConsoleReattachesAfterItsCosignerRestarts(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	dir := shortDir(t)
	var signers []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newSigner(t, r, n)
		s.socket, s.socketApprove = filepath.Join(dir, n+".sock"), true
		s.start(t, r, n == "bob") // bob approves everything; alice and carol decide
		signers = append(signers, s)
	}
	introduce(t, signers...)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	alice, bob, carol := signers[0], signers[1], signers[2]
	var keyID [32]byte
	{
		cl := dial(t, ctx, carol.socket)
		go func() {
			id := waitApproval(t, ctx, cl, "keygen")
			cl.Call(ctx, api.MethodApprove, api.IDParams{ID: id}, nil)
		}()
		res, err := alice.con.App.StartKeygen(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		keyID = res.KeyID
		waitKey(t, ctx, bob, keyID)
	}
	msgs := make(chan tea.Msg, 4096)
	remote := &api.Remote{}
	attachCtx, detach := context.WithCancel(ctx)
	defer detach()
	go attachLoop(attachCtx, bob.socket, nil, remote, func(m tea.Msg) { msgs <- m })
	until := func(what string, match func(tea.Msg) bool) {
		t.Helper()
		for {
			select {
			case m := <-msgs:
				if match(m) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("the attached console never saw %s", what)
			}
		}
	}
	until("bob's identity", func(m tea.Msg) bool { l, ok := m.(tui.Linked); return ok && l.Account == bob.con.Card.Account })
	bob.stop()
	until("that it is detached", func(m tea.Msg) bool { c, ok := m.(event.Connection); return ok && c.State == "detached" })
	// Carol asks while bob is down: alice never answers, so the signature
	// needs bob's approval once he is back.
	go carol.con.App.RequestSignature(ctx, keyID, []byte("across a restart"), "")
	bob.start(t, r, true)
	until("bob again", func(m tea.Msg) bool { _, ok := m.(tui.Linked); return ok })
	until("the signature", func(m tea.Msg) bool { d, ok := m.(event.SignDone); return ok && d.Signature != "" && d.Verified })
	keys, err := remote.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].KeyID != keyID {
		t.Fatalf("keys through the reattached console: %+v, %v", keys, err)
	}
}
