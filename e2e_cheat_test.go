package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
)

// transcript records what the consoles of a test really send: a cheater
// builds its lies from real messages (the proposal, the acceptances), and
// the test reads the evidence against the roster's keys.
type transcript struct {
	mu   sync.Mutex
	sent [][]byte
}

func (tr *transcript) observe(_ core.Address, raw []byte) {
	tr.mu.Lock()
	tr.sent = append(tr.sent, bytes.Clone(raw))
	tr.mu.Unlock()
}

// find returns the envelopes sent so far that match, once each.
func (tr *transcript) find(match func(*wire.Envelope) bool) [][]byte {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out [][]byte
	for _, raw := range tr.sent {
		if e, err := wire.Decode(raw); err == nil && match(e) && !slices.ContainsFunc(out, func(b []byte) bool { return bytes.Equal(b, raw) }) {
			out = append(out, raw)
		}
	}
	return out
}

// proposal returns the keygen proposal of a ceremony, as its initiator sent it.
func (tr *transcript) proposal(id [32]byte) (*dkg.Proposal, error) {
	raws := tr.find(func(e *wire.Envelope) bool { return e.Kind == wire.KindProposal && e.Ceremony == id })
	if len(raws) == 0 {
		return nil, fmt.Errorf("no proposal for ceremony %x", id[:4])
	}
	e, _ := wire.Decode(raws[0])
	return dkg.DecodeProposal(e.Payload)
}

// twin is a second engine the cheater runs for the same ceremony from
// another seed: its deal and shares are well formed and validly signed by
// the cheater, and not the ones the cheater's console sends.
type twin struct {
	prop   *dkg.Proposal
	deal   []byte
	shares map[uint32][]byte // signed share envelopes, by recipient
}

func newTwin(tr *transcript, key ed25519.PrivateKey, id [32]byte, self uint32) (*twin, error) {
	prop, err := tr.proposal(id)
	if err != nil {
		return nil, err
	}
	e, err := dkg.New(dkg.Config{Proposal: prop, Self: self, Key: key, Seed: sha256.Sum256([]byte("twin"))})
	if err != nil {
		return nil, err
	}
	// A party deals when it accepts (the deal leaves with its acceptance):
	// the twin's acceptance gives the second deal and its shares.
	out, err := e.Start()
	if err != nil {
		return nil, err
	}
	tw := &twin{prop: prop, shares: map[uint32][]byte{}}
	for _, o := range out {
		switch o.Kind {
		case wire.KindDeal:
			tw.deal = o.Envelope
		case wire.KindShare:
			tw.shares[o.To] = o.Envelope
		}
	}
	if tw.deal == nil || len(tw.shares) != prop.N()-1 {
		return nil, fmt.Errorf("twin did not deal (%d shares)", len(tw.shares))
	}
	return tw, nil
}

// shareValue is the scalar a signed share envelope carries (bls/dkg's
// share payload: field 1, 32 bytes).
func shareValue(raw []byte) ([]byte, error) {
	e, err := wire.Decode(raw)
	if err != nil {
		return nil, err
	}
	d := wire.NewDecoder(e.Payload)
	v, _ := d.Fixed(1, bls.ScalarSize)
	return v, d.Done()
}

// justificationPayload reveals the given share values (bls/dkg's layout:
// field 1 repeated, each {1: recipient, 2: value}, recipients ascending).
func justificationPayload(values map[uint32][]byte) ([]byte, error) {
	var items [][]byte
	for _, to := range slices.Sorted(mapsKeys(values)) {
		var e wire.Encoder
		e.Uint(1, uint64(to))
		e.Bytes(2, values[to])
		b, err := e.Finish()
		if err != nil {
			return nil, err
		}
		items = append(items, b)
	}
	var e wire.Encoder
	e.Repeated(1, items)
	return e.Finish()
}

