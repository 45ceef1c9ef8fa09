// Package core runs threshold BLS over Signal: the roster of signers, the
// signed MPC envelopes, the key generation and signing ceremonies and their
// persistence, human approvals, and the event stream the console shows.
//
// One goroutine (Run) owns all ceremony state. The Signal device delivers
// envelopes through Deliver, which returns only once the envelope is stored
// or rejected (the device acknowledges it to the server after that: nothing
// accepted is lost if the process dies). The console and the headless
// commands call the other methods, which hand commands to the same
// goroutine.
package core

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
)

// Sentinel errors.
var (
	ErrConfig    = errors.New("core: invalid configuration")
	ErrStopped   = errors.New("core: not running")
	ErrUnknown   = errors.New("core: unknown ceremony")
	ErrNoKey     = errors.New("core: no key")
	ErrRejected  = errors.New("core: envelope rejected")
	ErrNotSigner = errors.New("core: sender is not a signer of that ceremony")
	// ErrEnded: an answer to a request that has already ended (signed
	// without this console, or failed).
	ErrEnded = errors.New("core: the request has already ended")
)

// Address is a Signal device: an account and a device id.
type Address struct {
	Account string
	Device  uint32
}

func (a Address) String() string { return fmt.Sprintf("%s.%d", a.Account, a.Device) }

// Messenger is what core needs from the Signal device: deliver one MPC
// envelope to one signer's console. The device encrypts it, tags it and
// adds the filler entries the server wants for the account's other devices.
type Messenger interface {
	Send(ctx context.Context, to Address, envelope []byte) error
}

// OrderedMessenger is a Messenger that can wait for core's records itself,
// between its own preparations and the moment the message leaves: the
// Signal device, whose session update shares one commit order with core's
// records in the same store, so that waiting for its own commit covers
// core's too and a send costs one commit instead of two in a row.
type OrderedMessenger interface {
	Messenger
	// SendAfter sends envelope, calling durable (and failing if it fails)
	// before anything leaves the process.
	SendAfter(ctx context.Context, to Address, envelope []byte, durable func(context.Context) error) error
}

// PreparingMessenger is an OrderedMessenger that can start a send's local
// work (the device: encryption, a store operation) when core queues the
// envelope, right after core's own record of its cause, so that both share
// one commit; the send itself happens later, from its lane.
type PreparingMessenger interface {
	OrderedMessenger
	// Prepare starts the local work of a send; nil when it cannot (the
	// send then goes the ordinary way).
	Prepare(ctx context.Context, to Address, envelope []byte) Prepared
	// SendPrepared sends what Prepare started, like SendAfter.
	SendPrepared(ctx context.Context, p Prepared, durable func(context.Context) error) error
}

// Prepared is a send a PreparingMessenger has started.
type Prepared interface{ PreparedSend() }

// Config wires an App.
type Config struct {
	Me         roster.Card
	ConsoleKey ed25519.PrivateKey
	Roster     *roster.Roster // must include Me
	Messenger  Messenger
	Store      Store
	Bus        *event.Bus
	Logger     *slog.Logger
	Now        func() time.Time

	RoundTimeout time.Duration // keygen round deadline
	RequestTTL   time.Duration // signing request lifetime
	ResendEvery  time.Duration // re-send the current round's messages
	AutoApprove  bool          // approve every request and proposal (scripted demo only)
	// SaveRoster persists the roster after AddCard or VerifyCard changed it.
	SaveRoster func(context.Context, *roster.Roster) error
	MaxOrphans int           // envelopes kept for unknown ceremonies (default 1024)
	OrphanTTL  time.Duration // how long they are kept (default 1 h)
	// RestoredAt is when the console's store was last restored from a
	// backup (zero: never). Keygen proposals made before then are
	// refused: this console may have answered them from the state it
	// lost, and answering again from a new seed would contradict that.
	RestoredAt time.Time
}

// App is one console's co-signer engine.
type App struct {
	cfg  Config
	log  *slog.Logger
	self Address
	cmds chan func() // run on the loop goroutine
	// Loop-owned: the send lanes (see enqueue), and their goroutines.
	lanes  map[lane]chan outbound
	laneWG sync.WaitGroup

	mu        sync.Mutex
	running   bool
	challenge string       // the token of the server challenge last published (challenge.go)
	pending   atomic.Int64 // envelopes queued or being sent (see Flush)

	// failed holds the first store failure: from then on the App refuses
	// envelopes (unacknowledged, they come again after a restart) and Run
	// returns it.
	failed atomic.Pointer[error]
	fatal  chan error
	runCtx context.Context // Run's context, for work started by the loop
	// stopped is closed when Run returns: calls then fail at once instead
	// of waiting for a loop that is gone.
	stopped chan struct{}
	// announce holds the endings the loop has reached and not yet told
	// (announcer): a result is told only once what produced it is durable.
	announce chan announcement

	// Loop-owned state.
	keygens map[[32]byte]*keygenState
	signs   map[[32]byte]*signState
	keys    map[[32]byte]*keyState
	records map[[32]byte]*CeremonyRecord
	orphans []Orphan
	waiters map[[32]byte][]chan result
	// answered: when each peer of a finished ceremony was last answered
	// (answerFinished).
	answered map[answerKey]time.Time
}

type keygenState struct {
	s         *ceremony.KeygenSession
	round     dkg.Round
	deadline  time.Time
	lastSend  time.Time
	announced bool
	asked     bool // its proposal awaits this console's human
	// prompt is what was shown when it was asked (Approvals lists it).
	prompt event.ApprovalRequested
}

type signState struct {
	s         *ceremony.SignSession
	key       *keyState
	lastSend  time.Time
	announced bool
	done      bool
	// prompt is what was shown when it was announced (Approvals lists it
	// while this human has not answered).
	prompt event.ApprovalRequested
}

type keyState struct {
	key   *ceremony.Key
	share *ceremony.SignConfig
}

type outbound struct {
	to       Address
	ceremony [32]byte // its messages to one peer keep their order
	env      []byte
	// durable waits for the records of the inputs that produced env: a
	// message leaves only once its cause is on disk, so a restart never
	// contradicts what peers already saw.
	durable func(context.Context) error
	// prepared is the send's local work, started when it was queued (nil:
	// none).
	prepared Prepared
}

// result is what a waiter gets when a ceremony ends.
type result struct {
	keygen *KeygenResult
	sign   *SignResult
	err    error
}

// KeygenResult is a finished key generation.
type KeygenResult struct {
	Ceremony [32]byte
	KeyID    [32]byte
	GroupKey []byte
	T, N     int
}

// SignResult is a finished signing request.
type SignResult struct {
	ID        [32]byte
	KeyID     [32]byte
	GroupKey  []byte
	Message   []byte
	Signature []byte
	Signers   []string
	Blamed    []string
}

