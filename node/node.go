// Package node is one running co-signer: its linked Signal device, core's
// App over the encrypted store, the event bus, and the socket API. The
// console, the daemon, the demo, the headless commands and the tests all
// build it here, the same way; package main keeps the command line.
package node

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/keystore"
	"github.com/signal-mpc/cosigner/core/roster"
	"github.com/signal-mpc/cosigner/metrics"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// Vault gives core its buckets in the device store: one file and one key
// for all of a console's secrets.
type Vault struct{ Store *store.Store }

func (v Vault) Update(ctx context.Context, fn func(core.VaultTx) error) error {
	return v.Store.AppUpdate(ctx, func(tx *store.AppTx) error { return fn(tx) })
}

func (v Vault) Submit(ctx context.Context, fn func(core.VaultTx) error) core.Pending {
	return v.Store.AppSubmit(ctx, func(tx *store.AppTx) error { return fn(tx) })
}

func (v Vault) View(ctx context.Context, fn func(core.VaultTx) error) error {
	return v.Store.AppView(ctx, func(tx *store.AppTx) error { return fn(tx) })
}

// Messenger sends core's envelopes through the Signal device.
type Messenger struct {
	Device *device.Device
	// Route, if set, is the peer's address on this device's server (a
	// party's address in a ceremony may be on another).
	Route func(core.Address) device.Address
}

func (m Messenger) addr(to core.Address) device.Address {
	if m.Route != nil {
		return m.Route(to)
	}
	return device.Address{Account: to.Account, Device: to.Device}
}

func (m Messenger) Send(ctx context.Context, to core.Address, env []byte) error {
	return m.Device.Send(ctx, m.addr(to), env)
}

// Prepare starts the encryption when core queues the envelope, so that it
// shares a commit with core's record of its cause.
func (m Messenger) Prepare(ctx context.Context, to core.Address, env []byte) core.Prepared {
	if p := m.Device.Prepare(ctx, m.addr(to), env); p != nil {
		return prepared{p}
	}
	return nil
}

// SendPrepared sends what Prepare started.
func (m Messenger) SendPrepared(ctx context.Context, p core.Prepared, durable func(context.Context) error) error {
	pp, ok := p.(prepared)
	if !ok {
		return fmt.Errorf("console: not a prepared send: %T", p)
	}
	return m.Device.SendPrepared(ctx, pp.p, durable)
}

type prepared struct{ p *device.Prepared }

func (prepared) PreparedSend() {}

// SendAfter lets the device wait for core's records after its own commit
// (same store, same commit order): one commit per send, not two.
func (m Messenger) SendAfter(ctx context.Context, to core.Address, env []byte, durable func(context.Context) error) error {
	return m.Device.SendAfter(ctx, m.addr(to), env, durable)
}

var _ core.Challenger = Messenger{}

// AnswerChallenge answers the server's challenge (core.Challenger).
func (m Messenger) AnswerChallenge(ctx context.Context, token, answer string) error {
	return m.Device.AnswerChallenge(ctx, token, answer)
}

