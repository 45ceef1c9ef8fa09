package dkg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// party is one simulated console: its engine and its keys.
type party struct {
	idx    uint32
	key    ed25519.PrivateKey
	engine *Engine
	inputs [][]byte // every envelope handed to Handle, in order (for replay)
}

// testGroup builds a proposal for n parties with deterministic keys and
// seeds derived from name, so failures reproduce.
func testGroup(t testing.TB, name string, th, n int) (*Proposal, []*party) {
	t.Helper()
	keys := make(map[string]ed25519.PrivateKey)
	parties := make([]Party, n)
	for i := range parties {
		seed := sha256.Sum256([]byte(fmt.Sprintf("%s/console/%d", name, i)))
		k := ed25519.NewKeyFromSeed(seed[:])
		acct := fmt.Sprintf("acct-%02d", i)
		keys[acct] = k
		parties[i] = Party{Account: acct, Device: 2, IdentityKey: append([]byte{5}, seed[:]...), ConsoleKey: k.Public().(ed25519.PublicKey)}
	}
	SortParties(parties)
	prop := &Proposal{Threshold: th, Parties: parties, RoundTimeout: 5 * time.Minute, Initiator: 1, Created: time.Unix(1_700_000_000, 0)}
	copy(prop.Nonce[:], name)
	ps := make([]*party, n)
	for i := range ps {
		idx := uint32(i + 1)
		e, err := New(Config{Proposal: prop, Self: idx, Key: keys[parties[i].Account], Seed: seedFor(name, idx)})
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = &party{idx: idx, key: keys[parties[i].Account], engine: e}
	}
	return prop, ps
}

func seedFor(name string, idx uint32) [32]byte {
	return sha256.Sum256([]byte(fmt.Sprintf("%s/seed/%d", name, idx)))
}

// delivery is one envelope in flight.
type delivery struct {
	from, to uint32
	env      []byte
}

// network is an in-memory, in-order message bus between engines. tamper
// may rewrite or drop (nil) a delivery; it sees each copy of a broadcast.
type network struct {
	t       testing.TB
	parties []*party
	queue   []delivery
	tamper  func(d delivery) [][]byte
	errs    map[uint32][]error
}

func newNetwork(t testing.TB, ps []*party) *network {
	return &network{t: t, parties: ps, errs: map[uint32][]error{}}
}

func (nw *network) send(from uint32, out []Outgoing) {
	for _, o := range out {
		for _, p := range nw.parties {
			if p.idx == from || (o.To != 0 && o.To != p.idx) {
				continue
			}
			nw.queue = append(nw.queue, delivery{from: from, to: p.idx, env: o.Envelope})
		}
	}
}

// run delivers until no message is in flight.
func (nw *network) run() {
	for steps := 0; len(nw.queue) > 0; steps++ {
		if steps > 100000 {
			nw.t.Fatal("network does not settle")
		}
		d := nw.queue[0]
		nw.queue = nw.queue[1:]
		envs := [][]byte{d.env}
		if nw.tamper != nil {
			envs = nw.tamper(d)
		}
		for _, env := range envs {
			p := nw.parties[d.to-1]
			p.inputs = append(p.inputs, env)
			out, err := p.engine.Handle(env)
			if err != nil {
				nw.errs[d.to] = append(nw.errs[d.to], err)
			}
			nw.send(d.to, out)
		}
	}
}

func (nw *network) startAll(except ...uint32) {
	for _, p := range nw.parties {
		if slices.Contains(except, p.idx) {
			continue
		}
		out, err := p.engine.Start()
		if err != nil {
			nw.t.Fatal(err)
		}
		nw.send(p.idx, out)
	}
}

func runHappy(t *testing.T, name string, th, n int) []*party {
	_, ps := testGroup(t, name, th, n)
	nw := newNetwork(t, ps)
	nw.startAll()
	nw.run()
	for _, p := range ps {
		if p.engine.State() != StateDone {
			t.Fatalf("party %d: state %s, err %v, progress %+v", p.idx, p.engine.State(), p.engine.Err(), p.engine.Progress())
		}
	}
	return ps
}

