package core

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
)

// waitApprovals polls a node's approval queue until it has n entries.
func waitApprovals(t *testing.T, ctx context.Context, nd *node, n int) []Approval {
	t.Helper()
	for {
		got, err := nd.app.Approvals(ctx)
		if err != nil {
			t.Fatalf("%s: approvals: %v", nd.name, err)
		}
		if len(got) == n {
			return got
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %d approvals waiting, want %d", nd.name, len(got), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// A script asks for a signature without being this signer's approval: the
// request waits in this console's own queue (listed, surviving a restart)
// until its human approves, then the others' approvals make the signature,
// which a later wait still gets.
func TestARequestAskedWithoutApprovalWaitsInTheOwnQueue(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob, carol := nodes[0], nodes[1], nodes[2]
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	for _, nd := range nodes {
		nd.stop()
		nd.start(t, false) // people decide from now on
	}
	msg := []byte("release v1.2.3")
	id, err := alice.app.BeginSignature(ctx, kr.KeyID, msg, "from the release pipeline", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		got := waitApprovals(t, ctx, nd, 1)
		if got[0].ID != id || got[0].Kind != "sign" || got[0].Requester != "alice" || got[0].KeyID != kr.KeyID ||
			got[0].Text != string(msg) || got[0].Description != "from the release pipeline" {
			t.Fatalf("%s's queue: %+v", nd.name, got[0])
		}
	}
	// Restarted, alice's console still has it waiting for her.
	alice.stop()
	alice.start(t, false)
	waitApprovals(t, ctx, alice, 1)
	if err := bob.app.Approve(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitApprovals(t, ctx, bob, 0)
	if err := alice.app.Approve(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := alice.app.Approve(ctx, id); err == nil {
		t.Fatal("a second approval of one request was taken")
	}
	sr, err := alice.app.WaitSignature(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
	// Carol never answered; the request left her queue when it ended.
	waitApprovals(t, ctx, carol, 0)
	// Waiting again for a request that ended gets the same result.
	again, err := alice.app.WaitSignature(ctx, id)
	if err != nil || string(again.Signature) != string(sr.Signature) {
		t.Fatalf("second wait: %v", err)
	}
	hist, err := alice.app.Signatures(ctx, 0)
	if err != nil || len(hist) != 1 || !hist[0].Verified || hist[0].Signature == "" {
		t.Fatalf("history %+v, %v", hist, err)
	}
}

// A keygen begun without waiting is waited for later; an unknown id is an
// error, not a wait.
func TestABegunKeygenIsWaitedForLater(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	id, err := nodes[0].app.BeginKeygen(ctx, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := nodes[0].app.WaitKeygen(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if kr.T != 2 || kr.N != 3 {
		t.Fatalf("key %d-of-%d", kr.T, kr.N)
	}
	if _, err := nodes[0].app.WaitKeygen(ctx, [32]byte{1}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("wait for an unknown id: %v", err)
	}
	if _, err := nodes[0].app.WaitSignature(ctx, id); !errors.Is(err, ErrUnknown) {
		t.Fatalf("a keygen waited for as a signature: %v", err)
	}
}

// Who answered through the socket is kept with the request's record, and
// when (the audit trail builds on it); a restart reads it back.
func TestWhoAnsweredIsRecordedWithTheRequest(t *testing.T) {
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
		nd.start(t, false) // carol is away: the signature needs bob's answer
	}
	id, err := alice.app.BeginSignature(ctx, kr.KeyID, []byte("audited"), "", true)
	if err != nil {
		t.Fatal(err)
	}
	waitApprovals(t, ctx, bob, 1)
	const who = "socket uid=1000 user=ops pid=4242"
	if err := bob.app.ApproveAs(ctx, id, who); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.app.WaitSignature(ctx, id); err != nil {
		t.Fatal(err)
	}
	bob.stop()
	for _, in := range recordedAccepts(t, ctx, bob.store, id) {
		if in.By != who || in.Time.IsZero() {
			t.Fatalf("the approval is recorded as by %q at %v", in.By, in.Time)
		}
		return
	}
	t.Fatal("bob's approval is not in his record of the request")
}

// A key generation proposed without being this signer's acceptance waits
// in its own queue (across a restart) until its human accepts it.
func TestAKeygenProposedWithoutAcceptanceWaitsForTheOwnHuman(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice := nodes[0]
	for i, nd := range nodes {
		nd.start(t, i != 0) // bob and carol accept everything
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	id, err := alice.app.BeginKeygen(ctx, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	got := waitApprovals(t, ctx, alice, 1)
	if got[0].ID != id || got[0].Kind != "keygen" || got[0].Requester != "alice" {
		t.Fatalf("alice's queue: %+v", got[0])
	}
	alice.stop()
	alice.start(t, false)
	waitApprovals(t, ctx, alice, 1)
	if keys, _ := alice.app.Keys(ctx); len(keys) != 0 {
		t.Fatal("a key was generated before alice accepted")
	}
	if err := alice.app.ApproveAs(ctx, id, "socket uid=1000 user=ops pid=1"); err != nil {
		t.Fatal(err)
	}
	kr, err := alice.app.WaitKeygen(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitKeys(t, ctx, nd, kr.KeyID)
	}
}
