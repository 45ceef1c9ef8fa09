package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// coreVault gives core its buckets in the device store: one file and one
// key for all of a console's secrets.
type coreVault struct{ s *store.Store }

func (v coreVault) Update(ctx context.Context, fn func(core.VaultTx) error) error {
	return v.s.AppUpdate(ctx, func(tx *store.AppTx) error { return fn(tx) })
}

func (v coreVault) Submit(ctx context.Context, fn func(core.VaultTx) error) core.Pending {
	return v.s.AppSubmit(ctx, func(tx *store.AppTx) error { return fn(tx) })
}

func (v coreVault) View(ctx context.Context, fn func(core.VaultTx) error) error {
	return v.s.AppView(ctx, func(tx *store.AppTx) error { return fn(tx) })
}

// messenger sends core's envelopes through the Signal device.
type messenger struct{ d *device.Device }

func (m messenger) Send(ctx context.Context, to core.Address, env []byte) error {
	return m.d.Send(ctx, device.Address{Account: to.Account, Device: to.Device}, env)
}

// Prepare starts the encryption when core queues the envelope, so that it
// shares a commit with core's record of its cause.
func (m messenger) Prepare(ctx context.Context, to core.Address, env []byte) core.Prepared {
	if p := m.d.Prepare(ctx, device.Address{Account: to.Account, Device: to.Device}, env); p != nil {
		return prepared{p}
	}
	return nil
}

// SendPrepared sends what Prepare started.
func (m messenger) SendPrepared(ctx context.Context, p core.Prepared, durable func(context.Context) error) error {
	pp, ok := p.(prepared)
	if !ok {
		return fmt.Errorf("console: not a prepared send: %T", p)
	}
	return m.d.SendPrepared(ctx, pp.p, durable)
}

type prepared struct{ p *device.Prepared }

func (prepared) PreparedSend() {}

// SendAfter lets the device wait for core's records after its own commit
// (same store, same commit order): one commit per send, not two.
func (m messenger) SendAfter(ctx context.Context, to core.Address, env []byte, durable func(context.Context) error) error {
	return m.d.SendAfter(ctx, device.Address{Account: to.Account, Device: to.Device}, env, durable)
}

var _ core.Challenger = messenger{}

// AnswerChallenge answers the server's challenge (core.Challenger).
func (m messenger) AnswerChallenge(ctx context.Context, token, answer string) error {
	return m.d.AnswerChallenge(ctx, token, answer)
}

// consoleConfig is what a running console needs.
type consoleConfig struct {
	Name         string // this signer's name in the roster
	Dialer       *transport.Dialer
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
	// Threshold and Parties are the keygen defaults (keygen.threshold,
	// keygen.parties; 0 parties: the whole roster).
	Threshold, Parties int
	// Outbound, if set, wraps what core sends through (tests use it to
	// make a console cheat).
	Outbound func(core.Messenger) core.Messenger
}

// console is one co-signer: the Signal device and core's engine.
type console struct {
	cfg   consoleConfig
	dev   *device.Device
	app   *core.App
	bus   *event.Bus
	vault coreVault
	card  roster.Card
	key   ed25519.PrivateKey
	rost  *roster.Roster
}

