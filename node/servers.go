package node

// Several servers: one Signal device per configured server that has an
// account, every one delivering into the one core.App, and a Messenger
// that sends each MPC message through every server sender and recipient
// share, so that no one server can stall or censor a ceremony.

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// Server is one configured Signal server: its local name (the store's
// name for its device, store.DefaultServer for the [server] table's) and
// the transport to it.
type Server struct {
	Name   string
	Dialer *transport.Dialer
}

// url is the server's canonical URL, the one cards carry.
func (s Server) url() (string, error) {
	if s.Dialer == nil {
		return "", fmt.Errorf("%w: server %s has no transport", core.ErrConfig, s.Name)
	}
	return roster.CanonicalServer(s.Dialer.URL().String())
}

// servers is the configured list, or the one Dialer as the default server.
func (cfg Config) servers() []Server {
	if len(cfg.Servers) > 0 {
		return cfg.Servers
	}
	return []Server{{Name: store.DefaultServer, Dialer: cfg.Dialer}}
}

// link is this console's device on one server.
type link struct {
	name  string // local label
	url   string // canonical URL
	st    *store.Store
	acct  *store.Account
	dev   *device.Device
	conn  atomic.Pointer[event.Connection]
	state atomic.Int32 // transport.State of the last status

	mu      sync.Mutex
	queues  map[device.Address]chan sendJob // one ordered queue per peer
	runCtx  context.Context
	workers sync.WaitGroup
}

// sendJob is one send through one server; its answer goes to done.
type sendJob struct {
	to   device.Address
	env  []byte
	done chan<- error
}

// sendTimeout bounds one send through one server: a server that does not
// answer (down, or holding the connection) must not keep its queue for
// ever; core re-sends the round while it waits for the peer.
const sendTimeout = 2 * time.Minute

// queueCapacity bounds what waits for one peer on one server.
const queueCapacity = 256

var errQueueFull = errors.New("the send queue to this server is full")

// submit queues job on the server's queue for its peer, starting the
// queue's worker on first use; a full queue or a link not running fails
// the job at once.
func (l *link) submit(job sendJob) {
	l.mu.Lock()
	ctx := l.runCtx
	q, ok := l.queues[job.to]
	if !ok && ctx != nil {
		q = make(chan sendJob, queueCapacity)
		l.queues[job.to] = q
		l.workers.Add(1)
		go func() {
			defer l.workers.Done()
			l.sender(ctx, q)
		}()
	}
	l.mu.Unlock()
	if q == nil {
		job.done <- fmt.Errorf("server %s: %w", l.name, core.ErrStopped)
		return
	}
	select {
	case q <- job:
	default:
		job.done <- fmt.Errorf("server %s: %w", l.name, errQueueFull)
	}
}

// sender sends one peer's jobs through this server, in order.
func (l *link) sender(ctx context.Context, q <-chan sendJob) {
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case j := <-q:
					j.done <- ctx.Err()
				default:
					return
				}
			}
		case j := <-q:
			sctx, cancel := context.WithTimeout(ctx, sendTimeout)
			err := l.dev.Send(sctx, j.to, j.env)
			cancel()
			if err != nil {
				err = fmt.Errorf("server %s: %w", l.name, err)
			}
			j.done <- err
		}
	}
}

// start lets the link's queues run until ctx ends; stop waits for them.
func (l *link) start(ctx context.Context) {
	l.mu.Lock()
	l.runCtx = ctx
	l.mu.Unlock()
}

func (l *link) stop() {
	l.mu.Lock()
	l.runCtx = nil
	l.mu.Unlock()
	l.workers.Wait()
	l.mu.Lock()
	clear(l.queues)
	l.mu.Unlock()
}

// book maps a peer's address on any server to all its addresses (its
// card's), for the fan-out; it follows the roster core saves.
type book struct {
	mu     sync.RWMutex
	legacy string                       // the server of version 1 cards' addresses
	byAddr map[string][]roster.Address  // "account.device" -> the member's addresses
	names  map[string]string            // "server account.device" -> member name
	keys   map[string]ed25519.PublicKey // member name -> console key
}

func addrKey(account string, dev uint32) string { return fmt.Sprintf("%s.%d", account, dev) }

func (b *book) update(r *roster.Roster) {
	byAddr := map[string][]roster.Address{}
	names := map[string]string{}
	keys := map[string]ed25519.PublicKey{}
	for _, m := range r.Members() {
		addrs := m.Card.Addrs()
		for i := range addrs {
			if addrs[i].Server == "" {
				addrs[i].Server = b.legacy
			}
		}
		for _, a := range addrs {
			byAddr[addrKey(a.Account, a.Device)] = addrs
			names[a.Server+" "+addrKey(a.Account, a.Device)] = m.Card.Name
		}
		keys[m.Card.Name] = m.Card.ConsoleKey
	}
	b.mu.Lock()
	b.byAddr, b.names, b.keys = byAddr, names, keys
	b.mu.Unlock()
}

// addresses is every address of the peer at to (nil: not in the roster).
func (b *book) addresses(to core.Address) []roster.Address {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.byAddr[addrKey(to.Account, to.Device)]
}

// name is the member at account.device on server, or "".
func (b *book) name(server, account string, dev uint32) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.names[server+" "+addrKey(account, dev)]
}

// fanout is core's Messenger over several servers: each envelope goes
// through every server that this console and the peer share, and the send
// succeeds once one server took it. A server's 2xx is not the peer
// reached: core re-sends the round until the peer's next message shows it
// was.
type fanout struct {
	links   []*link
	book    *book
	log     *slog.Logger
	rewrite func(server string, to device.Address, msg []byte) []byte // Config.PerServer
}

type route struct {
	l  *link
	to device.Address
}