func mapsKeys[V any](m map[uint32]V) func(func(uint32) bool) {
	return func(yield func(uint32) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// dkgCheat is how a dealer lies in a key generation. Every lie is a
// complete envelope signed with the cheater's console key: transferable
// evidence, as the protocol wants.
type dkgCheat struct {
	t  *testing.T
	tr *transcript
	// badShareTo get a share of another polynomial than the dealt one.
	badShareTo []*signer
	// dealTo get the twin's deal (and its matching share): equivocation.
	dealTo []*signer
	// standBy: asked to justify, the dealer reveals the bad shares again.
	standBy bool
}

func (c dkgCheat) rewriter(key ed25519.PrivateKey) rewriter {
	var mu sync.Mutex // the sender retries on its own goroutine; cheap to be sure
	var tw *twin
	among := func(to core.Address, ss []*signer) bool {
		return slices.ContainsFunc(ss, func(s *signer) bool { return s.con.Card.Account == to.Account && s.con.Card.Device == to.Device })
	}
	return func(to core.Address, e *wire.Envelope, raw []byte) []byte {
		if e.Kind != wire.KindDeal && e.Kind != wire.KindShare && e.Kind != wire.KindJustification {
			return raw
		}
		mu.Lock()
		defer mu.Unlock()
		if tw == nil {
			var err error
			if tw, err = newTwin(c.tr, key, e.Ceremony, e.From); err != nil {
				c.t.Errorf("cheater: %v", err)
				return raw
			}
		}
		switch {
		case e.Kind == wire.KindDeal && among(to, c.dealTo):
			return tw.deal
		case e.Kind == wire.KindShare && (among(to, c.badShareTo) || among(to, c.dealTo)):
			return tw.shares[e.To]
		case e.Kind == wire.KindJustification && c.standBy:
			values := map[uint32][]byte{}
			for _, s := range c.badShareTo {
				j, _ := tw.prop.IndexOf(s.con.Card.Account, s.con.Card.Device)
				v, err := shareValue(tw.shares[j])
				if err != nil {
					c.t.Errorf("cheater: %v", err)
					return raw
				}
				values[j] = v
			}
			p, err := justificationPayload(values)
			if err != nil {
				c.t.Errorf("cheater: %v", err)
				return raw
			}
			lie := *e
			lie.Payload = p
			if b, err := wire.Seal(&lie, key); err == nil {
				return b
			}
		}
		return raw
	}
}

// keygenWatch collects a console's events until its key generation ends
// with a key or an error.
type keygenWatch struct {
	s      *signer
	done   chan struct{}
	events []event.Event // complete once done is closed
}

func watchKeygen(ctx context.Context, s *signer) *keygenWatch {
	w := &keygenWatch{s: s, done: make(chan struct{})}
	sub := s.con.Bus.Subscribe(0)
	go func() {
		defer close(w.done)
		defer sub.Close()
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return
			}
			w.events = append(w.events, e)
			switch e := e.(type) {
			case event.KeygenDone:
				return
			case event.Error:
				if strings.HasPrefix(e.Text, "keygen ") {
					return
				}
			}
		}
	}()
	return w
}

// wait returns the events, the key (hex) and the error text the ceremony
// ended with.
func (w *keygenWatch) wait(t *testing.T, ctx context.Context) (events []event.Event, key, failure string) {
	t.Helper()
	select {
	case <-w.done:
	case <-ctx.Done():
		t.Fatalf("%s: the key generation never ended", w.s.name)
	}
	for _, e := range w.events {
		switch e := e.(type) {
		case event.KeygenDone:
			key = e.GroupKey
		case event.Error:
			if strings.HasPrefix(e.Text, "keygen ") {
				failure = e.Text
			}
		}
	}
	if key == "" && failure == "" {
		t.Fatalf("%s: events ended without a result", w.s.name)
	}
	return w.events, key, failure
}

// received lists the peers a console logged an incoming message of kind from.
func received(events []event.Event, kind string) []string {
	var out []string
	for _, e := range events {
		if m, ok := e.(event.Message); ok && m.Direction == event.In && m.Kind == kind && m.Note == "" && !slices.Contains(out, m.Peer) {
			out = append(out, m.Peer)
		}
	}
	slices.Sort(out)
	return out
}