// New checks the configuration. It starts nothing.
func New(cfg Config) (*App, error) {
	if cfg.Messenger == nil || cfg.Store == nil || cfg.Roster == nil || cfg.Bus == nil {
		return nil, fmt.Errorf("%w: messenger, store, roster and bus are required", ErrConfig)
	}
	if err := cfg.Me.Validate(); err != nil {
		return nil, fmt.Errorf("%w: own card: %w", ErrConfig, err)
	}
	pub, _ := cfg.ConsoleKey.Public().(ed25519.PublicKey)
	if len(cfg.ConsoleKey) != ed25519.PrivateKeySize || !pub.Equal(cfg.Me.ConsoleKey) {
		return nil, fmt.Errorf("%w: console key does not match the own card", ErrConfig)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RoundTimeout <= 0 {
		cfg.RoundTimeout = 10 * time.Minute
	}
	if cfg.RequestTTL <= 0 {
		cfg.RequestTTL = 15 * time.Minute
	}
	if cfg.ResendEvery <= 0 {
		cfg.ResendEvery = 30 * time.Second
	}
	if cfg.MaxOrphans <= 0 {
		cfg.MaxOrphans = 1024
	}
	if cfg.OrphanTTL <= 0 {
		cfg.OrphanTTL = time.Hour
	}
	return &App{
		cfg:      cfg,
		log:      cfg.Logger,
		self:     Address{cfg.Me.Account, cfg.Me.Device},
		cmds:     make(chan func()),
		lanes:    map[lane]chan outbound{},
		fatal:    make(chan error, 1),
		stopped:  make(chan struct{}),
		announce: make(chan announcement, announceBacklog),
		keygens:  map[[32]byte]*keygenState{},
		signs:    map[[32]byte]*signState{},
		keys:     map[[32]byte]*keyState{},
		records:  map[[32]byte]*CeremonyRecord{},
		waiters:  map[[32]byte][]chan result{},
	}, nil
}

// Run restores the stored ceremonies, then runs the event loop and the
// sender until ctx ends.
func (a *App) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return errors.New("core: Run called twice")
	}
	a.running = true
	a.mu.Unlock()
	defer close(a.stopped)
	ctx, cancel := context.WithCancel(ctx)
	a.runCtx = ctx
	// The lanes started by the loop (restore may start some) and the
	// announcer end with ctx.
	defer func() {
		cancel()
		a.laneWG.Wait()
	}()
	a.laneWG.Add(1)
	go func() {
		defer a.laneWG.Done()
		a.announcer(ctx)
	}()
	if err := a.restore(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-a.fatal:
			return fmt.Errorf("core: stopped, restart to resume from the file: %w", err)
		case f := <-a.cmds:
			f()
		case <-tick.C:
			a.onTick(ctx)
		}
	}
}

// do runs f on the loop goroutine and waits for it.
func (a *App) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case a.cmds <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-a.stopped:
		return a.stopErr()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopErr is why the loop is gone: the store failure that stopped it, or
// ErrStopped.
func (a *App) stopErr() error {
	if err := a.failure(); err != nil {
		return err
	}
	return ErrStopped
}

// announcement is an ending to tell (tell) once the writes before it are
// durable (durable); tell gets the store's error, if any.
type announcement struct {
	durable func(context.Context) error
	tell    func(err error)
}

// announceBacklog bounds the endings waiting for durability; past it the
// loop waits for the store itself (rare: one ending per ceremony).
const announceBacklog = 256

// whenDurable calls tell once every write made so far is durable (loop
// goroutine only). Endings are told in order: a console never announces a
// key, or prints a signature, that a restart would not show again.
func (a *App) whenDurable(tell func(err error)) {
	ann := announcement{a.cfg.Store.Durable(), tell}
	select {
	case a.announce <- ann:
	default:
		err := ann.durable(a.runCtx)
		if err != nil && a.runCtx.Err() == nil {
			a.storeFailed(err)
		}
		ann.tell(err)
	}
}

// announcer tells the endings, in order, as they become durable.
func (a *App) announcer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ann := <-a.announce:
			err := ann.durable(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				a.storeFailed(err)
			}
			ann.tell(err)
		}
	}
}

// sendLanes is how many sends to one peer may be under way at once. A
// send waits for its commit and the server's answer (about a millisecond
// each), so one at a time would cap what a console can ask of a peer;
// messages of one ceremony take one lane and keep their order.
const sendLanes = 4

// lane is one of the sendLanes lanes to a peer.
type lane struct {
	to Address
	n  byte
}

// laneCapacity bounds the envelopes waiting in one lane.
const laneCapacity = 1024

// enqueue hands an envelope to its lane (loop goroutine only), starting
// the lane's worker on first use: messages of one ceremony to one peer
// keep their order, other ceremonies overtake, and a slow or unreachable
// peer does not hold up the others (the Messenger may be called for
// several peers at once). The loop hands over directly, with no goroutine
// in between. It reports false when the lane is full or the App is not
// running.
func (a *App) enqueue(o outbound) bool {
	ch := a.laneOf(o)
	if ch == nil {
		return false
	}
	a.pending.Add(1) // before the lane can take it
	select {
	case ch <- o:
		return true
	default:
		a.pending.Add(-1)
		return false
	}
}

// laneOf returns o's lane, started if needed; nil when not running.
func (a *App) laneOf(o outbound) chan outbound {
	if a.runCtx == nil {
		return nil
	}
	l := lane{o.to, o.ceremony[0] % sendLanes}
	ch, ok := a.lanes[l]
	if !ok { // bounded by the roster: only parties are sent to
		ch = make(chan outbound, laneCapacity)
		a.lanes[l] = ch
		ctx := a.runCtx
		a.laneWG.Add(1)
		go func() {
			defer a.laneWG.Done()
			a.peerSender(ctx, ch)
		}()
	}
	return ch
}

// envCeremony is the ceremony of a decoded envelope (zero when it did not
// decode: such envelopes share one lane).
func envCeremony(env *wire.Envelope) [32]byte {
	if env == nil {
		return [32]byte{}
	}
	return env.Ceremony
}