// openConsole wires a linked store into a device and a core App. It starts
// nothing.
func openConsole(ctx context.Context, cfg consoleConfig) (*console, error) {
	acct, err := cfg.Store.Account(ctx)
	if err != nil {
		return nil, fmt.Errorf("this console is not linked yet (run cosigner link): %w", err)
	}
	c := &console{cfg: cfg, bus: &event.Bus{}, vault: coreVault{cfg.Store}}
	if c.key, err = core.ConsoleKey(ctx, c.vault); err != nil {
		return nil, err
	}
	c.card = roster.Card{Name: cfg.Name, Account: acct.ACI, Device: acct.DeviceID,
		IdentityKey: acct.ACIIdentity.PublicKey().Serialize(), ConsoleKey: c.key.Public().(ed25519.PublicKey)}
	if err := c.card.Validate(); err != nil {
		return nil, err
	}
	if c.rost, err = core.LoadRoster(ctx, c.vault); err != nil {
		return nil, err
	}
	if err := c.rost.Add(c.card, true); err != nil && !errors.Is(err, roster.ErrNameTaken) {
		return nil, fmt.Errorf("own card: %w", err)
	}
	if err := core.SaveRoster(ctx, c.vault, c.rost); err != nil {
		return nil, err
	}
	var appMu sync.Mutex
	var app *core.App
	var lastElsewhere atomic.Int64 // Status.Elsewhere of the last status
	c.dev, err = device.New(ctx, device.Config{
		Dialer: cfg.Dialer, Store: cfg.Store, Logger: cfg.Logger,
		Deliver: func(ctx context.Context, from device.Address, body []byte) error {
			appMu.Lock()
			a := app
			appMu.Unlock()
			err := a.Deliver(ctx, core.Address{Account: from.Account, Device: from.Device}, body)
			if errors.Is(err, core.ErrStoreFailed) {
				// Not recorded: the envelope must stay on the server.
				return fmt.Errorf("%w: %w", device.ErrNotHandled, err)
			}
			return err
		},
		OnDrop: func(from device.Address, err error) {
			c.bus.Publish(event.Error{Time: time.Now(), Text: fmt.Sprintf("dropped a message from %s: %v", from, err)})
		},
		OnStatus: func(s transport.Status) {
			c.bus.Publish(event.Connection{State: s.State.String(), RetryAt: s.RetryAt, Detail: s.Err})
			// Once per drop: the statuses between two drops carry 0.
			if prev := lastElsewhere.Swap(int64(s.Elsewhere)); s.Elsewhere > 0 && int64(s.Elsewhere) != prev {
				c.bus.Publish(event.Error{Time: time.Now(), Text: elsewhereText(s)})
			}
		},
		MaxElsewhere: cfg.MaxElsewhere,
	})
	if err != nil {
		return nil, err
	}
	var out core.Messenger = messenger{c.dev}
	if cfg.Outbound != nil {
		out = cfg.Outbound(out)
	}
	a, err := core.New(core.Config{
		Me: c.card, ConsoleKey: c.key, Roster: c.rost, Messenger: out,
		Store: core.NewVaultStore(c.vault), Bus: c.bus, Logger: cfg.Logger,
		RoundTimeout: cfg.RoundTimeout, RequestTTL: cfg.RequestTTL, ResendEvery: cfg.ResendEvery,
		AutoApprove: cfg.AutoApprove,
		RestoredAt:  cfg.Store.RestoredAt(),
		SaveRoster:  func(ctx context.Context, r *roster.Roster) error { return core.SaveRoster(ctx, c.vault, r) },
	})
	if err != nil {
		return nil, err
	}
	appMu.Lock()
	app = a
	appMu.Unlock()
	c.app = a
	return c, nil
}

// elsewhereText tells the human that another console uses this device.
func elsewhereText(s transport.Status) string {
	text := fmt.Sprintf("%v (the server dropped this console for it %d times in a row)", transport.ErrConnectedElsewhere, s.Elsewhere)
	if s.State == transport.StateStopped {
		return text + "; this console stopped"
	}
	return text + "; reconnecting at " + s.RetryAt.Format(time.TimeOnly)
}

// Run runs the device and the engine until ctx ends; the first to fail
// stops the other.
func (c *console) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- c.app.Run(ctx) }()
	go func() { errs <- c.dev.Run(ctx) }()
	go c.reportUntagged(ctx)
	first := <-errs
	cancel()
	second := <-errs
	return errors.Join(first, second)
}

// reportUntagged tells the console how much non-MPC Signal traffic the
// device dropped unread (it is counted in the device, not seen by core).
func (c *console) reportUntagged(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n := c.dev.Stats().Untagged; n != last {
			last = n
			c.bus.Publish(event.Untagged{Total: n})
		}
	}
}