// cheatingKeygen runs a 2-of-3 keygen over the relay in which bob deals as
// cheat says; alice proposes. It returns what alice's StartKeygen returned
// and every console's watch.
func cheatingKeygen(t *testing.T, ctx context.Context, cheat func(alice, carol *signer) dkgCheat) (signers []*signer, tr *transcript, kr *core.KeygenResult, kerr error, watches []*keygenWatch) {
	t.Helper()
	r := startTestRelay(t, t.TempDir())
	tr = &transcript{}
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newSigner(t, r, n)
		s.observe = tr.observe
		signers = append(signers, s)
	}
	alice, bob, carol := signers[0], signers[1], signers[2]
	alice.start(t, r, true)
	carol.start(t, r, true)
	// Bob starts last: his lies name the others' addresses.
	c := cheat(alice, carol)
	c.t, c.tr = t, tr
	bob.cheat = c.rewriter
	bob.start(t, r, true)
	introduce(t, signers...)
	for _, s := range signers {
		watches = append(watches, watchKeygen(ctx, s))
	}
	kr, kerr = alice.con.App.StartKeygen(ctx, 2)
	return signers, tr, kr, kerr, watches
}

// A dealer that sends one party a wrong share through Signal draws that
// party's complaint; it justifies with the right share (its engine is
// honest, only the share in transit lied), the complainer adopts it, and
// every console ends with the same key. The one complaint is below t, so
// the protocol says: accept the justified share.
func TestWrongShareOverTheRelayIsJustifiedAndTheKeyAgreed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	signers, _, kr, err, watches := cheatingKeygen(t, ctx, func(_, carol *signer) dkgCheat {
		return dkgCheat{badShareTo: []*signer{carol}}
	})
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	for _, w := range watches {
		events, key, failure := w.wait(t, ctx)
		if failure != "" || key != hex.EncodeToString(kr.GroupKey) {
			t.Fatalf("%s ended with key %q, error %q; want the group key %x", w.s.name, key, failure, kr.GroupKey)
		}
		// The justification round ran: five rounds, not four.
		var last event.Progress
		for _, e := range events {
			if p, ok := e.(event.Progress); ok && p.Kind == "keygen" {
				last = p
			}
		}
		if last.Total != 5 || last.Step != 5 {
			t.Fatalf("%s: last progress %+v, want step 5 of 5", w.s.name, last)
		}
		if w.s.name != "bob" {
			// Bob, and only bob, had to justify a share.
			if got := received(events, "justification"); fmt.Sprint(got) != "[bob]" {
				t.Fatalf("%s got justifications from %v, want bob's", w.s.name, got)
			}
		}
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	// Carol's share is the one bob revealed: she signs with it.
	msg := []byte("carol signs with the justified share")
	sr, err := signers[2].con.App.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil || !slices.Contains(sr.Signers, "carol") {
		t.Fatalf("signature by %v: %v", sr.Signers, err)
	}
}

