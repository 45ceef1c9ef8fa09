package transport

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signal-mpc/cosigner/signal/wsr"
)

// wsrServer serves WebSocket-Resources on /v1/websocket/ and lets a test
// steer it: refuse, ignore keepalives, drop connections, push requests.
type wsrServer struct {
	*httptest.Server
	refuse      atomic.Int32
	ignoreAlive atomic.Bool
	displace    atomic.Bool // close every socket as replaced by the same device elsewhere
	accepted    atomic.Int32
	mu          sync.Mutex
	conns       []*wsr.Conn
}

func newWSRServer(t *testing.T) *wsrServer {
	s := &wsrServer{}
	up := websocket.Upgrader{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code := s.refuse.Load(); code != 0 {
			http.Error(w, "no", int(code))
			return
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		s.accepted.Add(1)
		conn := wsr.New(ws, wsr.Options{Handler: func(ctx context.Context, req *wsr.Request) *wsr.Response {
			if req.Path == "/v1/keepalive" {
				if s.ignoreAlive.Load() {
					<-ctx.Done()
					return nil
				}
				return &wsr.Response{Status: 200}
			}
			return &wsr.Response{Status: 200, Body: append([]byte("echo:"), req.Body...)}
		}})
		s.mu.Lock()
		s.conns = append(s.conns, conn)
		s.mu.Unlock()
		if s.displace.Load() {
			go conn.Close(CloseConnectedElsewhere, "Connected elsewhere")
		}
		conn.Run(r.Context())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *wsrServer) last() *wsr.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) == 0 {
		return nil
	}
	return s.conns[len(s.conns)-1]
}

type statusLog struct {
	mu  sync.Mutex
	all []Status
}

func (l *statusLog) add(s Status) {
	l.mu.Lock()
	l.all = append(l.all, s)
	l.mu.Unlock()
}

func (l *statusLog) saw(st State, errContains string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.all {
		if s.State == st && strings.Contains(s.Err, errContains) {
			return true
		}
	}
	return false
}