// peerSender delivers one peer's envelopes, each once its cause is
// durable. A failed send is tried again a few times with growing waits;
// open ceremonies also re-send their current round periodically, which
// covers a peer that lost a message for good.
func (a *App) peerSender(ctx context.Context, in <-chan outbound) {
	type retry struct {
		o       outbound
		attempt int
		at      time.Time
	}
	var retries []retry
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ordered, _ := a.cfg.Messenger.(OrderedMessenger)
	preparing, _ := a.cfg.Messenger.(PreparingMessenger)
	try := func(o outbound, attempt int) {
		durable := o.durable
		if durable == nil || attempt > 0 {
			durable = func(context.Context) error { return nil }
		}
		// Never send what a restart would not reproduce: the records of
		// the inputs behind a message are durable before it leaves.
		var err error
		if preparing != nil && o.prepared != nil && attempt == 0 {
			err = preparing.SendPrepared(ctx, o.prepared, durable)
		} else if ordered != nil {
			err = ordered.SendAfter(ctx, o.to, o.env, durable)
		} else if err = durable(ctx); err == nil {
			err = a.cfg.Messenger.Send(ctx, o.to, o.env)
		}
		if errors.Is(err, ErrStoreFailed) {
			a.pending.Add(-1)
			a.storeFailed(err)
			return
		}
		if err == nil || ctx.Err() != nil {
			a.pending.Add(-1)
			return
		}
		a.noteSendError(err)
		if attempt >= 5 {
			a.log.Warn("send failed, giving up", "to", o.to.String(), "err", err)
			a.pending.Add(-1)
			return
		}
		wait := time.Duration(1<<attempt) * time.Second
		var limited interface{ RetryAfter() time.Duration }
		if errors.As(err, &limited) {
			// The server said when: earlier tries would only be refused
			// again (and a relay challenges an account that keeps trying).
			wait = max(wait, limited.RetryAfter())
		}
		a.log.Info("send failed, will retry", "to", o.to.String(), "in", wait, "err", err)
		retries = append(retries, retry{o, attempt + 1, time.Now().Add(wait)})
	}
	for {
		next := time.Hour
		for _, r := range retries {
			next = min(next, time.Until(r.at))
		}
		timer.Reset(max(next, 0))
		select {
		case <-ctx.Done():
			return
		case o := <-in:
			try(o, 0)
		case <-timer.C:
			due := retries
			retries = nil
			for _, r := range due {
				if time.Now().Before(r.at) {
					retries = append(retries, r)
					continue
				}
				try(r.o, r.attempt)
			}
		}
	}
}

// storeFailed stops the App after a store write failed (the first failure
// wins).
func (a *App) storeFailed(err error) {
	if !errors.Is(err, ErrStoreFailed) {
		err = fmt.Errorf("%w: %w", ErrStoreFailed, err)
	}
	if !a.failed.CompareAndSwap(nil, &err) {
		return
	}
	a.log.Error("store failed", "err", err)
	a.publish(event.Error{Time: a.now(), Text: err.Error()})
	select {
	case a.fatal <- err:
	default:
	}
}

// failure is the store failure that stopped the App, if any.
func (a *App) failure() error {
	if p := a.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// settle waits until what the loop did for a caller is durable.
func (a *App) settle(ctx context.Context, durable func(context.Context) error, err error) error {
	if errors.Is(err, ErrStoreFailed) {
		a.storeFailed(err)
		return err
	}
	if derr := durable(ctx); derr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.storeFailed(derr)
		return derr
	}
	return err
}

// Deliver hands a message from a Signal device (an envelope, or a bundle
// of envelopes: wire.Unbundle) to the loop and returns once it is stored
// (nil) or rejected (an error wrapping ErrRejected: the caller acknowledges
// and drops it; in a bundle, the first rejection is reported and the other
// envelopes are handled all the same). A context error means "not
// handled": do not acknowledge.
//
// It waits for durability whatever the outcome: a duplicate of an envelope
// whose first copy is still being written must not be acknowledged first.
// After a store failure it refuses everything with ErrStoreFailed (not
// handled: do not acknowledge).
func (a *App) Deliver(ctx context.Context, from Address, msg []byte) error {
	if err := a.failure(); err != nil {
		return err
	}
	envs, err := wire.Unbundle(msg)
	if err != nil {
		a.logMessage(event.In, from, nil, msg, "malformed: "+err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	var durable func(context.Context) error
	if e := a.do(ctx, func() {
		for _, env := range envs {
			if herr := a.handle(ctx, from, env, true); herr != nil && err == nil {
				err = herr
			}
		}
		durable = a.cfg.Store.Durable()
	}); e != nil {
		return e
	}
	return a.settle(ctx, durable, err)
}

// StartKeygen proposes a t-of-n key generation with the whole roster and
// waits until it ends (or ctx does; the ceremony goes on).
func (a *App) StartKeygen(ctx context.Context, t int) (*KeygenResult, error) {
	var id [32]byte
	var wait chan result
	var err error
	if e := a.do(ctx, func() { id, wait, err = a.startKeygen(ctx, t) }); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, err
	}
	select {
	case r := <-wait:
		return r.keygen, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("keygen %s still running: %w", ceremony.ShortID(id), ctx.Err())
	case <-a.stopped:
		return nil, fmt.Errorf("keygen %s: %w", ceremony.ShortID(id), a.stopErr())
	}
}

// RequestSignature asks the group to sign msg with the key keyID (the only
// key when zero) and waits for the verified signature.
func (a *App) RequestSignature(ctx context.Context, keyID [32]byte, msg []byte, description string) (*SignResult, error) {
	var id [32]byte
	var wait chan result
	var err error
	if e := a.do(ctx, func() { id, wait, err = a.startSign(ctx, keyID, msg, description, true) }); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, err
	}
	select {
	case r := <-wait:
		return r.sign, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("request %s still open: %w", ceremony.ShortID(id), ctx.Err())
	case <-a.stopped:
		return nil, fmt.Errorf("request %s: %w", ceremony.ShortID(id), a.stopErr())
	}
}

// Approve answers yes to a signing request or keygen proposal.
func (a *App) Approve(ctx context.Context, id [32]byte) error {
	var err error
	var durable func(context.Context) error
	if e := a.do(ctx, func() { err = a.decide(ctx, id, true, ""); durable = a.cfg.Store.Durable() }); e != nil {
		return e
	}
	return a.settle(ctx, durable, err)
}

// Decline answers no.
func (a *App) Decline(ctx context.Context, id [32]byte, reason string) error {
	var err error
	var durable func(context.Context) error
	if e := a.do(ctx, func() { err = a.decide(ctx, id, false, reason); durable = a.cfg.Store.Durable() }); e != nil {
		return e
	}
	return a.settle(ctx, durable, err)
}

// KeyShare returns this console's secret share of a key (the only key when
// keyID is zero) and its public share: for export (EIP-2335) only. Handle
// the secret with care; it is never logged.
func (a *App) KeyShare(ctx context.Context, keyID [32]byte) (secret, public []byte, info KeyInfo, err error) {
	if e := a.do(ctx, func() {
		var k *keyState
		if k, err = a.pickKey(keyID); err != nil {
			return
		}
		pub, perr := k.key.Group.PublicShare(k.share.Self)
		if perr != nil {
			err = perr
			return
		}
		secret = bls.ScalarBytes(&k.share.Share.Value)
		public = pub.Bytes()
		info = KeyInfo{KeyID: k.key.ID, GroupKey: k.key.Group.Key.Bytes(), T: k.key.T(), N: k.key.N(), Self: k.share.Self}
	}); e != nil {
		return nil, nil, KeyInfo{}, e
	}
	return secret, public, info, err
}

// AddCard adds a signer's card to the roster (trusted on first use;
// verified when a human compared the fingerprint) and saves the roster. A
// card with changed keys blocks its signer until VerifyCard.
func (a *App) AddCard(ctx context.Context, c roster.Card, verified bool) error {
	var err error
	if e := a.do(ctx, func() {
		if err = a.cfg.Roster.Add(c, verified); err == nil || errors.Is(err, roster.ErrKeyChanged) {
			if serr := a.saveRoster(ctx); serr != nil {
				err = serr
			}
		}
	}); e != nil {
		return e
	}
	return err
}

