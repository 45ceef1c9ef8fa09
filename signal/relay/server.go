// Package relay is a self-hosted server that speaks the Signal service wire
// protocol for what linked devices use: provisioning, linking, prekeys,
// messages and their delivery over WebSocket-Resources (signal-wire.md
// section 9). Accounts have no phone number: the first device registers
// through a reduced registration endpoint gated by an operator token.
//
// New checks the configuration and starts nothing; Run opens the store,
// listens, serves and, when its context ends, closes every socket and the
// store before returning.
package relay

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Config configures a relay.
type Config struct {
	// Listen is the TCP address to listen on, e.g. "127.0.0.1:8443" or
	// "127.0.0.1:0" (the chosen port is reported by Addr).
	Listen string
	// DataDir holds the database (relay.db, mode 0600); created if missing.
	DataDir string
	// TLSCert and TLSKey are PEM files; both or neither. Without them the
	// relay serves plain HTTP, and only on loopback unless AllowInsecure.
	TLSCert, TLSKey string
	// AllowInsecure lets the relay serve plain HTTP on a non-loopback
	// address (a warning is logged). For operators behind a TLS proxy.
	AllowInsecure bool
	// RegistrationToken gates account creation: a registration must carry
	// it. Empty: registration is open on a loopback listener and closed on
	// any other.
	RegistrationToken string
	// MessageRate and MessageBurst bound the sends of one account (token
	// bucket, sends per second). Zero: 500 per second, burst 1000.
	MessageRate  float64
	MessageBurst int
	// ChallengeAfter is how many sends refused with 429 an account may
	// pile up (forgiven at that many a minute) before the relay demands a
	// challenge: its sends are then 428 until it answers PUT /v1/challenge
	// with the operator's code (ChallengeCode). Zero: the send burst;
	// negative: never.
	ChallengeAfter int
	// MaxQueue bounds the envelopes queued for one device (default
	// 10,000); a send to a device whose queue is full is refused with 507
	// and {"fullDevices": [...]} until the device fetches its messages.
	MaxQueue int
	// MaxSockets bounds the open WebSockets (default 10,000) except the
	// devices' message sockets, which are never refused (one per device);
	// an upgrade beyond it is answered 503.
	MaxSockets int
	// MaxUnauthSockets bounds the sockets opened without credentials
	// (provisioning sockets and unauthenticated chat sockets; default
	// 1,000), and MaxUnauthSocketsPerSource those of one source address
	// (IPv6: one /64; default 16). Beyond them, 503.
	MaxUnauthSockets          int
	MaxUnauthSocketsPerSource int
	// MaxConns bounds the plain HTTP connections (default 1,000): every
	// connection until it becomes a WebSocket. A new one beyond it takes
	// the place of an idle keep-alive connection, or is closed.
	MaxConns int
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
	// Logger receives operational logs (default: discarded). Secrets never
	// reach it.
	Logger *slog.Logger
	// Observer, if set, is told of requests, messages, commits and
	// challenges (metrics); default: nobody.
	Observer Observer
}

// Limits and timings of the protocol (signal-wire.md sections 1, 5 and 7.4).
const (
	provisioningLifetime = 90 * time.Second
	linkTokenLifetime    = 10 * time.Minute
	chatIdleTimeout      = 90 * time.Second
	maxContentSize       = 96 << 10  // one message entry's content
	maxProvisionSize     = 256 << 10 // a ProvisionEnvelope
	maxBodySize          = 2 << 20   // any JSON request body
	maxKeysPerList       = 100
	deliveryWindow       = 64 // envelopes in flight per socket
	defaultMaxQueue      = 10_000
)

