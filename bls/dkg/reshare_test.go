package dkg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	bls12381 "github.com/kilic/bls12-381"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// console is one simulated signer's console, by a stable number: its
// roster entry and console key are the same in every group it joins.
func console(i int) (Party, ed25519.PrivateKey) {
	seed := sha256.Sum256(fmt.Appendf(nil, "reshare/console/%d", i))
	k := ed25519.NewKeyFromSeed(seed[:])
	return Party{Account: fmt.Sprintf("acct-%02d", i), Device: 2, IdentityKey: append([]byte{5}, seed[:]...), ConsoleKey: k.Public().(ed25519.PublicKey)}, k
}

// held is a key as a group holds it at one epoch: the public record and
// every member's share, by console number.
type held struct {
	epoch   uint32
	key     *bls.PublicKey
	old     *OldGroup
	members []int               // console numbers in index order
	shares  map[int]share.Share // by console number
	parties map[int]ed25519.PrivateKey
}

// dealtKey makes a th-of-len(members) key with a test-side dealer, as a
// finished keygen leaves it.
func dealtKey(t testing.TB, th int, members []int) *held {
	t.Helper()
	poly, err := share.NewRandomPoly(th, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &held{shares: map[int]share.Share{}, parties: map[int]ed25519.PrivateKey{}}
	var parties []Party
	for _, m := range members {
		p, k := console(m)
		parties = append(parties, p)
		h.parties[m] = k
	}
	SortParties(parties)
	for _, p := range parties {
		m := consoleNumber(p)
		h.members = append(h.members, m)
	}
	comms := poly.Commit()
	group, err := tbls.NewGroup(comms, len(members))
	if err != nil {
		t.Fatal(err)
	}
	for j, m := range h.members {
		h.shares[m] = share.Share{Index: uint32(j + 1), Value: *poly.Eval(uint32(j + 1))}
	}
	h.key = group.Key
	h.old = &OldGroup{Threshold: th, Parties: parties, Commitments: comms, PublicShares: group.Shares}
	return h
}

func consoleNumber(p Party) int {
	var m int
	fmt.Sscanf(p.Account, "acct-%d", &m)
	return m
}

// proposeReshare hands h to a th-of-len(members) group, dealt by the old
// members listed (console numbers).
func proposeReshare(t testing.TB, name string, h *held, dealers []int, th int, members []int) *ReshareProposal {
	t.Helper()
	var parties []Party
	for _, m := range members {
		p, _ := console(m)
		parties = append(parties, p)
	}
	SortParties(parties)
	var d []uint32
	for j, m := range h.members {
		if slices.Contains(dealers, m) {
			d = append(d, uint32(j+1))
		}
	}
	p := &ReshareProposal{
		KeyID: tbls.KeyID(h.key), GroupKey: h.key, Epoch: h.epoch, Old: h.old, Dealers: d,
		Threshold: th, Parties: parties, RoundTimeout: 5 * time.Minute, Initiator: 1, Created: time.Unix(1_700_000_000, 0),
	}
	copy(p.Nonce[:], name)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

// rparty is one participant of a reshare.
type rparty struct {
	idx     uint32
	console int
	key     ed25519.PrivateKey
	cfg     ReshareConfig
	engine  *ReshareEngine
	inputs  [][]byte
	sent    [][]byte // every envelope the engine returned, in order
}

func reshareSeed(name string, console int) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "%s/seed/%d", name, console))
}

// reshareParties builds every participant's engine; h gives the dealers
// their old shares (nil for an import, whose dealer gets secret).
func reshareParties(t testing.TB, name string, prop *ReshareProposal, h *held, secret []byte) []*rparty {
	t.Helper()
	var out []*rparty
	for i, q := range prop.Participants() {
		idx := uint32(i + 1)
		m := consoleNumber(q)
		_, k := console(m)
		cfg := ReshareConfig{Proposal: prop, Self: idx, Key: k, Seed: reshareSeed(name, m)}
		if old, ok := prop.OldIndexOf(idx); ok && slices.Contains(prop.Dealers, old) {
			s := h.shares[m]
			cfg.OldShare = &s
		}
		if prop.Import && idx == prop.Initiator {
			sk, err := bls.SecretKeyFromBytes(secret)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Secret = sk
		}
		e, err := NewReshare(cfg)
		if err != nil {
			t.Fatalf("participant %d: %v", idx, err)
		}
		out = append(out, &rparty{idx: idx, console: m, key: k, cfg: cfg, engine: e})
	}
	return out
}