func startClient(t *testing.T, s *wsrServer, mutate func(*ClientConfig)) (*Client, *statusLog, chan error) {
	t.Helper()
	d, err := NewDialer(Config{URL: s.URL, Mode: ModeHTTP1})
	if err != nil {
		t.Fatal(err)
	}
	log := &statusLog{}
	cfg := ClientConfig{
		Dialer: d, Path: "/v1/websocket/",
		Header:            func() http.Header { return http.Header{"Authorization": {"Basic x"}} },
		KeepaliveInterval: 20 * time.Millisecond, KeepaliveTimeout: 100 * time.Millisecond,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		OnStatus: log.add,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, ErrUnauthorized) && !errors.Is(err, ErrConnectedElsewhere) {
			t.Errorf("Run: %v", err)
		}
	})
	return c, log, done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRequestWaitsForTheConnectionAndGetsAnswered(t *testing.T) {
	t.Parallel()
	s := newWSRServer(t)
	c, _, _ := startClient(t, s, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := c.Request(ctx, &wsr.Request{Verb: "PUT", Path: "/v1/messages/x", Body: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "echo:hi" {
		t.Fatalf("body %q", resp.Body)
	}
	if st := c.Status(); st.State != StateConnected || st.Mode != ModeHTTP1 {
		t.Fatalf("status %+v", st)
	}
}

func TestDroppedConnectionIsReestablished(t *testing.T) {
	t.Parallel()
	s := newWSRServer(t)
	c, log, _ := startClient(t, s, nil)
	waitFor(t, "first connection", func() bool { return c.Status().State == StateConnected })
	s.last().Close(websocket.CloseGoingAway, "server restart")
	waitFor(t, "reconnection", func() bool { return s.accepted.Load() >= 2 && c.Status().State == StateConnected })
	if !log.saw(StateWaiting, "") {
		t.Fatal("the client never reported that it was reconnecting")
	}
	if _, err := c.Request(t.Context(), &wsr.Request{Verb: "GET", Path: "/x"}); err != nil {
		t.Fatalf("request after reconnect: %v", err)
	}
}

func TestUnansweredKeepaliveDropsTheSocket(t *testing.T) {
	t.Parallel()
	s := newWSRServer(t)
	s.ignoreAlive.Store(true)
	c, log, _ := startClient(t, s, nil)
	waitFor(t, "a keepalive failure", func() bool { return log.saw(StateWaiting, "keepalive") })
	s.ignoreAlive.Store(false)
	waitFor(t, "a healthy connection", func() bool { return c.Status().State == StateConnected && s.accepted.Load() >= 2 })
}

func TestRefusedCredentialsStopTheClient(t *testing.T) {
	t.Parallel()
	s := newWSRServer(t)
	s.refuse.Store(http.StatusUnauthorized)
	c, _, done := startClient(t, s, nil)
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Run: %v, want ErrUnauthorized", err)
		}
		done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("client kept retrying refused credentials")
	}
	if c.Status().State != StateStopped {
		t.Fatalf("state %s", c.Status().State)
	}
	if _, err := c.Request(t.Context(), &wsr.Request{Verb: "GET", Path: "/x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("request on a stopped client: %v", err)
	}
}

func TestServerRequestsReachTheHandler(t *testing.T) {
	t.Parallel()
	s := newWSRServer(t)
	got := make(chan string, 1)
	c, _, _ := startClient(t, s, func(cfg *ClientConfig) {
		cfg.Handler = func(_ context.Context, req *wsr.Request) *wsr.Response {
			got <- req.Verb + " " + req.Path
			return &wsr.Response{Status: 200}
		}
	})
	waitFor(t, "connection", func() bool { return c.Status().State == StateConnected })
	resp, err := s.last().Request(t.Context(), &wsr.Request{Verb: "PUT", Path: "/api/v1/message", Body: []byte{1}})
	if err != nil || resp.Status != 200 {
		t.Fatalf("server request: %v %+v", err, resp)
	}
	if g := <-got; g != "PUT /api/v1/message" {
		t.Fatalf("handler saw %q", g)
	}
}

func TestBackoffGrowsWithJitterUpToTheCap(t *testing.T) {
	t.Parallel()
	c, _ := NewClient(ClientConfig{Dialer: &Dialer{}, Path: "/", MinBackoff: time.Second, MaxBackoff: 8 * time.Second})
	for attempt := 1; attempt <= 10; attempt++ {
		window := min(time.Second<<(attempt-1), 8*time.Second)
		for range 50 {
			w := c.backoff(attempt)
			if w < time.Second || w > window {
				t.Fatalf("attempt %d: wait %v outside [1s, %v]", attempt, w, window)
			}
		}
	}
	distinct := map[time.Duration]bool{}
	for range 50 {
		distinct[c.backoff(5)] = true
	}
	if len(distinct) < 10 {
		t.Fatalf("only %d distinct waits: no jitter", len(distinct))
	}
}

// A device connected elsewhere too (close code 4409) is told apart: the
// status counts it and says so, the wait grows instead of starting over
// (the attempts are not reset), and with MaxElsewhere the client stops.
func TestConnectedElsewhereIsReportedAndBacksOff(t *testing.T) {
	t.Parallel()
	t.Run("reconnecting with a growing wait", func(t *testing.T) {
		t.Parallel()
		s := newWSRServer(t)
		s.displace.Store(true)
		c, log, _ := startClient(t, s, nil)
		waitFor(t, "three displacements", func() bool { return c.Status().Elsewhere >= 3 })
		st := c.Status()
		if st.Attempt < 3 || !strings.Contains(st.Err, "another console is connected with this same device") {
			t.Fatalf("status %+v: want the attempts to grow and the reason said", st)
		}
		// Once the other console is gone, a drop for another reason resets
		// the count.
		s.displace.Store(false)
		s.mu.Lock()
		before := len(s.conns)
		s.mu.Unlock()
		// Connected through a connection the server took after that (it
		// reads displace after recording the connection): one taken just
		// before may still be displaced.
		waitFor(t, "connected", func() bool {
			s.mu.Lock()
			fresh := len(s.conns) > before
			s.mu.Unlock()
			return fresh && c.Status().State == StateConnected
		})
		log.mu.Lock()
		from := len(log.all)
		log.mu.Unlock()
		s.last().Close(4000, "bye")
		waitFor(t, "a plain drop", func() bool {
			log.mu.Lock()
			defer log.mu.Unlock()
			for _, st := range log.all[from:] {
				if st.State == StateWaiting {
					return st.Elsewhere == 0 && st.Attempt == 1
				}
			}
			return false
		})
	})
	t.Run("stopping after MaxElsewhere", func(t *testing.T) {
		t.Parallel()
		s := newWSRServer(t)
		s.displace.Store(true)
		c, _, _ := startClient(t, s, func(cfg *ClientConfig) { cfg.MaxElsewhere = 2 })
		waitFor(t, "the client to stop", func() bool { return c.Status().State == StateStopped })
		if st := c.Status(); st.Elsewhere != 2 || !strings.Contains(st.Err, ErrConnectedElsewhere.Error()) {
			t.Fatalf("status %+v, want stopped after 2 displacements", st)
		}
	})
}
