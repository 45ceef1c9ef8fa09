package main

import (
	"context"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
)

// A 2-of-3 key grows to a 3-of-4 over the relay: every console's human
// accepts the reshare, and the new group signs under the same group key.
func TestAKeyIsResharedToALargerGroupOverTheRelay(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	signers := threeSigners(t, r, false)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	accept := func(s *signer) {
		answerApprovals(ctx, s, func(event.ApprovalRequested) (yes, answer bool) { return true, true })
	}
	for _, s := range signers {
		accept(s)
	}
	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	before := []byte("signed by the 2-of-3")
	sr, err := signers[1].con.App.RequestSignature(ctx, kr.KeyID, before, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, before, sr.Signature); err != nil {
		t.Fatal(err)
	}

	dave := newSigner(t, r, "dave")
	dave.start(t, r, false)
	accept(dave)
	for _, s := range signers {
		if err := s.con.App.AddCard(ctx, dave.con.Card, true); err != nil {
			t.Fatal(err)
		}
		if err := dave.con.App.AddCard(ctx, s.con.Card, true); err != nil {
			t.Fatal(err)
		}
	}
	rr, err := signers[0].con.App.StartReshare(ctx, core.ReshareRequest{KeyID: kr.KeyID, Threshold: 3, Signers: []string{"alice", "bob", "carol", "dave"}})
	if err != nil {
		t.Fatal(err)
	}
	if rr.KeyID != kr.KeyID || rr.Epoch != 1 || rr.T != 3 || rr.N != 4 {
		t.Fatalf("reshare result %+v", rr)
	}
	for _, s := range append(signers, dave) {
		for {
			keys, err := s.con.App.Keys(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) == 1 && keys[0].Epoch == 1 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s never reached epoch 1: %+v", s.name, keys)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	after := []byte("signed by the 3-of-4")
	sr, err = dave.con.App.RequestSignature(ctx, kr.KeyID, after, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, after, sr.Signature); err != nil {
		t.Fatalf("the new group's signature does not verify under the original group key: %v", err)
	}
	if len(sr.Signers) != 3 {
		t.Fatalf("signers %v", sr.Signers)
	}
}