func TestDKGAllPartiesAgreeOnKeyAndShares(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ t, n int }{{2, 3}, {3, 5}, {7, 10}} {
		t.Run(fmt.Sprintf("%d-of-%d", tc.t, tc.n), func(t *testing.T) {
			t.Parallel()
			ps := runHappy(t, fmt.Sprintf("happy-%d-%d", tc.t, tc.n), tc.t, tc.n)
			first, _ := ps[0].engine.Result()
			var shares []share.Share
			for _, p := range ps {
				r, err := p.engine.Result()
				if err != nil {
					t.Fatal(err)
				}
				if !r.Group.Key.Equal(first.Group.Key) {
					t.Fatalf("party %d has a different group key", p.idx)
				}
				for j := range r.Group.Shares {
					if !r.Group.Shares[j].Equal(first.Group.Shares[j]) {
						t.Fatalf("party %d disagrees on public share %d", p.idx, j+1)
					}
				}
				if r.Group.T != tc.t || r.Group.N() != tc.n {
					t.Fatalf("group is %d-of-%d", r.Group.T, r.Group.N())
				}
				sk, err := bls.NewSecretKey(&r.Share.Value)
				if err != nil {
					t.Fatal(err)
				}
				if !sk.PublicKey().Equal(r.Group.Shares[p.idx-1]) {
					t.Fatalf("party %d: share does not match its public share", p.idx)
				}
				if err := bls.PopVerify(r.Group.Key, r.GroupPoP); err != nil {
					t.Fatalf("party %d: group PoP: %v", p.idx, err)
				}
				if got := p.engine.Progress(); got.Step != 4 || got.Total != 4 {
					t.Fatalf("happy path ran %d of %d rounds, want 4 of 4", got.Step, got.Total)
				}
				shares = append(shares, r.Share)
			}
			// The key signs: t partials combine to a signature that verifies
			// under the group key with the standard verification.
			msg := []byte("first signature of a fresh key")
			var partials []*tbls.Partial
			for _, s := range shares[len(shares)-tc.t:] {
				p, err := tbls.Sign(&s, msg)
				if err != nil {
					t.Fatal(err)
				}
				partials = append(partials, p)
			}
			res, err := first.Group.Combine(msg, partials)
			if err != nil {
				t.Fatal(err)
			}
			if err := bls.Verify(first.Group.Key, msg, res.Signature); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// reseal re-signs an envelope after mutate changed it, as a cheating sender
// with its own console key would.
func reseal(t testing.TB, raw []byte, key ed25519.PrivateKey, mutate func(*wire.Envelope)) []byte {
	t.Helper()
	env, err := wire.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	mutate(env)
	b, err := wire.Seal(env, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kindOf(raw []byte) wire.Kind {
	env, err := wire.Decode(raw)
	if err != nil {
		return 0
	}
	return env.Kind
}

func sharePayload(t testing.TB, s *bls.Scalar) []byte {
	b, err := (&shareMsg{Value: bls.ScalarBytes(s)}).encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWrongShareIsComplainedAboutAndJustified(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "wrong-share", 2, 3)
	nw := newNetwork(t, ps)
	// Dealer 1's share to party 2 is corrupted in transit (re-signed, so only
	// the value is wrong): party 2 complains, dealer 1 (honest) reveals the
	// right share, and the ceremony completes.
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 1 && d.to == 2 && kindOf(d.env) == wire.KindShare {
			return [][]byte{reseal(t, d.env, ps[0].key, func(e *wire.Envelope) {
				e.Payload = sharePayload(t, bls.ScalarFromUint64(12345))
			})}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	var key *bls.PublicKey
	for _, p := range ps {
		r, err := p.engine.Result()
		if err != nil {
			t.Fatalf("party %d: %v", p.idx, err)
		}
		if key != nil && !key.Equal(r.Group.Key) {
			t.Fatal("parties disagree on the key")
		}
		key = r.Group.Key
		if prog := p.engine.Progress(); prog.Total != 5 || prog.Step != 5 {
			t.Fatalf("party %d: %d of %d rounds, want the justification round too", p.idx, prog.Step, prog.Total)
		}
		sk, _ := bls.NewSecretKey(&r.Share.Value)
		if !sk.PublicKey().Equal(r.Group.Shares[p.idx-1]) {
			t.Fatalf("party %d's share does not match its public share", p.idx)
		}
	}
}

func TestBadJustificationDisqualifiesTheDealer(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "bad-justification", 2, 3)
	nw := newNetwork(t, ps)
	nw.tamper = func(d delivery) [][]byte {
		switch {
		case d.from == 1 && d.to == 2 && kindOf(d.env) == wire.KindShare:
			return [][]byte{reseal(t, d.env, ps[0].key, func(e *wire.Envelope) {
				e.Payload = sharePayload(t, bls.ScalarFromUint64(777))
			})}
		case d.from == 1 && kindOf(d.env) == wire.KindJustification:
			// Dealer 1 stands by the wrong share when asked to justify.
			return [][]byte{reseal(t, d.env, ps[0].key, func(e *wire.Envelope) {
				e.Payload, _ = (&justification{Shares: []revealedShare{{To: 2, Value: bls.ScalarBytes(bls.ScalarFromUint64(777))}}}).encode()
			})}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps[1:] {
		expectAbort(t, p, ReasonBadJustification, []uint32{1})
		var a *AbortError
		errors.As(p.engine.Err(), &a)
		if len(a.Evidence) != 2 {
			t.Fatalf("party %d: %d pieces of evidence, want the justification and the deal", p.idx, len(a.Evidence))
		}
	}
}

func TestTooManyComplaintsDisqualifyTheDealer(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "complaints", 2, 3)
	nw := newNetwork(t, ps)
	// Dealer 1 sends wrong shares to both others: t = 2 complaints.
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 1 && kindOf(d.env) == wire.KindShare {
			return [][]byte{reseal(t, d.env, ps[0].key, func(e *wire.Envelope) {
				e.Payload = sharePayload(t, bls.ScalarFromUint64(uint64(d.to)))
			})}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps {
		expectAbort(t, p, ReasonComplaints, []uint32{1})
	}
}

func expectAbort(t *testing.T, p *party, reason AbortReason, blamed []uint32) {
	t.Helper()
	if p.engine.State() != StateAborted {
		t.Fatalf("party %d: state %s, want aborted", p.idx, p.engine.State())
	}
	var a *AbortError
	if !errors.As(p.engine.Err(), &a) {
		t.Fatalf("party %d: err %v is not an *AbortError", p.idx, p.engine.Err())
	}
	if a.Reason != reason || !slices.Equal(a.Blamed, blamed) {
		t.Fatalf("party %d: aborted for %s blaming %v (%v), want %s blaming %v", p.idx, a.Reason, a.Blamed, a, reason, blamed)
	}
	if !errors.Is(p.engine.Err(), ErrAborted) {
		t.Fatalf("party %d: err does not wrap ErrAborted", p.idx)
	}
	if _, err := p.engine.Result(); err == nil {
		t.Fatalf("party %d: aborted engine returned a result", p.idx)
	}
}

// otherDeal builds a second, validly signed deal for dealer i: what an
// equivocating dealer would send to some of the parties.
func otherDeal(t testing.TB, prop *Proposal, p *party) []byte {
	t.Helper()
	twin, err := New(Config{Proposal: prop, Self: p.idx, Key: p.key, Seed: seedFor("twin", p.idx)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := twin.Start(); err != nil {
		t.Fatal(err)
	}
	for _, o := range twin.deal() {
		if o.Kind == wire.KindDeal {
			return o.Envelope
		}
	}
	t.Fatal("twin made no deal")
	return nil
}

func TestEquivocatingDealerIsCaughtByTheEcho(t *testing.T) {
	t.Parallel()
	prop, ps := testGroup(t, "equivocation", 2, 3)
	alt := otherDeal(t, prop, ps[0])
	nw := newNetwork(t, ps)
	// Dealer 1 sends party 3 a different (validly signed) deal than party 2.
	// Party 3's share from dealer 1 fails against the other commitments, so
	// party 3 complains; but the echo hashes differ first, the deals are
	// exchanged, and both signed deals convict dealer 1.
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 1 && d.to == 3 && kindOf(d.env) == wire.KindDeal {
			return [][]byte{alt}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps[1:] {
		expectAbort(t, p, ReasonEquivocation, []uint32{1})
		var a *AbortError
		errors.As(p.engine.Err(), &a)
		if len(a.Evidence) != 2 {
			t.Fatalf("party %d: want both deals as evidence, have %d", p.idx, len(a.Evidence))
		}
		// The evidence stands on its own: two different envelopes, both
		// validly signed by dealer 1 for the same slot.
		x, err1 := wire.Open(a.Evidence[0], prop.consoleKey)
		y, err2 := wire.Open(a.Evidence[1], prop.consoleKey)
		if err1 != nil || err2 != nil || !wire.Equivocation(x, y) || x.From != 1 {
			t.Fatalf("party %d: evidence does not prove equivocation (%v, %v)", p.idx, err1, err2)
		}
		if !p.engine.revealRun {
			t.Fatalf("party %d: the reveal round should have run", p.idx)
		}
	}
}

func TestTwoDifferentMessagesFromOnePartyAreEquivocation(t *testing.T) {
	t.Parallel()
	prop, ps := testGroup(t, "direct-equivocation", 2, 3)
	alt := otherDeal(t, prop, ps[0])
	nw := newNetwork(t, ps)
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 1 && d.to == 2 && kindOf(d.env) == wire.KindDeal {
			return [][]byte{d.env, alt}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	expectAbort(t, ps[1], ReasonEquivocation, []uint32{1})
	// Party 2's abort reaches party 3 and party 1, who stop too, naming who
	// aborted; its evidence (both deals) proves the blame to them.
	for _, p := range []*party{ps[0], ps[2]} {
		var a *AbortError
		if !errors.As(p.engine.Err(), &a) || a.By != 2 || a.Reason != ReasonEquivocation ||
			!slices.Equal(a.Blamed, []uint32{1}) || len(a.Claimed) != 0 || !errors.Is(a, ErrMisbehaviour) {
			t.Fatalf("party %d: err %v, want the proven abort relayed from party 2", p.idx, p.engine.Err())
		}
	}
}

func TestSilentPartyIsNamedByTheTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		drop  func(d delivery) bool
		round Round
	}{
		{"never accepts", func(d delivery) bool { return d.from == 3 }, RoundAccept},
		{"accepts then deals nothing", func(d delivery) bool {
			return d.from == 3 && (kindOf(d.env) == wire.KindDeal || kindOf(d.env) == wire.KindShare)
		}, RoundDeal},
		{"goes silent before the confirmation", func(d delivery) bool {
			return d.from == 3 && kindOf(d.env) == wire.KindConfirm
		}, RoundConfirm},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, ps := testGroup(t, "silent-"+tc.name, 2, 3)
			nw := newNetwork(t, ps)
			nw.tamper = func(d delivery) [][]byte {
				if tc.drop(d) {
					return nil
				}
				return [][]byte{d.env}
			}
			nw.startAll()
			nw.run()
			p := ps[0]
			if p.engine.Round() != tc.round {
				t.Fatalf("stuck in round %s, want %s", p.engine.Round(), tc.round)
			}
			if w := p.engine.Progress().Waiting; !slices.Equal(w, []uint32{3}) {
				t.Fatalf("waiting for %v, want [3]", w)
			}
			out, err := p.engine.Timeout()
			if err != nil {
				t.Fatal(err)
			}
			expectAbort(t, p, ReasonTimeout, []uint32{3})
			if !errors.Is(p.engine.Err(), ErrTimeout) {
				t.Fatal("timeout abort does not wrap ErrTimeout")
			}
			if len(out) != 1 || out[0].Kind != wire.KindAbort {
				t.Fatalf("timeout sent %v, want one abort broadcast", out)
			}
			// The abort stops party 2 as well, which names the same party.
			nw.tamper = nil
			nw.send(1, out)
			nw.run()
			var a *AbortError
			if !errors.As(ps[1].engine.Err(), &a) || a.By != 1 || !slices.Equal(a.Blamed, []uint32{3}) {
				t.Fatalf("party 2: %v, want the timeout relayed from party 1", ps[1].engine.Err())
			}
		})
	}
}

func TestDuplicatedAndReplayedMessagesAreIgnored(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "duplicates", 2, 3)
	nw := newNetwork(t, ps)
	var replayed [][]byte
	nw.tamper = func(d delivery) [][]byte {
		replayed = append(replayed, d.env)
		return [][]byte{d.env, d.env} // every message arrives twice
	}
	nw.startAll()
	nw.run()
	for _, p := range ps {
		if p.engine.State() != StateDone {
			t.Fatalf("party %d: %s: %v", p.idx, p.engine.State(), p.engine.Err())
		}
		dups := 0
		for _, err := range nw.errs[p.idx] {
			if !errors.Is(err, ErrDuplicate) && !errors.Is(err, ErrFinished) {
				t.Fatalf("party %d: unexpected error %v", p.idx, err)
			}
			dups++
		}
		if dups == 0 {
			t.Fatalf("party %d saw no duplicates", p.idx)
		}
	}
	// After the end, replays are refused without effect.
	if _, err := ps[1].engine.Handle(replayed[0]); !errors.Is(err, ErrFinished) {
		t.Fatalf("replay after done: %v", err)
	}
}

func TestForeignCeremonyIsRejected(t *testing.T) {
	t.Parallel()
	prop, ps := testGroup(t, "ceremony-a", 2, 3)
	// Same roster and keys, another nonce: another ceremony id.
	other := *prop
	other.Nonce[0] ^= 1
	e, err := New(Config{Proposal: &other, Self: 1, Key: ps[0].key, Seed: seedFor("b", 1)})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := e.Start()
	if _, err := ps[1].engine.Handle(out[0].Envelope); !errors.Is(err, ErrWrongCeremony) {
		t.Fatalf("err = %v, want ErrWrongCeremony", err)
	}
	if ps[1].engine.State() != StateCreated || len(ps[1].engine.inbox) != 0 {
		t.Fatal("a rejected envelope changed the engine")
	}
}

func TestRejectedInputChangesNothing(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "rejects", 2, 3)
	out, _ := ps[0].engine.Start()
	env := out[0].Envelope
	tampered := append([]byte{}, env...)
	tampered[len(tampered)-1] ^= 1
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"bad signature", tampered, wire.ErrSignature},
		{"garbage", []byte("hello"), wire.ErrMalformed},
		{"empty", nil, wire.ErrMalformed},
		{"own message", env, ErrUnexpected},
		{"wrong round", reseal(t, env, ps[0].key, func(e *wire.Envelope) { e.Round = 2 }), ErrUnexpected},
		{"share broadcast", reseal(t, env, ps[0].key, func(e *wire.Envelope) { e.Kind = wire.KindShare; e.Round = 1 }), ErrUnexpected},
		{"signing message", reseal(t, env, ps[0].key, func(e *wire.Envelope) { e.Kind = wire.KindPartial }), ErrUnexpected},
	}
	for _, c := range cases {
		target := ps[1]
		if c.name == "own message" {
			target = ps[0]
		}
		before := len(target.engine.seen)
		if _, err := target.engine.Handle(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		if len(target.engine.seen) != before || target.engine.State() == StateAborted {
			t.Errorf("%s: rejected input changed the engine", c.name)
		}
	}
}

func TestInvalidDealsAreRejectedWithEvidence(t *testing.T) {
	t.Parallel()
	identity := append([]byte{0xc0}, make([]byte, bls.G1Size-1)...)
	r := []byte{0x73, 0xed, 0xa7, 0x53, 0x29, 0x9d, 0x7d, 0x48, 0x33, 0x39, 0xd8, 0x08, 0x09, 0xa1, 0xd8, 0x05,
		0x53, 0xbd, 0xa4, 0x02, 0xff, 0xfe, 0x5b, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01}
	cases := []struct {
		name   string
		mutate func(d *deal)
	}{
		{"identity commitment", func(d *deal) { d.Commitments[0] = identity }},
		{"identity higher commitment", func(d *deal) { d.Commitments[1] = identity }},
		{"proof response out of range", func(d *deal) { d.Mu = r }},
		{"proof for another secret", func(d *deal) { d.Commitments[0], d.Commitments[1] = d.Commitments[1], d.Commitments[0] }},
		{"too few commitments", func(d *deal) { d.Commitments = d.Commitments[:1] }},
		{"identity proof commitment", func(d *deal) { d.R = identity }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, ps := testGroup(t, "invalid-deal-"+c.name, 2, 3)
			nw := newNetwork(t, ps)
			nw.tamper = func(d delivery) [][]byte {
				if d.from == 1 && kindOf(d.env) == wire.KindDeal {
					return [][]byte{reseal(t, d.env, ps[0].key, func(e *wire.Envelope) {
						m, err := decodeDeal(e.Payload, 2)
						if err != nil {
							t.Fatal(err)
						}
						c.mutate(m)
						e.Payload, _ = m.encode()
					})}
				}
				return [][]byte{d.env}
			}
			nw.startAll()
			nw.run()
			for _, p := range ps[1:] {
				expectAbort(t, p, ReasonInvalidDeal, []uint32{1})
			}
		})
	}
}

func TestOutOfRangeShareIsComplainedAbout(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "share-range", 2, 3)
	nw := newNetwork(t, ps)
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 1 && d.to == 2 && kindOf(d.env) == wire.KindShare {
			return [][]byte{reseal(t, d.env, ps[0].key, func(e *wire.Envelope) {
				e.Payload, _ = (&shareMsg{Value: bytes.Repeat([]byte{0xff}, 32)}).encode()
			})}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	if got := ps[1].engine.complaints; !slices.Equal(got, []uint32{1}) {
		t.Fatalf("party 2 complained about %v, want [1]", got)
	}
	for _, p := range ps {
		if p.engine.State() != StateDone {
			t.Fatalf("party %d: %v (the honest dealer's justification should settle it)", p.idx, p.engine.Err())
		}
	}
}

func TestBadKeyConfirmationIsBlamed(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "bad-confirm", 2, 3)
	nw := newNetwork(t, ps)
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 3 && kindOf(d.env) == wire.KindConfirm {
			return [][]byte{foreignProof(t, d.env, ps[2].key)}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps[:2] {
		expectAbort(t, p, ReasonBadConfirmation, []uint32{3})
	}
}

func TestDeclineStopsEveryone(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "decline", 2, 3)
	nw := newNetwork(t, ps)
	nw.startAll(3)
	out, err := ps[2].engine.Decline("not today")
	if err != nil {
		t.Fatal(err)
	}
	nw.send(3, out)
	nw.run()
	for _, p := range ps {
		var a *AbortError
		if !errors.As(p.engine.Err(), &a) || a.Reason != ReasonDeclined || !slices.Equal(a.Blamed, []uint32{3}) {
			t.Fatalf("party %d: %v", p.idx, p.engine.Err())
		}
	}
}

// A console that crashed rebuilds its engine from the same configuration and
// replays its stored inputs: it produces the same bytes, so it never deals a
// second polynomial, and it finishes with the same key.
func TestReplayedEngineResumesWithTheSameBytes(t *testing.T) {
	t.Parallel()
	prop, ps := testGroup(t, "replay", 3, 4)
	var firstOut [][]byte
	nw := newNetwork(t, ps)
	nw.startAll()
	nw.run()
	r1, err := ps[1].engine.Result()
	if err != nil {
		t.Fatal(err)
	}
	// Rebuild party 2 and replay.
	e, err := New(Config{Proposal: prop, Self: 2, Key: ps[1].key, Seed: seedFor("replay", 2)})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := e.Start()
	for _, o := range out {
		firstOut = append(firstOut, o.Envelope)
	}
	for _, in := range ps[1].inputs {
		o, _ := e.Handle(in)
		for _, x := range o {
			firstOut = append(firstOut, x.Envelope)
		}
	}
	r2, err := e.Result()
	if err != nil {
		t.Fatalf("replayed engine: %v", err)
	}
	if !r1.Group.Key.Equal(r2.Group.Key) || !r1.Share.Value.Equal(&r2.Share.Value) {
		t.Fatal("replay produced a different key or share")
	}
	// The replayed deal is byte-for-byte the one the others received.
	var dealSeen bool
	for _, in := range ps[0].inputs {
		env, _ := wire.Decode(in)
		if env.From == 2 && env.Kind == wire.KindDeal {
			dealSeen = slices.ContainsFunc(firstOut, func(b []byte) bool { return bytes.Equal(b, in) })
		}
	}
	if !dealSeen {
		t.Fatal("replayed engine dealt different bytes")
	}
}

func TestProgressNamesWhoIsAwaited(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "progress", 2, 3)
	p := ps[0].engine
	if got := p.Progress(); got.State != StateCreated || !slices.Contains(got.Waiting, 1) {
		t.Fatalf("before start: %+v", got)
	}
	out, _ := p.Start()
	if got := p.Progress(); got.Round != RoundAccept || !slices.Equal(got.Waiting, []uint32{2, 3}) || !slices.Equal(got.Got, []uint32{1}) {
		t.Fatalf("after start: %+v", got)
	}
	out2, _ := ps[1].engine.Start()
	if _, err := p.Handle(out2[0].Envelope); err != nil {
		t.Fatal(err)
	}
	if got := p.Progress(); !slices.Equal(got.Waiting, []uint32{3}) || !slices.Equal(got.Got, []uint32{1, 2}) || got.Step != 1 || got.Total != 4 {
		t.Fatalf("after 2 accepted: %+v", got)
	}
	// The deal and the shares left with the acceptance (wire.KindAccept
	// first); a resend repeats to each peer the accept, the deal and its
	// share, the same bytes: neither peer has shown it received them.
	if out[0].Kind != wire.KindAccept || out[1].Kind != wire.KindDeal || len(out) != 2+2 {
		t.Fatalf("start sent %d messages, want the accept, the deal and 2 shares", len(out))
	}
	again := p.Resend()
	for _, j := range []uint32{2, 3} {
		var got [][]byte
		for _, o := range again {
			if o.To == j {
				got = append(got, o.Envelope)
			}
		}
		var want [][]byte
		for _, o := range out {
			if o.To == 0 || o.To == j {
				want = append(want, o.Envelope)
			}
		}
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("resend to party %d: %d messages, want the %d sent to it, the same bytes", j, len(got), len(want))
		}
	}
	if len(again) != 6 {
		t.Fatalf("resend has %d messages, want 6 (3 to each peer)", len(again))
	}
}