// VerifyCard records that a human compared the named signer's fingerprint
// (accepting a changed card) and saves the roster.
func (a *App) VerifyCard(ctx context.Context, name string) error {
	var err error
	if e := a.do(ctx, func() {
		if err = a.cfg.Roster.Verify(name); err == nil {
			err = a.saveRoster(ctx)
		}
	}); e != nil {
		return e
	}
	return err
}

// Roster returns the signers.
func (a *App) Roster(ctx context.Context) ([]roster.Member, error) {
	var out []roster.Member
	err := a.do(ctx, func() { out = a.cfg.Roster.Members() })
	return out, err
}

func (a *App) saveRoster(ctx context.Context) error {
	if a.cfg.SaveRoster == nil {
		return nil
	}
	return a.cfg.SaveRoster(ctx, a.cfg.Roster)
}

// KeyInfo describes a generated key.
type KeyInfo struct {
	KeyID    [32]byte
	GroupKey []byte
	T, N     int
	Self     uint32
}

// Keys lists the generated keys.
func (a *App) Keys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := a.do(ctx, func() {
		for id, k := range a.keys {
			out = append(out, KeyInfo{KeyID: id, GroupKey: k.key.Group.Key.Bytes(), T: k.key.T(), N: k.key.N(), Self: k.share.Self})
		}
	})
	return out, err
}

// --- loop-side logic -----------------------------------------------------

func (a *App) now() time.Time { return a.cfg.Now() }

func (a *App) seed() [32]byte {
	var s [32]byte
	rand.Read(s[:])
	return s
}

// restore rebuilds every stored ceremony by replaying its inputs.
func (a *App) restore(ctx context.Context) error {
	recs, err := a.cfg.Store.Ceremonies(ctx)
	if err != nil {
		return fmt.Errorf("core: load ceremonies: %w", err)
	}
	// Keygens first: signing needs their keys.
	slices.SortStableFunc(recs, func(x, y *CeremonyRecord) int { return int(x.Kind) - int(y.Kind) })
	for _, r := range recs {
		if err := a.replay(ctx, r); err != nil {
			a.log.Error("cannot restore ceremony", "id", ceremony.ShortID(r.ID), "err", err)
			a.publish(event.Error{Time: a.now(), Text: fmt.Sprintf("cannot restore ceremony %s: %v", ceremony.ShortID(r.ID), err)})
		}
	}
	a.publishHistory()
	orphans, err := a.cfg.Store.Orphans(ctx)
	if err != nil {
		return fmt.Errorf("core: load orphans: %w", err)
	}
	a.orphans = orphans
	return nil
}

func (a *App) replay(ctx context.Context, r *CeremonyRecord) error {
	a.records[r.ID] = r
	if abandoned(r) {
		// Finished, so its envelopes are refused; not rebuilt, so nothing
		// of its state (or its seed) is ever used or answered again.
		a.log.Info("ceremony abandoned at a restore from a backup", "id", ceremony.ShortID(r.ID))
		return nil
	}
	switch r.Kind {
	case KindKeygen:
		var s *ceremony.KeygenSession
		var err error
		if r.Own {
			env, derr := wire.Decode(r.Opening)
			if derr != nil {
				return derr
			}
			prop, derr := dkg.DecodeProposal(env.Payload)
			if derr != nil {
				return derr
			}
			s, _, err = ceremony.ProposeKeygen(prop, a.cfg.ConsoleKey, r.Seed)
		} else {
			s, err = ceremony.OpenKeygenProposal(r.Opening, a.cfg.ConsoleKey, r.Seed, a.cfg.Roster.Trust)
		}
		if err != nil {
			return err
		}
		// Not announced: a proposal still awaiting this human is shown again.
		st := &keygenState{s: s}
		a.keygens[r.ID] = st
		for _, in := range r.Inputs {
			a.applyKeygen(st, in)
		}
		a.afterKeygen(ctx, st, false)
	case KindSign:
		k, ok := a.keys[r.KeyID]
		if !ok {
			return fmt.Errorf("%w: %s", ErrNoKey, ceremony.ShortID(r.KeyID))
		}
		s, err := ceremony.OpenSignRequest(*k.share, r.Opening)
		if err != nil {
			return err
		}
		// A finished request stays ended: it is not shown to the human
		// again, nor answerable.
		st := &signState{s: s, key: k, done: r.Finished}
		a.signs[r.ID] = st
		if r.Own {
			s.Approve()
		}
		for _, in := range r.Inputs {
			a.applySign(st, in)
		}
		a.afterSign(ctx, st, false)
	}
	if !r.Finished {
		a.resend(r.ID)
	}
	return nil
}

func (a *App) applyKeygen(st *keygenState, in Input) []ceremony.Outgoing {
	var out []ceremony.Outgoing
	switch in.Kind {
	case InputEnvelope:
		out, _ = st.s.Handle(in.Envelope)
	case InputAccept:
		out, _ = st.s.Accept()
	case InputDecline:
		out, _ = st.s.Decline(in.Text)
	case InputTimeout:
		out, _ = st.s.Timeout()
	}
	return out
}

func (a *App) applySign(st *signState, in Input) []ceremony.Outgoing {
	var out []ceremony.Outgoing
	switch in.Kind {
	case InputEnvelope:
		out, _ = st.s.Handle(in.Envelope)
	case InputAccept:
		out, _ = st.s.Approve()
	case InputDecline:
		out, _ = st.s.Decline(in.Text)
	case InputExpire:
		out, _ = st.s.Tick(in.Time)
	}
	return out
}

