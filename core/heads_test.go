package core

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/core/event"
)

// The signers' answers carry their audit heads, and the requester's ended
// record keeps them: each head names an entry that is in that signer's
// own trail, at that position, with that hash.
func TestAnswersCarryHeadsThatNameEntriesOfThePeersTrails(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	byName := map[string]*node{"bob": nodes[1], "carol": nodes[2]}
	checked := 0
	// A head is read once a second: sign until answers carry one.
	for i := 0; checked == 0; i++ {
		if ctx.Err() != nil {
			t.Fatal("no answer ever carried an audit head")
		}
		if _, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte(fmt.Sprint("m", i)), ""); err != nil {
			t.Fatal(err)
		}
		entries, _, err := nodes[0].app.Audit(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		last := entries[len(entries)-1]
		for _, h := range last.PeerHeads {
			peer, ok := byName[h.Signer]
			if !ok {
				t.Fatalf("a head from %q, not a peer", h.Signer)
			}
			theirs, _, err := peer.app.Audit(ctx, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if h.Count == 0 || h.Count > uint64(len(theirs)) || theirs[h.Count-1].Hash != h.Hash || theirs[h.Count-1].Seq != h.Count {
				t.Fatalf("%s's head %d %x is not entry %d of its trail", h.Signer, h.Count, h.Hash[:4], h.Count)
			}
			checked++
		}
		if checked == 0 {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// A request's head is kept with it: the record read back carries it, so a
// restart replays the same answer.
func TestARequestKeepsTheHeadItsAnswerCarries(t *testing.T) {
	t.Parallel()
	r := &CeremonyRecord{ID: [32]byte{1}, Kind: KindSign, Opening: []byte{1}, KeyID: [32]byte{2}, Created: time.Unix(5, 0), By: "socket uid=1 user=ops pid=2"}
	r.Head.Count, r.Head.Hash = 7, [32]byte{9}
	got, _, err := decodeCeremony(encodeCeremony(r, 0))
	if err != nil {
		t.Fatal(err)
	}
	if got.Head != r.Head || got.By != r.By {
		t.Fatalf("read back head %+v by %q, want %+v %q", got.Head, got.By, r.Head, r.By)
	}
	r.Head = tbls.Head{} // none: encoded as before heads existed
	if got, _, err := decodeCeremony(encodeCeremony(r, 0)); err != nil || got.Head != r.Head {
		t.Fatalf("no head: %+v %v", got, err)
	}
}

// The signature history, read back from the ended records, says who
// answered and how this console's answer was given.
func TestTheHistorySaysWhoAnswered(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	sr, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("history"), "")
	if err != nil {
		t.Fatal(err)
	}
	bob := nodes[1]
	// Bob's answer came from the auto_approve setting; wait for his end.
	var hist []event.SignDone
	for len(hist) == 0 || hist[len(hist)-1].ID != hex.EncodeToString(sr.ID[:]) {
		if ctx.Err() != nil {
			t.Fatalf("bob's history never showed the signing: %+v", hist)
		}
		time.Sleep(20 * time.Millisecond)
		if hist, err = bob.app.Signatures(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	var own *event.Approval
	for i, ap := range hist[len(hist)-1].Approvals {
		if ap.Signer == "bob" {
			own = &hist[len(hist)-1].Approvals[i]
		}
	}
	if own == nil || own.Decision != "approved" || own.Rule != "signing.auto_approve" {
		t.Fatalf("bob's own answer in his history: %+v", hist[len(hist)-1].Approvals)
	}
}

// A daemon or a one-shot command publishes no past results at start (it
// has no screen; an attached console asks for them), and still lists
// them when asked.
func TestNoHistoryAtStartPublishesNoPastResultsButListsThem(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	sr, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("past"), "")
	if err != nil {
		t.Fatal(err)
	}
	alice := nodes[0]
	for _, quiet := range []bool{false, true} {
		alice.stop()
		var sub *event.Subscription
		alice.onBus = func(b *event.Bus) { sub = b.Subscribe(0) }
		alice.configure = func(c *Config) { c.NoHistoryAtStart = quiet }
		alice.start(t, true)
		wait, stop := context.WithTimeout(ctx, 300*time.Millisecond)
		published := 0
		for {
			e, err := sub.Next(wait)
			if err != nil {
				break
			}
			if d, ok := e.(event.SignDone); ok && d.Restored {
				published++
			}
		}
		stop()
		sub.Close()
		if want := map[bool]int{false: 1, true: 0}[quiet]; published != want {
			t.Fatalf("NoHistoryAtStart %v: %d past results published, want %d", quiet, published, want)
		}
		hist, err := alice.app.Signatures(ctx, 0)
		if err != nil || len(hist) != 1 || hist[0].ID != hex.EncodeToString(sr.ID[:]) {
			t.Fatalf("NoHistoryAtStart %v: listed %+v, %v", quiet, hist, err)
		}
	}
}