// Config is what a running co-signer needs.
type Config struct {
	Name   string            // this signer's name in the roster
	Dialer *transport.Dialer // the one server, when Servers is empty
	// Servers are the configured servers, in file order; the node runs a
	// device on each one its store has an account on.
	Servers []Server
	// LagAfter is how long a server may deliver nothing from a peer while
	// another server does before it is named lagging for that peer
	// (default a minute).
	LagAfter     time.Duration
	Store        *store.Store // opened, linked
	Logger       *slog.Logger
	AutoApprove  bool
	RoundTimeout time.Duration
	RequestTTL   time.Duration
	ResendEvery  time.Duration
	// MaxElsewhere, if positive, stops the console (Run fails with
	// transport.ErrConnectedElsewhere) after that many consecutive times
	// the server dropped it for another console with the same device; 0:
	// it keeps reconnecting, with a growing wait.
	MaxElsewhere int
	// NoHistoryAtStart: no past signing results are published at start
	// (a daemon or a one-shot command; see core.Config).
	NoHistoryAtStart bool
	// Threshold and Parties are the keygen defaults (keygen.threshold,
	// keygen.parties; 0 parties: the whole roster).
	Threshold, Parties int
	// Outbound, if set, wraps what core sends through (tests use it to
	// make a console cheat).
	Outbound func(core.Messenger) core.Messenger
	// PerServer, if set, rewrites what goes through one server (its local
	// name) on a console on several: tests use it to make a console send
	// different messages through different servers.
	PerServer func(server string, to device.Address, msg []byte) []byte
	// Socket, if set, is where Run serves the API (api.Listen: the store's
	// lock is held, so a socket file there is stale). APIApprove: callers
	// may approve and decline (api.approve).
	Socket     string
	APIApprove bool
	// Protected are files a backup through the socket must never replace
	// (the store itself, its key file).
	Protected []string
	// SocketGroup, when positive, is the group id whose members may use
	// the socket too (0660; its folder must let them through: api.SocketDir);
	// 0: the owner only.
	SocketGroup int
	// SocketOptional: a socket that cannot be made (a path too long for a
	// Unix socket, a read-only folder) is logged and done without, instead
	// of stopping Run. The daemon needs its socket; a console does not.
	SocketOptional bool
	// SigningRules and KeygenRules approve what they match without asking
	// ([[signing.rule]], [[keygen.rule]]).
	SigningRules []*core.SigningRule
	KeygenRules  []*core.KeygenRule
	// ReshareRules accept reshares, refreshes and imports ([[reshare.rule]]).
	ReshareRules []*core.ReshareRule
	// MetricsListen, if set, is where Run serves Prometheus metrics,
	// /healthz and /readyz (metrics package); "127.0.0.1:0" picks a port
	// (MetricsAddr).
	MetricsListen string
}

// Node is one co-signer: the Signal device and core's engine (whose
// methods it has), and its event bus.
type Node struct {
	*core.App
	Bus    *event.Bus
	Device *device.Device
	Card   roster.Card // this signer's own card
	Vault  Vault

	cfg  Config
	key  ed25519.PrivateKey
	rost *roster.Roster
	conn atomic.Pointer[event.Connection] // the last connection status

	metrics     *metrics.Node
	registry    *prometheus.Registry
	metricsAddr atomic.Pointer[string] // where metrics are served, once they are
	engineUp    atomic.Bool            // core's engine is running (readiness)
	metricsSub  atomic.Pointer[event.Subscription]

	links          []*link // a device per server with an account, configuration order
	stoppedDevices atomic.Int32
	connMu         sync.Mutex // orders the console's connection events
	book           *book
	lag            *lagTracker
}

