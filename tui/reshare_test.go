package tui

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
)

func TestAReshareIsReviewedAndAcceptedLikeAKeygenAndItsRoundsAreShown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 120, 24)
	h.send(event.ApprovalRequested{ID: reqID, Kind: "reshare", Requester: "alice", KeyID: "5eed1234",
		Text:    "reshare key 5eed1234 from 2-of-3 (alice, bob and carol, epoch 0) to 3-of-5 with alice, bob, carol, dave and eve; dealers alice, bob and carol",
		Expires: t0.Add(10 * time.Minute)}, "3")
	if v := h.view(); !strings.Contains(v, "reshare "+reqID[:8]) || !strings.Contains(v, "from alice") {
		t.Fatalf("the queue does not list the reshare:\n%s", v)
	}
	h.send("enter", advance(time.Second))
	v := h.view()
	for _, w := range []string{"Reshare proposal", "proposal", "to 3-of-5 with alice, bob, carol, dave and eve", "5eed1234"} {
		if !strings.Contains(v, w) {
			t.Errorf("the review lacks %q:\n%s", w, v)
		}
	}
	h.run(h.key("a"))
	if len(h.core.approved) != 1 || h.core.approved[0] != mustID(t, reqID) {
		t.Fatalf("approved %x", h.core.approved)
	}
	h.send(event.Progress{Ceremony: cerID, Kind: "reshare", Round: "deal", Step: 2, Total: 4, Got: []string{"alice"},
		Waiting: []string{"bob"}, Deadline: t0.Add(9 * time.Minute)}, "esc", "2")
	if v := h.view(); !strings.Contains(v, "reshare c0ffee01") || !strings.Contains(v, "waiting bob") {
		t.Fatalf("the ceremonies view does not show the reshare's round:\n%s", v)
	}
	h.send(event.ReshareDone{Ceremony: cerID, What: "reshare", KeyID: "5eed1234", Epoch: 1, T: 3, N: 5})
	if v := h.view(); !strings.Contains(v, "key 5eed1234 epoch 1 3-of-5") {
		t.Fatalf("the finished reshare is not shown:\n%s", v)
	}
}

func TestADeclinedReshareSaysTheOldGroupKeepsTheKeyAndBlamesNobody(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 120, 24)
	h.send(event.Progress{Ceremony: cerID, Kind: "refresh", Round: "accept", Step: 1, Total: 4, Deadline: t0.Add(9 * time.Minute)}, "2")
	h.send(event.ReshareFailed{Ceremony: cerID, Reason: "declined", Round: "accept", By: "carol", Text: "refresh c0ffee01 declined by carol"})
	v := h.view()
	if !strings.Contains(v, "refresh c0ffee01  failed in round accept: declined (stopped by carol); the old group keeps the key") || strings.Contains(v, "blamed") {
		t.Fatalf("the declined refresh reads:\n%s", v)
	}
}

func (f *fakeCore) StartReshare(_ context.Context, req core.ReshareRequest) (*core.ReshareResult, error) {
	f.mu.Lock()
	f.reshares = append(f.reshares, req)
	f.mu.Unlock()
	f.note("reshare")
	return &core.ReshareResult{KeyID: req.KeyID, Epoch: 1, T: req.Threshold, N: len(req.Signers)}, f.err
}

func TestTheReshareFormProposesTheNewGroupForTheKeyShown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 120, 24)
	id := [32]byte{0x5e, 0xed, 0x12, 0x34}
	h.send(keysMsg{keys: []core.KeyInfo{{KeyID: id, GroupKey: []byte{1}, T: 2, N: 3, Self: 1}}}, "R")
	if v := h.view(); !strings.Contains(v, "Reshare key 5eed1234 (now 2-of-3, epoch 0)") {
		t.Fatalf("the form is not open:\n%s", v)
	}
	h.send(typeText("9")...)
	h.send("tab")
	h.send(typeText("alice, bob, carol, dave")...)
	h.send("enter")
	if v := h.view(); !strings.Contains(v, "cannot exceed the 4 signers named") {
		t.Fatalf("a threshold above the group was not refused:\n%s", v)
	}
	h.send("shift+tab", "backspace")
	h.send(typeText("3")...)
	h.run(h.send("enter"))
	h.core.mu.Lock()
	defer h.core.mu.Unlock()
	if len(h.core.reshares) != 1 {
		t.Fatalf("reshares proposed: %+v", h.core.reshares)
	}
	got := h.core.reshares[0]
	if got.KeyID != id || got.Threshold != 3 || strings.Join(got.Signers, ",") != "alice,bob,carol,dave" {
		t.Fatalf("proposed %+v", got)
	}
}
