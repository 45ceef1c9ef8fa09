package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signal-mpc/cosigner/signal/wsr"
)

// textLog records every log line as text.
type textLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *textLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *textLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *textLog) WithGroup(string) slog.Handler            { return l }
func (l *textLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, b.String())
	return nil
}

func (l *textLog) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip (any of 127.0.0.0/8 reaches a relay on 127.0.0.1).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// Wrong passwords are throttled per source address and per account, and
// logged without the password; a right password always gets in, even from
// a throttled source for a throttled account.
func TestFailedLoginsAreThrottledButARightPasswordGetsIn(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	logs := &textLog{}
	tr := startRelayWith(t, Config{Now: clock.now, Logger: slog.New(logs)}, func(s *Server) {
		s.authFails = &authFailures{
			bySource:  newLimiter(1.0/3600, 3, clock.now),
			byAccount: newLimiter(1.0/3600, 4, clock.now),
			logged:    newLimiter(1.0/3600, 1, clock.now),
		}
	})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	const wrong = "wrong-password-0123456789"
	wrongAlice := newAuth(alice.aci+".1", wrong)
	wrongBob := newAuth(bob.aci+".1", wrong)
	steps := []struct {
		name, from, auth string
		want             int
	}{
		{"a first wrong password", "127.0.0.2", wrongAlice, 401},
		{"a second", "127.0.0.2", wrongAlice, 401},
		{"a third", "127.0.0.2", wrongAlice, 401},
		{"a fourth from another source, within the account's budget", "127.0.0.3", wrongAlice, 401},
		{"a fifth is over the account's budget", "127.0.0.3", wrongAlice, 429},
		{"another account is not throttled by it", "127.0.0.3", wrongBob, 401},
		{"but a source over its budget is, whatever the account", "127.0.0.2", wrongBob, 429},
		{"the right password gets in from a throttled source", "127.0.0.2", alice.auth(), 200},
		{"and on a throttled account", "127.0.0.3", alice.auth(), 200},
	}
	for _, st := range steps {
		tr.client = clientFrom(st.from)
		status, h, out := tr.doHeader(t, "GET", "/v1/accounts/whoami", st.auth, nil)
		if status != st.want {
			t.Fatalf("%s: %d %s, want %d", st.name, status, out, st.want)
		}
		if status == 429 && h.Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", st.name)
		}
	}

	// The chat socket: a wrong password from the throttled source is 429,
	// the right one opens the socket.
	tr.client = clientFrom("127.0.0.1")
	h := http.Header{"Authorization": {wrongAlice}}
	d := &websocket.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}
	if _, resp, err := d.DialContext(t.Context(), tr.wsURL("/v1/websocket/"), h); err == nil || resp == nil || resp.StatusCode != 429 {
		t.Fatalf("socket with a wrong password from a throttled source: %v %v, want 429", resp, err)
	}
	h.Set("Authorization", alice.auth())
	ws, _, err := d.DialContext(t.Context(), tr.wsURL("/v1/websocket/"), h)
	if err != nil {
		t.Fatalf("socket with the right password from a throttled source: %v", err)
	}
	ws.Close()

	text := logs.all()
	if strings.Contains(text, wrong) {
		t.Errorf("a password reached the log:\n%s", text)
	}
	for _, want := range []string{"authentication failed source=127.0.0.2 account=" + alice.aci, "authentication failures throttled"} {
		if !strings.Contains(text, want) {
			t.Errorf("the log lacks %q:\n%s", want, text)
		}
	}
}

func TestSourceKeysGroupAnIPv6NetworkAndKeepIPv4Addresses(t *testing.T) {
	t.Parallel()
	tests := []struct{ addr, want string }{
		{"192.0.2.7:443", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:80", "2001:db8:1:2::/64"},
		{"not an address", "not an address"},
	}
	for _, tt := range tests {
		if got := sourceKey(tt.addr); got != tt.want {
			t.Errorf("sourceKey(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

// Wrong credentials sent in requests on a socket without credentials count
// against the socket's source like those of plain requests.
func TestFailedLoginsOnAnUnauthenticatedSocketAreThrottledPerSource(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	tr := startRelayWith(t, Config{Now: clock.now}, func(s *Server) {
		s.authFails = &authFailures{
			bySource:  newLimiter(1.0/3600, 2, clock.now),
			byAccount: newLimiter(1.0/3600, 100, clock.now),
			logged:    newLimiter(1.0/3600, 1, clock.now),
		}
	})
	alice := tr.register(t, "")
	socketFrom := func(ip string) *wsr.Conn {
		ws, status := tr.dialFrom(t, ip, "/v1/websocket/", nil, false)
		if ws == nil {
			t.Fatalf("dial from %s: %d", ip, status)
		}
		conn := wsr.New(ws, wsr.Options{Handler: func(context.Context, *wsr.Request) *wsr.Response { return &wsr.Response{Status: 200} }})
		go conn.Run(t.Context())
		return conn
	}
	whoami := func(conn *wsr.Conn, auth string) int {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		resp, err := conn.Request(ctx, &wsr.Request{Verb: "GET", Path: "/v1/accounts/whoami", Headers: []string{"Authorization:" + auth}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	wrong := newAuth(alice.aci+".1", "wrong-password-0123456789")
	busy, other := socketFrom("127.0.0.2"), socketFrom("127.0.0.3")
	for i, want := range []int{401, 401, 429} {
		if got := whoami(busy, wrong); got != want {
			t.Fatalf("wrong password %d on the socket: %d, want %d", i+1, got, want)
		}
	}
	if got := whoami(other, wrong); got != 401 {
		t.Fatalf("wrong password on another source's socket: %d, want 401", got)
	}
	if got := whoami(busy, alice.auth()); got != 200 {
		t.Fatalf("right password on the throttled socket: %d, want 200", got)
	}
}