// routes are the (server, address) pairs to reach to: the peer's card's
// addresses on this console's servers; a peer with none in common (or not
// in the roster) is tried at its ceremony address on the first server, as
// before servers were named.
func (f *fanout) routes(to core.Address) []route {
	var out []route
	for _, a := range f.book.addresses(to) {
		for _, l := range f.links {
			if l.url == a.Server {
				out = append(out, route{l, device.Address{Account: a.Account, Device: a.Device}})
			}
		}
	}
	if len(out) == 0 {
		out = append(out, route{f.links[0], device.Address{Account: to.Account, Device: to.Device}})
	}
	return out
}

func (f *fanout) Send(ctx context.Context, to core.Address, env []byte) error {
	return f.SendAfter(ctx, to, env, nil)
}

// SendAfter waits for core's records, then sends through every shared
// server at once; it returns when one took the envelope, or with every
// server's error when none did. The slower ones go on in their queues.
func (f *fanout) SendAfter(ctx context.Context, to core.Address, env []byte, durable func(context.Context) error) error {
	if durable != nil {
		if err := durable(ctx); err != nil {
			return err
		}
	}
	rs := f.routes(to)
	done := make(chan error, len(rs))
	for _, r := range rs {
		msg := env
		if f.rewrite != nil {
			msg = f.rewrite(r.l.name, r.to, env)
		}
		r.l.submit(sendJob{to: r.to, env: msg, done: done})
	}
	var errs []error
	for range rs {
		select {
		case err := <-done:
			if err == nil {
				return nil
			}
			f.log.Info("send through one server failed", "to", to.String(), "err", err)
			errs = append(errs, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return errors.Join(errs...)
}

// AnswerChallenge answers on every server: the token is one server's, and
// the others refuse it.
func (f *fanout) AnswerChallenge(ctx context.Context, token, answer string) error {
	var errs []error
	for _, l := range f.links {
		err := l.dev.AnswerChallenge(ctx, token, answer)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("server %s: %w", l.name, err))
	}
	return errors.Join(errs...)
}

var (
	_ core.OrderedMessenger = (*fanout)(nil)
	_ core.Challenger       = (*fanout)(nil)
)

// Servers is each server's status, in configuration order (api's
// status).
func (c *Node) Servers() []api.ServerState {
	out := make([]api.ServerState, 0, len(c.links))
	for _, l := range c.links {
		conn := *l.conn.Load()
		conn.Server = ""
		out = append(out, api.ServerState{Name: l.name, URL: l.url, Connection: conn, Lagging: c.lag.lagging(l.url)})
	}
	return out
}

// ServerStatus is the best of the servers' states: connected as soon as
// any one is (commands proceed then); else the first server still trying;
// else (every server stopped) the first's.
func (c *Node) ServerStatus() transport.Status {
	var trying, first *transport.Status
	for _, l := range c.links {
		st := l.dev.Status()
		if st.State == transport.StateConnected {
			return st
		}
		if first == nil {
			first = &st
		}
		if trying == nil && st.State != transport.StateStopped {
			trying = &st
		}
	}
	if trying != nil {
		return *trying
	}
	return *first
}

// aggregate is the one connection the status bar and `status` headline:
// connected when any server is, else the first server's.
func (c *Node) aggregate() event.Connection {
	var first *event.Connection
	for _, l := range c.links {
		st := l.conn.Load()
		if st.State == "connected" {
			return event.Connection{State: st.State}
		}
		if first == nil {
			first = st
		}
	}
	if first == nil {
		return event.Connection{State: "connecting"}
	}
	all := *first
	if all.Detail != "" {
		all.Detail = c.serverText(c.links[0], all.Detail)
	}
	all.Server = ""
	return all
}

// lagTracker remembers when each server last delivered something from
// each peer, and names a server lagging for a peer when another server
// delivered from it more than lagAfter later.
type lagTracker struct {
	after time.Duration
	mu    sync.Mutex
	last  map[string]map[string]time.Time // peer -> server -> last delivery
	first map[string]time.Time            // peer -> first delivery through any server
	named map[string]bool                 // "server peer" already reported
	urls  []string                        // the servers
	share func(peer, server string) bool  // the peer has an address there
}

func (t *lagTracker) saw(peer, server string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last[peer] == nil {
		t.last[peer] = map[string]time.Time{}
		t.first[peer] = at
	}
	t.last[peer][server] = at
}

// check returns the (server, peer) pairs that became lagging and those
// that caught up since the last check.
func (t *lagTracker) check(now time.Time) (lagging, recovered [][2]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for peer, by := range t.last {
		var newest time.Time
		for _, at := range by {
			newest = later(newest, at)
		}
		for _, s := range t.urls {
			if !t.share(peer, s) {
				continue
			}
			last := by[s]
			if last.IsZero() {
				// Never through s: counted from the peer's first
				// message, so that the other server's copy of that
				// one has time to come.
				last = t.first[peer]
			}
			k := s + " " + peer
			lag := newest.Sub(last) > t.after && now.Sub(last) > t.after
			switch {
			case lag && !t.named[k]:
				t.named[k] = true
				lagging = append(lagging, [2]string{s, peer})
			case !lag && t.named[k]:
				delete(t.named, k)
				recovered = append(recovered, [2]string{s, peer})
			}
		}
	}
	return lagging, recovered
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// lagging lists the peers server is lagging for.
func (t *lagTracker) lagging(server string) []string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for k := range t.named {
		if s, peer, ok := cutLast(k); ok && s == server {
			out = append(out, peer)
		}
	}
	slices.Sort(out)
	return out
}

// cutLast splits "server peer" at its last space (a peer name has none).
func cutLast(k string) (string, string, bool) {
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] == ' ' {
			return k[:i], k[i+1:], true
		}
	}
	return "", "", false
}
