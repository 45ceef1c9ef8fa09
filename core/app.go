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
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signal-mpc/cosigner/bls"
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

// Address is a Signal device: an account and a device id. On what a peer
// sent, Server is the canonical URL of the server it came through ("":
// not said); core sends to a party's address and the Messenger picks the
// servers.
type Address struct {
	Account string
	Device  uint32
	Server  string
}

func (a Address) String() string {
	if a.Server != "" {
		return fmt.Sprintf("%s.%d via %s", a.Account, a.Device, a.Server)
	}
	return fmt.Sprintf("%s.%d", a.Account, a.Device)
}

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
	// SigningRules and KeygenRules approve, without asking, the live
	// requests and proposals they match (rules.go); the rest wait for a
	// person.
	SigningRules []*SigningRule
	KeygenRules  []*KeygenRule
	// ReshareRules accept reshare, refresh and import proposals
	// (reshare_rules.go); AutoApprove does not.
	ReshareRules []*ReshareRule
	// SaveRoster persists the roster after AddCard or VerifyCard changed it.
	SaveRoster func(context.Context, *roster.Roster) error
	MaxOrphans int           // envelopes kept for unknown ceremonies (default 1024)
	OrphanTTL  time.Duration // how long they are kept (default 1 h)
	// NoHistoryAtStart: publish no past signing results at start (a daemon
	// or a one-shot command has no screen to show them on; an attached
	// console asks for them). Otherwise the newest 500 are published.
	NoHistoryAtStart bool
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
	lanes  map[lane]chan *outbound
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
	// uses: the recent approvals of each signing rule (max_per_hour).
	uses ruleUses
	// life: the reshares and handed-over keys (reshare.go).
	life *lifecycle
	// head: this console's audit head as last read (heads.go).
	head tbls.Head
	// recent: the ended signings still in memory, oldest first (history.go).
	recent []recentEnd
	// copies: the servers each recent envelope came through (copies.go).
	copies copyLog
}

// result is what a waiter gets when a ceremony ends.
type result struct {
	keygen  *KeygenResult
	sign    *SignResult
	reshare *ReshareResult
	err     error
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
	for _, r := range cfg.SigningRules {
		if r == nil {
			return nil, fmt.Errorf("%w: a nil signing rule", ErrConfig)
		}
	}
	for _, r := range cfg.KeygenRules {
		if r == nil {
			return nil, fmt.Errorf("%w: a nil keygen rule", ErrConfig)
		}
	}
	for _, r := range cfg.ReshareRules {
		if r == nil {
			return nil, fmt.Errorf("%w: a nil reshare rule", ErrConfig)
		}
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
		self:     Address{Account: cfg.Me.Account, Device: cfg.Me.Device},
		cmds:     make(chan func()),
		lanes:    map[lane]chan *outbound{},
		fatal:    make(chan error, 1),
		stopped:  make(chan struct{}),
		announce: make(chan announcement, announceBacklog),
		keygens:  map[[32]byte]*keygenState{},
		signs:    map[[32]byte]*signState{},
		keys:     map[[32]byte]*keyState{},
		records:  map[[32]byte]*CeremonyRecord{},
		waiters:  map[[32]byte][]chan result{},
		uses:     ruleUses{},
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
	if e := a.do(ctx, func() { id, wait, err = a.startKeygen(ctx, t, true) }); e != nil {
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
func (a *App) Approve(ctx context.Context, id [32]byte) error { return a.ApproveAs(ctx, id, "") }

// Decline answers no.
func (a *App) Decline(ctx context.Context, id [32]byte, reason string) error {
	return a.DeclineAs(ctx, id, reason, "")
}

// ApproveAs is Approve recording who answered (Input.By) with the
// request's record.
func (a *App) ApproveAs(ctx context.Context, id [32]byte, by string) error {
	return a.answer(ctx, id, true, "", by)
}

// DeclineAs is Decline recording who answered (Input.By).
func (a *App) DeclineAs(ctx context.Context, id [32]byte, reason, by string) error {
	return a.answer(ctx, id, false, reason, by)
}

func (a *App) answer(ctx context.Context, id [32]byte, yes bool, reason, by string) error {
	if len(by) > maxBy {
		by = by[:maxBy]
	}
	var err error
	var durable func(context.Context) error
	if e := a.do(ctx, func() { err = a.decide(ctx, id, yes, reason, by); durable = a.cfg.Store.Durable() }); e != nil {
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
		info = KeyInfo{KeyID: k.key.ID, GroupKey: k.key.Group.Key.Bytes(), T: k.key.T(), N: k.key.N(), Self: k.share.Self, Epoch: k.key.Epoch}
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

// KeyInfo describes a key at its current epoch.
type KeyInfo struct {
	KeyID    [32]byte
	GroupKey []byte
	T, N     int
	Self     uint32
	Epoch    uint32 // 0 from a keygen or import; each reshare adds one
	// HandedOver: a reshare moved the key to a group without this console,
	// which erased its share (Self is 0).
	HandedOver bool
}

// Keys lists the keys, one entry each at its current epoch.
func (a *App) Keys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := a.do(ctx, func() {
		for id, k := range a.keys {
			out = append(out, KeyInfo{KeyID: id, GroupKey: k.key.Group.Key.Bytes(), T: k.key.T(), N: k.key.N(), Self: k.share.Self, Epoch: k.key.Epoch})
		}
		out = append(out, a.handedOverKeys()...)
	})
	return out, err
}