// handle routes one envelope from a peer. stored envelopes are persisted
// before Deliver returns.
func (a *App) handle(ctx context.Context, from Address, raw []byte, fresh bool) error {
	env, err := wire.Decode(raw)
	if err != nil {
		a.logMessage(event.In, from, nil, raw, "malformed: "+err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if r, ok := a.records[env.Ceremony]; ok && r.Finished {
		a.logMessage(event.In, from, env, raw, "ceremony finished")
		a.answerFinished(from, env, raw)
		return fmt.Errorf("%w: ceremony %s is finished", ErrRejected, ceremony.ShortID(env.Ceremony))
	}
	if st, ok := a.keygens[env.Ceremony]; ok {
		return a.handleKeygen(ctx, st, from, env, raw)
	}
	if st, ok := a.signs[env.Ceremony]; ok {
		return a.handleSign(ctx, st, from, env, raw)
	}
	switch env.Kind {
	case wire.KindProposal:
		return a.openProposal(ctx, from, env, raw)
	case wire.KindSignRequest:
		return a.openRequest(ctx, from, env, raw)
	}
	return a.keepOrphan(ctx, from, env, raw, fresh)
}

// checkSender binds the Signal sender to the party index in the envelope.
func checkSender(parties []dkg.Party, from Address, idx uint32) error {
	if idx == 0 || int(idx) > len(parties) {
		return fmt.Errorf("%w: party %d", ErrNotSigner, idx)
	}
	p := parties[idx-1]
	if p.Account != from.Account || p.Device != from.Device {
		return fmt.Errorf("%w: party %d is not %s", ErrNotSigner, idx, from)
	}
	return nil
}

func (a *App) handleKeygen(ctx context.Context, st *keygenState, from Address, env *wire.Envelope, raw []byte) error {
	if err := checkSender(st.s.Proposal().Parties, from, env.From); err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	out, err := st.s.Handle(raw)
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if err := a.record(ctx, env.Ceremony, Input{Kind: InputEnvelope, Envelope: raw}); err != nil {
		return err
	}
	a.logMessage(event.In, from, env, raw, "")
	a.send(st.s.Proposal().Parties, out)
	a.afterKeygen(ctx, st, true)
	return nil
}

func (a *App) handleSign(ctx context.Context, st *signState, from Address, env *wire.Envelope, raw []byte) error {
	if err := checkSender(st.key.key.Proposal.Parties, from, env.From); err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	out, err := st.s.Handle(raw)
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if err := a.record(ctx, env.Ceremony, Input{Kind: InputEnvelope, Envelope: raw}); err != nil {
		return err
	}
	a.logMessage(event.In, from, env, raw, "")
	a.send(st.key.key.Proposal.Parties, out)
	a.afterSign(ctx, st, true)
	return nil
}

func (a *App) record(ctx context.Context, id [32]byte, in Input) error {
	if err := a.cfg.Store.AppendInput(ctx, id, in); err != nil {
		return fmt.Errorf("core: store input: %w", err)
	}
	if r, ok := a.records[id]; ok {
		r.Inputs = append(r.Inputs, in)
	}
	return nil
}

func (a *App) openProposal(ctx context.Context, from Address, env *wire.Envelope, raw []byte) error {
	s, err := ceremony.OpenKeygenProposal(raw, a.cfg.ConsoleKey, a.seed(), a.cfg.Roster.Trust)
	if err == nil {
		err = checkSender(s.Proposal().Parties, from, env.From)
	}
	if err == nil {
		err = a.checkRestored(s.Proposal().Created)
	}
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		a.publish(event.Error{Time: a.now(), Text: fmt.Sprintf("keygen proposal from %s refused: %v", a.name(from), err)})
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	rec := &CeremonyRecord{ID: s.ID(), Kind: KindKeygen, Opening: raw, Seed: a.sessionSeed(s), Created: a.now()}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return fmt.Errorf("core: store proposal: %w", err)
	}
	a.records[rec.ID] = rec
	a.logMessage(event.In, from, env, raw, "")
	st := &keygenState{s: s}
	a.keygens[rec.ID] = st
	a.adoptOrphans(ctx, rec.ID)
	a.afterKeygen(ctx, st, true)
	return nil
}

// sessionSeed is the seed the session was built with; OpenKeygenProposal
// took a fresh one, which is kept with the record.
func (a *App) sessionSeed(s *ceremony.KeygenSession) [32]byte { return s.Seed() }

func (a *App) openRequest(ctx context.Context, from Address, env *wire.Envelope, raw []byte) error {
	req, err := tbls.DecodeRequest(env.Payload)
	var k *keyState
	if err == nil {
		var ok bool
		if k, ok = a.keys[req.KeyID]; !ok {
			err = fmt.Errorf("%w: %s", ErrNoKey, ceremony.ShortID(req.KeyID))
		}
	}
	var s *ceremony.SignSession
	if err == nil {
		err = checkSender(k.key.Proposal.Parties, from, env.From)
	}
	if err == nil {
		s, err = ceremony.OpenSignRequest(*k.share, raw)
	}
	if err != nil {
		a.logMessage(event.In, from, env, raw, err.Error())
		return fmt.Errorf("%w: %w", ErrRejected, err)
	}
	rec := &CeremonyRecord{ID: s.ID(), Kind: KindSign, Opening: raw, KeyID: k.key.ID, Created: a.now()}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return fmt.Errorf("core: store request: %w", err)
	}
	a.records[rec.ID] = rec
	a.logMessage(event.In, from, env, raw, "")
	st := &signState{s: s, key: k}
	a.signs[rec.ID] = st
	a.adoptOrphans(ctx, rec.ID)
	a.afterSign(ctx, st, true)
	return nil
}

// keepOrphan stores an envelope for a ceremony not seen yet (a partial that
// overtook its request). It is bounded in number and age.
func (a *App) keepOrphan(ctx context.Context, from Address, env *wire.Envelope, raw []byte, fresh bool) error {
	if !fresh {
		return nil
	}
	if len(a.orphans) >= a.cfg.MaxOrphans {
		a.logMessage(event.In, from, env, raw, "unknown ceremony, too many kept already")
		return fmt.Errorf("%w: unknown ceremony %s and the waiting room is full", ErrRejected, ceremony.ShortID(env.Ceremony))
	}
	o := Orphan{From: from, Envelope: raw, Received: a.now()}
	if err := a.cfg.Store.PutOrphan(ctx, o); err != nil {
		return fmt.Errorf("core: store orphan: %w", err)
	}
	a.orphans = append(a.orphans, o)
	a.logMessage(event.In, from, env, raw, "unknown ceremony: kept for later")
	return nil
}

// adoptOrphans feeds the kept envelopes of a ceremony that just appeared.
func (a *App) adoptOrphans(ctx context.Context, id [32]byte) {
	var mine, rest []Orphan
	for _, o := range a.orphans {
		if env, err := wire.Decode(o.Envelope); err == nil && env.Ceremony == id {
			mine = append(mine, o)
		} else {
			rest = append(rest, o)
		}
	}
	if len(mine) == 0 {
		return
	}
	a.orphans = rest
	var envs [][]byte
	for _, o := range mine {
		envs = append(envs, o.Envelope)
		_ = a.handle(ctx, o.From, o.Envelope, false)
	}
	if err := a.cfg.Store.DeleteOrphans(ctx, envs); err != nil {
		a.log.Warn("delete orphans", "err", err)
	}
}

