package conformance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/transport"
)

// harnessDir is the Node harness, relative to this package (go test runs in
// the package directory).
const harnessDir = "harness"

// inCI reports whether the tests run in CI, where a missing Node or a
// missing npm install is a failure, not a skip.
func inCI() bool { return os.Getenv("CI") != "" }

// requireHarness skips (outside CI) or fails (in CI) when Node or the
// installed mock server is missing, and returns the node binary.
func requireHarness(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		msg := "conformance: `node` is not installed; these tests run Signal's mock server (@signalapp/mock-server) under Node 20+. " +
			"Install Node and npm, then run `npm ci --prefix conformance/harness`"
		if inCI() {
			t.Fatal(msg + " (CI is set: Node is required here)")
		}
		t.Skip(msg)
	}
	pkg := filepath.Join(harnessDir, "node_modules", "@signalapp", "mock-server", "package.json")
	if _, err := os.Stat(pkg); err != nil {
		msg := "conformance: the mock server is not installed (" + pkg + " is missing); run `npm ci --prefix conformance/harness`"
		if inCI() {
			t.Fatal(msg + " (CI is set: .ci/run must install it before make test)")
		}
		t.Skip(msg)
	}
	return node
}

// mockServer is a running harness: Signal's mock server on loopback and its
// simulated phones, driven by JSON lines.
type mockServer struct {
	t      *testing.T
	URL    string
	CAPath string
	Dialer *transport.Dialer

	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer
	exited chan struct{}

	wmu     sync.Mutex // serialises writes to stdin
	mu      sync.Mutex
	nextID  int
	waiting map[int]chan map[string]any
	events  []Event
	sends   []Verdict
	evCh    chan struct{} // signalled on every event
}

// Event is one envelope the mock routed (the harness's "message" event).
type Event struct {
	From          string `json:"from"`
	To            string `json:"to"`
	ServiceIDKind string `json:"serviceIdKind"`
	Type          int    `json:"type"`
	Bytes         int    `json:"bytes"`
	FirstByte     *int   `json:"firstByte"`
	Head          string `json:"head"` // the content's first 8 bytes, hex
	OK            bool   `json:"ok"`
	Error         string `json:"error"`
}

// Verdict is the mock's answer to one PUT /v1/messages (the harness's
// "send" event): 200, or 409 / 410 / 404 with the devices to repair.
type Verdict struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Status  int    `json:"status"`
	Entries []struct {
		DeviceID int `json:"deviceId"`
		Type     int `json:"type"`
	} `json:"entries"`
	Missing []int `json:"missingDevices"`
	Extra   []int `json:"extraDevices"`
	Stale   []int `json:"staleDevices"`
}

func (v Verdict) String() string {
	switch v.Status {
	case 409:
		return fmt.Sprintf("%d missing %v extra %v", v.Status, v.Missing, v.Extra)
	case 410:
		return fmt.Sprintf("%d stale %v", v.Status, v.Stale)
	}
	return fmt.Sprint(v.Status)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startMock runs the harness for one test and stops it when the test ends.
func startMock(t *testing.T, mode transport.Mode) *mockServer {
	t.Helper()
	node := requireHarness(t)
	m := &mockServer{t: t, stderr: &lockedBuffer{}, exited: make(chan struct{}), waiting: map[int]chan map[string]any{}, evCh: make(chan struct{}, 1)}
	m.cmd = exec.Command(node, "harness.js")
	m.cmd.Dir = harnessDir
	m.cmd.Stderr = m.stderr
	var err error
	if m.stdin, err = m.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	// An io.Pipe rather than StdoutPipe: Wait then returns only after all
	// of the harness's output was read.
	stdout, stdoutW := io.Pipe()
	m.cmd.Stdout = stdoutW
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("conformance: start the harness: %v", err)
	}
	go func() { m.cmd.Wait(); stdoutW.Close(); close(m.exited) }()
	t.Cleanup(m.stop)

	ready := make(chan map[string]any, 1)
	go m.read(stdout, ready)
	select {
	case r := <-ready:
		m.URL, _ = r["url"].(string)
		m.CAPath, _ = r["caPath"].(string)
	case <-m.exited:
		t.Fatalf("conformance: the harness exited before it was ready:\n%s", m.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("conformance: the harness did not start within 30 s:\n%s", m.stderr.String())
	}
	// Trust the mock's own CA, as Signal Desktop's tests do.
	if m.Dialer, err = transport.NewDialer(transport.Config{URL: m.URL, RootCAs: rootsOf(t, m), Mode: mode}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Dialer.Close)
	return m
}

func (m *mockServer) read(r io.Reader, ready chan<- map[string]any) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var msg map[string]any
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
			m.stderr.Write([]byte("[go] unparsable harness line: " + sc.Text() + "\n"))
			continue
		}
		switch msg["event"] {
		case "ready":
			ready <- msg
			continue
		case "message":
			var ev Event
			json.Unmarshal(sc.Bytes(), &ev)
			m.mu.Lock()
			m.events = append(m.events, ev)
			m.mu.Unlock()
			select {
			case m.evCh <- struct{}{}:
			default:
			}
			continue
		case "send":
			var v Verdict
			json.Unmarshal(sc.Bytes(), &v)
			m.mu.Lock()
			m.sends = append(m.sends, v)
			m.mu.Unlock()
			continue
		}
		id, ok := msg["id"].(float64)
		if !ok {
			continue
		}
		m.mu.Lock()
		ch := m.waiting[int(id)]
		delete(m.waiting, int(id))
		m.mu.Unlock()
		if ch != nil {
			ch <- msg
		}
	}
}

