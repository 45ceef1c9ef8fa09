package core

import (
	"context"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core/event"
)

func TestParseByReadsUserSSHClientAndRule(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, by, user, ssh, rule string
	}{
		{"own screen", "", "", "", ""},
		{"socket", "socket uid=1000 user=ops pid=4242", "ops", "", ""},
		{"socket over ssh", "socket uid=1000 user=ops pid=4242 ssh_client=192.0.2.7:52722", "ops", "192.0.2.7:52722", ""},
		{"ipv6 client", "socket uid=0 user=root pid=1 ssh_client=[2001:db8::7]:22", "root", "[2001:db8::7]:22", ""},
		{"peer unknown over ssh", "socket (peer unknown) ssh_client=10.0.0.5:2222", "", "10.0.0.5:2222", ""},
		{"signing rule", "signing.rule[0]", "", "", "signing.rule[0]"},
		{"keygen rule", "keygen.rule[3]", "", "", "keygen.rule[3]"},
		{"auto approve", "signing.auto_approve", "", "", "signing.auto_approve"},
		{"first of repeated fields", "user=a user=b ssh_client=1.2.3.4:5 ssh_client=6.7.8.9:10", "a", "1.2.3.4:5", ""},
		{"empty values", "socket user= ssh_client=", "", "", ""},
		{"not a rule", "signing.rules", "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			user, ssh, rule := ParseBy(c.by)
			if user != c.user || ssh != c.ssh || rule != c.rule {
				t.Fatalf("ParseBy(%q) = %q, %q, %q; want %q, %q, %q", c.by, user, ssh, rule, c.user, c.ssh, c.rule)
			}
		})
	}
}

// answerAs answers every approval request on nd's bus as by says: keygen
// proposals accepted, signing requests approved or declined, recorded as
// given by by.
func answerAs(ctx context.Context, nd *node, sign func(text string) (answer, yes bool, by string)) {
	sub := nd.bus.Subscribe(0)
	go func() {
		defer sub.Close()
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return
			}
			ar, ok := e.(event.ApprovalRequested)
			if !ok {
				continue
			}
			id, err := ParseID(ar.ID)
			if err != nil {
				continue
			}
			if ar.Kind == "keygen" {
				nd.app.Approve(ctx, id)
				continue
			}
			switch answer, yes, by := sign(ar.Text); {
			case !answer:
			case yes:
				nd.app.ApproveAs(ctx, id, by)
			default:
				nd.app.DeclineAs(ctx, id, "no", by)
			}
		}
	}()
}

// signDoneOf waits for the SignDone of the request whose message is msg.
func signDoneOf(t *testing.T, ctx context.Context, sub *event.Subscription, msg string) event.SignDone {
	t.Helper()
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no result for %q: %v", msg, err)
		}
		if d, ok := e.(event.SignDone); ok && d.Message == hex.EncodeToString([]byte(msg)) {
			return d
		}
	}
}

// A live result says who answered: this console's own answer with the
// user and SSH client (or rule) it came from, and the others' approvals
// and declines as this console saw them.
func TestSignDoneSaysWhoApproved(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, nd := range nodes {
		nd.start(t, false)
	}
	const bobBy = "socket uid=1000 user=ops pid=7 ssh_client=10.0.0.5:2222"
	answerAs(ctx, nodes[1], func(text string) (bool, bool, string) { return true, text == "approve me", bobBy })
	answerAs(ctx, nodes[2], func(text string) (bool, bool, string) {
		return text == "decline me", false, "socket uid=1001 user=dev pid=8"
	})
	kr := keygenAll(t, ctx, nodes)
	subs := make([]*event.Subscription, len(nodes))
	for i, nd := range nodes {
		subs[i] = nd.bus.Subscribe(64)
		defer subs[i].Close()
	}
	approved := func(name string) event.Approval { return event.Approval{Signer: name, Decision: "approved"} }
	declined := func(name string) event.Approval { return event.Approval{Signer: name, Decision: "declined"} }

	// Bob approves through the socket over SSH; carol does not answer.
	if _, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("approve me"), ""); err != nil {
		t.Fatal(err)
	}
	bobs := approved("bob")
	bobs.User, bobs.SSHClient = "ops", "10.0.0.5:2222"
	if got, want := signDoneOf(t, ctx, subs[0], "approve me").Approvals, []event.Approval{approved("alice"), approved("bob")}; !slices.Equal(got, want) {
		t.Errorf("alice's result: %+v, want %+v", got, want)
	}
	if got, want := signDoneOf(t, ctx, subs[1], "approve me").Approvals, []event.Approval{approved("alice"), bobs}; !slices.Equal(got, want) {
		t.Errorf("bob's result: %+v, want %+v", got, want)
	}

	// Both decline: the request fails once both declines are in, and each
	// console says who declined.
	_, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("decline me"), "")
	if err == nil {
		t.Fatal("a request both others declined was signed")
	}
	bobNo := declined("bob")
	bobNo.User, bobNo.SSHClient = "ops", "10.0.0.5:2222"
	carolNo := declined("carol")
	carolNo.User = "dev"
	if got, want := signDoneOf(t, ctx, subs[0], "decline me").Approvals, []event.Approval{approved("alice"), declined("bob"), declined("carol")}; !slices.Equal(got, want) {
		t.Errorf("alice's result: %+v, want %+v", got, want)
	}
	if got, want := signDoneOf(t, ctx, subs[1], "decline me").Approvals, []event.Approval{bobNo, declined("carol")}; !slices.Equal(got, want) {
		t.Errorf("bob's result: %+v, want %+v", got, want)
	}
	if got, want := signDoneOf(t, ctx, subs[2], "decline me").Approvals, []event.Approval{declined("bob"), carolNo}; !slices.Equal(got, want) {
		t.Errorf("carol's result: %+v, want %+v", got, want)
	}
}
