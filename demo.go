package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/liblog"
	"github.com/signal-mpc/cosigner/signal/relay"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// demoNames are the demo's signers, in the order they are set up.
var demoNames = []string{"alice", "bob", "carol"}

// The demo's deadlines are a person's: someone trying the console reads,
// switches between the signers and answers at their own pace (two minutes
// a round stopped the story while they were still reading).
const (
	demoRoundTimeout = 30 * time.Minute
	demoRequestTTL   = 30 * time.Minute
)

// demoConsoleConfig is how the demo runs each signer's console.
func demoConsoleConfig(name string, dialer *transport.Dialer, st *store.Store, log *slog.Logger, auto bool) consoleConfig {
	// Re-sends recover lost messages; the in-process relay loses none, and
	// each one is a log line on every console while the humans decide, so
	// they come rarely.
	return consoleConfig{Name: name, Dialer: dialer, Store: st, Logger: log.With("signer", name),
		AutoApprove: auto, RoundTimeout: demoRoundTimeout, RequestTTL: demoRequestTTL, ResendEvery: 15 * time.Second}
}

// demoWorld is the demo's one-machine deployment: an in-process relay on
// loopback and three consoles, each linked to its own account through the
// real provisioning flow, with a primary device playing each signer's phone.
type demoWorld struct {
	dir      string
	relay    *relay.Server
	dialer   *transport.Dialer
	signers  []*demoSigner
	log      *slog.Logger
	stop     context.CancelFunc
	wg       sync.WaitGroup
	relayErr chan error
}

type demoSigner struct {
	name    string
	primary *device.Primary
	store   *store.Store
	con     *console
	done    chan error
}

// demoHooks let the console show each step (the QR being "scanned").
type demoHooks struct {
	OnURL  func(name, url string, expires time.Time)
	OnStep func(name, step string)
	Linked func(name string)
}

// startDemoWorld sets everything up in dir, with consoles running until
// ctx ends or close is called. auto approves every request on every
// console (the headless script decides for carol itself).
func startDemoWorld(ctx context.Context, dir string, log *slog.Logger, auto map[string]bool, hooks demoHooks) (*demoWorld, error) {
	liblog.Silence()
	srv, err := relay.New(relay.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "relay"), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("demo relay: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	w := &demoWorld{dir: dir, relay: srv, log: log, stop: cancel, relayErr: make(chan error, 1)}
	go func() { w.relayErr <- srv.Run(runCtx) }()
	<-srv.Ready()
	if srv.Addr() == nil {
		cancel()
		return nil, fmt.Errorf("demo relay did not start: %w", <-w.relayErr)
	}
	if w.dialer, err = transport.NewDialer(transport.Config{URL: srv.URL()}); err != nil {
		w.close()
		return nil, err
	}
	for _, name := range demoNames {
		s, err := w.linkSigner(runCtx, name, hooks)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("demo: %s: %w", name, err)
		}
		s.con, err = openConsole(runCtx, demoConsoleConfig(name, w.dialer, s.store, log, auto[name]))
		if err != nil {
			w.close()
			return nil, fmt.Errorf("demo: %s: %w", name, err)
		}
		s.done = make(chan error, 1)
		w.wg.Add(1)
		go func() { defer w.wg.Done(); s.done <- s.con.Run(runCtx) }()
		w.signers = append(w.signers, s)
	}
	// Every signer adds the others' cards, as humans do with `cosigner me`
	// and `cosigner group add`; in the demo they are verified at once.
	for _, a := range w.signers {
		for _, b := range w.signers {
			if a != b {
				if err := a.con.App.AddCard(runCtx, b.con.Card, true); err != nil {
					w.close()
					return nil, err
				}
			}
		}
	}
	return w, nil
}

