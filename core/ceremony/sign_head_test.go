package ceremony

import (
	"bytes"
	"maps"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// headOf is a distinct audit head per console and step.
func headOf(idx uint32, step uint64) tbls.Head {
	return tbls.Head{Count: 10*uint64(idx) + step, Hash: [32]byte{byte(idx), byte(step)}}
}

// headCfg gives console c the audit head that *now holds.
func headCfg(c *console, now *map[uint32]tbls.Head) SignConfig {
	cfg := signCfg(c)
	cfg.Head = func() tbls.Head { return (*now)[c.idx] }
	return cfg
}

// Each answer carries its signer's head: the requester holds its
// approvers' and decliners', the others the decliners'.
func TestAnswersCarryTheSignersAuditHeads(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "heads", 3, 2)
	b := &bus{t: t, consoles: cs}
	heads := map[uint32]tbls.Head{1: headOf(1, 1), 2: headOf(2, 1), 3: headOf(3, 1)}
	id := requestID("heads")
	s, out, err := NewSignRequest(headCfg(cs[0], &heads), id, tbls.Request{Message: []byte("m"), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	cs[0].signs[id] = s
	b.send(1, out)
	b.run(func(c *console, env []byte) ([]Outgoing, error) {
		if s, ok := c.signs[id]; ok {
			return s.Handle(env)
		}
		s, err := OpenSignRequest(headCfg(c, &heads), env)
		if err != nil {
			return nil, err
		}
		c.signs[id] = s
		if c.idx == 3 {
			return s.Decline("no")
		}
		return s.Approve()
	})
	want := map[uint32]map[uint32]tbls.Head{
		1: {2: heads[2], 3: heads[3]},
		2: {1: heads[1], 3: heads[3]}, // the requester's from its result
		3: {1: heads[1]},
	}
	for _, c := range cs {
		s := c.signs[id]
		if s.Progress().Outcome != OutcomeSigned {
			t.Fatalf("console %d: %+v", c.idx, s.Progress())
		}
		if got := s.PeerHeads(); !maps.Equal(got, want[c.idx]) {
			t.Errorf("console %d holds heads %v, want %v", c.idx, got, want[c.idx])
		}
		if s.OwnHead() != heads[c.idx] {
			t.Errorf("console %d answered with head %v, want %v", c.idx, s.OwnHead(), heads[c.idx])
		}
	}
}

// The head is read when the request opens: a console restarted after
// its trail grew, reopening the request with the head stored with it,
// sends the same partial as before. Reopened with the live head, it
// would send another, and the requester blames two partials as
// equivocation.
func TestARestoredApprovalSendsTheSameBytes(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "restored", 3, 2)
	heads := map[uint32]tbls.Head{1: headOf(1, 1), 2: headOf(2, 1)}
	id := requestID("restored")
	req, out, err := ProposeSignRequest(headCfg(cs[0], &heads), id, tbls.Request{Message: []byte("m"), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	reqEnv := out[0].Envelope
	first, err := OpenSignRequest(headCfg(cs[1], &heads), reqEnv)
	if err != nil {
		t.Fatal(err)
	}
	heads[2] = headOf(2, 5) // other ceremonies ended on console 2 before it answered
	sent, err := first.Approve()
	if err != nil {
		t.Fatal(err)
	}
	stored := first.OwnHead()
	if stored != headOf(2, 1) {
		t.Fatalf("the answer carries %v, not the head at the request's start", stored)
	}
	heads[2] = headOf(2, 9) // ...and more before the restart

	restored, err := OpenSignRequest(signCfg(cs[1]).WithHead(stored), reqEnv)
	if err != nil {
		t.Fatal(err)
	}
	again, err := restored.Approve()
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || !bytes.Equal(again[0].Envelope, sent[0].Envelope) {
		t.Fatal("the restored approval is not the partial sent before the restart")
	}

	live, err := OpenSignRequest(headCfg(cs[1], &heads), reqEnv)
	if err != nil {
		t.Fatal(err)
	}
	other, err := live.Approve()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other[0].Envelope, sent[0].Envelope) {
		t.Fatal("a grown head gave the same partial: the test shows nothing")
	}
	if _, err := req.Handle(sent[0].Envelope); err != nil {
		t.Fatal(err)
	}
	if _, err := req.Handle(other[0].Envelope); err != nil {
		t.Fatal(err)
	}
	if p := req.Progress(); len(p.Blamed) != 1 || p.Blamed[0] != 2 {
		t.Fatalf("two partials from one party: %+v, want it blamed", p)
	}
}

// Without a head source the answers are the bytes of builds without
// heads, which older peers read; an expiry's decline carries the head too.
func TestAnswersWithoutAHeadAreUnchangedAndExpiryCarriesOne(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "nohead", 3, 2)
	id := requestID("nohead")
	_, out, err := ProposeSignRequest(signCfg(cs[0]), id, tbls.Request{Message: []byte("m"), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenSignRequest(signCfg(cs[1]), out[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := s.Approve()
	if err != nil {
		t.Fatal(err)
	}
	env, err := wire.Decode(ans[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tbls.Sign(cs[1].share, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := tbls.EncodePartial(p); !bytes.Equal(env.Payload, plain) {
		t.Fatal("a partial without a head is not the plain encoding")
	}

	heads := map[uint32]tbls.Head{3: headOf(3, 2)}
	late, err := OpenSignRequest(headCfg(cs[2], &heads), out[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := late.Tick(time.Now().Add(2 * time.Hour))
	if err != nil || len(dec) != 1 {
		t.Fatalf("expiry: %v %v", dec, err)
	}
	env, err = wire.Decode(dec[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tbls.DecodeDecline(env.Payload)
	if err != nil || m.Head != heads[3] {
		t.Fatalf("the expiry's decline carries %+v (%v), want %v", m, err, heads[3])
	}
}