// Server is one relay.
type Server struct {
	// beforeCommit, when set (tests, before Run), runs before each group
	// commit of the store's writer; an error fails the group.
	beforeCommit func() error
	// afterCommit, when set (tests, before Run), runs after each group
	// commit; an error is reported as the group's failure.
	afterCommit func() error

	cfg       Config
	tlsConfig *tls.Config
	now       func() time.Time
	log       *slog.Logger
	obs       Observer
	tokenHash [32]byte // sha256 of the registration token, when set
	// provisioningLifetime is how long a provisioning socket waits (90 s;
	// tests shorten it).
	provisioningLifetime time.Duration
	// bodyTimeBase and bodyMinRate bound the reading of a request body
	// (connlimit.go; tests shorten them).
	bodyTimeBase time.Duration
	bodyMinRate  int

	ready chan struct{}
	mu    sync.Mutex
	addr  net.Addr
	ran   bool
	// serving: the store is open and the relay listens (Stats).
	serving bool

	// Set by Run.
	store         *store
	loopback      bool
	sessions      sync.WaitGroup // handlers (plain requests and sockets) still running
	baseCtx       context.Context
	chat          map[string]*chatSession  // devKey -> the device's socket
	deliveryLocks map[string]chan struct{} // devKey -> held by the device's running delivery loop
	provisioning  map[string]*provisioningSession
	linked        *linkWaiters
	limiter       *limiter
	keyFetches    keyFetchLimits
	authFails     *authFailures
	challenges    *challenges
	socketCounts  socketCounts    // open WebSockets
	writerCtx     context.Context // lives until the store's writer stops
}

// New checks cfg and loads the TLS pair. It starts nothing and touches no
// file but the TLS pair.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("%w: no data directory", ErrConfig)
	}
	if cfg.Listen == "" {
		return nil, fmt.Errorf("%w: no listen address", ErrConfig)
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: listen address %q: %w", ErrConfig, cfg.Listen, err)
	}
	s := &Server{cfg: cfg, now: cfg.Now, log: cfg.Logger, ready: make(chan struct{}), provisioningLifetime: provisioningLifetime,
		bodyTimeBase: bodyTimeBase, bodyMinRate: bodyMinRate}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.obs = cfg.Observer
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if cfg.RegistrationToken != "" {
		s.tokenHash = sha256.Sum256([]byte(cfg.RegistrationToken))
	}
	switch {
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return nil, fmt.Errorf("%w: give both a TLS certificate and a key, or neither", ErrConfig)
	case cfg.TLSCert != "":
		pair, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS pair: %w", ErrConfig, err)
		}
		s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"http/1.1"}}
	case !isLoopbackHost(host) && !cfg.AllowInsecure:
		return nil, fmt.Errorf("%w: %s (give --tls-cert and --tls-key, or allow it explicitly)", ErrInsecureListen, cfg.Listen)
	}
	rate, burst := cfg.MessageRate, cfg.MessageBurst
	if rate <= 0 {
		rate = 500
	}
	if burst <= 0 {
		burst = 1000
	}
	s.limiter = newLimiter(rate, burst, s.now)
	s.keyFetches = newKeyFetchLimits(s.now)
	s.authFails = newAuthFailures(s.now)
	after := cfg.ChallengeAfter
	if after == 0 {
		after = burst
	}
	s.challenges = newChallenges(after, s.now)
	s.challenges.issued = s.obs.ChallengeIssued
	if s.cfg.MaxQueue <= 0 {
		s.cfg.MaxQueue = defaultMaxQueue
	}
	if s.cfg.MaxSockets <= 0 {
		s.cfg.MaxSockets = defaultMaxSockets
	}
	if s.cfg.MaxConns <= 0 {
		s.cfg.MaxConns = defaultMaxConns
	}
	if s.cfg.MaxUnauthSockets <= 0 {
		s.cfg.MaxUnauthSockets = defaultMaxUnauthSockets
	}
	if s.cfg.MaxUnauthSocketsPerSource <= 0 {
		s.cfg.MaxUnauthSocketsPerSource = defaultMaxUnauthSocketsPerSource
	}
	return s, nil
}