// send queues outgoing envelopes for the parties they address; each waits
// for the writes made so far.
func (a *App) send(parties []dkg.Party, out []ceremony.Outgoing) {
	if len(out) == 0 {
		return
	}
	// What one step sends to one peer in one ceremony leaves as one Signal
	// message (wire.Pack), in the order the engine gave.
	type batch struct {
		to       Address
		ceremony [32]byte
		envs     [][]byte
		decoded  []*wire.Envelope
	}
	var batches []*batch
	find := func(to Address, c [32]byte) *batch {
		for _, b := range batches {
			if b.to == to && b.ceremony == c {
				return b
			}
		}
		b := &batch{to: to, ceremony: c}
		batches = append(batches, b)
		return b
	}
	for _, o := range out {
		env, _ := wire.Decode(o.Envelope)
		for i, p := range parties {
			idx := uint32(i + 1)
			to := Address{p.Account, p.Device}
			if to == a.self || (o.To != 0 && o.To != idx) {
				continue
			}
			b := find(to, envCeremony(env))
			b.envs = append(b.envs, o.Envelope)
			b.decoded = append(b.decoded, env)
		}
	}
	durable := a.cfg.Store.Durable()
	preparing, _ := a.cfg.Messenger.(PreparingMessenger)
	for _, b := range batches {
		msgs := wire.Pack(b.envs)
		note := ""
		if len(msgs) < len(b.envs) {
			note = fmt.Sprintf("%d envelopes in %d message(s)", len(b.envs), len(msgs))
		}
		ob := outbound{to: b.to, ceremony: b.ceremony, durable: durable}
		queued := true
		if ch := a.laneOf(ob); ch == nil || len(ch)+len(msgs) > cap(ch) {
			queued = false
		} else {
			for _, m := range msgs {
				ob.env, ob.prepared = m, nil
				if preparing != nil {
					ob.prepared = preparing.Prepare(a.runCtx, b.to, m)
				}
				if !a.enqueue(ob) {
					queued = false
				}
			}
		}
		if !queued {
			note = "send queue full: will be re-sent"
		}
		for i, env := range b.decoded {
			a.logMessage(event.Out, b.to, env, b.envs[i], note)
		}
	}
}

// afterKeygen publishes progress, asks for approval when needed, and
// finishes the ceremony when it ends.
func (a *App) afterKeygen(ctx context.Context, st *keygenState, live bool) {
	id := st.s.ID()
	p := st.s.Progress()
	if p.Round != st.round || st.deadline.IsZero() {
		st.round = p.Round
		st.deadline = a.now().Add(a.cfg.RoundTimeout)
	}
	if live {
		a.publish(event.Progress{Ceremony: ceremony.ShortID(id), Kind: "keygen", Round: p.Round.String(), Step: p.Step, Total: p.Total,
			Got: a.names(st.s.Proposal().Parties, p.Got), Waiting: a.names(st.s.Proposal().Parties, p.Waiting), Deadline: st.deadline})
	}
	switch {
	case st.s.Done():
		key, share, err := st.s.Result()
		if err != nil {
			a.finish(ctx, id, result{err: err}, nil)
			return
		}
		k := &keyState{key: key, share: &ceremony.SignConfig{Key: key, Self: st.s.Self(), Share: share, ConsoleKey: a.cfg.ConsoleKey}}
		a.keys[key.ID] = k
		if live {
			if err := a.cfg.Store.PutKey(ctx, KeyRecord{Ceremony: id, KeyID: key.ID, Created: a.now()}); err != nil {
				a.publish(event.Error{Time: a.now(), Text: "store key: " + err.Error()})
			}
		}
		r := &KeygenResult{Ceremony: id, KeyID: key.ID, GroupKey: key.Group.Key.Bytes(), T: key.T(), N: key.N()}
		var told []event.Event
		if live {
			told = append(told, event.KeygenDone{Ceremony: ceremony.ShortID(id), KeyID: ceremony.ShortID(key.ID), GroupKey: hex.EncodeToString(r.GroupKey), T: r.T, N: r.N})
		}
		a.finish(ctx, id, result{keygen: r}, told)
	case st.s.Err() != nil:
		err := a.keygenError(st.s)
		var told []event.Event
		if live {
			if st.asked {
				// It ended before this console's human answered: the
				// prompt goes.
				st.asked = false
				told = append(told, event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: "ended: the key generation stopped"})
			}
			told = append(told, event.Error{Time: a.now(), Text: err.Error()}, keygenFailed(id, err))
		}
		a.finish(ctx, id, result{err: err}, told)
	case p.State == dkg.StateCreated && !st.announced:
		st.announced, st.asked = true, true
		prop := st.s.Proposal()
		st.prompt = event.ApprovalRequested{
			ID: hex.EncodeToString(id[:]), Kind: "keygen", Requester: a.name(Address{prop.Parties[prop.Initiator-1].Account, prop.Parties[prop.Initiator-1].Device}),
			Text:    fmt.Sprintf("generate a %d-of-%d key with %s", prop.Threshold, prop.N(), joinNames(a.names(prop.Parties, allIndices(prop.N())))),
			Expires: a.now().Add(a.cfg.RoundTimeout),
		}
		a.publish(st.prompt)
		if a.cfg.AutoApprove {
			a.decide(ctx, id, true, "")
		}
	}
}

func (a *App) afterSign(ctx context.Context, st *signState, live bool) {
	id := st.s.ID()
	p := st.s.Progress()
	parties := st.key.key.Proposal.Parties
	if live {
		a.publish(event.Progress{Ceremony: ceremony.ShortID(id), Kind: "sign", Round: p.Outcome.String(), Step: len(p.Approved), Total: st.key.key.T(),
			Got: a.names(parties, p.Approved), Waiting: a.names(parties, p.Waiting), Declined: a.names(parties, p.Declined),
			Requester: a.name(partyAddr(parties, p.Requester)), Unseen: a.names(parties, p.Unseen), Deadline: st.s.Request().Expires})
	}
	if p.Decision == ceremony.DecisionPending && !st.announced && !st.done && p.Outcome == ceremony.OutcomeCollecting {
		st.announced = true
		req := st.s.Request()
		sum := sha256.Sum256(req.Message)
		text := ""
		if utf8.Valid(req.Message) && printable(string(req.Message)) {
			text = string(req.Message)
		}
		st.prompt = event.ApprovalRequested{
			ID: hex.EncodeToString(id[:]), Kind: "sign", Requester: a.name(partyAddr(parties, p.Requester)),
			KeyID: ceremony.ShortID(req.KeyID), Text: text, Hex: hex.EncodeToString(req.Message), SHA256: hex.EncodeToString(sum[:]),
			Description: req.Description, Expires: req.Expires,
		}
		a.publish(st.prompt)
		if a.cfg.AutoApprove {
			a.decide(ctx, id, true, "")
		}
	}
	if st.done || p.Outcome == ceremony.OutcomeCollecting {
		return
	}
	st.done = true
	req := st.s.Request()
	var told []event.Event
	if live && st.announced && p.Decision == ceremony.DecisionPending {
		// The request ended before this console's human answered: the
		// prompt goes, and an answer now is refused (decide).
		decision := "ended unsigned: " + p.Reason
		if p.Outcome == ceremony.OutcomeSigned {
			decision = "signed without this console"
		}
		told = append(told, event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: decision})
	}
	if p.Outcome == ceremony.OutcomeSigned {
		res := st.s.Result()
		r := &SignResult{ID: id, KeyID: req.KeyID, GroupKey: st.key.key.Group.Key.Bytes(), Message: req.Message, Signature: res.Signature.Bytes(),
			Signers: a.names(parties, res.Signers), Blamed: a.names(parties, res.Blamed)}
		if live {
			told = append(told, a.signDone(st))
		}
		// Stay open a little for the others (resends answer late peers);
		// the record is finished now, so a restart does not reopen it.
		a.finish(ctx, id, result{sign: r}, told)
		return
	}
	err := &SignError{ID: id, Reason: p.Reason, Declined: a.names(parties, p.Declined), Blamed: a.names(parties, p.Blamed), Expired: p.Expired}
	if live {
		told = append(told, a.signDone(st))
	}
	a.finish(ctx, id, result{err: err}, told)
}

