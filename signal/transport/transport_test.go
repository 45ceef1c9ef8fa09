package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Go's HTTP/2 servers accept RFC 8441 extended CONNECT only with
// GODEBUG=http2xconnect=1, read from the environment at start-up; the test
// binary runs itself again with it set.
func TestMain(m *testing.M) {
	if !strings.Contains(os.Getenv("GODEBUG"), "http2xconnect=1") {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), "GODEBUG=http2xconnect=1"+strings.TrimPrefix(","+os.Getenv("GODEBUG"), ","))
		if os.Getenv("GODEBUG") == "" {
			cmd.Env = append(os.Environ(), "GODEBUG=http2xconnect=1")
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				os.Exit(exit.ExitCode())
			}
			fmt.Fprintln(os.Stderr, "re-exec with GODEBUG=http2xconnect=1:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// echoServer answers WebSockets over both HTTP/1.1 upgrade and RFC 8441,
// echoing every message with the request's Authorization header prefixed.
type echoServer struct {
	*httptest.Server
	mu      sync.Mutex
	protos  []string // protocol of each accepted websocket
	refuse  int      // non-zero: refuse with this status
	conns   int      // TCP connections accepted
	upgrade websocket.Upgrader
}

func newEchoServer(t *testing.T, h2 bool, tlsOn bool) *echoServer {
	t.Helper()
	s := &echoServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.handle))
	s.EnableHTTP2 = h2
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	if tlsOn {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return s
}

func (s *echoServer) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	refuse := s.refuse
	s.mu.Unlock()
	if refuse != 0 {
		http.Error(w, "no", refuse)
		return
	}
	var ws *websocket.Conn
	var err error
	if r.Method == http.MethodConnect && r.Header.Get(":protocol") == "websocket" {
		ws, err = acceptH2WebSocket(w, r, &s.upgrade)
	} else {
		ws, err = s.upgrade.Upgrade(w, r, nil)
	}
	if err != nil {
		return
	}
	s.mu.Lock()
	s.protos = append(s.protos, r.Proto)
	s.mu.Unlock()
	defer ws.Close()
	for {
		kind, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if err := ws.WriteMessage(kind, append([]byte(r.Header.Get("Authorization")+":"), msg...)); err != nil {
			return
		}
	}
}

// acceptH2WebSocket runs gorilla's server side over an RFC 8441 stream: it
// answers the CONNECT with 200 and hands gorilla a hijacked "connection"
// made of the request body and the response writer.
func acceptH2WebSocket(w http.ResponseWriter, r *http.Request, up *websocket.Upgrader) (*websocket.Conn, error) {
	w.WriteHeader(http.StatusOK)
	flusher := w.(http.Flusher)
	flusher.Flush()
	key := make([]byte, 16)
	rand.Read(key)
	fake := r.Clone(r.Context())
	fake.Method = http.MethodGet
	fake.Header.Set("Upgrade", "websocket")
	fake.Header.Set("Connection", "Upgrade")
	fake.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(key))
	fake.Header.Set("Sec-WebSocket-Version", "13")
	conn := &serverStream{body: r.Body, w: w, flusher: flusher}
	return up.Upgrade(&hijackWriter{conn: conn}, fake, nil)
}

type hijackWriter struct {
	conn *serverStream
}

func (h *hijackWriter) Header() http.Header         { return http.Header{} }
func (h *hijackWriter) Write(b []byte) (int, error) { return len(b), nil }
func (h *hijackWriter) WriteHeader(int)             {}
func (h *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(h.conn)), nil
}

// serverStream is the server's side of an HTTP/2 WebSocket stream; it
// swallows gorilla's HTTP/1.1 101 response (the 200 already went out).
type serverStream struct {
	body     io.ReadCloser
	w        io.Writer
	flusher  http.Flusher
	mu       sync.Mutex
	skipping bool
	skipped  bytes.Buffer
	started  bool
}

func (s *serverStream) Read(p []byte) (int, error) { return s.body.Read(p) }
func (s *serverStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.skipped.Write(p)
		if i := bytes.Index(s.skipped.Bytes(), []byte("\r\n\r\n")); i >= 0 {
			s.started = true
			rest := s.skipped.Bytes()[i+4:]
			if len(rest) > 0 {
				if _, err := s.w.Write(rest); err != nil {
					return 0, err
				}
				s.flusher.Flush()
			}
		}
		return len(p), nil
	}
	n, err := s.w.Write(p)
	s.flusher.Flush()
	return n, err
}
func (s *serverStream) Close() error                     { return s.body.Close() }
func (s *serverStream) LocalAddr() net.Addr              { return streamAddr("server") }
func (s *serverStream) RemoteAddr() net.Addr             { return streamAddr("client") }
func (s *serverStream) SetDeadline(time.Time) error      { return nil }
func (s *serverStream) SetReadDeadline(time.Time) error  { return nil }
func (s *serverStream) SetWriteDeadline(time.Time) error { return nil }

