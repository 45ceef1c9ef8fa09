package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// websocketGUID is the constant of RFC 6455 section 1.3 used to compute
// Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxHandshake bounds the HTTP/1.1 handshake gorilla writes before we turn
// it into an extended CONNECT.
const maxHandshake = 16 << 10

// halfCloseGrace is how long Close waits after ending the request stream
// before resetting it, so a just-written close frame reaches the peer.
const halfCloseGrace = time.Second

// h2Stream is a net.Conn over one HTTP/2 extended CONNECT stream (RFC 8441)
// shaped for gorilla/websocket: gorilla has no exported way to run its
// framing over an existing stream (its connection constructor is private and
// its client insists on an HTTP/1.1 handshake), so the stream accepts
// gorilla's HTTP/1.1 upgrade request, performs the extended CONNECT with the
// same path and headers, answers gorilla with a synthetic 101 (or the
// server's refusal), and from then on passes bytes through.
//
// Deadlines follow net.Conn: a read deadline makes Read return a timeout and
// leaves the stream intact; a write that is still blocked when its deadline
// passes aborts the stream, since half a frame cannot be taken back.
type h2Stream struct {
	rt        http.RoundTripper
	scheme    string
	authority string
	local     net.Addr
	remote    net.Addr

	ctx    context.Context // lives as long as the stream, not the dial
	cancel context.CancelFunc

	mu            sync.Mutex
	handshake     bytes.Buffer // gorilla's request, until complete
	established   bool
	pending       []byte // the synthetic response, read before the body
	body          io.ReadCloser
	pw            *io.PipeWriter
	readDeadline  time.Time
	writeDeadline time.Time

	chunks   chan []byte // filled by the body reader goroutine
	readErr  error       // set before chunks is closed
	leftover []byte

	closeOnce sync.Once
	closed    chan struct{}
}

func newH2Stream(rt http.RoundTripper, scheme, authority string, local, remote net.Addr) *h2Stream {
	ctx, cancel := context.WithCancel(context.Background())
	return &h2Stream{
		rt: rt, scheme: scheme, authority: authority, local: local, remote: remote,
		ctx: ctx, cancel: cancel, closed: make(chan struct{}),
	}
}

// Write takes gorilla's handshake first, then frame bytes.
func (s *h2Stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	if !s.established {
		defer s.mu.Unlock()
		if s.handshake.Len()+len(p) > maxHandshake {
			return 0, fmt.Errorf("transport: websocket handshake over %d bytes", maxHandshake)
		}
		s.handshake.Write(p)
		if !bytes.Contains(s.handshake.Bytes(), []byte("\r\n\r\n")) {
			return len(p), nil
		}
		if err := s.connect(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	pw, deadline := s.pw, s.writeDeadline
	s.mu.Unlock()
	if pw == nil {
		return 0, ErrClosed
	}
	return s.timedWrite(pw, p, deadline)
}

// timedWrite writes into the request body pipe, honouring the deadline.
func (s *h2Stream) timedWrite(pw *io.PipeWriter, p []byte, deadline time.Time) (int, error) {
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return 0, timeoutError{}
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := pw.Write(p)
		done <- result{n, err}
	}()
	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	select {
	case r := <-done:
		if r.err != nil {
			return r.n, fmt.Errorf("transport: write: %w", r.err)
		}
		return r.n, nil
	case <-timer:
		s.abort(timeoutError{})
		return 0, timeoutError{}
	case <-s.closed:
		return 0, ErrClosed
	}
}

// connect turns the buffered HTTP/1.1 upgrade request into an extended
// CONNECT and prepares gorilla's answer. Called with s.mu held.
func (s *h2Stream) connect() error {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(s.handshake.Bytes())))
	if err != nil {
		return fmt.Errorf("transport: parse websocket handshake: %w", err)
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	header := req.Header.Clone()
	for _, h := range []string{"Host", "Upgrade", "Connection", "Sec-Websocket-Key"} {
		header.Del(h)
	}
	header.Set(":protocol", "websocket")
	pr, pw := io.Pipe()
	connect := &http.Request{
		Method:        http.MethodConnect,
		URL:           &url.URL{Scheme: s.scheme, Host: s.authority, Path: req.URL.Path, RawQuery: req.URL.RawQuery},
		Host:          s.authority,
		Header:        header,
		Body:          pr,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		ContentLength: -1,
	}
	// x/net/http2 ties the stream's life to the request context, so the
	// request carries the stream's context and the handshake deadline
	// (gorilla's HandshakeTimeout) only bounds the wait for the headers.
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := s.rt.RoundTrip(connect.WithContext(s.ctx))
		done <- result{resp, err}
	}()
	var timer <-chan time.Time
	if !s.writeDeadline.IsZero() {
		t := time.NewTimer(time.Until(s.writeDeadline))
		defer t.Stop()
		timer = t.C
	}
	var resp *http.Response
	select {
	case r := <-done:
		resp, err = r.resp, r.err
	case <-timer:
		s.cancel()
		pw.Close()
		return fmt.Errorf("transport: extended CONNECT %s: %w", req.URL.Path, timeoutError{})
	}
	if err != nil {
		pw.Close()
		if isNoExtendedConnect(err) {
			return fmt.Errorf("%w: %v", ErrNoExtendedConnect, err)
		}
		return fmt.Errorf("transport: extended CONNECT %s: %w", req.URL.Path, err)
	}
	s.established = true
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Pass the refusal on as a failed handshake, with its body (auth
		// errors say why).
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		pw.Close()
		s.pending = fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n%s",
			resp.StatusCode, http.StatusText(resp.StatusCode), len(b), b)
		s.chunks = make(chan []byte)
		s.readErr = io.EOF
		close(s.chunks)
		return nil
	}
	s.body, s.pw = resp.Body, pw
	accept := sha1.Sum([]byte(key + websocketGUID))
	s.pending = fmt.Appendf(nil, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		base64.StdEncoding.EncodeToString(accept[:]))
	s.chunks = make(chan []byte, 1)
	go s.pump(resp.Body)
	return nil
}