// finish records that a ceremony ended and, once that and every input
// before it are durable, tells its waiters r and publishes told: nothing is
// announced, nor printed by a command, that a restart would not show again.
// When the store fails instead, the waiters get its error and nothing is
// announced.
func (a *App) finish(ctx context.Context, id [32]byte, r result, told []event.Event) {
	if rec, ok := a.records[id]; ok && !rec.Finished {
		rec.Finished = true
		if err := a.cfg.Store.FinishCeremony(ctx, id); err != nil {
			a.log.Warn("finish ceremony", "err", err)
		}
	}
	waiters := a.waiters[id]
	delete(a.waiters, id)
	if len(waiters) == 0 && len(told) == 0 {
		return
	}
	what := "signing request"
	if _, ok := a.keygens[id]; ok {
		what = "key generation"
	}
	a.whenDurable(func(err error) {
		if err != nil {
			for _, w := range waiters {
				w <- result{err: fmt.Errorf("%s %s ended, but its record could not be stored: %w", what, ceremony.ShortID(id), err)}
			}
			return
		}
		for _, e := range told {
			a.publish(e)
		}
		for _, w := range waiters {
			w <- r
		}
	})
}

func (a *App) startKeygen(ctx context.Context, t int) ([32]byte, chan result, error) {
	parties, err := a.cfg.Roster.Parties()
	if err != nil {
		return [32]byte{}, nil, err
	}
	prop := &dkg.Proposal{Threshold: t, Parties: parties, RoundTimeout: a.cfg.RoundTimeout.Truncate(time.Second), Created: a.now().Truncate(time.Second)}
	rand.Read(prop.Nonce[:])
	idx, ok := prop.IndexOf(a.self.Account, a.self.Device)
	if !ok {
		return [32]byte{}, nil, fmt.Errorf("%w: this console is not in its own roster", ErrConfig)
	}
	prop.Initiator = idx
	seed := a.seed()
	s, out, err := ceremony.ProposeKeygen(prop, a.cfg.ConsoleKey, seed)
	if err != nil {
		return [32]byte{}, nil, err
	}
	rec := &CeremonyRecord{ID: s.ID(), Kind: KindKeygen, Opening: s.ProposalEnvelope(), Seed: seed, Own: true, Created: a.now()}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return [32]byte{}, nil, fmt.Errorf("core: store proposal: %w", err)
	}
	a.records[rec.ID] = rec
	st := &keygenState{s: s, announced: true}
	a.keygens[rec.ID] = st
	wait := make(chan result, 1)
	a.waiters[rec.ID] = append(a.waiters[rec.ID], wait)
	st.lastSend = a.now()
	a.send(parties, out)
	a.adoptOrphans(ctx, rec.ID)
	a.afterKeygen(ctx, st, true)
	return rec.ID, wait, nil
}

// startSign opens a signing request from this console. approve: asking is
// this human's approval (else the request waits in this console's approval
// queue like anyone else's: a script asked, a person decides).
func (a *App) startSign(ctx context.Context, keyID [32]byte, msg []byte, desc string, approve bool) ([32]byte, chan result, error) {
	k, err := a.pickKey(keyID)
	if err != nil {
		return [32]byte{}, nil, err
	}
	var id [32]byte
	rand.Read(id[:])
	req := tbls.Request{Message: msg, Description: desc, Expires: a.now().Add(a.cfg.RequestTTL).Truncate(time.Second)}
	s, out, err := ceremony.ProposeSignRequest(*k.share, id, req)
	if err != nil {
		return [32]byte{}, nil, err
	}
	// Own marks a request this human approved by asking; one that waits
	// for an answer is restored like a peer's (OpenSignRequest gives the
	// same session for this console's own envelope).
	rec := &CeremonyRecord{ID: id, Kind: KindSign, Opening: s.RequestEnvelope(), KeyID: k.key.ID, Own: approve, Created: a.now()}
	if err := a.cfg.Store.PutCeremony(ctx, rec); err != nil {
		return [32]byte{}, nil, fmt.Errorf("core: store request: %w", err)
	}
	a.records[id] = rec
	st := &signState{s: s, key: k, announced: approve}
	a.signs[id] = st
	wait := make(chan result, 1)
	a.waiters[id] = append(a.waiters[id], wait)
	st.lastSend = a.now()
	a.send(k.key.Proposal.Parties, out)
	if !approve {
		a.adoptOrphans(ctx, id)
		a.afterSign(ctx, st, true)
		return id, wait, nil
	}
	// Asking is this human's approval. It is not recorded as an input: a
	// restored request of our own is approved again (Own), and BLS partial
	// signatures are deterministic.
	own, err := s.Approve()
	if err != nil {
		return [32]byte{}, nil, err
	}
	a.send(k.key.Proposal.Parties, own)
	a.adoptOrphans(ctx, id)
	a.afterSign(ctx, st, true)
	return id, wait, nil
}

func (a *App) pickKey(keyID [32]byte) (*keyState, error) {
	if keyID != ([32]byte{}) {
		k, ok := a.keys[keyID]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrNoKey, ceremony.ShortID(keyID))
		}
		return k, nil
	}
	if len(a.keys) != 1 {
		return nil, fmt.Errorf("%w: %d keys, name one", ErrNoKey, len(a.keys))
	}
	for _, k := range a.keys {
		return k, nil
	}
	return nil, ErrNoKey
}

func (a *App) decide(ctx context.Context, id [32]byte, yes bool, reason string) error {
	in := Input{Kind: InputDecline, Text: reason}
	if yes {
		in = Input{Kind: InputAccept}
	}
	if st, ok := a.keygens[id]; ok {
		if st.s.Progress().State != dkg.StateCreated {
			// Answered already (here or through another attached console),
			// or ended.
			return fmt.Errorf("%w: keygen %s was already answered", ceremony.ErrDecided, ceremony.ShortID(id))
		}
		var out []ceremony.Outgoing
		var err error
		if yes {
			out, err = st.s.Accept()
		} else {
			out, err = st.s.Decline(reason)
		}
		if err != nil {
			return fmt.Errorf("core: keygen %s: %w", ceremony.ShortID(id), err)
		}
		if err := a.record(ctx, id, in); err != nil {
			return err
		}
		st.asked = false
		a.publish(event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: map[bool]string{true: "accepted", false: "declined"}[yes]})
		st.lastSend = a.now()
		a.send(st.s.Proposal().Parties, out)
		a.afterKeygen(ctx, st, true)
		return nil
	}
	if st, ok := a.signs[id]; ok {
		if st.done {
			return fmt.Errorf("%w: request %s", ErrEnded, ceremony.ShortID(id))
		}
		var out []ceremony.Outgoing
		var err error
		if yes {
			out, err = st.s.Approve()
		} else {
			out, err = st.s.Decline(reason)
		}
		if err != nil {
			return err
		}
		if err := a.record(ctx, id, in); err != nil {
			return err
		}
		a.publish(event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: map[bool]string{true: "approved", false: "declined"}[yes]})
		st.lastSend = a.now()
		a.send(st.key.key.Proposal.Parties, out)
		a.afterSign(ctx, st, true)
		return nil
	}
	return fmt.Errorf("%w: %s", ErrUnknown, ceremony.ShortID(id))
}

