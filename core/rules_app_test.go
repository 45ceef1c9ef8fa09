package core

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
)

// ruleInputs lists the By of every accept recorded in nd's store for
// ceremony id.
func ruleInputs(t *testing.T, ctx context.Context, nd *node, id [32]byte) []string {
	t.Helper()
	var by []string
	for _, d := range recordedAccepts(t, ctx, nd.store, id) {
		by = append(by, d.By)
	}
	return by
}

// recordedAccepts lists the accepts recorded in a store for ceremony id:
// the inputs of its full record while it is open, the ended record's
// decision once it has ended.
func recordedAccepts(t *testing.T, ctx context.Context, s Store, id [32]byte) []Decision {
	t.Helper()
	recs, err := s.Ceremonies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.ID != id {
			continue
		}
		var out []Decision
		for _, in := range r.Inputs {
			if in.Kind == InputAccept {
				out = append(out, Decision{Accept: true, By: in.By, Time: in.Time})
			}
		}
		return out
	}
	e, err := s.Ended(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if e == nil || e.Decision == nil || !e.Decision.Accept {
		return nil
	}
	return []Decision{*e.Decision}
}

// waitPending waits until id waits in nd's approval queue (asked, not
// approved by a rule).
func waitPending(t *testing.T, ctx context.Context, nd *node, id [32]byte) {
	t.Helper()
	for {
		list, err := nd.app.Approvals(ctx)
		if err != nil {
			t.Fatalf("%s: %v", nd.name, err)
		}
		if slices.ContainsFunc(list, func(a Approval) bool { return a.ID == id }) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never listed %x for a person", nd.name, id[:4])
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestRulesApproveAndMaxPerHourSurvivesRestart(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob := nodes[0], nodes[1]
	var later atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(later.Load())) }
	keygenRules, err := CompileKeygenRules([]KeygenRuleSpec{{VerifiedParties: true}})
	if err != nil {
		t.Fatal(err)
	}
	signRules := mustRules(t, SigningRuleSpec{Requester: "alice", MessageRegex: "^release v", MaxPerHour: 1})
	for _, nd := range nodes {
		nd.now = now
		nd.configure = func(c *Config) {
			c.KeygenRules = keygenRules
			if c.Me.Name == "bob" {
				c.SigningRules = signRules
			}
		}
		nd.start(t, false) // no person answers anything
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// Bob and carol accept alice's proposal by keygen.rule[0].
	kr := keygenAll(t, ctx, nodes)
	if by := ruleInputs(t, ctx, bob, kr.Ceremony); fmt.Sprint(by) != "[keygen.rule[0]]" {
		t.Fatalf("bob's acceptance recorded as by %q", by)
	}

	// The rule approves the first release request from alice.
	sr, err := alice.app.RequestSignature(ctx, kr.KeyID, []byte("release v1"), "")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sr.Signers) != "[alice bob]" {
		t.Fatalf("signers %v", sr.Signers)
	}
	if by := ruleInputs(t, ctx, bob, sr.ID); fmt.Sprint(by) != "[signing.rule[0]]" {
		t.Fatalf("bob's approval recorded as by %q", by)
	}
	// A request the rule does not match waits for a person.
	other, err := alice.app.BeginSignature(ctx, kr.KeyID, []byte("hotfix"), "", true)
	if err != nil {
		t.Fatal(err)
	}
	waitPending(t, ctx, bob, other)
	// The second release within the hour waits too: max_per_hour.
	second, err := alice.app.BeginSignature(ctx, kr.KeyID, []byte("release v2"), "", true)
	if err != nil {
		t.Fatal(err)
	}
	waitPending(t, ctx, bob, second)

	// After a restart with the same store the count still holds.
	bob.stop()
	bob.start(t, false)
	third, err := alice.app.BeginSignature(ctx, kr.KeyID, []byte("release v3"), "", true)
	if err != nil {
		t.Fatal(err)
	}
	waitPending(t, ctx, bob, third)
	if by := ruleInputs(t, ctx, bob, second); len(by) != 0 {
		t.Fatalf("the restored request was approved by %q", by)
	}

	// An hour later the rule approves again.
	later.Store(int64(RateWindow + time.Minute))
	sr, err = alice.app.RequestSignature(ctx, kr.KeyID, []byte("release v4"), "")
	if err != nil {
		t.Fatal(err)
	}
	if by := ruleInputs(t, ctx, bob, sr.ID); fmt.Sprint(by) != "[signing.rule[0]]" {
		t.Fatalf("an hour later, bob's approval recorded as by %q", by)
	}
}