// linkSigner registers the signer's account (its primary plays the phone)
// and links a console to it through the provisioning flow.
func (w *demoWorld) linkSigner(ctx context.Context, name string, hooks demoHooks) (*demoSigner, error) {
	p, err := device.RegisterPrimary(ctx, w.dialer, "", nil)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, filepath.Join(w.dir, name+".db"), store.Options{KeyFile: filepath.Join(w.dir, name+".key")})
	if err != nil {
		return nil, err
	}
	scanned := make(chan error, 1)
	_, err = device.Link(ctx, device.LinkConfig{
		Dialer: w.dialer, Store: st, Name: "cosigner " + name, PreKeys: 20,
		OnURL: func(url string, expires time.Time) {
			if hooks.OnURL != nil {
				hooks.OnURL(name, url, expires)
			}
			// The signer's phone scans the code.
			go func() { scanned <- p.ApproveLink(ctx, w.dialer, url, nil) }()
		},
		OnStep: func(step string) {
			if hooks.OnStep != nil {
				hooks.OnStep(name, step)
			}
		},
	})
	if err == nil {
		err = <-scanned
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	if hooks.Linked != nil {
		hooks.Linked(name)
	}
	return &demoSigner{name: name, primary: p, store: st}, nil
}

func (w *demoWorld) signer(name string) *demoSigner {
	for _, s := range w.signers {
		if s.name == name {
			return s
		}
	}
	return nil
}

// close stops the consoles and the relay and closes the stores.
func (w *demoWorld) close() {
	w.stop()
	w.wg.Wait()
	for _, s := range w.signers {
		s.store.Close()
	}
	select {
	case <-w.relayErr:
	case <-time.After(10 * time.Second):
	}
}

// demoResult is what the headless demo prints.
type demoResult struct {
	GroupPublicKey string   `json:"group_public_key"`
	MessageHex     string   `json:"message_hex"`
	Signature      string   `json:"signature"`
	Signers        []string `json:"signers"`
	Threshold      int      `json:"threshold"`
	Parties        int      `json:"parties"`
}

// runDemoScript runs the 2-of-3 keygen and one signing: bob asks, alice and
// bob approve (asking is bob's approval), carol declines.
func runDemoScript(ctx context.Context, w *demoWorld, msg []byte) (*core.KeygenResult, *core.SignResult, error) {
	alice, bob := w.signer("alice"), w.signer("bob")
	kr, err := alice.con.App.StartKeygen(ctx, 2)
	if err != nil {
		return nil, nil, fmt.Errorf("keygen: %w", err)
	}
	if err := waitHoldsKey(ctx, bob, kr.KeyID); err != nil {
		return nil, nil, err
	}
	sr, err := bob.con.App.RequestSignature(ctx, kr.KeyID, msg, "demo signing request")
	if err != nil {
		return nil, nil, fmt.Errorf("sign: %w", err)
	}
	return kr, sr, nil
}

// waitHoldsKey waits until s holds the key: the proposer's keygen returns
// once its own key is confirmed, and the others may finish a moment later.
func waitHoldsKey(ctx context.Context, s *demoSigner, id [32]byte) error {
	for {
		keys, err := s.con.App.Keys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.KeyID == id {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// demoDir makes the throwaway folder of a demo run (0700).
func demoDir() (string, error) {
	d, err := os.MkdirTemp("", "cosigner-demo-")
	if err != nil {
		return "", err
	}
	return d, os.Chmod(d, 0o700)
}

// scriptApprovals answers a signer's approval requests as the demo's script
// says: every keygen proposal is accepted; signing requests are approved,
// except by carol, who declines to show that t approvals are enough.
func scriptApprovals(ctx context.Context, s *demoSigner) {
	sub := s.con.Bus.Subscribe(0)
	go func() {
		defer sub.Close()
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return
			}
			ar, ok := e.(event.ApprovalRequested)
			if !ok {
				continue
			}
			raw, err := hex.DecodeString(ar.ID)
			if err != nil || len(raw) != 32 {
				continue
			}
			var id [32]byte
			copy(id[:], raw)
			if ar.Kind == "sign" && s.name == "carol" {
				s.con.App.Decline(ctx, id, "carol declines in the demo script")
			} else {
				s.con.App.Approve(ctx, id)
			}
		}
	}()
}