// Open wires a linked store into a device per server that has an account
// and a core App. It starts nothing.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	c := &Node{cfg: cfg, Bus: &event.Bus{}, Vault: Vault{cfg.Store}}
	c.conn.Store(&event.Connection{State: "connecting"})
	servers := cfg.servers()
	for _, s := range servers {
		sub, err := cfg.Store.Server(s.Name)
		if err != nil {
			return nil, err
		}
		acct, err := sub.Account(ctx)
		if errors.Is(err, store.ErrNotFound) {
			continue // configured, not linked or registered there (yet)
		}
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", s.Name, err)
		}
		u, err := s.url()
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", s.Name, err)
		}
		l := &link{name: s.Name, url: u, st: sub, acct: acct, queues: map[device.Address]chan sendJob{}}
		l.conn.Store(&event.Connection{State: "connecting", Server: s.Name})
		c.links = append(c.links, l)
	}
	if len(c.links) == 0 {
		return nil, fmt.Errorf("this console is not linked yet (run cosigner link): %w", store.ErrNotFound)
	}
	var err error
	if c.key, err = core.ConsoleKey(ctx, c.Vault); err != nil {
		return nil, err
	}
	addrs := make([]roster.Address, 0, len(c.links))
	for _, l := range c.links {
		addrs = append(addrs, roster.Address{Server: l.url, Account: l.acct.ACI, Device: l.acct.DeviceID,
			IdentityKey: l.acct.ACIIdentity.PublicKey().Serialize()})
	}
	if c.Card, err = core.OwnCard(ctx, c.Vault, cfg.Name, c.key, addrs); err != nil {
		return nil, err
	}
	if c.rost, err = core.LoadRoster(ctx, c.Vault); err != nil {
		return nil, err
	}
	// Version 1 cards were exchanged when every console had one server:
	// the one whose device has the file's top-level buckets.
	legacy := c.links[0].url
	for _, l := range c.links {
		if l.name == store.DefaultServer {
			legacy = l.url
		}
	}
	c.rost.SetLegacyServer(legacy)
	if err := c.rost.Add(c.Card, true); err != nil && !errors.Is(err, roster.ErrNameTaken) {
		return nil, fmt.Errorf("own card: %w", err)
	}
	if err := core.SaveRoster(ctx, c.Vault, c.rost); err != nil {
		return nil, err
	}
	c.book = &book{legacy: legacy}
	c.book.update(c.rost)
	var urls []string
	for _, l := range c.links {
		urls = append(urls, l.url)
	}
	lagAfter := cfg.LagAfter
	if lagAfter <= 0 {
		lagAfter = time.Minute
	}
	c.lag = &lagTracker{after: lagAfter, last: map[string]map[string]time.Time{}, first: map[string]time.Time{},
		named: map[string]bool{}, urls: urls, share: c.shares}
	var appMu sync.Mutex
	var app *core.App
	for _, l := range c.links {
		var lastElsewhere atomic.Int64 // Status.Elsewhere of the last status
		logger := cfg.Logger
		if logger != nil && len(c.links) > 1 {
			logger = logger.With("server", l.name)
		}
		l.dev, err = device.New(ctx, device.Config{
			Dialer: c.dialerOf(l.name), Store: l.st, Logger: logger,
			Deliver: func(ctx context.Context, from device.Address, body []byte) error {
				appMu.Lock()
				a := app
				appMu.Unlock()
				if peer := c.book.name(l.url, from.Account, from.Device); peer != "" {
					c.lag.saw(peer, l.url, time.Now())
				}
				// With one server, core hears no server named: it works
				// as it always has (no copies to tell apart).
				via := ""
				if len(c.links) > 1 {
					via = l.url
				}
				err := a.Deliver(ctx, core.Address{Account: from.Account, Device: from.Device, Server: via}, body)
				if errors.Is(err, core.ErrStoreFailed) {
					// Not recorded: the envelope must stay on the server.
					return fmt.Errorf("%w: %w", device.ErrNotHandled, err)
				}
				return err
			},
			OnDrop: func(from device.Address, err error) {
				c.Bus.Publish(event.Error{Time: time.Now(), Text: fmt.Sprintf("dropped a message from %s through %s: %v", from, l.name, err)})
			},
			OnStatus: func(s transport.Status) {
				st := event.Connection{State: s.State.String(), RetryAt: s.RetryAt, Detail: s.Err, Server: l.name}
				l.conn.Store(&st)
				if len(c.links) == 1 {
					st.Server = "" // one server: the console's connection, as ever
					c.conn.Store(&st)
					c.Bus.Publish(st)
				} else {
					// Each server's, then the console's as a whole
					// (connected while any server is).
					c.Bus.Publish(st)
					c.connMu.Lock()
					all := c.aggregate()
					if prev := c.conn.Load(); *prev != all {
						c.conn.Store(&all)
						c.Bus.Publish(all)
					}
					c.connMu.Unlock()
				}
				// Once per drop: the statuses between two drops carry 0.
				if prev := lastElsewhere.Swap(int64(s.Elsewhere)); s.Elsewhere > 0 && int64(s.Elsewhere) != prev {
					c.Bus.Publish(event.Error{Time: time.Now(), Text: c.serverText(l, elsewhereText(s))})
				}
			},
			MaxElsewhere: cfg.MaxElsewhere,
		})
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", l.name, err)
		}
	}
	c.Device = c.links[0].dev
	fan := &fanout{links: c.links, book: c.book, log: c.logger(), rewrite: cfg.PerServer}
	var out core.Messenger = Messenger{Device: c.Device, Route: func(to core.Address) device.Address { return fan.routes(to)[0].to }}
	if len(c.links) > 1 {
		out = fan
	}
	if cfg.Outbound != nil {
		out = cfg.Outbound(out)
	}
	a, err := core.New(core.Config{
		Me: c.Card, ConsoleKey: c.key, Roster: c.rost, Messenger: out,
		Store: core.NewVaultStore(c.Vault), Bus: c.Bus, Logger: cfg.Logger,
		RoundTimeout: cfg.RoundTimeout, RequestTTL: cfg.RequestTTL, ResendEvery: cfg.ResendEvery,
		AutoApprove: cfg.AutoApprove,
		RestoredAt:  cfg.Store.RestoredAt(), NoHistoryAtStart: cfg.NoHistoryAtStart,
		SaveRoster: func(ctx context.Context, r *roster.Roster) error {
			c.book.update(r)
			return core.SaveRoster(ctx, c.Vault, r)
		},
		// The approval rules ([[signing.rule]], [[keygen.rule]]).
		SigningRules: cfg.SigningRules, KeygenRules: cfg.KeygenRules, ReshareRules: cfg.ReshareRules,
	})
	if err != nil {
		return nil, err
	}
	appMu.Lock()
	app = a
	appMu.Unlock()
	c.App = a
	if cfg.MetricsListen != "" {
		c.registry = metrics.NewRegistry()
		c.metrics = metrics.NewNode(c.registry, metrics.NodeSources{
			Untagged: func() uint64 { return c.untagged() },
			EventsDropped: func() uint64 {
				if sub := c.metricsSub.Load(); sub != nil {
					return sub.Dropped()
				}
				return 0
			},
		})
	}
	return c, nil
}

