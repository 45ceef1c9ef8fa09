package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
	"github.com/signal-mpc/cosigner/signal/device"
	"google.golang.org/protobuf/encoding/protowire"
)

// castOf starts alice, bob and carol on one relay, each prepared by setup
// (which says whether the console approves on its own), every envelope
// they send recorded in one transcript. Bob starts last: a cheater's
// lies may name the others' addresses.
func castOf(t *testing.T, setup func(s *signer) (auto bool)) (*testRelay, []*signer, *transcript) {
	t.Helper()
	r := startTestRelay(t, t.TempDir())
	tr := &transcript{}
	var signers []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newSigner(t, r, n)
		s.observe = tr.observe
		signers = append(signers, s)
	}
	for _, i := range []int{0, 2, 1} {
		s := signers[i]
		auto := true
		if setup != nil {
			auto = setup(s)
		}
		s.start(t, r, auto)
	}
	introduce(t, signers...)
	return r, signers, tr
}

// keygenAll runs a 2-of-3 keygen proposed by the first signer and waits
// until every console holds the key.
func keygenAll(t *testing.T, ctx context.Context, signers []*signer) *core.KeygenResult {
	t.Helper()
	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	return kr
}

// inject makes s's Signal device send envelopes to another console
// outside its core: what a peer with a modified console can send. Several
// envelopes go as one bundle (one Deliver, handled in order).
func (s *signer) inject(t *testing.T, ctx context.Context, to *signer, envs ...[]byte) {
	t.Helper()
	addr := device.Address{Account: to.con.Card.Account, Device: to.con.Card.Device}
	for _, m := range wire.Pack(envs) {
		if err := s.con.Device.Send(ctx, addr, m); err != nil {
			t.Fatalf("%s sends to %s: %v", s.name, to.name, err)
		}
	}
}

// recorder keeps every event a console publishes from its creation on.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func record(ctx context.Context, s *signer) *recorder {
	rec := &recorder{}
	sub := s.con.Bus.Subscribe(1 << 14)
	go func() {
		defer sub.Close()
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return
			}
			rec.mu.Lock()
			rec.events = append(rec.events, e)
			rec.mu.Unlock()
		}
	}()
	return rec
}

func (rec *recorder) snapshot() []event.Event {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.events)
}

