package api

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
)

// fakeBackend records what changes state; reads answer from fixed data.
type fakeBackend struct {
	mu       sync.Mutex
	changes  []string // every call that changes state, in order
	bus      event.Bus
	keys     []core.KeyInfo
	pending  []core.Approval
	approved map[[32]byte]bool
	by       string           // who the last approval came from
	sigs     []event.SignDone // the signatures history
	audit    func(since time.Time) ([]core.AuditEntry, core.AuditHead, error)
}

func newFake() *fakeBackend {
	return &fakeBackend{keys: []core.KeyInfo{{KeyID: [32]byte{0xab, 0xcd}, GroupKey: []byte{1, 2, 3}, T: 2, N: 3, Self: 1}},
		pending: []core.Approval{{ID: [32]byte{7}, Kind: "sign", Requester: "bob", KeyID: [32]byte{0xab, 0xcd}, Text: "hi", Hex: "6869",
			Expires: time.Unix(1_800_000_000, 0).UTC()}},
		approved: map[[32]byte]bool{}}
}

func (f *fakeBackend) change(s string) {
	f.mu.Lock()
	f.changes = append(f.changes, s)
	f.mu.Unlock()
}

func (f *fakeBackend) Changes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.changes...)
}

func (f *fakeBackend) Roster(context.Context) ([]roster.Member, error) { return nil, nil }
func (f *fakeBackend) AddCard(_ context.Context, c roster.Card, _ bool) error {
	f.change("add " + c.Name)
	return nil
}
func (f *fakeBackend) VerifyCard(_ context.Context, name string) error {
	if name != "bob" {
		return roster.ErrUnknown
	}
	f.change("verify " + name)
	return nil
}
func (f *fakeBackend) Keys(context.Context) ([]core.KeyInfo, error) { return f.keys, nil }
func (f *fakeBackend) BeginKeygen(_ context.Context, t int, approve bool) ([32]byte, error) {
	f.change("keygen" + map[bool]string{true: "", false: " waiting"}[approve])
	return [32]byte{9}, nil
}
func (f *fakeBackend) WaitKeygen(_ context.Context, id [32]byte) (*core.KeygenResult, error) {
	if id != [32]byte{9} {
		return nil, core.ErrUnknown
	}
	return &core.KeygenResult{Ceremony: id, KeyID: [32]byte{0xab}, GroupKey: []byte{1}, T: 2, N: 3}, nil
}
func (f *fakeBackend) BeginSignature(_ context.Context, keyID [32]byte, msg []byte, desc string, approve bool) ([32]byte, error) {
	f.change("sign " + string(msg) + map[bool]string{true: " approved", false: " waiting"}[approve])
	return [32]byte{8}, nil
}
func (f *fakeBackend) WaitSignature(_ context.Context, id [32]byte) (*core.SignResult, error) {
	if id != [32]byte{8} {
		return nil, core.ErrUnknown
	}
	return &core.SignResult{ID: id, GroupKey: []byte{1}, Message: []byte("m"), Signature: []byte{2}, Signers: []string{"alice", "bob"}}, nil
}
func (f *fakeBackend) Approvals(context.Context) ([]core.Approval, error) { return f.pending, nil }
func (f *fakeBackend) ApproveAs(_ context.Context, id [32]byte, by string) error {
	f.mu.Lock()
	f.by = by
	f.mu.Unlock()
	return f.approve(id)
}