// dialerOf is the transport to the named server.
func (c *Node) dialerOf(name string) *transport.Dialer {
	for _, s := range c.cfg.servers() {
		if s.Name == name {
			return s.Dialer
		}
	}
	return c.cfg.Dialer
}

// shares reports whether the peer has an address on server.
func (c *Node) shares(peer, server string) bool {
	c.book.mu.RLock()
	defer c.book.mu.RUnlock()
	for k, n := range c.book.names {
		if n == peer && len(k) > len(server) && k[:len(server)] == server && k[len(server)] == ' ' {
			return true
		}
	}
	return false
}

// serverText names the server in a message when there are several.
func (c *Node) serverText(l *link, text string) string {
	if len(c.links) == 1 {
		return text
	}
	return fmt.Sprintf("server %s: %s", l.name, text)
}

// untagged is the non-MPC Signal traffic all devices dropped unread.
func (c *Node) untagged() uint64 {
	var n uint64
	for _, l := range c.links {
		n += l.dev.Stats().Untagged
	}
	return n
}

// elsewhereText tells the human that another console uses this device.
func elsewhereText(s transport.Status) string {
	text := fmt.Sprintf("%v (the server dropped this console for it %d times in a row)", transport.ErrConnectedElsewhere, s.Elsewhere)
	if s.State == transport.StateStopped {
		return text + "; this console stopped"
	}
	return text + "; reconnecting at " + s.RetryAt.Format(time.TimeOnly)
}