func dialerFor(t *testing.T, s *echoServer, mode Mode) *Dialer {
	t.Helper()
	cfg := Config{URL: s.URL, Mode: mode, HandshakeTimeout: 5 * time.Second}
	if s.TLS != nil {
		cfg.RootCAs = s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	}
	d, err := NewDialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func echoOnce(t *testing.T, ws *websocket.Conn, msg string) string {
	t.Helper()
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, got, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return string(got)
}

func TestWebSocketsOpenInEveryMode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		h2, tls   bool
		mode      Mode
		wantProto string
		wantMode  Mode
	}{
		{"http1 upgrade over plain http", false, false, ModeHTTP1, "HTTP/1.1", ModeHTTP1},
		{"http1 upgrade over tls", false, true, ModeHTTP1, "HTTP/1.1", ModeHTTP1},
		{"rfc 8441 over http2", true, true, ModeHTTP2, "HTTP/2.0", ModeHTTP2},
		{"auto picks http2 when offered", true, true, ModeAuto, "HTTP/2.0", ModeHTTP2},
		{"auto falls back to http1 without h2", false, true, ModeAuto, "HTTP/1.1", ModeHTTP1},
		{"auto uses http1 on plain http", false, false, ModeAuto, "HTTP/1.1", ModeAuto},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newEchoServer(t, c.h2, c.tls)
			d := dialerFor(t, s, c.mode)
			h := http.Header{"Authorization": {"Basic secret"}}
			ws, err := d.Dial(t.Context(), "/v1/websocket/?agent=test", h)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			big := strings.Repeat("x", 200<<10) // beyond HTTP/2's 64 KiB windows
			for _, msg := range []string{"hello", big, "after the big one"} {
				if got := echoOnce(t, ws, msg); got != "Basic secret:"+msg {
					t.Fatalf("echo of %d bytes came back as %d bytes", len(msg), len(got))
				}
			}
			s.mu.Lock()
			protos := append([]string(nil), s.protos...)
			s.mu.Unlock()
			if len(protos) != 1 || protos[0] != c.wantProto {
				t.Fatalf("server saw %v, want one %s websocket", protos, c.wantProto)
			}
			if d.Mode() != c.wantMode {
				t.Fatalf("dialer mode %s, want %s", d.Mode(), c.wantMode)
			}
		})
	}
}

func TestRefusedHandshakeNamesTheStatus(t *testing.T) {
	t.Parallel()
	for _, h2 := range []bool{false, true} {
		s := newEchoServer(t, h2, true)
		s.mu.Lock()
		s.refuse = http.StatusUnauthorized
		s.mu.Unlock()
		mode := ModeHTTP1
		if h2 {
			mode = ModeHTTP2
		}
		_, err := dialerFor(t, s, mode).Dial(t.Context(), "/v1/websocket/", nil)
		var he *HandshakeError
		if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
			t.Fatalf("h2=%v: err = %v, want a 401 handshake error", h2, err)
		}
	}
}

func TestHTTP2OnlyModeFailsClearlyWithoutExtendedConnect(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t, false, true) // TLS without h2
	_, err := dialerFor(t, s, ModeHTTP2).Dial(t.Context(), "/v1/websocket/", nil)
	if !errors.Is(err, ErrNoExtendedConnect) {
		t.Fatalf("err = %v, want ErrNoExtendedConnect", err)
	}
}

func TestReadDeadlineDoesNotKillTheHTTP2Stream(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t, true, true)
	ws, err := dialerFor(t, s, ModeHTTP2).Dial(t.Context(), "/v1/websocket/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// A raw read deadline on the underlying stream expires...
	nc := ws.NetConn()
	nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 1)
	_, err = nc.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	// ...and the stream still works once the deadline is lifted.
	nc.SetReadDeadline(time.Time{})
	if got := echoOnce(t, ws, "still here"); got != ":still here" {
		t.Fatalf("echo after a read timeout: %q", got)
	}
}

func TestStreamsShareOneConnection(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t, true, true)
	d := dialerFor(t, s, ModeHTTP2)
	for i := range 3 {
		ws, err := d.Dial(t.Context(), "/v1/websocket/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if got := echoOnce(t, ws, fmt.Sprint(i)); got != ":"+fmt.Sprint(i) {
			t.Fatalf("stream %d: %q", i, got)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns != 1 {
		t.Fatalf("%d TCP connections for 3 websockets, want 1", s.conns)
	}
}

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{
		{URL: "ftp://x"},
		{URL: "https://"},
		{URL: "https://host/path"},
		{URL: "http://127.0.0.1:1", Mode: ModeHTTP2},
		{URL: "https://host", Mode: 9},
		{URL: "https://host?q=1"},
	} {
		if _, err := NewDialer(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err = %v, want ErrConfig", c, err)
		}
	}
	if _, err := ParseMode("h3"); !errors.Is(err, ErrConfig) {
		t.Errorf("mode h3 accepted")
	}
	d, _ := NewDialer(Config{URL: "https://host"})
	if _, err := d.Dial(context.Background(), "wss://elsewhere/x", nil); !errors.Is(err, ErrConfig) {
		t.Errorf("absolute path accepted: %v", err)
	}
}

// An https:// URL that reaches a plain-HTTP server (a relay started
// without a certificate) fails saying so and naming the http:// URL, in
// every mode that tries TLS.
func TestHTTPSToAPlainServerSaysToUseHTTP(t *testing.T) {
	t.Parallel()
	s := newEchoServer(t, false, false)
	url := strings.Replace(s.URL, "http://", "https://", 1)
	for _, mode := range []Mode{ModeAuto, ModeHTTP1, ModeHTTP2} {
		d, err := NewDialer(Config{URL: url, Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.Dial(t.Context(), "/v1/websocket/", nil)
		if !errors.Is(err, ErrNotTLS) || !strings.Contains(err.Error(), "use "+s.URL) {
			t.Errorf("%s: err = %v, want ErrNotTLS saying to use %s", mode, err, s.URL)
		}
	}
}