func (f *fakeBackend) approve(id [32]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id != [32]byte{7} {
		return core.ErrUnknown
	}
	if f.approved[id] {
		return errors.New("ceremony: already decided: approved")
	}
	f.approved[id] = true
	f.changes = append(f.changes, "approve")
	return nil
}
func (f *fakeBackend) DeclineAs(_ context.Context, id [32]byte, reason, by string) error {
	f.mu.Lock()
	f.by = by
	f.mu.Unlock()
	f.change("decline " + reason)
	return nil
}
func (f *fakeBackend) Signatures(context.Context, int) ([]event.SignDone, error) { return f.sigs, nil }
func (f *fakeBackend) Audit(_ context.Context, since time.Time) ([]core.AuditEntry, core.AuditHead, error) {
	if f.audit == nil {
		return nil, core.AuditHead{}, nil
	}
	return f.audit(since)
}
func (f *fakeBackend) AnswerChallenge(context.Context, string, string) error {
	f.change("challenge")
	return nil
}
func (f *fakeBackend) Backup(_ context.Context, path string, replace bool) error {
	f.change("backup " + path)
	return nil
}
func (f *fakeBackend) ExportKey(_ context.Context, keyID [32]byte, path, password, kdf string) (*KeyExportResult, error) {
	f.change("export " + path)
	return &KeyExportResult{Keystore: path}, nil
}
func (f *fakeBackend) AddDevice(_ context.Context, url string) error {
	f.change("add device")
	return nil
}
func (f *fakeBackend) Identity() roster.Card {
	return roster.Card{Name: "alice", Account: "acct", Device: 2}
}
func (f *fakeBackend) Connection() event.Connection { return event.Connection{State: "connected"} }
func (f *fakeBackend) Subscribe(backlog int) *event.Subscription {
	return f.bus.Subscribe(backlog)
}

// serve starts a server over f on a fresh socket and returns its path.
func serve(t *testing.T, f *fakeBackend, approve bool) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "api") // short: socket paths are limited to about 100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, SocketName)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		NewServer(f, approve, nil).Serve(ctx, ln)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return path
}