// Run runs the device, the engine and (when configured) the socket API
// until ctx ends; the first to fail stops the others.
func (c *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ln net.Listener
	if c.cfg.Socket != "" {
		var err error
		gid := -1
		if c.cfg.SocketGroup > 0 {
			gid = c.cfg.SocketGroup
		}
		ln, err = api.ListenGroup(c.cfg.Socket, gid)
		switch {
		case err != nil && c.cfg.SocketOptional:
			c.logger().Warn("no socket API for this console: attached consoles and commands cannot reach it", "err", err)
		case err != nil:
			return err
		}
	}
	var ml net.Listener
	if c.cfg.MetricsListen != "" {
		var err error
		if ml, err = metrics.Listen(ctx, c.cfg.MetricsListen, c.logger()); err != nil {
			if ln != nil {
				ln.Close()
			}
			return err
		}
	}
	errs := make(chan error, 4)
	running := 2
	if ml != nil {
		// Subscribed before the engine runs: no approval or result is
		// missed.
		sub := c.Bus.Subscribe(0)
		defer sub.Close()
		c.metricsSub.Store(sub)
		c.cfg.Store.ObserveCommits(c.metrics.CommitObserved)
		defer c.cfg.Store.ObserveCommits(nil)
		running++
		go func() { errs <- c.serveMetrics(ctx, ml, sub) }()
	}
	c.engineUp.Store(true)
	go func() {
		defer c.engineUp.Store(false)
		errs <- c.App.Run(ctx)
	}()
	for _, l := range c.links {
		l.start(ctx)
		defer l.stop()
		running++
		go func() { errs <- c.runDevice(ctx, l) }()
	}
	running-- // the devices are counted above
	if len(c.links) > 1 {
		running++
		go func() { errs <- c.watchLag(ctx) }()
	}
	if ln != nil {
		running++
		go func() { errs <- api.NewServer(c, c.cfg.APIApprove, c.logger()).Serve(ctx, ln) }()
	}
	go c.reportUntagged(ctx)
	all := []error{<-errs}
	cancel()
	for range running - 1 {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// runDevice runs one server's device. With several servers, one that
// fails for good (a device dropped for another console, an account the
// server refuses) is reported and the others go on; the node stops only
// when no device runs.
func (c *Node) runDevice(ctx context.Context, l *link) error {
	err := l.dev.Run(ctx)
	if ctx.Err() != nil || len(c.links) == 1 {
		return err
	}
	c.Bus.Publish(event.Error{Time: time.Now(), Text: c.serverText(l, fmt.Sprintf("stopped: %v", err))})
	c.logger().Error("server device stopped", "server", l.name, "err", err)
	if c.stoppedDevices.Add(1) < int32(len(c.links)) {
		<-ctx.Done()
		return nil
	}
	return err
}

// watchLag names a server lagging for a peer (event and status) when it
// delivered nothing from the peer for LagAfter while another server did,
// and says when it delivers again.
func (c *Node) watchLag(ctx context.Context) error {
	t := time.NewTicker(max(c.lag.after/4, 50*time.Millisecond))
	defer t.Stop()
	names := map[string]string{}
	for _, l := range c.links {
		names[l.url] = l.name
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		lagging, recovered := c.lag.check(time.Now())
		for _, p := range lagging {
			c.logger().Warn("a server delivers nothing from a peer while another does", "server", names[p[0]], "peer", p[1])
			c.Bus.Publish(event.ServerLagging{Time: time.Now(), Server: names[p[0]], Peer: p[1], Lagging: true})
		}
		for _, p := range recovered {
			c.logger().Info("a lagging server delivers from the peer again", "server", names[p[0]], "peer", p[1])
			c.Bus.Publish(event.ServerLagging{Time: time.Now(), Server: names[p[0]], Peer: p[1]})
		}
	}
}

// serveMetrics follows the bus for the metrics and serves them on ln
// until ctx ends. It fails only when the listener dies; that stops the
// node as the socket API's would, so a supervisor sees it and restarts it
// rather than leave it unwatched.
func (c *Node) serveMetrics(ctx context.Context, ln net.Listener, sub *event.Subscription) error {
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.metrics.Run(mctx, sub)
	}()
	addr := ln.Addr().String()
	c.metricsAddr.Store(&addr)
	c.logger().Info("serving metrics", "addr", addr)
	err := metrics.Serve(ctx, ln, metrics.Handler(c.registry, c.ready))
	stop()
	<-done
	return err
}

// ready is the node's readiness: the engine runs (its store is open) and
// the server connection is up.
func (c *Node) ready() error {
	if !c.engineUp.Load() {
		return errors.New("the engine is not running")
	}
	if st := c.aggregate(); st.State != "connected" {
		return fmt.Errorf("the server connection is %s", st.State)
	}
	return nil
}

// MetricsAddr is where Run serves metrics, "" before it does (or when not
// configured).
func (c *Node) MetricsAddr() string {
	if a := c.metricsAddr.Load(); a != nil {
		return *a
	}
	return ""
}

func (c *Node) logger() *slog.Logger {
	if c.cfg.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.cfg.Logger
}

// Config is the configuration the node was opened with.
func (c *Node) Config() Config { return c.cfg }

// Backup writes a consistent, still encrypted copy of the store to path,
// an absolute path (api.Backend); an existing file only when replace.
func (c *Node) Backup(ctx context.Context, path string, replace bool) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w: the backup's path must be absolute", core.ErrConfig)
	}
	return BackupStore(ctx, c.cfg.Store, path, replace, c.cfg.Protected)
}

