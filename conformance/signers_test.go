package conformance

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/roster"
	"github.com/signal-mpc/cosigner/node"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// signer is a linked console running core's engine over the mock.
type signer struct {
	name   string
	st     *store.Store
	dev    *device.Device
	app    *core.App
	card   roster.Card
	cancel context.CancelFunc
	done   chan error
}

func startSigner(t *testing.T, l *linkedConsole, d *transport.Dialer) *signer {
	t.Helper()
	ctx := t.Context()
	s := &signer{name: l.Account.Name, done: make(chan error, 1)}
	var err error
	if s.st, err = store.Open(ctx, l.Path, store.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	// The co-signer wired as every command wires it.
	n, err := node.Open(ctx, node.Config{Name: s.name, Dialer: d, Store: s.st,
		RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: 5 * time.Second, AutoApprove: true})
	if err != nil {
		t.Fatal(err)
	}
	s.dev, s.app, s.card = n.Device, n.App, n.Card
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- n.Run(runCtx) }()
	t.Cleanup(s.stop)
	waitConnected(t, s.dev)
	return s
}

func (s *signer) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.cancel = nil
	s.st.Close()
}

// The headline: three consoles linked to three accounts of Signal's
// mock run a 2-of-3 keygen and a signing through it, every MPC message a
// Signal-encrypted entry for the console plus a filler the phone accepts.
func TestKeygenAndSignThroughMock(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeAuto)
	var signers []*signer
	for _, name := range []string{"alice", "bob", "carol"} {
		signers = append(signers, startSigner(t, m.link(m.createAccount(name)), m.Dialer))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// Cards exchanged and verified, as humans do with cosigner me / group add.
	for _, a := range signers {
		for _, b := range signers {
			if a != b {
				if err := a.app.AddCard(ctx, b.card, true); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	kr, err := signers[0].app.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatalf("keygen through the mock: %v", err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	msg := []byte("signed through Signal's mock server")
	sr, err := signers[1].app.RequestSignature(ctx, kr.KeyID, msg, "conformance")
	if err != nil {
		t.Fatalf("signing through the mock: %v", err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatalf("the signature does not verify: %v", err)
	}
	if len(sr.Signers) < 2 {
		t.Fatalf("signers %v", sr.Signers)
	}
	evs := m.Events()
	if bad := failed(evs); len(bad) > 0 {
		t.Fatalf("the mock refused envelopes:\n%s", formatEvents(bad))
	}
	// Every MPC message reached its console with a filler for the phone.
	var toConsoles, fillers int
	for _, e := range evs {
		switch {
		case e.Type == 8 && strings.HasSuffix(e.To, ".1"):
			fillers++
		case (e.Type == 1 || e.Type == 3) && strings.HasSuffix(e.To, ".2"):
			toConsoles++
		default:
			t.Fatalf("unexpected envelope %+v", e)
		}
	}
	if toConsoles == 0 || fillers != toConsoles {
		t.Fatalf("%d MPC messages to consoles, %d fillers to phones", toConsoles, fillers)
	}
	slices.Sort(sr.Signers)
	t.Logf("keygen and signing through the mock: %d MPC messages, signers %v", toConsoles, sr.Signers)
}

func waitKey(t *testing.T, ctx context.Context, s *signer, id [32]byte) {
	t.Helper()
	for {
		keys, err := s.app.Keys(ctx)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for _, k := range keys {
			if k.KeyID == id {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never got the key", s.name)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
