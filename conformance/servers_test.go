package conformance

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/node"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// startOnServers runs a co-signer on the servers its store has accounts
// on, wired as every command wires it.
func startOnServers(t *testing.T, name, path string, servers []node.Server) *signer {
	t.Helper()
	ctx := t.Context()
	s := &signer{name: name, done: make(chan error, 1)}
	var err error
	if s.st, err = store.Open(ctx, path, store.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(ctx, node.Config{Name: name, Servers: servers, Store: s.st,
		RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: 2 * time.Second, AutoApprove: true})
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

// registerOn gives the store at path an account of its own on the relay,
// as `cosigner register --server relay` does.
func registerOn(t *testing.T, path string, d *transport.Dialer, server, name string) {
	t.Helper()
	st, err := store.Open(t.Context(), path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sub, err := st.Server(server)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := device.Register(t.Context(), d, sub, "", name, nil); err != nil {
		t.Fatal(err)
	}
}

// Signal's mock server and our relay together: alice and bob are each
// linked to an account of the mock and registered on the relay, carol is
// on the relay only. The three make a key (alice and bob talking through
// both servers, carol through the relay); then the relay stops, and alice
// and bob sign through the mock alone, every MPC message a
// Signal-encrypted entry the mock accepts, with the phone's filler.
func TestSignThroughMockAndRelayTogether(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeAuto)
	r := relaytest.Start(t, "")
	rd, err := transport.NewDialer(transport.Config{URL: r.URL()})
	if err != nil {
		t.Fatal(err)
	}
	both := []node.Server{{Name: store.DefaultServer, Dialer: m.Dialer}, {Name: "relay", Dialer: rd}}
	var signers []*signer
	for _, name := range []string{"alice", "bob"} {
		l := m.link(m.createAccount(name))
		registerOn(t, l.Path, rd, "relay", name)
		signers = append(signers, startOnServers(t, name, l.Path, both))
	}
	carolPath := filepath.Join(t.TempDir(), "carol.db")
	registerOn(t, carolPath, rd, store.DefaultServer, "carol")
	signers = append(signers, startOnServers(t, "carol", carolPath, []node.Server{{Name: store.DefaultServer, Dialer: rd}}))
	for _, s := range signers[:2] {
		if len(s.card.Addresses) != 2 {
			t.Fatalf("%s's card lists %d addresses, want the mock's and the relay's", s.name, len(s.card.Addresses))
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, a := range signers {
		for _, b := range signers {
			if a != b {
				if err := a.app.AddCard(ctx, b.card, true); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	kr, err := signers[2].app.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatalf("keygen over the mock and the relay: %v", err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	r.Stop()
	msg := []byte("signed through the mock with the relay down")
	sr, err := signers[0].app.RequestSignature(ctx, kr.KeyID, msg, "conformance")
	if err != nil {
		t.Fatalf("signing through the mock: %v", err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatalf("the signature does not verify: %v", err)
	}
	evs := m.Events()
	if bad := failed(evs); len(bad) > 0 {
		t.Fatalf("the mock refused envelopes:\n%s", formatEvents(bad))
	}
	var toConsoles, fillers int
	for _, e := range evs {
		switch {
		case e.Type == 8:
			fillers++
		case e.Type == 1 || e.Type == 3:
			toConsoles++
		}
	}
	if toConsoles == 0 || fillers != toConsoles {
		t.Fatalf("%d MPC messages to consoles through the mock, %d fillers to phones", toConsoles, fillers)
	}
}
