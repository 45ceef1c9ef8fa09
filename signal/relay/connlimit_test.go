package relay

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// rawConn opens a TCP connection to the relay.
func (tr *testRelay) rawConn(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(tr.base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByRelay reports whether the relay closes c within a few seconds
// (what it sent before is skipped).
func closedByRelay(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// A request body that comes too slowly does not hold its connection: the
// relay gives up on it, with or without credentials.
func TestASlowRequestBodyDoesNotHoldItsConnection(t *testing.T) {
	t.Parallel()
	tr := startRelayWith(t, Config{}, func(s *Server) { s.bodyTimeBase, s.bodyMinRate = 200*time.Millisecond, 1<<30 })
	alice := tr.register(t, "")
	for _, auth := range []string{"", alice.auth()} {
		c := tr.rawConn(t)
		req := "PUT /v1/messages/" + alice.aci + " HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
		if auth != "" {
			req += "Authorization: " + auth + "\r\n"
		}
		if _, err := io.WriteString(c, req+"\r\n{\"messages\":"); err != nil {
			t.Fatal(err)
		}
		if !closedByRelay(t, c) {
			t.Errorf("a connection with a stalled body (credentials: %v) is still open", auth != "")
		}
	}
	// Bodies that come in time are read as before.
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+alice.aci, alice.auth(), sendBodyOf())
}

// Plain connections are bounded: beyond MaxConns a new one replaces an
// idle keep-alive connection, or is closed when none is idle.
func TestPlainConnectionsAreBounded(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{MaxConns: 2})
	partial := "GET /v1/keepalive HTTP/1.1\r\nHost: relay\r\n"
	c1, c2 := tr.rawConn(t), tr.rawConn(t)
	for _, c := range []net.Conn{c1, c2} {
		if _, err := io.WriteString(c, partial); err != nil {
			t.Fatal(err)
		}
	}
	if c3 := tr.rawConn(t); !closedByRelay(t, c3) {
		t.Fatal("a third connection beyond MaxConns 2 stays open while both others are busy")
	}
	// c1 finishes its request and idles (keep-alive).
	if _, err := io.WriteString(c1, "\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c1), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("c1: %v %v", resp, err)
	}
	resp.Body.Close()
	// A new connection takes the idle one's place and is served.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c4 := tr.rawConn(t)
		c4.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c4, partial+"\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c4), nil)
		if err == nil && resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after c1 went idle: %v", err)
		}
	}
	if !closedByRelay(t, c1) {
		t.Error("the idle connection was not closed to make room")
	}
}
