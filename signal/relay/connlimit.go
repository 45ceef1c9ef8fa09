package relay

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Plain HTTP connections (every connection until it becomes a WebSocket)
// are bounded: each holds a goroutine and buffers, and slow clients could
// otherwise hold any number. A new connection beyond MaxConns takes the
// place of an idle keep-alive connection, or is closed at once when none
// is idle. WebSockets leave the count when they are upgraded (hijacked):
// the socket caps bound them.
const defaultMaxConns = 1_000

// connLimit counts the plain connections through http.Server.ConnState.
type connLimit struct {
	max   int
	mu    sync.Mutex
	conns map[net.Conn]http.ConnState // counted connections and their state
}

func newConnLimit(max int) *connLimit {
	return &connLimit{max: max, conns: map[net.Conn]http.ConnState{}}
}

// track is the http.Server's ConnState hook.
func (l *connLimit) track(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateNew:
		if len(l.conns) >= l.max && !l.evictIdle() {
			c.Close() // the server's read fails and it forgets the connection
			return
		}
		l.conns[c] = st
	case http.StateActive, http.StateIdle:
		if _, ok := l.conns[c]; ok {
			l.conns[c] = st
		}
	case http.StateHijacked, http.StateClosed:
		delete(l.conns, c)
	}
}

// evictIdle closes one idle connection and uncounts it; false when none
// is idle.
func (l *connLimit) evictIdle() bool {
	for c, st := range l.conns {
		if st == http.StateIdle {
			// Not here: closing a TLS connection may wait to send its
			// alert, and this runs on the server's accept loop.
			go c.Close()
			delete(l.conns, c)
			return true
		}
	}
	return false
}

// Request bodies are read within a time that grows with their size: a
// base plus the time at a minimum rate. A body that comes slower fails
// (400) and its connection is closed, so slow bodies cannot hold
// connections for ever.
const (
	bodyTimeBase = 10 * time.Second
	bodyMinRate  = 16 << 10 // bytes a second
)

// bodyDeadline is how long a body of n bytes may take.
func bodyDeadline(base time.Duration, rate int, n int64) time.Duration {
	return base + time.Duration(n)*time.Second/time.Duration(rate)
}

// boundBody bounds the time to read each plain request's body (see
// bodyTimeBase). The deadline is lifted once the body is read, so a
// handler that then waits (for a commit, say) is not cut off.
func (s *Server) boundBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodySize {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"code": http.StatusRequestEntityTooLarge, "message": "body too large"})
			return
		}
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			h.ServeHTTP(w, r)
			return
		}
		n := r.ContentLength
		if n < 0 { // chunked: as long as the largest body may take
			n = maxBodySize
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(bodyDeadline(s.bodyTimeBase, s.bodyMinRate, n))); err != nil {
			s.log.Debug("body deadline not set", "err", err)
		}
		r2 := *r // the server keeps its own request as it was
		r2.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		h.ServeHTTP(w, &r2)
	})
}

// deadlineBody lifts the read deadline once the body is read whole.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