func (m *mockServer) stop() {
	m.stdin.Close() // the harness exits when stdin closes
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
	}
	if m.t.Failed() {
		m.t.Logf("harness stderr:\n%s", m.stderr.String())
	}
}

// errHarness is a command the harness answered with ok:false.
var errHarness = errors.New("harness command failed")

// call sends one command and waits for its answer.
func (m *mockServer) call(ctx context.Context, cmd string, args map[string]any) (map[string]any, error) {
	m.mu.Lock()
	m.nextID++
	id := m.nextID
	ch := make(chan map[string]any, 1)
	m.waiting[id] = ch
	m.mu.Unlock()
	msg := map[string]any{"id": id, "cmd": cmd}
	for k, v := range args {
		msg[k] = v
	}
	line, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	m.wmu.Lock()
	_, err = m.stdin.Write(append(line, '\n'))
	m.wmu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("harness %s: %w", cmd, err)
	}
	select {
	case r := <-ch:
		if ok, _ := r["ok"].(bool); !ok {
			return r, fmt.Errorf("%w: %s: %v", errHarness, cmd, r["error"])
		}
		return r, nil
	case <-m.exited:
		return nil, fmt.Errorf("harness %s: the harness exited", cmd)
	case <-ctx.Done():
		return nil, fmt.Errorf("harness %s: %w", cmd, ctx.Err())
	}
}

// must is call for the test goroutine.
func (m *mockServer) must(cmd string, args map[string]any) map[string]any {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(m.t.Context(), 90*time.Second)
	defer cancel()
	r, err := m.call(ctx, cmd, args)
	if err != nil {
		m.t.Fatal(err)
	}
	return r
}

// Events returns the envelopes the mock routed so far.
func (m *mockServer) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}

// Verdicts returns the mock's answers to the sends so far.
func (m *mockServer) Verdicts() []Verdict {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Verdict(nil), m.sends...)
}

// waitEvents waits until pred holds for the routed envelopes.
func (m *mockServer) waitEvents(ctx context.Context, pred func([]Event) bool) []Event {
	m.t.Helper()
	for {
		evs := m.Events()
		if pred(evs) {
			return evs
		}
		select {
		case <-m.evCh:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			m.t.Fatalf("the mock never routed the expected envelopes; it saw:\n%s", formatEvents(evs))
		}
	}
}

func formatEvents(evs []Event) string {
	var b bytes.Buffer
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s -> %s type %d, %d bytes, ok=%v %s\n", e.From, e.To, e.Type, e.Bytes, e.OK, e.Error)
	}
	return b.String()
}

// rootsOf is a pool with the mock's CA.
func rootsOf(t *testing.T, m *mockServer) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(m.CAPath)
	if err != nil {
		t.Fatalf("conformance: the mock's CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("conformance: no certificate in the mock's CA file %s", m.CAPath)
	}
	return pool
}