// A cheating dealer caught in the key generation through Signal aborts it
// on every console, blamed by name with evidence signed by its console key:
// the protocol disqualifies it and humans re-run the ceremony.
func TestCheatingDealerOverTheRelayIsBlamedWithEvidence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cheat  func(alice, carol *signer) dkgCheat
		reason dkg.AbortReason
		// evidence checks the signed envelopes of an abort (bob is the
		// cheater's party index).
		evidence func(t *testing.T, bob uint32, ev []*wire.Envelope)
	}{
		{
			name: "wrong shares to t parties: disqualified by the complaints",
			cheat: func(alice, carol *signer) dkgCheat {
				return dkgCheat{badShareTo: []*signer{alice, carol}}
			},
			reason: dkg.ReasonComplaints,
			evidence: func(t *testing.T, bob uint32, ev []*wire.Envelope) {
				// The complainers' signed echoes (the aborting console's own
				// complaint is implied).
				for _, e := range ev {
					if e.Kind != wire.KindEcho || e.From == bob {
						t.Errorf("evidence %s from party %d, want a complainer's echo", e.Kind, e.From)
					}
				}
			},
		},
		{
			name: "a dealer standing by a wrong share: disqualified by its justification",
			cheat: func(_, carol *signer) dkgCheat {
				return dkgCheat{badShareTo: []*signer{carol}, standBy: true}
			},
			reason: dkg.ReasonBadJustification,
			evidence: func(t *testing.T, bob uint32, ev []*wire.Envelope) {
				if len(ev) != 2 || ev[0].Kind != wire.KindJustification || ev[1].Kind != wire.KindDeal || ev[0].From != bob || ev[1].From != bob {
					t.Errorf("evidence %v, want bob's justification and deal", kinds(ev))
				}
			},
		},
		{
			name: "different deals to different parties: equivocation caught by the echo",
			cheat: func(_, carol *signer) dkgCheat {
				return dkgCheat{dealTo: []*signer{carol}}
			},
			reason: dkg.ReasonEquivocation,
			evidence: func(t *testing.T, bob uint32, ev []*wire.Envelope) {
				if len(ev) != 2 || ev[0].From != bob || ev[0].Kind != wire.KindDeal || !wire.Equivocation(ev[0], ev[1]) {
					t.Errorf("evidence %v does not prove that bob signed two deals", kinds(ev))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			signers, tr, _, err, watches := cheatingKeygen(t, ctx, tt.cheat)
			// Alice, the proposer, gets the abort from StartKeygen.
			var ke *core.KeygenError
			if !errors.As(err, &ke) || !errors.Is(err, core.ErrBlamed) || !errors.Is(err, dkg.ErrMisbehaviour) {
				t.Fatalf("keygen returned %v, want a blame", err)
			}
			if ke.Reason != tt.reason || fmt.Sprint(ke.Blamed) != "[bob]" {
				t.Fatalf("keygen aborted for %s blaming %v (by %s), want %s blaming bob", ke.Reason, ke.Blamed, ke.By, tt.reason)
			}
			prop, perr := tr.proposal(ke.Ceremony)
			if perr != nil {
				t.Fatal(perr)
			}
			bob, _ := prop.IndexOfConsoleKey(signers[1].con.Card.ConsoleKey)
			// The evidence stands on its own: envelopes that open under the
			// roster's console keys.
			var ev []*wire.Envelope
			for _, raw := range ke.Abort.Evidence {
				e, err := wire.Open(raw, func(j uint32) (ed25519.PublicKey, bool) {
					if j == 0 || int(j) > prop.N() {
						return nil, false
					}
					return prop.Parties[j-1].ConsoleKey, true
				})
				if err != nil || e.Ceremony != ke.Ceremony {
					t.Fatalf("evidence does not open under the roster's keys: %v", err)
				}
				ev = append(ev, e)
			}
			if len(ev) == 0 {
				t.Fatal("no evidence")
			}
			tt.evidence(t, bob, ev)
			// Every console, the cheater's included, shows the abort naming
			// bob, and none holds a key.
			for _, w := range watches {
				_, key, failure := w.wait(t, ctx)
				if key != "" || !strings.Contains(failure, "blaming bob") || !strings.Contains(failure, ": "+tt.reason.String()) {
					t.Fatalf("%s ended with key %q, error %q; want the abort blaming bob", w.s.name, key, failure)
				}
				if w.s.name != "bob" && !strings.Contains(failure, "signed messages as evidence") {
					t.Fatalf("%s shows no evidence: %q", w.s.name, failure)
				}
				if keys, _ := w.s.con.App.Keys(ctx); len(keys) != 0 {
					t.Fatalf("%s holds a key after the abort", w.s.name)
				}
			}
		})
	}
}

func kinds(ev []*wire.Envelope) []string {
	var out []string
	for _, e := range ev {
		out = append(out, fmt.Sprintf("%s from %d", e.Kind, e.From))
	}
	return out
}
