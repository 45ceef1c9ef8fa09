package core

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/wire"
)

// waitEnded waits until nd knows the signing id has ended.
func waitEnded(t *testing.T, ctx context.Context, nd *node, id [32]byte) {
	t.Helper()
	for {
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := nd.app.WaitSignature(c, id)
		cancel()
		var se *SignError
		if err == nil || errors.As(err, &se) {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s: request %x never ended: %v", nd.name, id[:4], err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// evictAll lets every ended signing of nd leave memory, as time would.
func evictAll(t *testing.T, ctx context.Context, nd *node) {
	t.Helper()
	for {
		var left int
		if err := nd.app.do(ctx, func() {
			nd.app.evictEnded(nd.app.now().Add(1000 * time.Hour))
			left = len(nd.app.recent)
		}); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inMemory reports whether nd's App holds ceremony id in memory.
func inMemory(t *testing.T, ctx context.Context, nd *node, id [32]byte) bool {
	t.Helper()
	var in bool
	if err := nd.app.do(ctx, func() {
		_, s := nd.app.signs[id]
		_, r := nd.app.records[id]
		in = s || r
	}); err != nil {
		t.Fatal(err)
	}
	return in
}

// recorder keeps the messages a node is given, for delivering them again.
type recorder struct {
	mu   sync.Mutex
	msgs []mail
}

func (r *recorder) hook(from Address, env []byte) bool {
	r.mu.Lock()
	r.msgs = append(r.msgs, mail{from, bytes.Clone(env)})
	r.mu.Unlock()
	return true
}

// of returns the messages holding an envelope of ceremony id, and the
// kinds of those envelopes.
func (r *recorder) of(id [32]byte) ([]mail, []wire.Kind) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []mail
	var kinds []wire.Kind
	for _, m := range r.msgs {
		mine := false
		for _, e := range envelopesOf(m.env) {
			if e.Ceremony == id {
				mine = true
				kinds = append(kinds, e.Kind)
			}
		}
		if mine {
			out = append(out, m)
		}
	}
	return out, kinds
}

func TestAnEndedSigningLeavesMemoryAndItsMessagesStayDropped(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]
	var toAlice, toBob, toCarol recorder
	alice.deliver, bob.deliver, carol.deliver = toAlice.hook, toBob.hook, toCarol.hook
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	sr, err := alice.app.RequestSignature(ctx, kr.KeyID, []byte("once"), "")
	if err != nil {
		t.Fatal(err)
	}
	id := sr.ID
	for _, nd := range nodes {
		waitEnded(t, ctx, nd, id)
	}
	// Every partial has reached alice (the one not needed too).
	for {
		if _, kinds := toAlice.of(id); len(slices.DeleteFunc(kinds, func(k wire.Kind) bool { return k != wire.KindPartial })) == 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the partials never reached alice")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, nd := range nodes {
		evictAll(t, ctx, nd)
		if inMemory(t, ctx, nd, id) {
			t.Fatalf("%s still holds the ended signing in memory", nd.name)
		}
	}

	toAliceMsgs, aliceKinds := toAlice.of(id)
	toBobMsgs, bobKinds := toBob.of(id)
	if !slices.Contains(aliceKinds, wire.KindPartial) || !slices.Contains(bobKinds, wire.KindSignRequest) || !slices.Contains(bobKinds, wire.KindSignResult) {
		t.Fatalf("recorded kinds: to alice %v, to bob %v", aliceKinds, bobKinds)
	}
	_, resultsBefore := toCarol.of(id)
	if err := alice.app.do(ctx, func() { clear(alice.app.answered) }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		to   *node
		msgs []mail
	}{
		{"late partials to the requester", alice, toAliceMsgs},
		{"the replayed request and result to a signer", bob, toBobMsgs},
	} {
		for _, m := range tc.msgs {
			if err := tc.to.app.Deliver(ctx, m.from, m.env); !errors.Is(err, ErrRejected) {
				t.Fatalf("%s: delivered again: %v, want a rejection (dropped and acknowledged)", tc.name, err)
			}
		}
		if inMemory(t, ctx, tc.to, id) {
			t.Fatalf("%s: the ended signing was opened again", tc.name)
		}
		var orphans int
		if err := tc.to.app.do(ctx, func() { orphans = len(tc.to.app.orphans) }); err != nil {
			t.Fatal(err)
		}
		if orphans != 0 {
			t.Fatalf("%s: %d envelopes kept as orphans", tc.name, orphans)
		}
		if list, err := tc.to.app.Approvals(ctx); err != nil || len(list) != 0 {
			t.Fatalf("%s: approvals %v, %v", tc.name, list, err)
		}
	}
	// Carol's late partial was answered with the result, from the store.
	for {
		if _, kinds := toCarol.of(id); len(kinds) > len(resultsBefore) && kinds[len(kinds)-1] == wire.KindSignResult {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("carol's late partial was not answered with the result")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The store answers for it: its result, its history, its decision.
	got, err := alice.app.WaitSignature(ctx, id)
	if err != nil || !bytes.Equal(got.Signature, sr.Signature) || !bytes.Equal(got.GroupKey, sr.GroupKey) || fmt.Sprint(got.Signers) != fmt.Sprint(sr.Signers) {
		t.Fatalf("result after it left memory: %+v, %v; want %+v", got, err, sr)
	}
	if err := bob.app.Approve(ctx, id); !errors.Is(err, ErrEnded) {
		t.Fatalf("approving it after it left memory: %v, want ErrEnded", err)
	}
	hist, err := alice.app.Signatures(ctx, 0)
	if err != nil || len(hist) != 1 || hist[0].Signature == "" || !hist[0].Verified {
		t.Fatalf("history %+v, %v", hist, err)
	}
	// An envelope of a ceremony never seen still waits for it.
	other := [32]byte{0xee}
	env, err := wire.Seal(&wire.Envelope{Kind: wire.KindPartial, Ceremony: other, Round: 1, From: 2, Payload: []byte{1}}, bob.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.app.Deliver(ctx, bob.addr, env); err != nil {
		t.Fatalf("an envelope of an unknown ceremony: %v", err)
	}
}

func TestARestartRebuildsOnlyWhatIsOpen(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice := nodes[0]
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	var want [][]byte
	for i := range 3 {
		sr, err := alice.app.RequestSignature(ctx, kr.KeyID, fmt.Appendf(nil, "msg %d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, sr.Signature)
	}
	alice.stop()
	recs, err := alice.store.Ceremonies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Kind != KindKeygen {
		t.Fatalf("stored for rebuilding: %d records, want the keygen only", len(recs))
	}
	alice.start(t, true)
	hist, err := alice.app.Signatures(ctx, 2)
	if err != nil || len(hist) != 2 {
		t.Fatalf("history %+v, %v", hist, err)
	}
	for i, h := range hist {
		if h.Message != fmt.Sprintf("%x", fmt.Appendf(nil, "msg %d", i+1)) || h.Signature != fmt.Sprintf("%x", want[i+1]) {
			t.Fatalf("history[%d] = %+v", i, h)
		}
	}
	// And it still signs with the rebuilt key.
	if _, err := alice.app.RequestSignature(ctx, kr.KeyID, []byte("after"), ""); err != nil {
		t.Fatal(err)
	}
}

func TestTheAuditTrailChainsEveryEndingAndSaysWhoAnswered(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob := nodes[0], nodes[1]
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	for _, nd := range nodes[1:] {
		nd.stop()
		nd.start(t, false) // bob answers by hand; carol is away
	}
	signed, err := alice.app.BeginSignature(ctx, kr.KeyID, []byte("yes"), "ship it", true)
	if err != nil {
		t.Fatal(err)
	}
	waitPending(t, ctx, bob, signed)
	const who = "socket uid=1000 user=ops pid=4242"
	if err := bob.app.ApproveAs(ctx, signed, who); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, ctx, bob, signed)
	declined, err := alice.app.BeginSignature(ctx, kr.KeyID, []byte("no"), "", true)
	if err != nil {
		t.Fatal(err)
	}
	waitPending(t, ctx, bob, declined)
	if err := bob.app.DeclineAs(ctx, declined, "not today", who); err != nil {
		t.Fatal(err)
	}
	carol := nodes[2]
	waitPending(t, ctx, carol, declined)
	if err := carol.app.Decline(ctx, declined, "no"); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, ctx, bob, declined)

	entries, head, err := bob.app.Audit(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if head.Count != 3 || len(entries) != 3 || head.Hash != entries[2].Hash {
		t.Fatalf("head %+v over %d entries", head, len(entries))
	}
	kg, s1, s2 := entries[0], entries[1], entries[2]
	if kg.Kind != KindKeygen || kg.Outcome != EndGenerated || kg.KeyID != kr.KeyID || kg.RequesterName != "alice" {
		t.Fatalf("keygen entry %+v", kg)
	}
	if s1.ID != signed || s1.Outcome != EndSigned || s1.Decision == nil || !s1.Decision.Accept || s1.Decision.By != who ||
		s1.Description != "ship it" || s1.RequesterName != "alice" || s1.MessageSHA256() == ([32]byte{}) {
		t.Fatalf("signed entry %+v (decision %+v)", s1, s1.Decision)
	}
	if s2.ID != declined || s2.Outcome != EndDeclined || s2.Decision == nil || s2.Decision.Accept || s2.Decision.Reason != "not today" ||
		!slices.Contains(s2.Declined, 2) || !slices.Contains(s2.Declined, 3) {
		t.Fatalf("declined entry %+v (decision %+v)", s2, s2.Decision)
	}
	if fmt.Sprint(s1.Answers) != fmt.Sprintf("[{bob approved %s} {alice approved }]", who) || s1.Requester != "alice" {
		t.Fatalf("answers %v, requester %q", s1.Answers, s1.Requester)
	}
	if since, _, err := bob.app.Audit(ctx, s2.EndedAt); err != nil || len(since) != 1 || since[0].ID != declined {
		t.Fatalf("since the last ending: %d entries, %v", len(since), err)
	}

	// A changed entry in the middle is found, and named.
	bob.stop()
	v := bob.store.(*VaultStore).v.(*memVault)
	v.mu.Lock()
	b := v.data[bucketEnded][string(seqKey(2))]
	i := bytes.Index(b, []byte("ship it"))
	b[i] = 'S'
	v.mu.Unlock()
	bob.start(t, false)
	_, _, err = bob.app.Audit(ctx, time.Time{})
	var ae *AuditError
	if !errors.Is(err, ErrAuditBroken) || !errors.As(err, &ae) || ae.Seq != 2 {
		t.Fatalf("a changed entry 2: %v", err)
	}
}

// auditChain makes a trail of n entries in a fresh store.
func auditChain(t *testing.T, ctx context.Context, key ed25519.PrivateKey, n int) ([]*Ended, AuditHead) {
	t.Helper()
	s := NewMemoryStore()
	for i := range n {
		e := &Ended{Kind: KindSign, ID: [32]byte{byte(i + 1)}, KeyID: [32]byte{9}, Outcome: EndSigned, Message: []byte{byte(i)},
			Created: time.Unix(int64(100+i), 0), EndedAt: time.Unix(int64(101+i), 0), Signers: []uint32{1, 3}, Decision: &Decision{Accept: true, By: "signing.rule[0]"}}
		if err := s.FinishCeremony(ctx, e.ID, e, key); err != nil {
			t.Fatal(err)
		}
	}
	entries, head, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return entries, head
}

func TestVerifyAuditNamesTheFirstBadEntry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pub, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	for _, tc := range []struct {
		name   string
		change func(es []*Ended, h AuditHead) ([]*Ended, AuditHead)
		seq    uint64 // 0: verifies
	}{
		{"an intact trail verifies", func(es []*Ended, h AuditHead) ([]*Ended, AuditHead) { return es, h }, 0},
		{"a changed entry", func(es []*Ended, h AuditHead) ([]*Ended, AuditHead) { es[1].Reason = "edited"; return es, h }, 2},
		{"a removed entry", func(es []*Ended, h AuditHead) ([]*Ended, AuditHead) { return slices.Delete(es, 1, 2), h }, 2},
		{"an entry sealed by another key", func(es []*Ended, h AuditHead) ([]*Ended, AuditHead) {
			e := *es[2]
			if _, err := e.seal(AuditHead{Count: 2, Hash: es[1].Hash}, other); err != nil {
				t.Fatal(err)
			}
			es[2] = &e
			return es, AuditHead{Count: 4, Hash: es[3].Hash}
		}, 3},
		{"a cut-off tail against its head", func(es []*Ended, h AuditHead) ([]*Ended, AuditHead) { return es[:3], h }, 4},
		{"entries out of order", func(es []*Ended, h AuditHead) ([]*Ended, AuditHead) { es[0], es[1] = es[1], es[0]; return es, h }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			es, h := auditChain(t, ctx, key, 4)
			es, h = tc.change(es, h)
			err := VerifyAudit(es, h, pub)
			var ae *AuditError
			switch {
			case tc.seq == 0 && err != nil:
				t.Fatalf("intact: %v", err)
			case tc.seq != 0 && (!errors.As(err, &ae) || ae.Seq != tc.seq || !errors.Is(err, ErrAuditBroken)):
				t.Fatalf("got %v, want entry %d named", err, tc.seq)
			}
		})
	}
}

func TestAnEndingThatCannotBeStoredLeavesTheFullRecordAndIsWrittenOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, key, _ := ed25519.GenerateKey(nil)
	v := newMemVault()
	s := NewVaultStore(v)
	r := &CeremonyRecord{ID: [32]byte{1}, Kind: KindSign, Opening: []byte("request"), KeyID: [32]byte{3}, Created: time.Unix(50, 0),
		Inputs: []Input{{Kind: InputEnvelope, Envelope: []byte("partial")}}}
	if err := s.PutCeremony(ctx, r); err != nil {
		t.Fatal(err)
	}
	end := &Ended{Kind: KindSign, ID: r.ID, KeyID: r.KeyID, Outcome: EndSigned, Created: r.Created, EndedAt: time.Unix(60, 0)}
	v.mu.Lock()
	v.fail = errors.New("disk full")
	v.mu.Unlock()
	s.FinishCeremony(ctx, r.ID, end, key)
	if err := s.Durable()(ctx); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("failed write: %v", err)
	}
	v.mu.Lock()
	v.fail = nil
	v.mu.Unlock()
	again := NewVaultStore(v) // a restart
	recs, _ := again.Ceremonies(ctx)
	if e, _ := again.Ended(ctx, r.ID); len(recs) != 1 || len(recs[0].Inputs) != 1 || e != nil {
		t.Fatalf("after a failed ending: %d records, ended %+v", len(recs), e)
	}
	for range 2 { // ended, then ended again by a replay: once
		if err := again.FinishCeremony(ctx, r.ID, end, key); err != nil {
			t.Fatal(err)
		}
	}
	recs, _ = again.Ceremonies(ctx)
	head, err := again.AuditHead(ctx)
	if err != nil || len(recs) != 0 || head.Count != 1 || head.Signs != 1 {
		t.Fatalf("after the ending: %d records, head %+v, %v", len(recs), head, err)
	}
	v.mu.Lock()
	inputs := len(v.data[bucketInputs])
	v.mu.Unlock()
	if inputs != 0 {
		t.Fatalf("%d inputs left behind", inputs)
	}
}

// oldFormat is a Store that ends ceremonies as the older format did: the
// full record stays, marked finished, and nothing else is written.
type oldFormat struct{ *VaultStore }

func (s oldFormat) FinishCeremony(ctx context.Context, id [32]byte, _ *Ended, _ ed25519.PrivateKey) error {
	return s.submit(ctx, func(tx VaultTx) error {
		b, err := tx.Get(bucketCeremonies, id[:])
		if err != nil || b == nil {
			return err
		}
		r, next, err := decodeCeremony(b)
		if err != nil {
			return err
		}
		r.Finished = true
		return tx.Put(bucketCeremonies, id[:], encodeCeremony(r, next))
	})
}

func TestAStoreOfTheOlderFormatIsConvertedOnceInCreationOrder(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice := nodes[0]
	vs := alice.store.(*VaultStore)
	alice.store = oldFormat{vs}
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	var ids [][32]byte
	for i := range 2 {
		sr, err := alice.app.RequestSignature(ctx, kr.KeyID, fmt.Appendf(nil, "old %d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sr.ID)
	}
	alice.stop()
	if recs, _ := vs.Ceremonies(ctx); len(recs) != 3 {
		t.Fatalf("the older format keeps %d records, want 3", len(recs))
	}
	alice.store = vs
	for range 2 { // converted at the first start only
		alice.start(t, true)
		entries, head, err := alice.app.Audit(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if head.Count != 3 || len(entries) != 3 || entries[0].Kind != KindKeygen || entries[1].ID != ids[0] || entries[2].ID != ids[1] {
			t.Fatalf("converted trail: head %+v, %d entries", head, len(entries))
		}
		for _, e := range entries {
			if !e.Converted {
				t.Fatalf("entry %d is not marked converted", e.Seq)
			}
		}
		if entries[2].Outcome != EndSigned || len(entries[2].Signature) == 0 || entries[2].Decision == nil || !entries[2].Decision.Accept {
			t.Fatalf("converted signing %+v", entries[2])
		}
		if hist, err := alice.app.Signatures(ctx, 0); err != nil || len(hist) != 2 {
			t.Fatalf("history %+v, %v", hist, err)
		}
		alice.stop()
		if recs, _ := vs.Ceremonies(ctx); len(recs) != 1 {
			t.Fatalf("after conversion %d records, want the keygen only", len(recs))
		}
	}
}

func FuzzDecodeEnded(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	for _, e := range []*Ended{
		{Kind: KindSign, ID: [32]byte{1}, KeyID: [32]byte{2}, Outcome: EndSigned, Message: []byte("m"), Created: time.Unix(1, 0), EndedAt: time.Unix(2, 0),
			Signature: []byte{7, 7}, Signers: []uint32{1, 2}, Approved: []uint32{1, 2}, Decision: &Decision{Accept: true, By: "socket uid=1", Time: time.Unix(1, 5)},
			Final: [][]byte{[]byte("result")}, PeerHeads: []PeerHead{{Signer: "bob", Count: 3, Hash: [32]byte{4}}}},
		{Kind: KindKeygen, ID: [32]byte{3}, Outcome: EndAborted, Reason: "timeout", Created: time.Unix(1, 0), Converted: true,
			Decision: &Decision{Reason: "no"}},
	} {
		b, err := e.seal(AuditHead{Count: 4, Hash: [32]byte{5}}, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(encodeHead(AuditHead{Count: 2, Hash: [32]byte{1}, Signs: 1}))
	f.Add(encodeRuleUse(RuleUse{Rule: "signing.rule[0]", Requester: "a.1", Time: time.Unix(3, 0)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := DecodeEnded(b); err == nil {
			body, err := e.body()
			if err != nil {
				t.Fatalf("a decoded record does not encode: %v", err)
			}
			if !bytes.Equal(append(body, sealField(e.Seal)...), b) {
				t.Fatal("ended record not canonical")
			}
		}
		if h, err := decodeHead(b); err == nil && !bytes.Equal(encodeHead(h), b) {
			t.Fatal("head not canonical")
		}
		_, _ = decodeRuleUse(b)
	})
}

// A finished signing of the older format whose key cannot rebuild it (gone,
// or at a later epoch) still enters the trail when converted, from what its
// record says, and leaves the start-up replay.
func TestAFinishedSigningThatCannotBeRebuiltIsStillConverted(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice := nodes[0]
	vs := alice.store.(*VaultStore)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rec := &CeremonyRecord{ID: [32]byte{7}, Kind: KindSign, Opening: []byte("an opening of a key this console no longer has"),
		KeyID: [32]byte{9}, Own: true, Created: time.Unix(100, 0), Finished: true}
	if err := vs.PutCeremony(ctx, rec); err != nil {
		t.Fatal(err)
	}
	alice.start(t, true)
	entries, _, err := alice.app.Audit(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].ID != rec.ID || entries[0].Outcome != EndFailed || !entries[0].Converted {
		t.Fatalf("converted trail %+v", entries)
	}
	alice.stop()
	if recs, _ := vs.Ceremonies(ctx); len(recs) != 0 {
		t.Fatalf("%d records still replayed at start", len(recs))
	}
}
