package relay

import (
	"net/http"
	"sync"
)

// socketKind says how a socket is counted.
type socketKind int

const (
	// socketMessages: a device's message socket. Never refused: a device
	// has one at a time (a new one closes the old), so there are at most
	// as many as devices, and whatever else fills the relay, devices get
	// in.
	socketMessages socketKind = iota
	// socketAuthenticated: an authenticated socket without message
	// delivery (X-Signal-Disable-Messages). Counted in MaxSockets.
	socketAuthenticated
	// socketUnauthenticated: a provisioning socket or a chat socket without
	// credentials. Counted in MaxSockets, MaxUnauthSockets and
	// MaxUnauthSocketsPerSource, and given a smaller budget (unauthOptions).
	socketUnauthenticated
)

// Defaults of the socket caps.
const (
	defaultMaxSockets                = 10_000
	defaultMaxUnauthSockets          = 1_000
	defaultMaxUnauthSocketsPerSource = 16
)

// Budget of an unauthenticated socket: what it can make the relay hold.
// Its requests are registrations, links and provisioning (a few KiB each).
const (
	unauthReadLimit   = 128 << 10
	unauthInFlight    = 2
	unauthQueuedBytes = 256 << 10
)

// socketCounts are the open sockets by kind and by source.
type socketCounts struct {
	mu       sync.Mutex
	all      int // every socket but message sockets
	unauth   int
	bySource map[string]int // unauthenticated sockets per source
}

// takeSocket counts a new socket of kind from r's source, or answers 503
// when a cap is reached. release uncounts it.
func (s *Server) takeSocket(w http.ResponseWriter, r *http.Request, kind socketKind) (release func(), ok bool) {
	if kind == socketMessages {
		return func() {}, true
	}
	src := sourceKey(r.RemoteAddr)
	c := &s.socketCounts
	c.mu.Lock()
	defer c.mu.Unlock()
	refuse := c.all >= s.cfg.MaxSockets
	if kind == socketUnauthenticated {
		refuse = refuse || c.unauth >= s.cfg.MaxUnauthSockets || c.bySource[src] >= s.cfg.MaxUnauthSocketsPerSource
	}
	if refuse {
		http.Error(w, "too many connections", http.StatusServiceUnavailable)
		return nil, false
	}
	c.all++
	if kind == socketUnauthenticated {
		c.unauth++
		if c.bySource == nil {
			c.bySource = map[string]int{}
		}
		c.bySource[src]++
	}
	return sync.OnceFunc(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.all--
		if kind == socketUnauthenticated {
			c.unauth--
			if c.bySource[src]--; c.bySource[src] <= 0 {
				delete(c.bySource, src)
			}
		}
	}), true
}
