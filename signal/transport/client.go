package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/signal-mpc/cosigner/signal/wsr"
)

// ErrUnauthorized: the server refused the credentials (401 or 403 on the
// authenticated socket): the device was unlinked or its password is wrong.
// Retrying cannot help, so the client stops.
var ErrUnauthorized = errors.New("transport: server refused the credentials")

// State is the connection's lifecycle as the console shows it.
type State uint8

// States. Moves: Connecting -> Connected -> Waiting -> Connecting ...;
// any state -> Stopped (final).
const (
	// StateConnecting: a WebSocket is being opened.
	StateConnecting State = iota
	// StateConnected: the socket is up and answering keepalives.
	StateConnected
	// StateWaiting: the last attempt failed or the socket dropped; the next
	// attempt is at Status.RetryAt.
	StateWaiting
	// StateStopped: Run returned (context ended or credentials refused).
	StateStopped
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateWaiting:
		return "reconnecting"
	case StateStopped:
		return "stopped"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Status is a snapshot of the connection for the UI: plain values only.
type Status struct {
	State   State
	Attempt int       // consecutive failed attempts
	RetryAt time.Time // when StateWaiting ends
	Err     string    // why the last attempt or connection failed
	Mode    Mode      // how the socket was opened
	// Elsewhere counts the consecutive connections the server closed
	// because this same device connected from somewhere else (close code
	// 4409, ErrConnectedElsewhere); 0 once a connection ends otherwise.
	Elsewhere int
}

// CloseConnectedElsewhere is the close code of a socket the server replaced
// with a newer one of the same device.
const CloseConnectedElsewhere = 4409

// ClientConfig configures a Client.
type ClientConfig struct {
	Dialer *Dialer
	// Path of the WebSocket with its query, e.g. /v1/websocket/.
	Path string
	// Header returns the headers of each attempt (credentials may change).
	Header func() http.Header
	// Handler answers the server's requests (message delivery).
	Handler wsr.Handler
	// KeepalivePath is requested every KeepaliveInterval (default
	// /v1/keepalive every 30 s); no answer within KeepaliveTimeout (default
	// 15 s) drops the socket. Signal's servers expect these requests, and
	// its mock never answers WebSocket pings.
	KeepalivePath     string
	KeepaliveInterval time.Duration
	KeepaliveTimeout  time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (defaults
	// 1 s and 60 s); the wait doubles per failure, with full jitter. A
	// connection the server closed because the device connected elsewhere
	// counts as a failure: two consoles sharing a device back off instead
	// of displacing each other every second.
	MinBackoff, MaxBackoff time.Duration
	// MaxElsewhere, if positive, stops Run with an error wrapping
	// ErrConnectedElsewhere after that many consecutive such closes (for a
	// command that should exit rather than fight the other console).
	MaxElsewhere int
	// OnStatus, if set, is called on every change. It must not block.
	OnStatus func(Status)
	Logger   *slog.Logger
}

// Client keeps one authenticated WebSocket up: it reconnects with capped
// exponential backoff and jitter, runs keepalives, and publishes its state.
// NewClient starts nothing; Run does, and returns when ctx ends.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	mu      sync.Mutex
	status  Status
	conn    *wsr.Conn
	changed chan struct{} // closed and replaced on every connection change
}

// NewClient checks the configuration.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Dialer == nil || cfg.Path == "" {
		return nil, fmt.Errorf("%w: client needs a dialer and a path", ErrConfig)
	}
	if cfg.KeepalivePath == "" {
		cfg.KeepalivePath = "/v1/keepalive"
	}
	if cfg.KeepaliveInterval <= 0 {
		cfg.KeepaliveInterval = 30 * time.Second
	}
	if cfg.KeepaliveTimeout <= 0 {
		cfg.KeepaliveTimeout = 15 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(60*time.Second, cfg.MinBackoff)
	}
	if cfg.Header == nil {
		cfg.Header = func() http.Header { return nil }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: log, changed: make(chan struct{})}, nil
}

// Status returns the current state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Client) setStatus(s Status, conn *wsr.Conn) {
	c.mu.Lock()
	c.status = s
	if conn != c.conn {
		c.conn = conn
		close(c.changed)
		c.changed = make(chan struct{})
	}
	c.mu.Unlock()
	if c.cfg.OnStatus != nil {
		c.cfg.OnStatus(s)
	}
}