// BackupStore writes a copy of st to path (an existing file only when
// replace), never over one of protected (the store itself, its key file):
// for the running co-signer and for the backup command alike.
func BackupStore(ctx context.Context, st *store.Store, path string, replace bool, protected []string) error {
	for _, own := range protected {
		if sameFile(path, own) {
			return fmt.Errorf("%s is this console's own %s: write the copy elsewhere", path, filepath.Base(own))
		}
	}
	return st.Backup(ctx, path, replace)
}

// sameFile reports whether a and b name one existing file.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// Identity is this signer's own card (api.Backend).
func (c *Node) Identity() roster.Card { return c.Card }

// Connection is the server connection's last status (api.Backend):
// connected when any server is.
func (c *Node) Connection() event.Connection { return *c.conn.Load() }

// Subscribe follows the node's events (api.Backend).
func (c *Node) Subscribe(backlog int) *event.Subscription { return c.Bus.Subscribe(backlog) }

// reportUntagged tells the console how much non-MPC Signal traffic the
// device dropped unread (it is counted in the device, not seen by core).
func (c *Node) reportUntagged(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n := c.untagged(); n != last {
			last = n
			c.Bus.Publish(event.Untagged{Total: n})
		}
	}
}

// ExportKey writes this console's share of a key (the only key when keyID
// is zero) to path, a new file (mode 0600), as an EIP-2335 keystore
// encrypted under password. The share leaves memory once written.
func (c *Node) ExportKey(ctx context.Context, keyID [32]byte, path, password, kdf string) (*api.KeyExportResult, error) {
	if password == "" {
		return nil, fmt.Errorf("%w: the keystore's password is empty", core.ErrConfig)
	}
	secret, public, info, err := c.App.KeyShare(ctx, keyID)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	ks, err := keystore.Encrypt(secret, public, password, keystore.Options{KDF: kdf,
		Description: fmt.Sprintf("cosigner share %d of %d-of-%d key %x (group key %x)", info.Self, info.T, info.N, info.KeyID[:4], info.GroupKey)})
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(ks); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, err
	}
	return &api.KeyExportResult{Keystore: path, PublicShare: hex.EncodeToString(public), KeyID: hex.EncodeToString(info.KeyID[:]), Index: info.Self}, nil
}

// AddDevice approves a link request (the URL a new device shows) as this
// account's primary device, for self-hosted accounts this console
// registered.
func (c *Node) AddDevice(ctx context.Context, url string) error {
	// The primary of the first server this console registered on.
	var errs []error
	for _, l := range c.links {
		p, err := device.PrimaryFromStore(ctx, l.st)
		if err != nil {
			errs = append(errs, fmt.Errorf("server %s: %w", l.name, err))
			continue
		}
		return p.ApproveLink(ctx, c.dialerOf(l.name), url, nil)
	}
	return errors.Join(errs...)
}
