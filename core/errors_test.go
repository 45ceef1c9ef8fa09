package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/core/event"
)

// The waiter of a ceremony that ended without a result gets an error that
// says why with a sentinel and names the parties: what the headless
// commands turn into exit codes.
func TestFailedCeremoniesSayWhyWithSentinels(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	declineKeygen := make(chan bool, 1)
	declineKeygen <- true
	for _, nd := range nodes {
		nd.start(t, false)
		approvals(ctx, nd, func(ar event.ApprovalRequested) (bool, string) {
			if ar.Kind == "keygen" {
				if nd.name != "bob" {
					return true, ""
				}
				select {
				case <-declineKeygen:
					return false, "wrong roster"
				default:
					return true, ""
				}
			}
			return false, "not today"
		})
	}
	// Bob declines the first proposal.
	_, err := nodes[0].app.StartKeygen(ctx, 2)
	var ke *KeygenError
	if !errors.As(err, &ke) || !errors.Is(err, ErrDeclined) || errors.Is(err, ErrBlamed) || !errors.Is(err, dkg.ErrAborted) {
		t.Fatalf("declined keygen: %v", err)
	}
	if fmt.Sprint(ke.Blamed) != "[bob]" || ke.By != "bob" || !ke.Remote || ke.Reason != dkg.ReasonDeclined {
		t.Fatalf("declined keygen: %+v", ke)
	}
	// The engine's "party 2" reads as the roster's name.
	if !strings.Contains(err.Error(), "by bob: declined") || !strings.Contains(err.Error(), "bob aborted: wrong roster") {
		t.Fatalf("declined keygen says %q", err)
	}
	kr := keygenAll(t, ctx, nodes)
	// Bob and carol decline the request: no signature is possible.
	_, err = nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("no"), "")
	var se *SignError
	if !errors.As(err, &se) || !errors.Is(err, ErrDeclined) || errors.Is(err, ErrExpired) || errors.Is(err, ErrBlamed) {
		t.Fatalf("declined request: %v", err)
	}
	if fmt.Sprint(se.Declined) != "[bob carol]" || len(se.Blamed) != 0 || se.Expired {
		t.Fatalf("declined request: %+v", se)
	}
}

func TestSignErrorClassesAndKeygenErrorText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"expired", &SignError{Reason: "expired", Expired: true, Declined: []string{"bob"}}, ErrExpired},
		{"declined", &SignError{Reason: "declined", Declined: []string{"bob", "carol"}}, ErrDeclined},
		{"a blamed party wins over the expiry", &SignError{Reason: "expired", Expired: true, Blamed: []string{"bob"}}, ErrBlamed},
		{"a combination failure is no class", &SignError{Reason: "combine"}, nil},
		{"equivocation is blame", &KeygenError{Abort: &dkg.AbortError{Reason: dkg.ReasonEquivocation, Blamed: []uint32{2}}}, ErrBlamed},
		{"a bad justification is blame", &KeygenError{Abort: &dkg.AbortError{Reason: dkg.ReasonBadJustification, Blamed: []uint32{2}}}, ErrBlamed},
		{"a peer's unproven accusation is not", &KeygenError{Abort: &dkg.AbortError{Reason: dkg.ReasonEquivocation, By: 3, Claimed: []uint32{2}}}, nil},
		{"a round deadline is an expiry", &KeygenError{Reason: dkg.ReasonTimeout, Abort: &dkg.AbortError{Reason: dkg.ReasonTimeout}}, ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range []error{ErrDeclined, ErrExpired, ErrBlamed} {
				if got := errors.Is(tt.err, s); got != (s == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v", tt.err, s, got)
				}
			}
		})
	}
	// A peer's detail cannot put escape sequences on a terminal.
	e := &KeygenError{By: "bob", Blamed: []string{"carol"}, Reason: dkg.ReasonEquivocation,
		Abort: &dkg.AbortError{Reason: dkg.ReasonEquivocation, Detail: "x\x1b[2Jy\nz", Evidence: [][]byte{{1}, {2}}}}
	if s := e.Error(); strings.ContainsAny(s, "\x1b\n") || !strings.Contains(s, "blaming carol (2 signed messages as evidence)") {
		t.Fatalf("keygen error text %q", s)
	}
	e = &KeygenError{By: "carol", Claimed: []string{"bob"}, Reason: dkg.ReasonInvalidDeal, Remote: true,
		Abort: &dkg.AbortError{Reason: dkg.ReasonInvalidDeal, By: 3, Claimed: []uint32{2}}}
	if s := e.Error(); !strings.Contains(s, "by carol: invalid deal, accusing bob without proof") || strings.Contains(s, "blaming") {
		t.Fatalf("unproven accusation text %q", s)
	}
}

func TestEngineDetailsReadWithTheRosterNames(t *testing.T) {
	t.Parallel()
	names := map[uint32]string{1: "alice", 2: "bob", 3: "carol"}
	name := func(j uint32) (string, bool) { n, ok := names[j]; return n, ok }
	tests := []struct{ detail, want string }{
		{"no accept message from party 2, 3 before the deadline", "no accept message from bob and carol before the deadline"},
		{"no echo message from party 1, 2, 3 before the deadline", "no echo message from alice, bob and carol before the deadline"},
		{"no deal message from party 3 before the deadline", "no deal message from carol before the deadline"},
		{"party 2 relayed an invalid deal for party 3", "bob relayed an invalid deal for carol"},
		{"party 2 aborted: party 9 is unknown", "bob aborted: party 9 is unknown"},
		{"no accept message from party 2, 9 before the deadline", "no accept message from party 2, 9 before the deadline"},
		{"nothing to name", "nothing to name"},
	}
	for _, tt := range tests {
		if got := nameParties(tt.detail, name); got != tt.want {
			t.Errorf("nameParties(%q) = %q, want %q", tt.detail, got, tt.want)
		}
	}
}