func isNoExtendedConnect(err error) bool {
	// x/net/http2 reports a missing SETTINGS_ENABLE_CONNECT_PROTOCOL with an
	// unexported error; its text is the only handle.
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "extended connect not supported") || strings.Contains(msg, "unexpected ALPN protocol")
}

// pump copies the response body into chunks so Read can honour deadlines
// without touching the body.
func (s *h2Stream) pump(body io.Reader) {
	for {
		buf := make([]byte, 32<<10)
		n, err := body.Read(buf)
		if n > 0 {
			select {
			case s.chunks <- buf[:n]:
			case <-s.closed:
				return
			}
		}
		if err != nil {
			s.mu.Lock()
			s.readErr = err
			s.mu.Unlock()
			close(s.chunks)
			return
		}
	}
}

// Read serves the synthetic handshake response, then the server's bytes.
func (s *h2Stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	if len(s.pending) > 0 {
		n := copy(p, s.pending)
		s.pending = s.pending[n:]
		s.mu.Unlock()
		return n, nil
	}
	if !s.established {
		s.mu.Unlock()
		return 0, errors.New("transport: read before the websocket handshake")
	}
	deadline := s.readDeadline
	s.mu.Unlock()

	if len(s.leftover) > 0 {
		n := copy(p, s.leftover)
		s.leftover = s.leftover[n:]
		return n, nil
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return 0, timeoutError{}
	}
	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	select {
	case b, ok := <-s.chunks:
		if !ok {
			s.mu.Lock()
			err := s.readErr
			s.mu.Unlock()
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		n := copy(p, b)
		s.leftover = b[n:]
		return n, nil
	case <-timer:
		return 0, timeoutError{}
	case <-s.closed:
		return 0, ErrClosed
	}
}

// Close ends the request stream first (the peer sees END_STREAM after any
// close frame already written), then resets the stream after a grace period.
func (s *h2Stream) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		pw, body := s.pw, s.body
		s.mu.Unlock()
		if pw != nil {
			pw.Close()
		}
		close(s.closed)
		go func() {
			if body != nil {
				time.Sleep(halfCloseGrace)
				body.Close()
			}
			s.cancel()
		}()
	})
	return nil
}

// abort resets the stream at once.
func (s *h2Stream) abort(err error) {
	s.mu.Lock()
	pw, body := s.pw, s.body
	s.mu.Unlock()
	if pw != nil {
		pw.CloseWithError(err)
	}
	if body != nil {
		body.Close()
	}
	s.cancel()
	s.closeOnce.Do(func() { close(s.closed) })
}

func (s *h2Stream) LocalAddr() net.Addr  { return s.local }
func (s *h2Stream) RemoteAddr() net.Addr { return s.remote }

func (s *h2Stream) SetDeadline(t time.Time) error {
	s.mu.Lock()
	s.readDeadline, s.writeDeadline = t, t
	s.mu.Unlock()
	return nil
}

func (s *h2Stream) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.readDeadline = t
	s.mu.Unlock()
	return nil
}

func (s *h2Stream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.writeDeadline = t
	s.mu.Unlock()
	return nil
}