// until waits until ok holds for the events recorded so far.
func (rec *recorder) until(t *testing.T, ctx context.Context, what string, ok func([]event.Event) bool) []event.Event {
	t.Helper()
	for {
		evs := rec.snapshot()
		if ok(evs) {
			return evs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("never saw %s; events:\n%s", what, dumpEvents(evs))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func dumpEvents(evs []event.Event) string {
	var b strings.Builder
	for _, e := range evs {
		if _, ok := e.(event.Connection); ok {
			continue
		}
		fmt.Fprintf(&b, "  %T %+v\n", e, e)
	}
	return b.String()
}

// incoming lists the incoming message events whose note contains note
// ("" matches accepted messages only).
func incoming(evs []event.Event, note string) []event.Message {
	var out []event.Message
	for _, e := range evs {
		m, ok := e.(event.Message)
		if !ok || m.Direction != event.In {
			continue
		}
		if (note == "" && m.Note == "") || (note != "" && strings.Contains(m.Note, note)) {
			out = append(out, m)
		}
	}
	return out
}

// signDones lists the live (not restored) signing results of a request.
func signDones(evs []event.Event, id [32]byte) []event.SignDone {
	var out []event.SignDone
	for _, e := range evs {
		if d, ok := e.(event.SignDone); ok && !d.Restored && d.ID == hex.EncodeToString(id[:]) {
			out = append(out, d)
		}
	}
	return out
}

func count[E any](evs []event.Event, ok func(E) bool) int {
	n := 0
	for _, e := range evs {
		if v, is := e.(E); is && ok(v) {
			n++
		}
	}
	return n
}

// partyOf is a signer's party index in a key's roster.
func partyOf(t *testing.T, tr *transcript, ceremony [32]byte, s *signer) uint32 {
	t.Helper()
	prop, err := tr.proposal(ceremony)
	if err != nil {
		t.Fatal(err)
	}
	j, ok := prop.IndexOfConsoleKey(s.con.Card.ConsoleKey)
	if !ok {
		t.Fatalf("%s is not in the proposal", s.name)
	}
	return j
}

// A finished keygen's and signing's envelopes, re-sent later by a peer
// (its own, the victim's own, a third party's), are refused as belonging
// to a finished ceremony: no second prompt, no second key, no second
// signature, also after a restart; and re-sent during a new signing they
// do not touch it.
func TestReplayedEnvelopesOfFinishedCeremoniesAreRefused(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	r, signers, tr := castOf(t, nil)
	alice, bob, carol := signers[0], signers[1], signers[2]
	kr := keygenAll(t, ctx, signers)
	before := []*recorder{record(ctx, alice), record(ctx, carol)}
	msg := []byte("first signature")
	sr, err := bob.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	// The signing ended everywhere before the replays.
	for _, rec := range before {
		rec.until(t, ctx, "the first signature", func(evs []event.Event) bool { return len(signDones(evs, sr.ID)) == 1 })
	}
	old := tr.find(func(e *wire.Envelope) bool { return e.Ceremony == kr.Ceremony || e.Ceremony == sr.ID })
	if len(old) < 10 {
		t.Fatalf("only %d envelopes in the transcript", len(old))
	}
	// Carol restarts: what she finished stays finished.
	carol.stop()
	carol.start(t, r, true)
	victims := []*signer{alice, carol}
	recs := map[string]*recorder{}
	for _, v := range victims {
		recs[v.name] = record(ctx, v)
		waitKey(t, ctx, v, kr.KeyID)
	}
	for _, v := range victims {
		// Bob re-sends everything of both ceremonies, a bundle at a time.
		bob.inject(t, ctx, v, old...)
	}
	// A new request by alice runs while bob replays again into it.
	msg2 := []byte("second signature")
	type res struct {
		sr  *core.SignResult
		err error
	}
	done := make(chan res, 1)
	go func() {
		sr, err := alice.con.App.RequestSignature(ctx, kr.KeyID, msg2, "")
		done <- res{sr, err}
	}()
	for _, v := range victims {
		bob.inject(t, ctx, v, old...)
	}
	got := <-done
	if got.err != nil {
		t.Fatal(got.err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg2, got.sr.Signature); err != nil {
		t.Fatal(err)
	}
	for _, v := range victims {
		evs := recs[v.name].until(t, ctx, v.name+" refusing every replayed envelope", func(evs []event.Event) bool {
			return len(incoming(evs, "ceremony finished")) >= 2*len(old)
		})
		for _, m := range incoming(evs, "") {
			if m.Ceremony == ceremony.ShortID(kr.Ceremony) || m.Ceremony == ceremony.ShortID(sr.ID) {
				t.Errorf("%s processed a replayed %s from %s", v.name, m.Kind, m.Peer)
			}
		}
		if n := count(evs, func(e event.ApprovalRequested) bool { return true }); v == carol && n != 1 || v == alice && n != 0 {
			t.Errorf("%s was asked %d times; only carol, once, for the new request", v.name, n)
		}
		if n := len(signDones(evs, sr.ID)); n != 0 {
			t.Errorf("%s showed the first signature again (%d times)", v.name, n)
		}
		if n := count(evs, func(e event.KeygenDone) bool { return true }); n != 0 {
			t.Errorf("%s announced a key again", v.name)
		}
		if keys, _ := v.con.App.Keys(ctx); len(keys) != 1 {
			t.Errorf("%s holds %d keys", v.name, len(keys))
		}
	}
	// The one new signature is shown once on alice's console (its event
	// may reach the recorder just after the result reached the caller).
	evs := recs["alice"].until(t, ctx, "alice showing the new signature", func(evs []event.Event) bool {
		return len(signDones(evs, got.sr.ID)) > 0
	})
	if ds := signDones(evs, got.sr.ID); len(ds) != 1 || !ds[0].Verified {
		t.Fatalf("alice showed the new request as %+v", ds)
	}
}

// withShare is a partial rewriter that signs another message with the
// cheater's real share, once the test gives it the share.
type withShare struct {
	share atomic.Pointer[share.Share]
	other []byte
}

func (w *withShare) rewriter(key ed25519.PrivateKey) rewriter {
	return func(_ core.Address, e *wire.Envelope, raw []byte) []byte {
		sh := w.share.Load()
		if e.Kind != wire.KindPartial || sh == nil {
			return raw
		}
		p, err := tbls.Sign(sh, w.other)
		if err != nil {
			return raw
		}
		payload, err := tbls.EncodePartial(p)
		if err != nil {
			return raw
		}
		lie := *e
		lie.Payload = payload
		if b, err := wire.Seal(&lie, key); err == nil {
			return b
		}
		return raw
	}
}

// load gives the rewriter the console's real share of the key.
func (w *withShare) load(t *testing.T, ctx context.Context, s *signer, keyID [32]byte) {
	t.Helper()
	secret, _, info, err := s.con.App.KeyShare(ctx, keyID)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bls.ScalarFromBytes(secret)
	if err != nil {
		t.Fatal(err)
	}
	w.share.Store(&share.Share{Index: info.Self, Value: *v})
}

// A genuine partial signature, made with the signer's real share but over
// another message, is blamed on its sender; the two honest signers still
// produce the signature.
func TestGenuinePartialForAnotherMessageIsBlamed(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cheat := &withShare{other: []byte("send everything to mallory")}
	_, signers, tr := castOf(t, func(s *signer) bool {
		switch s.name {
		case "bob":
			s.cheat = cheat.rewriter
		case "carol":
			s.hold = make(chan struct{}) // bob's partial comes first
		}
		return true
	})
	alice, bob := signers[0], signers[1]
	kr := keygenAll(t, ctx, signers)
	cheat.load(t, ctx, bob, kr.KeyID)
	releaseAfterPartialFrom(ctx, alice, "bob", signers[2].hold)
	rec := record(ctx, alice)
	msg := []byte("pay the auditors")
	sr, err := alice.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
	slices.Sort(sr.Signers)
	if fmt.Sprint(sr.Signers) != "[alice carol]" || fmt.Sprint(sr.Blamed) != "[bob]" {
		t.Fatalf("signed by %v blaming %v; want alice and carol, blaming bob", sr.Signers, sr.Blamed)
	}
	rec.until(t, ctx, "the result blaming bob", func(evs []event.Event) bool {
		ds := signDones(evs, sr.ID)
		return len(ds) == 1 && ds[0].Verified && fmt.Sprint(ds[0].Blamed) == "[bob]"
	})
	// What bob sent is evidence that stands on its own: signed by his
	// console key, a valid partial of his share, for the other message.
	sent := tr.find(func(e *wire.Envelope) bool { return e.Ceremony == sr.ID && e.Kind == wire.KindPartial })
	bobIdx := partyOf(t, tr, kr.Ceremony, bob)
	_, pubShare, _, err := bob.con.App.KeyShare(ctx, kr.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := bls.PublicKeyFromBytes(pubShare)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, raw := range sent {
		e, err := wire.Open(raw, func(j uint32) (ed25519.PublicKey, bool) {
			return bob.con.Card.ConsoleKey, j == bobIdx
		})
		if err != nil {
			continue
		}
		p, err := tbls.DecodePartial(e.From, e.Payload)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := bls.NewSignatureFromSubgroupPoint(&p.Sig)
		if err != nil {
			t.Fatal(err)
		}
		if bls.Verify(pk, cheat.other, sig) != nil || bls.Verify(pk, msg, sig) == nil {
			t.Fatal("bob's partial is not his genuine partial of the other message")
		}
		found = true
	}
	if !found {
		t.Fatal("bob sent no partial")
	}
}

// resealed is e with a different payload (one bit of its first field
// flipped), validly signed by key: a second message for the same slot.
func resealed(e *wire.Envelope, key ed25519.PrivateKey) ([]byte, error) {
	lie := *e
	lie.Payload = slices.Clone(e.Payload)
	if len(lie.Payload) < 3 {
		return nil, fmt.Errorf("payload of %d bytes", len(lie.Payload))
	}
	lie.Payload[2] ^= 1
	return wire.Seal(&lie, key)
}

// equivocate sends, to the console addressed by to, each envelope of kind
// twice: first a different one for the same slot, then the real one (the
// other order would let the receiver act on the real one, e.g. confirm a
// key, before it sees the second).
func equivocate(t *testing.T, kind wire.Kind, to func() *signer) func(ed25519.PrivateKey) expander {
	return func(key ed25519.PrivateKey) expander {
		return func(addr core.Address, e *wire.Envelope, raw []byte) [][]byte {
			s := to()
			if e.Kind != kind || s == nil || addr.Account != s.con.Card.Account || addr.Device != s.con.Card.Device {
				return [][]byte{raw}
			}
			twin, err := resealed(e, key)
			if err != nil {
				t.Errorf("equivocate: %v", err)
				return [][]byte{raw}
			}
			return [][]byte{twin, raw}
		}
	}
}

// A party that signs two different echoes or two different key
// confirmations for one ceremony is blamed for equivocation, with both
// signed messages as evidence, on every console; the keygen aborts and
// nobody keeps a key.
func TestKeygenEquivocationBeyondTheDealIsBlamed(t *testing.T) {
	t.Parallel()
	for _, kind := range []wire.Kind{wire.KindEcho, wire.KindConfirm} {
		t.Run(kind.String(), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			var aliceP atomic.Pointer[signer]
			var aliceRec atomic.Pointer[recorder]
			relay, signers, tr := castOf(t, func(s *signer) bool {
				switch s.name {
				case "alice":
					aliceP.Store(s)
				case "bob":
					// Bob sends alice two different messages of kind.
					s.expand = equivocate(t, kind, aliceP.Load)
				case "carol":
					if kind == wire.KindConfirm {
						// Carol's confirmation waits until alice has bob's
						// two: with carol's first, alice would be done
						// (or have found bob's other confirmation bad)
						// before the second arrived.
						s.expand = func(ed25519.PrivateKey) expander {
							return func(_ core.Address, e *wire.Envelope, raw []byte) [][]byte {
								if e.Kind == wire.KindConfirm {
									waitIncoming(ctx, aliceRec.Load, "bob", "confirm", 2)
								}
								return [][]byte{raw}
							}
						}
					}
				}
				return true
			})
			alice, bob := signers[0], signers[1]
			aliceRec.Store(record(ctx, alice))
			recs := map[string]*recorder{}
			for _, s := range signers[1:] {
				recs[s.name] = record(ctx, s)
			}
			var watches []*keygenWatch
			for _, s := range signers[1:] {
				watches = append(watches, watchKeygen(ctx, s))
			}
			_, err := alice.con.App.StartKeygen(ctx, 2)
			var ke *core.KeygenError
			if !errors.As(err, &ke) || ke.Reason != dkg.ReasonEquivocation || fmt.Sprint(ke.Blamed) != "[bob]" || ke.Remote {
				t.Fatalf("alice's keygen ended with %v; want her own abort for bob's equivocation; alice saw\n%s", err, dumpEvents(aliceRec.Load().snapshot()))
			}
			// The evidence: two different envelopes for one slot, both
			// opening under bob's console key.
			bobIdx := partyOf(t, tr, ke.Ceremony, bob)
			var ev []*wire.Envelope
			for _, raw := range ke.Abort.Evidence {
				e, err := wire.Open(raw, func(j uint32) (ed25519.PublicKey, bool) { return bob.con.Card.ConsoleKey, j == bobIdx })
				if err != nil {
					t.Fatalf("evidence does not open under bob's key: %v", err)
				}
				ev = append(ev, e)
			}
			if len(ev) != 2 || ev[0].Kind != kind || !wire.Equivocation(ev[0], ev[1]) {
				t.Fatalf("evidence %v does not prove two %s messages", kinds(ev), kind)
			}
			if kind == wire.KindConfirm {
				// The confirmation is the last round: a console that had
				// every confirmation before alice's abort arrived has
				// stored the key. Alice's abort, whose evidence proves
				// bob's two confirmations, makes it dispute the key: no
				// console keeps a key alice aborted.
				for _, s := range signers[1:] {
					recs[s.name].until(t, ctx, s.name+" disputing the key", func(evs []event.Event) bool {
						return count(evs, func(e event.KeygenFailed) bool {
							return fmt.Sprint(e.Blamed) == "[bob]" && (e.Reason == "disputed" || strings.Contains(e.Text, ": equivocation"))
						}) > 0
					})
				}
				watches = nil
				// The dispute is recorded: after a restart carol still
				// does not sign with the key.
				carol := signers[2]
				carol.stop()
				carol.start(t, relay, true)
				if keys, _ := carol.con.App.Keys(ctx); len(keys) != 0 {
					t.Fatal("carol holds the disputed key again after a restart")
				}
			}
			for _, w := range watches {
				_, key, failure := w.wait(t, ctx)
				if key != "" || !strings.Contains(failure, "blaming bob") || !strings.Contains(failure, ": equivocation") || strings.Contains(failure, "without proof") {
					t.Fatalf("%s ended with key %q, error %q; want the equivocation abort blaming bob", w.s.name, key, failure)
				}
			}
			for _, s := range signers {
				if keys, _ := s.con.App.Keys(ctx); len(keys) != 0 {
					t.Fatalf("%s holds a key after the abort", s.name)
				}
			}
		})
	}
}

// waitIncoming waits (at most 20 s: a test deadline ends it anyway) until
// the recorder holds n accepted incoming messages of kind from peer.
func waitIncoming(ctx context.Context, rec func() *recorder, peer, kind string, n int) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if r := rec(); r != nil {
			got := 0
			for _, m := range incoming(r.snapshot(), "") {
				if m.Peer == peer && m.Kind == kind {
					got++
				}
			}
			if got >= n {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// In signing, a party that signs two different answers for one slot (two
// declines, or two partial signatures) is blamed for equivocation: its
// answer is not used, and the two honest signers sign.
func TestSigningEquivocationIsBlamed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind wire.Kind
		// bobApproves: bob's human approves (else declines).
		bobApproves bool
		// declineFirst: bob's other answer is a decline, not a partial.
		declineFirst bool
	}{
		// Both declines go to everyone: alice and carol each blame bob.
		{name: "two declines", kind: wire.KindDecline},
		// Partials go to the requester: bob's genuine partial of another
		// message, then his real one. Without the equivocation check the
		// real one would complete the signature with bob.
		{name: "two partials", kind: wire.KindPartial, bobApproves: true},
		// A signed decline and a signed partial are two answers to one
		// request (threshold-bls.md: two different messages for the same
		// ceremony, round, sender and recipient are equivocation).
		// Without that, bob's decline would stand and nobody be blamed.
		{name: "a decline and a partial", kind: wire.KindPartial, bobApproves: true, declineFirst: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			other := &withShare{other: []byte("send everything to mallory")}
			_, signers, _ := castOf(t, func(s *signer) bool {
				if s.name == "bob" {
					s.expand = func(key ed25519.PrivateKey) expander {
						lie := other.rewriter(key)
						return func(to core.Address, e *wire.Envelope, raw []byte) [][]byte {
							if e.Kind != tt.kind {
								return [][]byte{raw}
							}
							var twin []byte
							if tt.declineFirst {
								p, _ := (&tbls.Decline{Reason: "no"}).Encode()
								d := &wire.Envelope{Kind: wire.KindDecline, Ceremony: e.Ceremony, Round: e.Round, From: e.From, Payload: p}
								var err error
								if twin, err = wire.Seal(d, key); err != nil {
									t.Errorf("bob: %v", err)
								}
							} else if tt.kind == wire.KindPartial {
								twin = lie(to, e, raw)
							} else {
								var err error
								if twin, err = resealed(e, key); err != nil {
									t.Errorf("bob: %v", err)
								}
							}
							return [][]byte{twin, raw}
						}
					}
				}
				return s.name == "alice"
			})
			alice, bob, carol := signers[0], signers[1], signers[2]
			var recA, recC atomic.Pointer[recorder]
			answerApprovals(ctx, bob, func(ar event.ApprovalRequested) (bool, bool) { return ar.Kind != "sign" || tt.bobApproves, true })
			answerApprovals(ctx, carol, func(ar event.ApprovalRequested) (bool, bool) {
				if ar.Kind != "sign" {
					return true, true
				}
				// Carol approves once bob's two answers are in: her partial
				// first would end the request before they arrive.
				if tt.declineFirst {
					waitIncoming(ctx, recA.Load, "bob", "decline", 1)
					waitIncoming(ctx, recA.Load, "bob", "partial", 1)
				} else {
					waitIncoming(ctx, recA.Load, "bob", tt.kind.String(), 2)
				}
				if tt.kind == wire.KindDecline {
					waitIncoming(ctx, recC.Load, "bob", tt.kind.String(), 2)
				}
				return true, true
			})
			kr := keygenAll(t, ctx, signers)
			other.load(t, ctx, bob, kr.KeyID)
			recA.Store(record(ctx, alice))
			recC.Store(record(ctx, carol))
			msg := []byte("rotate the withdrawal key")
			sr, err := alice.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
				t.Fatal(err)
			}
			slices.Sort(sr.Signers)
			if fmt.Sprint(sr.Signers) != "[alice carol]" || fmt.Sprint(sr.Blamed) != "[bob]" {
				t.Fatalf("signed by %v blaming %v; want alice and carol, blaming bob", sr.Signers, sr.Blamed)
			}
			for _, rec := range []*recorder{recA.Load(), recC.Load()} {
				rec.until(t, ctx, "the signature blaming bob", func(evs []event.Event) bool {
					ds := signDones(evs, sr.ID)
					return len(ds) == 1 && ds[0].Verified && fmt.Sprint(ds[0].Blamed) == "[bob]" && !slices.Contains(ds[0].Signers, "bob")
				})
			}
		})
	}
}

// forgeResult rewrites the requester's signing result as change says,
// validly signed by the requester's console key.
func forgeResult(change func(*tbls.SignResult)) func(ed25519.PrivateKey) rewriter {
	return func(key ed25519.PrivateKey) rewriter {
		return func(_ core.Address, e *wire.Envelope, raw []byte) []byte {
			if e.Kind != wire.KindSignResult {
				return raw
			}
			m, err := tbls.DecodeSignResult(e.Payload)
			if err != nil {
				return raw
			}
			change(m)
			p, err := m.Encode()
			if err != nil {
				return raw
			}
			lie := *e
			lie.Payload = p
			if b, err := wire.Seal(&lie, key); err == nil {
				return b
			}
			return raw
		}
	}
}

// A requester that announces a forged result (a signature that does not
// verify, or signers that did not sign) is blamed by the others, who never
// show it as a valid signature.
func TestForgedSigningResultIsRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*tbls.SignResult)
	}{
		{name: "a signature that does not verify", change: func(m *tbls.SignResult) {
			m.Signature, _ = bls.NewSignatureFromSubgroupPoint(bls.HashToG2([]byte("not the message"), bls.SigDST))
		}},
		{name: "signers that did not sign", change: func(m *tbls.SignResult) {
			// Carol declined; the result says she signed.
			m.Signers = []uint32{1, 2, 3}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			_, signers, _ := castOf(t, func(s *signer) bool {
				if s.name == "alice" {
					s.cheat = forgeResult(tt.change)
				}
				// Carol declines: once the others blame alice, two
				// signatures can no longer be reached and the request
				// ends there for them.
				return s.name != "carol"
			})
			alice, bob, carol := signers[0], signers[1], signers[2]
			answerApprovals(ctx, carol, func(ar event.ApprovalRequested) (bool, bool) { return ar.Kind != "sign", true })
			kr := keygenAll(t, ctx, signers)
			recs := []*recorder{record(ctx, bob), record(ctx, carol)}
			msg := []byte("move the treasury")
			sr, err := alice.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
			if err != nil {
				t.Fatal(err) // alice's own console combined honestly
			}
			for i, rec := range recs {
				evs := rec.until(t, ctx, "the end of the request", func(evs []event.Event) bool { return len(signDones(evs, sr.ID)) > 0 })
				d := signDones(evs, sr.ID)[0]
				if d.Verified || d.Signature != "" || fmt.Sprint(d.Blamed) != "[alice]" {
					t.Fatalf("%s showed the forged result as %+v; want a failure blaming alice", signers[i+1].name, d)
				}
			}
		})
	}
}