func (p *rparty) record(out []Outgoing) {
	for _, o := range out {
		p.sent = append(p.sent, o.Envelope)
	}
}

// rnetwork is network for reshare engines.
type rnetwork struct {
	t       testing.TB
	parties []*rparty
	queue   []delivery
	tamper  func(d delivery) [][]byte
	down    []uint32 // participants that receive nothing
	errs    map[uint32][]error
}

func newRNetwork(t testing.TB, ps []*rparty) *rnetwork {
	return &rnetwork{t: t, parties: ps, errs: map[uint32][]error{}}
}

func (nw *rnetwork) send(from uint32, out []Outgoing) {
	for _, o := range out {
		for _, p := range nw.parties {
			if p.idx == from || (o.To != 0 && o.To != p.idx) || slices.Contains(nw.down, p.idx) {
				continue
			}
			nw.queue = append(nw.queue, delivery{from: from, to: p.idx, env: o.Envelope})
		}
	}
}

func (nw *rnetwork) run() {
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
			p.record(out)
			nw.send(d.to, out)
		}
	}
}

func (nw *rnetwork) startAll(except ...uint32) {
	for _, p := range nw.parties {
		if slices.Contains(except, p.idx) {
			continue
		}
		out, err := p.engine.Start()
		if err != nil {
			nw.t.Fatal(err)
		}
		p.record(out)
		nw.send(p.idx, out)
	}
}

// runReshare runs a whole ceremony and returns the new epoch's holdings.
func runReshare(t testing.TB, name string, prop *ReshareProposal, h *held) (*held, []*rparty) {
	t.Helper()
	ps := reshareParties(t, name, prop, h, nil)
	nw := newRNetwork(t, ps)
	nw.startAll()
	nw.run()
	return collect(t, prop, ps), ps
}

// collect checks that every participant finished alike and returns the
// new group's holdings.
func collect(t testing.TB, prop *ReshareProposal, ps []*rparty) *held {
	t.Helper()
	next := &held{shares: map[int]share.Share{}, parties: map[int]ed25519.PrivateKey{}}
	var first *ReshareResult
	for _, p := range ps {
		if p.engine.State() != StateDone {
			t.Fatalf("participant %d: state %s, err %v, progress %+v", p.idx, p.engine.State(), p.engine.Err(), p.engine.Progress())
		}
		r, err := p.engine.Result()
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = r
		}
		if !r.Group.Key.Equal(prop.GroupKey) || r.KeyID != prop.KeyID {
			t.Fatalf("participant %d: the group key changed", p.idx)
		}
		for j := range r.Group.Shares {
			if !r.Group.Shares[j].Equal(first.Group.Shares[j]) {
				t.Fatalf("participant %d disagrees on public share %d", p.idx, j+1)
			}
		}
		if err := bls.PopVerify(r.Group.Key, r.GroupPoP); err != nil {
			t.Fatalf("participant %d: group PoP: %v", p.idx, err)
		}
		wantEpoch := prop.Epoch + 1
		if prop.Import {
			wantEpoch = 0
		}
		if r.Epoch != wantEpoch {
			t.Fatalf("participant %d: epoch %d, want %d", p.idx, r.Epoch, wantEpoch)
		}
		if int(p.idx) > prop.N() {
			if r.Share != nil {
				t.Fatalf("old-only participant %d got a share", p.idx)
			}
			continue
		}
		if r.Share == nil || r.Share.Index != p.idx {
			t.Fatalf("participant %d: share %+v", p.idx, r.Share)
		}
		sk, err := bls.NewSecretKey(&r.Share.Value)
		if err != nil {
			t.Fatal(err)
		}
		if !sk.PublicKey().Equal(r.Group.Shares[p.idx-1]) {
			t.Fatalf("participant %d: share does not match its public share", p.idx)
		}
		next.shares[p.console] = *r.Share
		next.members = append(next.members, p.console)
		next.parties[p.console] = p.key
	}
	next.epoch = first.Epoch
	next.key = first.Group.Key
	next.old = NewOldGroup(prop.Parties, first.Commitments, first.Group)
	return next
}