// onTick applies deadlines and expiries and re-sends open rounds.
func (a *App) onTick(ctx context.Context) {
	now := a.now()
	for id, st := range a.keygens {
		if a.records[id] != nil && a.records[id].Finished {
			continue
		}
		state := st.s.Progress().State
		if (state == dkg.StateRunning || state == dkg.StateCreated) && now.After(st.deadline) {
			out := a.applyKeygen(st, Input{Kind: InputTimeout})
			if err := a.record(ctx, id, Input{Kind: InputTimeout, Time: now}); err != nil {
				a.log.Warn("record timeout", "err", err)
			}
			a.send(st.s.Proposal().Parties, out)
			a.afterKeygen(ctx, st, true)
			continue
		}
		if now.Sub(st.lastSend) >= a.cfg.ResendEvery {
			st.lastSend = now
			a.send(st.s.Proposal().Parties, st.s.Resend())
		}
	}
	for id, st := range a.signs {
		if st.done {
			continue
		}
		if !now.Before(st.s.Request().Expires) {
			out := a.applySign(st, Input{Kind: InputExpire, Time: now})
			if err := a.record(ctx, id, Input{Kind: InputExpire, Time: now}); err != nil {
				a.log.Warn("record expiry", "err", err)
			}
			a.send(st.key.key.Proposal.Parties, out)
			if st.s.Progress().Decision == ceremony.DecisionExpired {
				a.publish(event.ApprovalResolved{ID: hex.EncodeToString(id[:]), Decision: "expired"})
			}
			a.afterSign(ctx, st, true)
			continue
		}
		if now.Sub(st.lastSend) >= a.cfg.ResendEvery {
			st.lastSend = now
			a.send(st.key.key.Proposal.Parties, st.s.Resend())
		}
	}
	a.forgetAnswers(now)
	// Orphans past their time are dropped with a reason.
	var keep []Orphan
	var drop [][]byte
	for _, o := range a.orphans {
		if now.Sub(o.Received) > a.cfg.OrphanTTL {
			drop = append(drop, o.Envelope)
			env, _ := wire.Decode(o.Envelope)
			a.logMessage(event.In, o.From, env, o.Envelope, "dropped: its ceremony never appeared")
			continue
		}
		keep = append(keep, o)
	}
	if len(drop) > 0 {
		a.orphans = keep
		if err := a.cfg.Store.DeleteOrphans(ctx, drop); err != nil {
			a.log.Warn("drop orphans", "err", err)
		}
	}
}

// resend re-sends a restored ceremony's current messages.
func (a *App) resend(id [32]byte) {
	if st, ok := a.keygens[id]; ok {
		st.lastSend = a.now()
		a.send(st.s.Proposal().Parties, st.s.Resend())
	}
	if st, ok := a.signs[id]; ok && !st.done {
		st.lastSend = a.now()
		a.send(st.key.key.Proposal.Parties, st.s.Resend())
	}
}

// signDone is the event of a signing request that has ended.
func (a *App) signDone(st *signState) event.SignDone {
	id, req, p := st.s.ID(), st.s.Request(), st.s.Progress()
	parties := st.key.key.Proposal.Parties
	e := event.SignDone{ID: hex.EncodeToString(id[:]), KeyID: ceremony.ShortID(req.KeyID), Message: hex.EncodeToString(req.Message),
		Blamed: a.names(parties, p.Blamed)}
	if p.Outcome == ceremony.OutcomeSigned {
		res := st.s.Result()
		e.Signature, e.Signers, e.Blamed, e.Verified = hex.EncodeToString(res.Signature.Bytes()), a.names(parties, res.Signers), a.names(parties, res.Blamed), true
	} else {
		e.Failure = p.Reason
	}
	return e
}

// maxRestoredResults bounds the signing results replayed to the console at
// start (its history view keeps as many).
const maxRestoredResults = 500

// publishHistory tells the console about the signing requests that ended
// before this run, oldest first, as restored history.
func (a *App) publishHistory() {
	for _, ev := range a.history(maxRestoredResults) {
		ev.Restored = true
		a.publish(ev)
	}
}

// resendOpen re-sends the current messages of every open ceremony.
func (a *App) resendOpen() {
	for id := range a.keygens {
		if r := a.records[id]; r == nil || !r.Finished {
			a.resend(id)
		}
	}
	for id := range a.signs {
		a.resend(id)
	}
}

// --- events ---------------------------------------------------------------

func (a *App) publish(e event.Event) { a.cfg.Bus.Publish(e) }

func (a *App) logMessage(dir event.Direction, peer Address, env *wire.Envelope, raw []byte, note string) {
	m := event.Message{Time: a.now(), Direction: dir, Peer: a.name(peer), Size: len(raw), Note: note}
	sum := sha256.Sum256(raw)
	m.Digest = hex.EncodeToString(sum[:4])
	if env != nil {
		m.Ceremony = ceremony.ShortID(env.Ceremony)
		m.Round = env.Round
		m.Kind = env.Kind.String()
	}
	a.publish(m)
}

func (a *App) name(addr Address) string {
	if n := a.cfg.Roster.NameOf(addr.Account, addr.Device); n != "" {
		return n
	}
	return addr.String()
}

func (a *App) names(parties []dkg.Party, idx []uint32) []string {
	out := make([]string, 0, len(idx))
	for _, j := range idx {
		out = append(out, a.name(partyAddr(parties, j)))
	}
	return out
}

func partyAddr(parties []dkg.Party, j uint32) Address {
	if j == 0 || int(j) > len(parties) {
		return Address{}
	}
	return Address{parties[j-1].Account, parties[j-1].Device}
}

func allIndices(n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(i + 1)
	}
	return out
}

func joinNames(ns []string) string {
	switch len(ns) {
	case 0:
		return ""
	case 1:
		return ns[0]
	}
	s := ""
	for i, n := range ns {
		switch {
		case i == 0:
			s = n
		case i == len(ns)-1:
			s += " and " + n
		default:
			s += ", " + n
		}
	}
	return s
}

// printable reports whether s can be shown as text: no control characters
// other than newline and tab (escape sequences would take over a terminal).
func printable(s string) bool {
	for _, r := range s {
		if r == '\n' || r == '\t' {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return false
		}
	}
	return true
}
