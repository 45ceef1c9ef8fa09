package relay

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Observer is told what the relay does, for metrics. It sees routes (the
// mux's patterns), status codes, counts and durations only: never an
// account, an address or a message. Its methods are called from many
// goroutines and must not block.
type Observer interface {
	// Request: a request on route (a pattern such as
	// "PUT /v1/messages/{serviceId}", or "/" for an unknown path) was
	// answered with status, over plain HTTP or inside a socket.
	Request(route string, status int)
	// MessagesStored: n envelopes were queued durably.
	MessagesStored(n int)
	// MessagesDelivered: a device acknowledged n envelopes.
	MessagesDelivered(n int)
	// Commit: one group commit of the store took d.
	Commit(d time.Duration)
	// ChallengeIssued: an account must now answer a challenge.
	ChallengeIssued()
}

type nopObserver struct{}

func (nopObserver) Request(string, int)   {}
func (nopObserver) MessagesStored(int)    {}
func (nopObserver) MessagesDelivered(int) {}
func (nopObserver) Commit(time.Duration)  {}
func (nopObserver) ChallengeIssued()      {}

// Stats is the relay's state now, for gauges.
type Stats struct {
	// Serving: the store is open and the relay listens (readiness).
	Serving bool
	// Devices is how many devices hold their message socket.
	Devices int
	// Queued is how many envelopes wait for their device, all devices.
	Queued int
}

// Stats reads the relay's state. Queued walks the queue's pages, not its
// entries: cheap enough for a scrape every few seconds.
func (s *Server) Stats() (Stats, error) {
	s.mu.Lock()
	serving, st, devices := s.serving, s.store, len(s.chat)
	s.mu.Unlock()
	if !serving {
		return Stats{}, nil
	}
	out := Stats{Serving: true, Devices: devices}
	err := st.db.View(func(tx *bolt.Tx) error {
		out.Queued = tx.Bucket(bucketQueue).Stats().KeyN
		return nil
	})
	if err != nil {
		// Stopping (the store closed after the check): not serving.
		return Stats{}, nil
	}
	return out, nil
}

// QueueDepths calls fn with the number of envelopes queued for each
// device that has any. It walks the queue's keys, so its work grows with
// what is queued (at most MaxQueue a device): for a scrape, not a
// request path.
func (s *Server) QueueDepths(fn func(depth int)) {
	s.mu.Lock()
	serving, st := s.serving, s.store
	s.mu.Unlock()
	if !serving {
		return
	}
	const n = len(uuid{}) + 1 // devKey's length: the queue key's prefix
	// An error means the store closed after the check (stopping): there
	// is nothing to report then.
	_ = st.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQueue).Cursor()
		var dev []byte
		depth := 0
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) < n {
				continue
			}
			if depth > 0 && bytes.Equal(k[:n], dev) {
				depth++
				continue
			}
			if depth > 0 {
				fn(depth)
			}
			dev, depth = bytes.Clone(k[:n]), 1
		}
		if depth > 0 {
			fn(depth)
		}
		return nil
	})
}

// observed reports each request's route and status to the observer. The
// mux sets r.Pattern on the request it is given, so it is known once the
// handler returns.
func (s *Server) observed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		route := r.Pattern
		if route == "" {
			route = "other"
		}
		s.obs.Request(route, sw.status)
	})
}

// statusWriter remembers the status written; it still lets a socket
// upgrade take the connection (gorilla/websocket asks for http.Hijacker).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("relay: connection cannot be taken over")
	}
	// A taken-over connection answered 101 (the upgrade).
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return h.Hijack()
}