// A party whose first messages were lost after it moved on (its process
// stopped while they were queued) sends them again: the peers, still in
// the accept round, would otherwise wait for them until the deadline.
func TestMessagesOfAnEarlierRoundAreSentAgainToAPeerStillInIt(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "lost-accept", 2, 3)
	nw := newNetwork(t, ps)
	carol := ps[2]
	// Carol's acceptance, deal and shares never leave; she gets everyone
	// else's and moves on to the echo round.
	nw.tamper = func(d delivery) [][]byte {
		if d.from == carol.idx {
			return nil
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	if r := carol.engine.Round(); r != RoundEcho {
		t.Fatalf("carol is in round %s, want echo", r)
	}
	for _, p := range ps[:2] {
		if r := p.engine.Round(); r != RoundAccept {
			t.Fatalf("party %d is in round %s, want accept (carol's acceptance was lost)", p.idx, r)
		}
	}
	nw.tamper = nil
	resent := carol.engine.Resend()
	kinds := map[wire.Kind]int{}
	for _, o := range resent {
		kinds[o.Kind]++
	}
	if kinds[wire.KindAccept] != 2 || kinds[wire.KindDeal] != 2 || kinds[wire.KindShare] != 2 {
		t.Fatalf("carol re-sends %v, want her acceptance, deal and share to each peer", kinds)
	}
	nw.send(carol.idx, resent)
	nw.run()
	for _, p := range ps {
		if p.engine.State() != StateDone {
			t.Fatalf("party %d: %s in round %s (%v), want done", p.idx, p.engine.State(), p.engine.Round(), p.engine.Err())
		}
	}
}

// Once a peer's message shows it completed a round, that round's messages
// are no longer re-sent to it.
func TestResendSkipsRoundsAPeerHasCompleted(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "resend-skip", 2, 3)
	nw := newNetwork(t, ps)
	// Everything flows but the echoes to party 1 from party 3.
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 3 && d.to == 1 && kindOf(d.env) == wire.KindEcho {
			return nil
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	p := ps[0].engine
	if p.Round() != RoundEcho {
		t.Fatalf("party 1 in round %s, want echo", p.Round())
	}
	// Party 2 sent its echo and party 3 its confirmation: both have party
	// 1's messages up to its echo, so nothing is re-sent.
	if again := p.Resend(); len(again) != 0 {
		t.Fatalf("party 1 re-sends %d messages to peers that completed its rounds", len(again))
	}
}

func TestProposalRoundTripAndValidation(t *testing.T) {
	t.Parallel()
	prop, _ := testGroup(t, "proposal", 2, 3)
	b, err := prop.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeProposal(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := got.Encode()
	if !bytes.Equal(b, b2) {
		t.Fatal("proposal does not round-trip")
	}
	id1, _ := prop.ID()
	id2, _ := got.ID()
	if id1 != id2 {
		t.Fatal("ids differ")
	}
	bad := func(mut func(p *Proposal)) error {
		c := *prop
		c.Parties = slices.Clone(prop.Parties)
		mut(&c)
		return c.Validate()
	}
	cases := map[string]func(p *Proposal){
		"t = 0":              func(p *Proposal) { p.Threshold = 0 },
		"t > n":              func(p *Proposal) { p.Threshold = 4 },
		"unsorted":           func(p *Proposal) { p.Parties[0], p.Parties[1] = p.Parties[1], p.Parties[0] },
		"duplicate":          func(p *Proposal) { p.Parties[1] = p.Parties[0] },
		"short console key":  func(p *Proposal) { p.Parties[0].ConsoleKey = p.Parties[0].ConsoleKey[:31] },
		"shared console key": func(p *Proposal) { p.Parties[1].ConsoleKey = p.Parties[0].ConsoleKey },
		"no timeout":         func(p *Proposal) { p.RoundTimeout = 0 },
		"fractional timeout": func(p *Proposal) { p.RoundTimeout = 1500 * time.Millisecond },
		"initiator unknown":  func(p *Proposal) { p.Initiator = 4 },
		"empty account":      func(p *Proposal) { p.Parties[0].Account = "" },
		"empty identity key": func(p *Proposal) { p.Parties[0].IdentityKey = nil },
	}
	for name, mut := range cases {
		if err := bad(mut); !errors.Is(err, ErrProposal) {
			t.Errorf("%s: err = %v, want ErrProposal", name, err)
		}
	}
	if _, err := DecodeProposal(append(b, 0)); err == nil {
		t.Error("trailing byte accepted")
	}
}

func TestGroupTooLargeForOneMessageIsRefused(t *testing.T) {
	t.Parallel()
	if err := checkGroupSize(40, 60); !errors.Is(err, ErrProposal) {
		t.Fatalf("40-of-60: %v", err)
	}
	if err := checkGroupSize(10, 15); err != nil {
		t.Fatalf("10-of-15: %v", err)
	}
}

func TestConfigIsChecked(t *testing.T) {
	t.Parallel()
	prop, ps := testGroup(t, "config", 2, 3)
	cases := map[string]Config{
		"no proposal":   {Self: 1, Key: ps[0].key, Seed: seedFor("x", 1)},
		"self 0":        {Proposal: prop, Self: 0, Key: ps[0].key, Seed: seedFor("x", 1)},
		"self > n":      {Proposal: prop, Self: 4, Key: ps[0].key, Seed: seedFor("x", 1)},
		"someone's key": {Proposal: prop, Self: 1, Key: ps[1].key, Seed: seedFor("x", 1)},
		"zero seed":     {Proposal: prop, Self: 1, Key: ps[0].key},
	}
	for name, cfg := range cases {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
}