func TestKeygenRuleWaitsWhenAPartyIsNotVerified(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob := nodes[0], nodes[1]
	keygenRules, err := CompileKeygenRules([]KeygenRuleSpec{{VerifiedParties: true}})
	if err != nil {
		t.Fatal(err)
	}
	bob.configure = func(c *Config) {
		c.KeygenRules = keygenRules
		// Carol is in bob's roster, but nobody compared her fingerprint.
		var r roster.Roster
		for _, nd := range nodes {
			if err := r.Add(nd.card, nd.name != "carol"); err != nil {
				t.Fatal(err)
			}
		}
		c.Roster = &r
	}
	for _, nd := range nodes {
		nd.start(t, false)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	id, err := alice.app.BeginKeygen(ctx, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	waitPending(t, ctx, bob, id)
	if by := ruleInputs(t, ctx, bob, id); len(by) != 0 {
		t.Fatalf("accepted by %q with an unverified party", by)
	}
}

// auto_approve keeps its meaning beside rules: every proposal and request
// is approved, recorded as by signing.auto_approve.
func TestAutoApproveStillApprovesEverything(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	bob := nodes[1]
	bob.configure = func(c *Config) { c.SigningRules = mustRules(t, SigningRuleSpec{Requester: "carol"}) }
	for _, nd := range nodes {
		nd.start(t, nd == bob)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// Carol's person accepts the keygen and never answers a request.
	answerSome(ctx, nodes[2], func(ar event.ApprovalRequested) (bool, bool, string) { return ar.Kind == "keygen", true, "" })
	kr := keygenAll(t, ctx, nodes)
	if by := ruleInputs(t, ctx, bob, kr.Ceremony); fmt.Sprint(by) != "[signing.auto_approve]" {
		t.Fatalf("bob's keygen acceptance by %q", by)
	}
	sr, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("anything"), "")
	if err != nil {
		t.Fatal(err)
	}
	if by := ruleInputs(t, ctx, bob, sr.ID); fmt.Sprint(by) != "[signing.auto_approve]" {
		t.Fatalf("bob's approval by %q", by)
	}
}

// A rule approves a request when it arrives, not one restored at start:
// that one was seen before without a rule approving it, and waits for a
// person.
func TestRuleLeavesARestoredRequestToAPerson(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	alice, bob := nodes[0], nodes[1]
	keygenRules, err := CompileKeygenRules([]KeygenRuleSpec{{VerifiedParties: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		nd.configure = func(c *Config) { c.KeygenRules = keygenRules }
		nd.start(t, false)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	id, err := alice.app.BeginSignature(ctx, kr.KeyID, []byte("release v1"), "", true)
	if err != nil {
		t.Fatal(err)
	}
	waitPending(t, ctx, bob, id)
	// Bob restarts with a rule that matches the request.
	bob.stop()
	bob.configure = func(c *Config) {
		c.KeygenRules = keygenRules
		c.SigningRules = mustRules(t, SigningRuleSpec{Requester: "alice"})
	}
	bob.start(t, false)
	waitPending(t, ctx, bob, id)
	if by := ruleInputs(t, ctx, bob, id); len(by) != 0 {
		t.Fatalf("the restored request was approved by %q", by)
	}
	// A new request from alice is approved by the rule.
	sr, err := alice.app.RequestSignature(ctx, kr.KeyID, []byte("release v2"), "")
	if err != nil {
		t.Fatal(err)
	}
	if by := ruleInputs(t, ctx, bob, sr.ID); fmt.Sprint(by) != "[signing.rule[0]]" {
		t.Fatalf("bob's approval by %q", by)
	}
	// A rule without max_per_hour keeps no count (it would only grow).
	var counted int
	if err := bob.app.do(ctx, func() { counted = len(bob.app.uses) }); err != nil {
		t.Fatal(err)
	}
	if counted != 0 {
		t.Fatalf("%d counts kept for a rule without a limit", counted)
	}
}