// signWith combines the partial signatures of the members listed (console
// numbers) under h's group.
func signWith(t testing.TB, h *held, members []int, msg []byte) (*bls.Signature, error) {
	t.Helper()
	group := &tbls.Group{T: h.old.Threshold, Key: h.key, Shares: h.old.PublicShares}
	var partials []*tbls.Partial
	for _, m := range members {
		s := h.shares[m]
		p, err := tbls.Sign(&s, msg)
		if err != nil {
			t.Fatal(err)
		}
		partials = append(partials, p)
	}
	res, err := group.Combine(msg, partials)
	if err != nil {
		return nil, err
	}
	return res.Signature, nil
}

func TestReshareKeepsTheKeyAndChangesTheShares(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		oldT        int
		old         []int
		dealers     []int
		newT        int
		new         []int
		wantOldOnly int
	}{
		{name: "refresh 2-of-3", oldT: 2, old: []int{1, 2, 3}, dealers: []int{1, 2, 3}, newT: 2, new: []int{1, 2, 3}},
		{name: "2-of-3 to 3-of-5 adds two", oldT: 2, old: []int{1, 2, 3}, dealers: []int{1, 2, 3}, newT: 3, new: []int{1, 2, 3, 4, 5}},
		{name: "2-of-3 to 2-of-2 drops one", oldT: 2, old: []int{1, 2, 3}, dealers: []int{1, 2, 3}, newT: 2, new: []int{1, 2}, wantOldOnly: 1},
		{name: "one old signer offline: exactly t deal", oldT: 2, old: []int{1, 2, 3}, dealers: []int{1, 3}, newT: 2, new: []int{1, 3, 4}},
		{name: "new group disjoint from the old", oldT: 2, old: []int{1, 2, 3}, dealers: []int{2, 3}, newT: 2, new: []int{4, 5, 6}, wantOldOnly: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := dealtKey(t, tc.oldT, tc.old)
			prop := proposeReshare(t, tc.name, h, tc.dealers, tc.newT, tc.new)
			if got := len(prop.Participants()) - prop.N(); got != tc.wantOldOnly {
				t.Fatalf("%d old-only participants, want %d", got, tc.wantOldOnly)
			}
			if prop.Refresh() != (tc.name == "refresh 2-of-3") {
				t.Fatalf("Refresh() = %v", prop.Refresh())
			}
			next, ps := runReshare(t, tc.name, prop, h)
			for _, m := range tc.new {
				nv := next.shares[m].Value
				if old, ok := h.shares[m]; ok && old.Value.Equal(&nv) {
					t.Fatalf("console %d kept its old share", m)
				}
			}
			// A BLS signature is deterministic: t' new shares make the very
			// signature t old shares make, and it verifies under X.
			msg := []byte("before and after the reshare")
			before, err := signWith(t, h, tc.old[:tc.oldT], msg)
			if err != nil {
				t.Fatal(err)
			}
			after, err := signWith(t, next, next.members[len(next.members)-tc.newT:], msg)
			if err != nil {
				t.Fatal(err)
			}
			if !before.Equal(after) {
				t.Fatal("new shares sign differently from the old ones")
			}
			if err := bls.Verify(h.key, msg, after); err != nil {
				t.Fatal(err)
			}
			// The old-only participants verify the handover from the
			// confirmations alone.
			r, _ := ps[0].engine.Result()
			hv, err := VerifyHandover(prop, r.Confirmations)
			if err != nil {
				t.Fatal(err)
			}
			if !hv.Group.Key.Equal(h.key) || hv.Share != nil || hv.Epoch != 1 {
				t.Fatalf("handover %+v", hv)
			}
		})
	}
}

