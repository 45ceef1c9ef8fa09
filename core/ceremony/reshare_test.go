package ceremony

import (
	"errors"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// refresh runs a refresh of the consoles' key (same signers, same
// threshold, every signer dealing), each human accepting, and gives each
// console its key and share of the new epoch.
func refresh(t *testing.T, name string, cs []*console) {
	t.Helper()
	old := cs[0].rec
	dealers := make([]uint32, len(cs))
	for i := range dealers {
		dealers[i] = uint32(i + 1)
	}
	prop := &dkg.ReshareProposal{KeyID: old.ID, GroupKey: old.Group.Key, Epoch: old.Epoch, Old: old.OldGroup(), Dealers: dealers,
		Threshold: old.T(), Parties: old.Parties, RoundTimeout: time.Minute, Initiator: 1, Created: time.Unix(1_800_000_000, 0)}
	copy(prop.Nonce[:], name)
	trust := func(p *dkg.ReshareProposal) error { return p.CheckRecord(old.ID, old.Epoch, old.OldGroup()) }
	sessions := map[uint32]*ReshareSession{}
	b := &bus{t: t, consoles: cs}
	s, out, err := ProposeReshare(prop, cs[0].key, seedOf(name, 1), ReshareKeys{OldShare: cs[0].share})
	if err != nil {
		t.Fatal(err)
	}
	sessions[1] = s
	b.send(1, out)
	b.run(func(c *console, env []byte) ([]Outgoing, error) {
		if s, ok := sessions[c.idx]; ok {
			return s.Handle(env)
		}
		s, err := OpenReshareProposal(env, c.key, seedOf(name, c.idx), ReshareKeys{OldShare: c.share}, trust)
		if err != nil {
			return nil, err
		}
		sessions[c.idx] = s
		return s.Accept()
	})
	for _, c := range cs {
		s := sessions[c.idx]
		k, sh, _, err := s.Result()
		if err != nil {
			t.Fatalf("console %d: %v (errors %v)", c.idx, err, c.errors)
		}
		c.rec, c.share, c.signs, c.errors = k, sh, map[[32]byte]*SignSession{}, nil
	}
}

func TestARefreshedKeySignsUnderTheSameGroupKeyAtTheNextEpoch(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "refresh", 3, 2)
	groupKey := cs[0].rec.Group.Key
	before := cs[0].rec
	beforeShare := cs[1].share
	refresh(t, "refresh", cs)
	if cs[0].rec.Epoch != 1 || cs[0].rec.ID != before.ID || !cs[0].rec.Group.Key.Equal(groupKey) {
		t.Fatalf("after refresh: epoch %d, same id %v", cs[0].rec.Epoch, cs[0].rec.ID == before.ID)
	}
	if bls.ScalarBytes(&cs[1].share.Value) == nil || string(bls.ScalarBytes(&cs[1].share.Value)) == string(bls.ScalarBytes(&beforeShare.Value)) {
		t.Fatal("the refresh kept the old share")
	}
	b := &bus{t: t, consoles: cs}
	msg := []byte("after the refresh")
	startRequest(t, b, cs[0], "after", msg)
	b.run(signRoute(t, func(_ *console, s *SignSession) ([]Outgoing, error) { return s.Approve() }))
	r := cs[0].signs[requestID("after")].Result()
	if r == nil {
		t.Fatalf("not signed: %+v %v", cs[0].signs[requestID("after")].Progress(), cs[1].errors)
	}
	if err := bls.Verify(groupKey, msg, r.Signature); err != nil {
		t.Fatalf("signature of the new epoch does not verify under the group key: %v", err)
	}
	// t-1 signers of the new epoch sign nothing.
	b = &bus{t: t, consoles: cs}
	startRequest(t, b, cs[0], "alone", []byte("one signer only"))
	b.run(signRoute(t, func(_ *console, s *SignSession) ([]Outgoing, error) { return s.Decline("no") }))
	if p := cs[0].signs[requestID("alone")].Progress(); p.Outcome != OutcomeFailed {
		t.Fatalf("t-1 signers: %+v", p)
	}
}

func TestARequestForAnotherEpochIsRefused(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "epoch", 3, 2)
	oldCfg := signCfg(cs[0])
	refresh(t, "epoch", cs)
	// A console still at epoch 0 asks: the others are at epoch 1.
	_, out, err := NewSignRequest(oldCfg, requestID("stale"), tbls.Request{Message: []byte("m"), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var req []byte
	for _, o := range out {
		if o.Kind == wire.KindSignRequest {
			req = o.Envelope
		}
	}
	if _, err := OpenSignRequest(signCfg(cs[1]), req); !errors.Is(err, ErrEpoch) {
		t.Fatalf("old-epoch request opened: %v", err)
	}
}

// FuzzDecodeReshareProposal: a received proposal envelope never panics
// the checks that run before a console trusts it.
func FuzzDecodeReshareProposal(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x0a})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = DecodeReshareProposal(b)
	})
}