// exchange sends raw lines and reads one answer line per line sent.
func exchange(t *testing.T, path string, lines ...string) []map[string]any {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var out []map[string]any
	r := newLineReader(c)
	for _, l := range lines {
		if _, err := c.Write([]byte(l + "\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r()
		if err != nil {
			t.Fatalf("no answer to %.60q: %v", l, err)
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("answer is not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func newLineReader(c net.Conn) func() ([]byte, error) {
	var buf []byte
	tmp := make([]byte, 64<<10)
	return func() ([]byte, error) {
		for {
			if i := bytes.IndexByte(buf, '\n'); i >= 0 {
				line := buf[:i]
				buf = buf[i+1:]
				return line, nil
			}
			n, err := c.Read(tmp)
			if err != nil {
				return nil, err
			}
			buf = append(buf, tmp[:n]...)
		}
	}
}

func errCode(m map[string]any) int {
	e, ok := m["error"].(map[string]any)
	if !ok {
		return 0
	}
	return int(e["code"].(float64))
}

// Bad requests get a JSON-RPC error that says what is wrong, and change
// nothing; one that cannot be parsed is answered with a null id; the
// connection goes on working.
func TestBadRequestsGetErrorsAndChangeNothing(t *testing.T) {
	t.Parallel()
	f := newFake()
	path := serve(t, f, true)
	huge := `{"jsonrpc":"2.0","id":1,"method":"sign","params":{"text":"` + strings.Repeat("a", MaxLine) + `"}}`
	tests := []struct {
		name, line string
		code       int
		nullID     bool
	}{
		{"not JSON", `{"jsonrpc":"2.0",`, CodeParse, true},
		{"two objects", `{"jsonrpc":"2.0","id":1,"method":"status"} {}`, CodeParse, true},
		{"a huge line", huge, CodeParse, true},
		{"not an object", `[1,2]`, CodeParse, true},
		{"wrong version", `{"jsonrpc":"1.0","id":2,"method":"status"}`, CodeInvalidRequest, false},
		{"no method", `{"jsonrpc":"2.0","id":3}`, CodeInvalidRequest, false},
		{"bad id", `{"jsonrpc":"2.0","id":{"a":1},"method":"status"}`, CodeInvalidRequest, true},
		{"unknown method", `{"jsonrpc":"2.0","id":4,"method":"launch"}`, CodeNoMethod, false},
		{"positional params", `{"jsonrpc":"2.0","id":5,"method":"keygen","params":[2]}`, CodeInvalidParams, false},
		{"wrong type", `{"jsonrpc":"2.0","id":6,"method":"keygen","params":{"threshold":"two"}}`, CodeInvalidParams, false},
		{"unknown field", `{"jsonrpc":"2.0","id":7,"method":"keygen","params":{"treshold":2}}`, CodeInvalidParams, false},
		{"no threshold", `{"jsonrpc":"2.0","id":8,"method":"keygen","params":{}}`, CodeInvalidParams, false},
		{"short id", `{"jsonrpc":"2.0","id":9,"method":"approve","params":{"id":"0707"}}`, CodeInvalidParams, false},
		{"unknown id", `{"jsonrpc":"2.0","id":10,"method":"approve","params":{"id":"` + strings.Repeat("0", 64) + `"}}`, CodeUnknown, false},
		{"bad hex", `{"jsonrpc":"2.0","id":11,"method":"sign","params":{"hex":"zz"}}`, CodeInvalidParams, false},
		{"hex and text", `{"jsonrpc":"2.0","id":12,"method":"sign","params":{"hex":"00","text":"a"}}`, CodeInvalidParams, false},
		{"no message", `{"jsonrpc":"2.0","id":13,"method":"sign","params":{}}`, CodeInvalidParams, false},
		{"unknown key", `{"jsonrpc":"2.0","id":14,"method":"sign","params":{"text":"a","key":"ff"}}`, CodeNoKey, false},
		{"bad card", `{"jsonrpc":"2.0","id":15,"method":"roster.add","params":{"card":{"name":"x"}}}`, CodeInvalidParams, false},
		{"unknown signer", `{"jsonrpc":"2.0","id":16,"method":"roster.verify","params":{"name":"mallory"}}`, CodeRefused, false},
		{"negative limit", `{"jsonrpc":"2.0","id":17,"method":"signatures","params":{"limit":-1}}`, CodeInvalidParams, false},
		{"empty challenge", `{"jsonrpc":"2.0","id":18,"method":"challenge","params":{"token":"t"}}`, CodeInvalidParams, false},
		{"relative backup", `{"jsonrpc":"2.0","id":19,"method":"backup","params":{"path":"copy.db"}}`, CodeInvalidParams, false},
		{"export without password", `{"jsonrpc":"2.0","id":20,"method":"key.export","params":{"path":"/tmp/x.json"}}`, CodeInvalidParams, false},
		{"export with a bad kdf", `{"jsonrpc":"2.0","id":21,"method":"key.export","params":{"path":"/tmp/x.json","password":"p","kdf":"md5"}}`, CodeInvalidParams, false},
		{"relative export", `{"jsonrpc":"2.0","id":22,"method":"key.export","params":{"path":"x.json","password":"p"}}`, CodeInvalidParams, false},
		{"device without url", `{"jsonrpc":"2.0","id":23,"method":"device.add","params":{}}`, CodeInvalidParams, false},
	}
	var lines []string
	for _, tt := range tests {
		lines = append(lines, tt.line)
	}
	lines = append(lines, `{"jsonrpc":"2.0","id":"after","method":"status"}`)
	answers := exchange(t, path, lines...)
	for i, tt := range tests {
		a := answers[i]
		if got := errCode(a); got != tt.code {
			t.Errorf("%s: error code %d, want %d (%v)", tt.name, got, tt.code, a)
		}
		if tt.nullID && a["id"] != nil {
			t.Errorf("%s: id %v, want null", tt.name, a["id"])
		}
		if e, _ := a["error"].(map[string]any); e == nil || e["message"] == "" {
			t.Errorf("%s: no message says what is wrong", tt.name)
		}
	}
	if last := answers[len(answers)-1]; last["id"] != "after" || last["result"] == nil {
		t.Fatalf("the connection does not work after bad requests: %v", last)
	}
	if ch := f.Changes(); len(ch) != 0 {
		t.Fatalf("bad requests changed state: %v", ch)
	}
}

// A socket that may not approve asks and reads: its signing requests and
// key generations wait in this signer's queue, and approve and decline
// are refused.
func TestASocketThatMayNotApproveOnlyAsksAndReads(t *testing.T) {
	t.Parallel()
	f := newFake()
	path := serve(t, f, false)
	id := hex.EncodeToString((&[32]byte{7})[:])
	answers := exchange(t, path,
		`{"jsonrpc":"2.0","id":1,"method":"approve","params":{"id":"`+id+`"}}`,
		`{"jsonrpc":"2.0","id":2,"method":"decline","params":{"id":"`+id+`","reason":"no"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"keygen","params":{"threshold":2}}`,
		`{"jsonrpc":"2.0","id":4,"method":"sign","params":{"text":"release"}}`,
		`{"jsonrpc":"2.0","id":5,"method":"status"}`,
	)
	for _, a := range answers[:2] {
		if errCode(a) != CodeNotAllowed {
			t.Fatalf("answer %v, want CodeNotAllowed", a)
		}
	}
	if res, _ := answers[4]["result"].(map[string]any); res["can_approve"] != false {
		t.Fatalf("status %v", answers[4])
	}
	if ch := f.Changes(); strings.Join(ch, ",") != "keygen waiting,sign release waiting" {
		t.Fatalf("changes %v, want a keygen and a signing request that wait", ch)
	}
}

// The client: approvals, approve (at most once), sign and wait, events.
func TestTheClientApprovesSignsAndFollowsEvents(t *testing.T) {
	t.Parallel()
	f := newFake()
	path := serve(t, f, true)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var st StatusResult
	if err := c.Call(ctx, MethodStatus, nil, &st); err != nil || st.APIVersion != Version || st.Name != "alice" || st.Keys != 1 || !st.CanApprove {
		t.Fatalf("status %+v, %v", st, err)
	}
	var ap ApprovalsResult
	if err := c.Call(ctx, MethodApprovals, nil, &ap); err != nil || len(ap.Approvals) != 1 {
		t.Fatalf("approvals %+v, %v", ap, err)
	}
	a := ap.Approvals[0]
	if a.ID != hex.EncodeToString((&[32]byte{7})[:]) || a.Kind != "sign" || a.Requester != "bob" || a.Text != "hi" || !strings.HasPrefix(a.KeyID, "abcd") {
		t.Fatalf("approval %+v", a)
	}
	if err := c.Call(ctx, MethodApprove, IDParams{ID: a.ID}, nil); err != nil {
		t.Fatal(err)
	}
	var rerr *Error
	if err := c.Call(ctx, MethodApprove, IDParams{ID: a.ID}, nil); !errors.As(err, &rerr) {
		t.Fatalf("second approval: %v", err)
	}
	var sr SignResult
	if err := c.Call(ctx, MethodSign, SignParams{Text: "m", Key: "ABCD", Wait: true}, &sr); err != nil || sr.Signature != "02" || len(sr.Signers) != 2 {
		t.Fatalf("sign %+v, %v", sr, err)
	}
	if err := c.Call(ctx, MethodSubscribe, nil, nil); err != nil {
		t.Fatal(err)
	}
	f.bus.Publish(event.ApprovalResolved{ID: a.ID, Decision: "approved"})
	f.bus.Publish(event.Message{Direction: event.In, Peer: "bob", Kind: "partial"})
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case e := <-c.Events():
			switch e := e.(type) {
			case event.ApprovalResolved:
				got["resolved"] = e.ID == a.ID && e.Decision == "approved"
			case event.Message:
				got["message"] = e.Direction == event.In && e.Peer == "bob"
			}
		case <-ctx.Done():
			t.Fatalf("events seen: %v", got)
		}
	}
	if !got["resolved"] || !got["message"] {
		t.Fatalf("events decoded wrongly: %v", got)
	}
	f.mu.Lock()
	by := f.by
	f.mu.Unlock()
	if want := fmt.Sprintf("socket uid=%d ", os.Getuid()); !strings.HasPrefix(by, want) || !strings.Contains(by, fmt.Sprintf("pid=%d", os.Getpid())) {
		t.Fatalf("the approval was recorded as given by %q, want %q... with this process's pid", by, want)
	}
	if ch := f.Changes(); strings.Join(ch, ",") != "approve,sign m approved" {
		t.Fatalf("changes %v", ch)
	}
}

// The socket is its owner's only; a stale one is replaced.
func TestTheSocketIsTheOwnersOnlyAndAStaleOneIsReplaced(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, SocketName)
	if err := os.WriteFile(path, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if _, err := Dial(t.Context(), filepath.Join(dir, "none.sock")); !errors.Is(err, ErrNoServer) {
		t.Fatalf("dial with no server: %v", err)
	}
}

// Another OS user cannot connect to the socket (its mode is 0600): it is
// refused by the kernel. Run as root only (it switches users).
func TestAnotherUserCannotConnect(t *testing.T) {
	if os.Getenv("COSIGNER_API_DIAL") != "" {
		return // the helper process below
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as another user")
	}
	t.Parallel()
	f := newFake()
	path := serve(t, f, true)
	// The folder lets anyone through: only the socket's own mode stops them.
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := runAs(t, 65534, 65534, path)
	if err == nil {
		t.Fatalf("user 65534 connected to a 0600 socket: %s", out)
	}
	if !strings.Contains(out, "permission denied") {
		t.Fatalf("user 65534 was refused for another reason: %v: %s", err, out)
	}
	// The owner itself gets in.
	if _, err := Dial(t.Context(), path); err != nil {
		t.Fatalf("the owner cannot connect: %v", err)
	}
}

// TestHelperDial is the process that runAs starts: it dials the socket
// named in COSIGNER_API_DIAL and reports.
func TestHelperDial(t *testing.T) {
	path := os.Getenv("COSIGNER_API_DIAL")
	if path == "" {
		t.Skip("a helper process for TestAnotherUserCannotConnect")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		os.Stdout.WriteString("dial: " + err.Error() + "\n")
		os.Exit(3)
	}
	c.Close()
}

// A socket shared with a group: its members get in, other users do not,
// and the data directory only lets them through.
func TestASocketSharedWithAGroupLetsItsMembersIn(t *testing.T) {
	if os.Getenv("COSIGNER_API_DIAL") != "" {
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to connect as other users")
	}
	t.Parallel()
	base, err := os.MkdirTemp("", "api")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(base, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "device.db"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	const members = 65534
	dir := filepath.Join(data, "api")
	if err := SocketDir(data, dir, members); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SocketName)
	ln, err := ListenGroup(path, members)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { NewServer(newFake(), true, nil).Serve(ctx, ln); close(done) }()
	defer func() { cancel(); <-done }()
	for _, c := range []struct {
		p    string
		mode os.FileMode
	}{{data, 0o710}, {dir, 0o710}, {path, 0o660}, {filepath.Join(data, "device.db"), 0o600}} {
		fi, err := os.Stat(c.p)
		if err != nil || fi.Mode().Perm() != c.mode {
			t.Fatalf("%s: mode %v (%v), want %v", c.p, fi.Mode().Perm(), err, c.mode)
		}
	}
	if out, err := runAs(t, 65534, members, path); err != nil {
		t.Fatalf("a member of the group was refused: %v %s", err, out)
	}
	if out, err := runAs(t, 12345, 12345, path); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("a user outside the group: %v %s", err, out)
	}
}

// serversFake is a backend on several servers.
type serversFake struct {
	*fakeBackend
	servers []ServerState
}

func (f serversFake) Servers() []ServerState { return f.servers }

// status lists each server of a console on several, with the peers it
// lags for, and a lagging notification reaches a subscriber as such.
func TestStatusListsEachServerAndItsLaggingPeers(t *testing.T) {
	t.Parallel()
	f := serversFake{newFake(), []ServerState{
		{Name: "home", URL: "https://relay.example", Connection: event.Connection{State: "connected"}},
		{Name: "backup", URL: "https://other.example", Connection: event.Connection{State: "reconnecting"}, Lagging: []string{"bob"}}}}
	dir, err := os.MkdirTemp("", "api") // short: socket paths are limited to about 100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, SocketName)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { NewServer(f, true, nil).Serve(ctx, ln); close(done) }()
	defer func() { cancel(); <-done }()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var st StatusResult
	if err := c.Call(ctx, MethodStatus, nil, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Servers) != 2 || st.Servers[1].Name != "backup" || st.Servers[1].Connection.State != "reconnecting" ||
		fmt.Sprint(st.Servers[1].Lagging) != "[bob]" || len(st.Servers[0].Lagging) != 0 {
		t.Fatalf("servers %+v", st.Servers)
	}
	want := event.ServerLagging{Server: "backup", Peer: "bob", Lagging: true}
	b, _ := json.Marshal(want)
	p, _ := json.Marshal(EventParams{Type: eventType(want), Event: b})
	e, err := DecodeEvent(p)
	if err != nil || e != want {
		t.Fatalf("the lagging event came back as %#v (%v)", e, err)
	}
}