// isLoopbackHost reports whether a listen host only reaches this machine.
// An empty host or an unspecified address listens everywhere.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Ready is closed once the relay listens (Addr is then set), or once Run
// has failed before listening.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the relay listens on; nil before it listens.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is the base URL of the relay ("https://host:port" or "http://..."),
// or "" before it listens.
func (s *Server) URL() string {
	a := s.Addr()
	if a == nil {
		return ""
	}
	if s.tlsConfig != nil {
		return "https://" + a.String()
	}
	return "http://" + a.String()
}

// Run opens the store, listens and serves until ctx ends. It then closes
// every socket (code 1001), waits for the handlers, closes the store and
// returns nil; an error means the relay could not start or serve.
func (s *Server) Run(ctx context.Context) (err error) {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return ErrAlreadyRunning
	}
	s.ran = true
	s.mu.Unlock()
	readyOnce := sync.OnceFunc(func() { close(s.ready) })
	defer readyOnce()

	st, err := openStore(s.cfg.DataDir)
	if err != nil {
		return err
	}

	defer func() {
		if cerr := st.close(); cerr != nil && err == nil {
			err = fmt.Errorf("%w: close: %w", ErrStore, cerr)
		}
	}()
	if s.challenges.key, err = loadChallengeKey(s.cfg.DataDir); err != nil {
		return err
	}
	st.beforeCommit, st.afterCommit = s.beforeCommit, s.afterCommit
	st.committed = s.obs.Commit
	s.store = st
	// The group-commit writer outlives every socket and request: it stops
	// after them (deferred calls run last-in first-out), before the store
	// closes.
	writerCtx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	s.writerCtx = writerCtx
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		st.runWriter(writerCtx)
	}()
	defer func() {
		stopWriter()
		<-writerDone
	}()
	s.chat = map[string]*chatSession{}
	s.deliveryLocks = map[string]chan struct{}{}
	s.provisioning = map[string]*provisioningSession{}
	s.linked = newLinkWaiters()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("relay: listen: %w", err)
	}
	tcpAddr, _ := ln.Addr().(*net.TCPAddr)
	s.loopback = tcpAddr != nil && tcpAddr.IP.IsLoopback()
	if s.tlsConfig == nil && !s.loopback {
		if !s.cfg.AllowInsecure {
			ln.Close()
			return fmt.Errorf("%w: %s", ErrInsecureListen, ln.Addr())
		}
		s.log.Warn("serving plain HTTP beyond loopback: passwords and messages cross the network unencrypted",
			"addr", ln.Addr().String())
	}
	if s.tlsConfig != nil {
		ln = tls.NewListener(ln, s.tlsConfig)
	}

	baseCtx, cancelSessions := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSessions()
	s.baseCtx = baseCtx
	conns := newConnLimit(s.cfg.MaxConns)
	hs := &http.Server{
		Handler:           s.boundBody(s.routes()),
		ConnState:         conns.track,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.serving = true
	s.mu.Unlock()
	defer func() {
		// Before the store closes (deferred earlier, so it runs later).
		s.mu.Lock()
		s.serving = false
		s.mu.Unlock()
	}()
	s.log.Info("relay listening", "addr", ln.Addr().String(), "tls", s.tlsConfig != nil)
	readyOnce()

	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	served := false
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		served = true
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	hs.Shutdown(shutdownCtx) // stops the listener; waits a while for plain requests
	cancelSessions()         // sockets close with 1001; long requests (wait_for_linked_device) end
	hs.Close()               // whatever Shutdown did not wait for
	if !served {
		<-serveErr
	}
	s.sessions.Wait() // every handler, socket or plain, is done with the store
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("relay: serve: %w", err)
	}
	return nil
}

var upgrader = websocket.Upgrader{
	// Reads use the HTTP server's buffer (4 KiB) and writes a buffer from a
	// pool that a socket holds only while it writes: an idle socket holds
	// no buffer of its own.
	ReadBufferSize:  0,
	WriteBufferSize: 16 << 10,
	WriteBufferPool: &sync.Pool{},
	// Clients are programs, not browsers: there is no Origin to trust or
	// refuse, and credentials come in the Authorization header.
	CheckOrigin: func(*http.Request) bool { return true },
}