func TestReshareChainKeepsTheKeyAndRetiresOldShares(t *testing.T) {
	t.Parallel()
	h0 := dealtKey(t, 2, []int{1, 2, 3})
	msg := []byte("signed at every epoch")
	steps := []struct {
		dealers []int
		t       int
		members []int
	}{
		{[]int{1, 2, 3}, 3, []int{1, 2, 3, 4, 5}}, // 2-of-3 to 3-of-5
		{[]int{2, 3, 5}, 2, []int{2, 3, 4, 5}},    // 3-of-5 to 2-of-4 (drops 1), dealt by 3 of 5
		{[]int{2, 3, 4, 5}, 2, []int{2, 3, 4, 5}}, // refresh of 2-of-4
	}
	h := h0
	for n, st := range steps {
		prop := proposeReshare(t, fmt.Sprintf("chain-%d", n), h, st.dealers, st.t, st.members)
		next, _ := runReshare(t, fmt.Sprintf("chain-%d", n), prop, h)
		if next.epoch != uint32(n+1) {
			t.Fatalf("step %d: epoch %d", n, next.epoch)
		}
		// Every t of the new signers sign under the original key.
		for k := 0; k+st.t <= len(next.members); k++ {
			sig, err := signWith(t, next, next.members[k:k+st.t], msg)
			if err != nil {
				t.Fatalf("step %d: %v", n, err)
			}
			if err := bls.Verify(h0.key, msg, sig); err != nil {
				t.Fatalf("step %d: %v", n, err)
			}
		}
		// t'-1 new signers cannot: their combination is not a signature.
		if sig, err := signWith(t, next, next.members[:st.t-1], msg); err == nil && bls.Verify(h0.key, msg, sig) == nil {
			t.Fatalf("step %d: %d signers made a valid signature", n, st.t-1)
		}
		// A partial of the old epoch is refused under the new group.
		group := &tbls.Group{T: next.old.Threshold, Key: next.key, Shares: next.old.PublicShares}
		for _, m := range next.members {
			old, ok := h.shares[m]
			if !ok {
				continue
			}
			p, _ := tbls.Sign(&share.Share{Index: next.shares[m].Index, Value: old.Value}, msg)
			if err := group.VerifyPartial(tbls.HashMessage(msg), p); err == nil {
				t.Fatalf("step %d: console %d's old-epoch partial verifies under the new group", n, m)
			}
		}
		h = next
	}
}

func expectReshareAbort(t *testing.T, p *rparty, reason AbortReason, blamed []uint32) {
	t.Helper()
	if p.engine.State() != StateAborted {
		t.Fatalf("participant %d: state %s, want aborted", p.idx, p.engine.State())
	}
	var a *AbortError
	if !errors.As(p.engine.Err(), &a) {
		t.Fatalf("participant %d: err %v is not an *AbortError", p.idx, p.engine.Err())
	}
	if a.Reason != reason || !slices.Equal(a.Blamed, blamed) {
		t.Fatalf("participant %d: aborted for %s blaming %v (%v), want %s blaming %v", p.idx, a.Reason, a.Blamed, a, reason, blamed)
	}
	if _, err := p.engine.Result(); err == nil {
		t.Fatalf("participant %d: aborted engine returned a result", p.idx)
	}
}

// mutateDeal re-signs dealer's deal with its commitments changed.
func mutateDeal(t testing.TB, raw []byte, key ed25519.PrivateKey, change func(share.Commitments)) []byte {
	return reseal(t, raw, key, func(env *wire.Envelope) {
		d := wire.NewDecoder(env.Payload)
		c, _ := d.RepeatedFixed(1, bls.G1Size, share.MaxParties)
		comms, err := share.CommitmentsFromBytes(c, len(c))
		if err != nil {
			t.Fatal(err)
		}
		change(comms)
		env.Payload, _ = (&reshareDeal{Commitments: comms.Bytes()}).encode()
	})
}

// addGenerator adds P1 to a commitment: still a valid point, another
// polynomial.
func addGenerator(c *bls.G1Point) {
	g := bls12381.NewG1()
	g.Add(c, c, g.One())
	g.Affine(c)
}