// An envelope that arrives from another party's Signal device than the
// party it names is refused, whoever signed it: bob's device relaying an
// envelope signed by carol's console key, or one bob signed claiming to be
// carol. Neither counts as carol's answer, and nobody is blamed for it.
func TestEnvelopeFromAnotherPartysDeviceIsRefused(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var aliceRec atomic.Pointer[recorder]
	_, signers, tr := castOf(t, func(s *signer) bool { return s.name == "alice" })
	alice, bob, carol := signers[0], signers[1], signers[2]
	answerApprovals(ctx, bob, func(ar event.ApprovalRequested) (bool, bool) { return true, ar.Kind != "sign" })
	answerApprovals(ctx, carol, func(ar event.ApprovalRequested) (bool, bool) {
		if ar.Kind == "sign" {
			// Carol approves once alice refused the two forged declines
			// in her name.
			waitNote(ctx, aliceRec.Load, "sender is not a signer", 2)
		}
		return true, true
	})
	kr := keygenAll(t, ctx, signers)
	aliceRec.Store(record(ctx, alice))
	type res struct {
		sr  *core.SignResult
		err error
	}
	done := make(chan res, 1)
	msg := []byte("close the position")
	go func() {
		sr, err := alice.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
		done <- res{sr, err}
	}()
	var req *wire.Envelope
	for req == nil {
		for _, raw := range tr.find(func(e *wire.Envelope) bool { return e.Kind == wire.KindSignRequest }) {
			req, _ = wire.Decode(raw)
		}
		select {
		case <-ctx.Done():
			t.Fatal("alice sent no request")
		case <-time.After(20 * time.Millisecond):
		}
	}
	carolIdx := partyOf(t, tr, kr.Ceremony, carol)
	payload, err := (&tbls.Decline{Reason: "carol says no"}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	decline := wire.Envelope{Kind: wire.KindDecline, Ceremony: req.Ceremony, Round: 1, From: carolIdx, Payload: payload}
	signedByCarol, err := wire.Seal(&decline, consoleKeyOf(t, carol))
	if err != nil {
		t.Fatal(err)
	}
	signedByBob, err := wire.Seal(&decline, consoleKeyOf(t, bob))
	if err != nil {
		t.Fatal(err)
	}
	bob.inject(t, ctx, alice, signedByCarol)
	bob.inject(t, ctx, alice, signedByBob)
	got := <-done
	if got.err != nil {
		t.Fatalf("the request failed: %v", got.err)
	}
	slices.Sort(got.sr.Signers)
	if fmt.Sprint(got.sr.Signers) != "[alice carol]" || len(got.sr.Blamed) != 0 {
		t.Fatalf("signed by %v blaming %v; want alice and carol, nobody blamed", got.sr.Signers, got.sr.Blamed)
	}
	evs := aliceRec.Load().until(t, ctx, "the signature", func(evs []event.Event) bool { return len(signDones(evs, got.sr.ID)) == 1 })
	refused := incoming(evs, "sender is not a signer")
	if len(refused) != 2 {
		t.Fatalf("alice refused %d envelopes, want the two forged declines", len(refused))
	}
	for _, m := range refused {
		if m.Peer != "bob" || m.Kind != "decline" {
			t.Fatalf("refused %+v, want bob's relayed declines", m)
		}
	}
	for _, m := range incoming(evs, "") {
		if m.Kind == "decline" {
			t.Fatalf("alice took a decline: %+v", m)
		}
	}
	if d := signDones(evs, got.sr.ID)[0]; !d.Verified || len(d.Blamed) != 0 {
		t.Fatalf("alice showed %+v", d)
	}
}

// waitNote waits (at most 20 s) until the recorder holds n incoming
// messages refused with a note containing note.
func waitNote(ctx context.Context, rec func() *recorder, note string, n int) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if r := rec(); r != nil && len(incoming(r.snapshot(), note)) >= n {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// errorsWith lists the texts of error events containing s.
func errorsWith(evs []event.Event, s string) []string {
	var out []string
	for _, e := range evs {
		if er, ok := e.(event.Error); ok && strings.Contains(er.Text, s) {
			out = append(out, er.Text)
		}
	}
	return out
}

// A card for a known signer (bob's account and device) with another
// console key is held until a human verifies it: bob is blocked on that
// console (roster.ErrKeyChanged), which proposes no keygen; a keygen
// proposal signed by the substituted key and naming it is refused by
// every console, and an honest proposal is refused by the console that
// holds bob blocked until its deadline ends it.
func TestSubstitutedConsoleKeyInACardIsBlockedAndRefused(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	_, signers, _ := castOf(t, func(s *signer) bool {
		if s.name == "alice" {
			s.tune = func(c *consoleConfig) { c.RoundTimeout = 3 * time.Second }
		}
		return true
	})
	alice, bob, carol := signers[0], signers[1], signers[2]
	recA, recC := record(ctx, alice), record(ctx, carol)
	_, mallory, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	// Bob's addresses under mallory's key (a signed card: its console key
	// signs it).
	sub, err := roster.SignCard(bob.name, bob.con.Card.Serial, mallory, bob.con.Card.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	// Claimed verified or not, the changed card waits for a human.
	for _, verified := range []bool{false, true} {
		if err := carol.con.App.AddCard(ctx, sub, verified); !errors.Is(err, roster.ErrKeyChanged) {
			t.Fatalf("carol added the substituted card (verified %v): %v", verified, err)
		}
	}
	members, err := carol.con.App.Roster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Card.Name == "bob" && (!m.Blocked() || !bytes.Equal(m.Card.ConsoleKey, bob.con.Card.ConsoleKey)) {
			t.Fatalf("carol's roster holds bob as %+v: want the pinned key, blocked", m)
		}
	}
	if _, err := carol.con.App.StartKeygen(ctx, 2); !errors.Is(err, roster.ErrKeyChanged) {
		t.Fatalf("carol proposed a keygen with bob blocked: %v", err)
	}

	// Mallory, through bob's device, proposes a keygen under the
	// substituted key.
	prop := &dkg.Proposal{Threshold: 2, RoundTimeout: time.Minute, Created: time.Now().Truncate(time.Second)}
	for _, s := range signers {
		c := s.con.Card
		if s == bob {
			c = sub
		}
		prop.Parties = append(prop.Parties, dkg.Party{Account: c.Account, Device: c.Device, IdentityKey: c.IdentityKey, ConsoleKey: c.ConsoleKey})
	}
	dkg.SortParties(prop.Parties)
	prop.Initiator, _ = prop.IndexOfConsoleKey(sub.ConsoleKey)
	if _, err := rand.Read(prop.Nonce[:]); err != nil {
		t.Fatal(err)
	}
	_, out, err := ceremony.ProposeKeygen(prop, mallory, [32]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	bob.inject(t, ctx, alice, out[0].Envelope)
	bob.inject(t, ctx, carol, out[0].Envelope)
	recA.until(t, ctx, "alice refusing the proposal", func(evs []event.Event) bool {
		return len(errorsWith(evs, "keys other than the pinned ones")) == 1
	})
	recC.until(t, ctx, "carol refusing the proposal", func(evs []event.Event) bool {
		return len(errorsWith(evs, "bob's keys changed and are not verified")) == 1
	})

	// Alice's honest proposal: carol refuses it while bob is blocked, and
	// the deadline ends it naming carol.
	_, err = alice.con.App.StartKeygen(ctx, 2)
	var ke *core.KeygenError
	if !errors.As(err, &ke) || ke.Reason != dkg.ReasonTimeout || fmt.Sprint(ke.Blamed) != "[carol]" {
		t.Fatalf("alice's keygen ended with %v; want the deadline naming carol", err)
	}
	evs := recC.until(t, ctx, "carol refusing alice's proposal", func(evs []event.Event) bool {
		return len(errorsWith(evs, "bob's keys changed and are not verified")) == 2
	})
	if n := count(evs, func(e event.ApprovalRequested) bool { return e.Kind == "keygen" }); n != 0 {
		t.Fatalf("carol was asked %d times to accept a keygen", n)
	}
	if n := count(recA.snapshot(), func(e event.ApprovalRequested) bool { return e.Kind == "keygen" }); n != 0 {
		t.Fatalf("alice was asked %d times to accept a keygen", n)
	}
	for _, s := range signers {
		if keys, _ := s.con.App.Keys(ctx); len(keys) != 0 {
			t.Fatalf("%s holds a key", s.name)
		}
	}
}

// A party that accepts a keygen and then withholds its messages (its deal
// and shares, or its echo) stalls it until the round's deadline, which
// names that party alone; nobody is blamed for cheating.
func TestWithheldKeygenMessagesAreNamedByTheDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		withheld []wire.Kind
		round    dkg.Round
	}{
		{name: "deal and shares", withheld: []wire.Kind{wire.KindDeal, wire.KindShare}, round: dkg.RoundDeal},
		{name: "echo", withheld: []wire.Kind{wire.KindEcho}, round: dkg.RoundEcho},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			_, signers, _ := castOf(t, func(s *signer) bool {
				switch s.name {
				case "alice":
					// The proposal carries the deadline to everyone.
					s.tune = func(c *consoleConfig) { c.RoundTimeout = 4 * time.Second; c.ResendEvery = time.Second }
				case "bob":
					s.expand = func(ed25519.PrivateKey) expander {
						return func(_ core.Address, e *wire.Envelope, raw []byte) [][]byte {
							if slices.Contains(tt.withheld, e.Kind) {
								return nil
							}
							return [][]byte{raw}
						}
					}
				}
				return true
			})
			alice, carol := signers[0], signers[2]
			w := watchKeygen(ctx, carol)
			_, err := alice.con.App.StartKeygen(ctx, 2)
			var ke *core.KeygenError
			if !errors.As(err, &ke) || ke.Reason != dkg.ReasonTimeout || fmt.Sprint(ke.Blamed) != "[bob]" || len(ke.Claimed) != 0 || ke.Round != tt.round {
				t.Fatalf("alice's keygen ended with %v; want the %s deadline naming bob", err, tt.round)
			}
			// Carol ends the same way, by her own deadline or alice's
			// abort: bob named, nobody accused.
			_, key, failure := w.wait(t, ctx)
			if key != "" || !strings.Contains(failure, ": timeout, blaming bob") || strings.Contains(failure, "bob and") || strings.Contains(failure, "accusing") || strings.Contains(failure, "evidence") {
				t.Fatalf("carol ended with key %q, error %q; want the deadline naming bob alone", key, failure)
			}
			for _, s := range signers {
				if keys, _ := s.con.App.Keys(ctx); len(keys) != 0 {
					t.Fatalf("%s holds a key", s.name)
				}
			}
		})
	}
}