// Run keeps the connection up until ctx ends (nil is returned), the
// server refuses the credentials (an error wrapping ErrUnauthorized), or,
// with MaxElsewhere, the device keeps being connected elsewhere (an error
// wrapping ErrConnectedElsewhere).
func (c *Client) Run(ctx context.Context) error {
	attempt, elsewhere := 0, 0
	for {
		c.setStatus(Status{State: StateConnecting, Attempt: attempt}, nil)
		ws, err := c.cfg.Dialer.Dial(ctx, c.cfg.Path, c.cfg.Header())
		if ctx.Err() != nil {
			if ws != nil {
				ws.Close()
			}
			c.setStatus(Status{State: StateStopped}, nil)
			return nil
		}
		var he *HandshakeError
		if errors.As(err, &he) && (he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden) {
			c.setStatus(Status{State: StateStopped, Err: err.Error()}, nil)
			return fmt.Errorf("%w: %w", ErrUnauthorized, err)
		}
		if err == nil {
			err = c.serve(ctx, wsr.New(ws, wsr.Options{Handler: c.cfg.Handler, Logger: c.log}))
			if ctx.Err() != nil {
				c.setStatus(Status{State: StateStopped}, nil)
				return nil
			}
			if connectedElsewhere(err) {
				// Not reset: the wait grows while the other console holds on.
				elsewhere++
				err = fmt.Errorf("%w (server closed the socket: %w)", ErrConnectedElsewhere, err)
			} else {
				attempt, elsewhere = 0, 0
			}
		}
		if elsewhere > 0 && c.cfg.MaxElsewhere > 0 && elsewhere >= c.cfg.MaxElsewhere {
			c.log.Error(ErrConnectedElsewhere.Error(), "times", elsewhere)
			c.setStatus(Status{State: StateStopped, Err: err.Error(), Elsewhere: elsewhere}, nil)
			return err
		}
		attempt++
		wait := c.backoff(attempt)
		if elsewhere > 0 {
			c.log.Error(ErrConnectedElsewhere.Error(), "times", elsewhere, "retry_in", wait)
		} else {
			c.log.Info("connection lost", "err", err, "retry_in", wait)
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		c.setStatus(Status{State: StateWaiting, Attempt: attempt, RetryAt: time.Now().Add(wait), Err: msg, Elsewhere: elsewhere}, nil)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			c.setStatus(Status{State: StateStopped}, nil)
			return nil
		case <-t.C:
		}
	}
}

// connectedElsewhere reports whether err is the server's close of a socket
// replaced by a newer connection of the same device.
func connectedElsewhere(err error) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce) && ce.Code == CloseConnectedElsewhere
}

// backoff is full jitter over a doubling window: uniform in [min, window].
func (c *Client) backoff(attempt int) time.Duration {
	window := c.cfg.MinBackoff
	for i := 1; i < attempt && window < c.cfg.MaxBackoff; i++ {
		window *= 2
	}
	window = min(window, c.cfg.MaxBackoff)
	if window <= c.cfg.MinBackoff {
		return window
	}
	return c.cfg.MinBackoff + rand.N(window-c.cfg.MinBackoff+1)
}

// serve runs one connection and its keepalive loop; whichever fails first
// ends both.
func (c *Client) serve(ctx context.Context, conn *wsr.Conn) error {
	c.setStatus(Status{State: StateConnected, Mode: c.cfg.Dialer.Mode()}, conn)
	kaCtx, stop := context.WithCancel(ctx)
	defer stop()
	kaErr := make(chan error, 1)
	go func() { kaErr <- c.keepalive(kaCtx, conn) }()
	err := conn.Run(ctx)
	stop()
	if e := <-kaErr; e != nil {
		err = e // the keepalive dropped the socket: its reason is the one
	}
	c.setStatus(c.Status(), nil)
	return err
}

func (c *Client) keepalive(ctx context.Context, conn *wsr.Conn) error {
	t := time.NewTicker(c.cfg.KeepaliveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-conn.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, c.cfg.KeepaliveTimeout)
		resp, err := conn.Request(rctx, &wsr.Request{Verb: http.MethodGet, Path: c.cfg.KeepalivePath})
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil || resp.Status < 200 || resp.Status > 299 {
			reason := "keepalive unanswered"
			if err == nil {
				reason = fmt.Sprintf("keepalive answered %d", resp.Status)
			}
			conn.Close(4000, reason)
			return fmt.Errorf("transport: %s", reason)
		}
	}
}

// Request sends a request on the current connection, waiting for one to be
// up if needed, until ctx ends. A request that was sent but whose connection
// dropped fails with an error wrapping wsr.ErrClosed: it may or may not have
// been handled, so only idempotent requests should be retried blindly.
func (c *Client) Request(ctx context.Context, req *wsr.Request) (*wsr.Response, error) {
	for {
		c.mu.Lock()
		conn, changed, st := c.conn, c.changed, c.status.State
		c.mu.Unlock()
		if st == StateStopped && conn == nil {
			return nil, fmt.Errorf("%s %s: %w", req.Verb, req.Path, ErrClosed)
		}
		if conn != nil {
			resp, err := conn.Request(ctx, req)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", req.Verb, req.Path, err)
			}
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s %s: waiting for a connection: %w", req.Verb, req.Path, ctx.Err())
		case <-changed:
		}
	}
}