func TestADealerWithAWrongConstantTermIsDisqualifiedWithEvidence(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "wrong-c0", h, []int{1, 2, 3}, 2, []int{1, 2, 3})
	ps := reshareParties(t, "wrong-c0", prop, h, nil)
	nw := newRNetwork(t, ps)
	const cheat = 2
	nw.tamper = func(d delivery) [][]byte {
		if d.from == cheat && kindOf(d.env) == wire.KindReshareDeal {
			return [][]byte{mutateDeal(t, d.env, ps[cheat-1].key, func(c share.Commitments) { addGenerator(&c[0]) })}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps {
		if p.idx == cheat {
			continue
		}
		expectReshareAbort(t, p, ReasonInvalidDeal, []uint32{cheat})
		if !errors.Is(p.engine.Err(), ErrMisbehaviour) {
			t.Fatalf("participant %d: %v does not wrap ErrMisbehaviour", p.idx, p.engine.Err())
		}
		// The evidence is the cheater's own signed deal, which anyone with
		// the roster can check.
		var a *AbortError
		errors.As(p.engine.Err(), &a)
		ev := openEvidence(p.engine, a.Evidence)
		if len(ev) != 1 || ev[0].From != cheat || ev[0].Kind != wire.KindReshareDeal || !p.engine.dealFails(cheat, ev[0]) {
			t.Fatalf("participant %d: evidence %v does not prove the bad deal", p.idx, ev)
		}
	}
}

func TestAWrongSubShareIsComplainedAboutAndJustified(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "wrong-sub-share", h, []int{1, 2, 3}, 3, []int{1, 2, 3, 4})
	ps := reshareParties(t, "wrong-sub-share", prop, h, nil)
	nw := newRNetwork(t, ps)
	const cheat, victim = 1, 4
	nw.tamper = func(d delivery) [][]byte {
		if d.from == cheat && d.to == victim && kindOf(d.env) == wire.KindShare {
			return [][]byte{reseal(t, d.env, ps[cheat-1].key, func(env *wire.Envelope) {
				env.Payload = sharePayload(t, bls.ScalarFromUint64(7))
			})}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	next := collect(t, prop, ps)
	if got := ps[victim-1].engine.Progress(); got.Total != 5 {
		t.Fatalf("ran %d rounds, want 5 (with justification)", got.Total)
	}
	sig, err := signWith(t, next, []int{2, 3, 4}, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.Verify(h.key, []byte("m"), sig); err != nil {
		t.Fatal(err)
	}
}

func TestABadJustificationDisqualifiesTheDealer(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "bad-justification", h, []int{1, 2, 3}, 2, []int{1, 2, 3})
	ps := reshareParties(t, "bad-justification", prop, h, nil)
	nw := newRNetwork(t, ps)
	const cheat, victim = 3, 1
	nw.tamper = func(d delivery) [][]byte {
		switch {
		case d.from == cheat && d.to == victim && kindOf(d.env) == wire.KindShare:
			return [][]byte{reseal(t, d.env, ps[cheat-1].key, func(env *wire.Envelope) { env.Payload = sharePayload(t, bls.ScalarFromUint64(7)) })}
		case d.from == cheat && kindOf(d.env) == wire.KindJustification:
			return [][]byte{reseal(t, d.env, ps[cheat-1].key, func(env *wire.Envelope) {
				env.Payload, _ = (&justification{Shares: []revealedShare{{To: victim, Value: bls.ScalarBytes(bls.ScalarFromUint64(7))}}}).encode()
			})}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps {
		if p.idx != cheat {
			expectReshareAbort(t, p, ReasonBadJustification, []uint32{cheat})
		}
	}
}

func TestAnEquivocatingDealerIsCaught(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "equivocation", h, []int{1, 2, 3}, 2, []int{1, 2, 3, 4})
	ps := reshareParties(t, "equivocation", prop, h, nil)
	nw := newRNetwork(t, ps)
	const cheat = 2
	nw.tamper = func(d delivery) [][]byte {
		// A second deal, valid on its own (same constant term), to party 4.
		if d.from == cheat && d.to == 4 && kindOf(d.env) == wire.KindReshareDeal {
			return [][]byte{mutateDeal(t, d.env, ps[cheat-1].key, func(c share.Commitments) { addGenerator(&c[1]) })}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps {
		if p.idx != cheat {
			expectReshareAbort(t, p, ReasonEquivocation, []uint32{cheat})
		}
	}
}

func TestASilentDealerIsNamedByTheTimeout(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "timeout", h, []int{1, 2, 3}, 2, []int{1, 2, 3})
	ps := reshareParties(t, "timeout", prop, h, nil)
	nw := newRNetwork(t, ps)
	nw.startAll(3)
	nw.run()
	p := ps[0]
	if got := p.engine.Progress(); got.Round != RoundAccept || !slices.Equal(got.Waiting, []uint32{3}) {
		t.Fatalf("progress %+v, want waiting for 3 in accept", got)
	}
	out, err := p.engine.Timeout()
	if err != nil {
		t.Fatal(err)
	}
	nw.send(p.idx, out)
	nw.run()
	expectReshareAbort(t, p, ReasonTimeout, []uint32{3})
	if !errors.Is(p.engine.Err(), ErrTimeout) {
		t.Fatal("not a timeout")
	}
	if ps[1].engine.State() != StateAborted {
		t.Fatalf("party 2 did not stop: %s", ps[1].engine.State())
	}
	if _, err := p.engine.Timeout(); !errors.Is(err, ErrFinished) {
		t.Fatalf("second timeout: %v", err)
	}
}

func TestARestartedDealerDealsTheSameBytes(t *testing.T) {
	t.Parallel()
	sk := importVectorSecret(t)
	h := dealtKey(t, 2, []int{1, 2, 3})
	reshare := proposeReshare(t, "restart", h, []int{1, 2, 3}, 3, []int{1, 2, 3, 4})
	imp := proposeImport(t, "restart-import", sk, 2, []int{1, 2, 3})
	for _, tc := range []struct {
		name string
		prop *ReshareProposal
		h    *held
	}{{"reshare", reshare, h}, {"import", imp, nil}} {
		t.Run(tc.name, func(t *testing.T) {
			ps := reshareParties(t, tc.name, tc.prop, tc.h, sk)
			nw := newRNetwork(t, ps)
			nw.startAll()
			nw.run()
			collect(t, tc.prop, ps)
			// Rebuilt from the same configuration (the import dealer given
			// its key again) and fed the same inputs, every engine sends
			// the same bytes and ends with the same share.
			again := reshareParties(t, tc.name, tc.prop, tc.h, sk)
			for i, p := range ps {
				e := again[i]
				out, err := e.engine.Start()
				if err != nil {
					t.Fatal(err)
				}
				e.record(out)
				for _, in := range p.inputs {
					out, _ := e.engine.Handle(in)
					e.record(out)
				}
				if !slices.EqualFunc(p.sent, e.sent, bytes.Equal) {
					t.Fatalf("participant %d: the restarted engine sent other bytes", p.idx)
				}
				r1, _ := p.engine.Result()
				r2, err := e.engine.Result()
				if err != nil {
					t.Fatalf("participant %d: replay: %v", p.idx, err)
				}
				if (r1.Share == nil) != (r2.Share == nil) || (r1.Share != nil && !r1.Share.Value.Equal(&r2.Share.Value)) {
					t.Fatalf("participant %d: replay made another share", p.idx)
				}
			}
		})
	}
}

// EIP-2335's test vector key, made by an independent tool: its public
// key is 9612d7a7...
const (
	importVectorSecretHex = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
	importVectorPubkeyHex = "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07"
)

func importVectorSecret(t testing.TB) []byte {
	t.Helper()
	b, err := hex.DecodeString(importVectorSecretHex)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proposeImport has console members[0] import secret into a th-of-n group.
func proposeImport(t testing.TB, name string, secret []byte, th int, members []int) *ReshareProposal {
	t.Helper()
	sk, err := bls.SecretKeyFromBytes(secret)
	if err != nil {
		t.Fatal(err)
	}
	pk := sk.PublicKey()
	sk.Wipe()
	var parties []Party
	for _, m := range members {
		p, _ := console(m)
		parties = append(parties, p)
	}
	SortParties(parties)
	dealer, _ := console(members[0])
	p := &ReshareProposal{Import: true, KeyID: tbls.KeyID(pk), GroupKey: pk, Threshold: th, Parties: parties,
		RoundTimeout: time.Minute, Created: time.Unix(1_700_000_000, 0)}
	p.Initiator = uint32(slices.IndexFunc(parties, func(q Party) bool { return sameParty(q, dealer) }) + 1)
	copy(p.Nonce[:], name)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImportSplitsAKnownKey(t *testing.T) {
	t.Parallel()
	secret := importVectorSecret(t)
	prop := proposeImport(t, "import", secret, 2, []int{2, 1, 3})
	if hex.EncodeToString(prop.GroupKey.Bytes()) != importVectorPubkeyHex {
		t.Fatalf("public key %x", prop.GroupKey.Bytes())
	}
	ps := reshareParties(t, "import", prop, nil, secret)
	dealer := ps[prop.Initiator-1]
	if !bytes.Equal(dealer.cfg.Secret.Bytes(), make([]byte, 32)) {
		t.Fatal("the engine did not wipe the secret key it was given")
	}
	nw := newRNetwork(t, ps)
	nw.startAll()
	if dealer.engine.secret != nil || dealer.engine.poly != nil {
		t.Fatal("the importing dealer kept its key or polynomial after dealing")
	}
	// Nor the sub-shares it sent, which together are the key.
	resend := dealer.engine.Resend()
	if len(resend) == 0 || slices.ContainsFunc(resend, func(o Outgoing) bool { return o.Kind == wire.KindShare }) {
		t.Fatalf("the importing dealer would send again %d messages, sub-shares among them", len(resend))
	}
	nw.run()
	next := collect(t, prop, ps)
	msg := []byte("an imported key signs as a group")
	sig, err := signWith(t, next, next.members[1:], msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(prop.GroupKey.Bytes(), msg, sig.Bytes()); err != nil {
		t.Fatal(err)
	}
	// The same key signs the same bytes whole: the split is of that key.
	sk, _ := bls.SecretKeyFromBytes(secret)
	whole, _ := sk.Sign(msg)
	if !whole.Equal(sig) {
		t.Fatal("the group's signature differs from the imported key's")
	}
}

func TestImportRefusesAKeyOtherThanTheProposals(t *testing.T) {
	t.Parallel()
	prop := proposeImport(t, "import-wrong", importVectorSecret(t), 2, []int{1, 2, 3})
	_, k := console(1)
	other, _ := bls.SecretKeyFromBytes(bytes.Repeat([]byte{1}, 32))
	_, err := NewReshare(ReshareConfig{Proposal: prop, Self: prop.Initiator, Key: k, Seed: reshareSeed("x", 1), Secret: other})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
	if !bytes.Equal(other.Bytes(), make([]byte, 32)) {
		t.Fatal("a refused secret key was not wiped")
	}
}

func TestImportReceiversCheckTheConstantTermAgainstThePublicKey(t *testing.T) {
	t.Parallel()
	secret := importVectorSecret(t)
	prop := proposeImport(t, "import-c0", secret, 2, []int{1, 2, 3})
	ps := reshareParties(t, "import-c0", prop, nil, secret)
	nw := newRNetwork(t, ps)
	cheat := prop.Initiator
	nw.tamper = func(d delivery) [][]byte {
		if d.from == cheat && kindOf(d.env) == wire.KindReshareDeal {
			return [][]byte{mutateDeal(t, d.env, ps[cheat-1].key, func(c share.Commitments) { addGenerator(&c[0]) })}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps {
		if p.idx != cheat {
			expectReshareAbort(t, p, ReasonInvalidDeal, []uint32{cheat})
		}
	}
}

func TestAComplaintAgainstTheImporterEndsTheImport(t *testing.T) {
	t.Parallel()
	secret := importVectorSecret(t)
	prop := proposeImport(t, "import-complaint", secret, 2, []int{1, 2, 3})
	ps := reshareParties(t, "import-complaint", prop, nil, secret)
	nw := newRNetwork(t, ps)
	dealer := prop.Initiator
	victim := uint32(1)
	if victim == dealer {
		victim = 2
	}
	nw.tamper = func(d delivery) [][]byte {
		if d.from == dealer && d.to == victim && kindOf(d.env) == wire.KindShare {
			return [][]byte{reseal(t, d.env, ps[dealer-1].key, func(env *wire.Envelope) { env.Payload = sharePayload(t, bls.ScalarFromUint64(9)) })}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps {
		if p.engine.State() != StateAborted {
			t.Fatalf("participant %d: %s", p.idx, p.engine.State())
		}
		var a *AbortError
		if !errors.As(p.engine.Err(), &a) || a.Reason != ReasonComplaints || len(a.Blamed) != 0 {
			t.Fatalf("participant %d: %v", p.idx, p.engine.Err())
		}
	}
}

func TestFinalCompletesAnOldOnlySignerThatLostAnEcho(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "final", h, []int{1, 2, 3}, 2, []int{1, 2})
	ps := reshareParties(t, "final", prop, h, nil)
	nw := newRNetwork(t, ps)
	const oldOnly = 3
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 1 && d.to == oldOnly && kindOf(d.env) == wire.KindEcho {
			return nil // lost
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	if ps[0].engine.State() != StateDone || ps[oldOnly-1].engine.State() != StateRunning {
		t.Fatalf("states %s and %s, want done and still running", ps[0].engine.State(), ps[oldOnly-1].engine.State())
	}
	if got := ps[0].engine.Resend(); got != nil {
		t.Fatalf("a finished engine resends %d messages", len(got))
	}
	nw.tamper = nil
	nw.send(1, ps[0].engine.Final())
	nw.run()
	collect(t, prop, ps)
}

func TestVerifyHandoverRefusesAnIncompleteOrForeignConfirmationSet(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "handover", h, []int{1, 2, 3}, 2, []int{1, 2, 4})
	_, ps := runReshare(t, "handover", prop, h)
	r, _ := ps[0].engine.Result()
	other := proposeReshare(t, "handover-other", h, []int{1, 2, 3}, 2, []int{1, 2, 4})
	_, ops := runReshare(t, "handover-other", other, h)
	ro, _ := ops[0].engine.Result()
	// Party 3 sends party 2's proof as its own: the right key, a wrong proof.
	c2, _ := wire.Decode(r.Confirmations[1])
	m2, _ := decodeReshareConfirm(c2.Payload, 2)
	bad := reseal(t, r.Confirmations[2], ps[2].key, func(env *wire.Envelope) {
		m, _ := decodeReshareConfirm(env.Payload, 2)
		m.Proof = m2.Proof
		env.Payload, _ = m.encode()
	})
	tests := []struct {
		name string
		set  [][]byte
		want error
	}{
		{"one missing", r.Confirmations[:2], ErrNotConfirmed},
		{"one twice", [][]byte{r.Confirmations[0], r.Confirmations[1], r.Confirmations[1]}, ErrUnexpected},
		{"another ceremony's", [][]byte{r.Confirmations[0], r.Confirmations[1], ro.Confirmations[2]}, ErrWrongCeremony},
		{"another party's proof", [][]byte{r.Confirmations[0], r.Confirmations[1], bad}, ErrMisbehaviour},
		{"not a confirmation", [][]byte{r.Confirmations[0], r.Confirmations[1], ps[0].sent[0]}, ErrUnexpected},
	}
	for _, tc := range tests {
		if _, err := VerifyHandover(prop, tc.set); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := VerifyHandover(prop, r.Confirmations); err != nil {
		t.Fatal(err)
	}
}

func TestResendRepeatsALostSubShare(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "resend", h, []int{1, 2, 3}, 2, []int{1, 2, 3})
	ps := reshareParties(t, "resend", prop, h, nil)
	nw := newRNetwork(t, ps)
	lost := true
	nw.tamper = func(d delivery) [][]byte {
		if lost && d.from == 1 && d.to == 2 && kindOf(d.env) == wire.KindShare {
			lost = false
			return nil
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	if got := ps[1].engine.Progress(); got.Round != RoundDeal || !slices.Equal(got.Waiting, []uint32{1}) {
		t.Fatalf("party 2: %+v, want waiting for party 1's deal round", got)
	}
	nw.send(1, ps[0].engine.Resend())
	nw.run()
	collect(t, prop, ps)
}

// A dealer that t' new signers complain about is out without a
// justification round: at least one of them is honest.
func TestADealerWithTPrimeComplaintsIsDisqualified(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 3, []int{1, 2, 3})
	prop := proposeReshare(t, "complaints", h, []int{1, 2, 3}, 2, []int{1, 2, 3})
	ps := reshareParties(t, "complaints", prop, h, nil)
	nw := newRNetwork(t, ps)
	const cheat = 1
	nw.tamper = func(d delivery) [][]byte {
		if d.from == cheat && kindOf(d.env) == wire.KindShare {
			return [][]byte{reseal(t, d.env, ps[cheat-1].key, func(env *wire.Envelope) { env.Payload = sharePayload(t, bls.ScalarFromUint64(3)) })}
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	for _, p := range ps {
		if p.idx != cheat {
			expectReshareAbort(t, p, ReasonComplaints, []uint32{cheat})
		}
	}
}