// Oversized input from a peer is refused with a clear reason and changes
// nothing: a bundle over the size limit, a bundle of too many envelopes, an
// envelope over the size limit (each delivered through the relay and
// refused by the console), and a Signal message over the relay's limit
// (refused to its sender before it leaves). The console keeps running and handles what
// comes next: a keygen and a signing.
func TestOversizedInputIsRefusedAndTheConsoleGoesOn(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	_, signers, _ := castOf(t, nil)
	alice, bob := signers[0], signers[1]
	rec := record(ctx, alice)
	bundle := func(n, size int) []byte {
		var b []byte
		for range n {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendBytes(b, bytes.Repeat([]byte{0x08}, size))
		}
		return b
	}
	huge := bundle(2, wire.MaxEnvelopeSize/2+1024)
	many := bundle(wire.MaxBundleCount+1, 100)
	bigEnvelope := bytes.Repeat([]byte{0x08}, wire.MaxEnvelopeSize+1024) // not a bundle: one envelope
	if _, err := wire.Unbundle(huge); !errors.Is(err, wire.ErrTooLarge) {
		t.Fatalf("the oversized bundle is not refused by wire: %v", err)
	}
	addr := device.Address{Account: alice.con.Card.Account, Device: alice.con.Card.Device}
	for _, m := range [][]byte{huge, many, bigEnvelope} {
		if err := bob.con.Device.Send(ctx, addr, m); err != nil {
			t.Fatalf("bob's %d bytes did not go through the relay: %v", len(m), err)
		}
	}
	evs := rec.until(t, ctx, "alice refusing the three", func(evs []event.Event) bool {
		return len(incoming(evs, "too large")) == 3
	})
	for _, m := range incoming(evs, "too large") {
		if m.Peer != "bob" || !strings.HasPrefix(m.Note, "malformed: ") {
			t.Fatalf("refused as %+v", m)
		}
	}
	// A message over the server's limit does not leave: bob's device says
	// why, and alice gets nothing.
	err := bob.con.Device.Send(ctx, addr, bytes.Repeat([]byte{0x08}, 200<<10))
	if err == nil || !strings.Contains(err.Error(), "over the server's") {
		t.Fatalf("a 200 KiB message was sent or refused without its reason: %v", err)
	}
	kr := keygenAll(t, ctx, signers)
	msg := []byte("after the garbage")
	sr, err := bob.con.App.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-alice.done:
		t.Fatalf("alice's console stopped: %v", err)
	default:
	}
}

// consoleKeyOf is a signer's console key, read from its store.
func consoleKeyOf(t *testing.T, s *signer) ed25519.PrivateKey {
	t.Helper()
	key, err := core.ConsoleKey(t.Context(), coreVault{Store: s.st})
	if err != nil {
		t.Fatal(err)
	}
	return key
}
