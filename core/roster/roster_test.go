package roster

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls/dkg"
)

func card(name, account string, seed byte) Card {
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
	ik := append([]byte{5}, bytes.Repeat([]byte{seed}, 32)...)
	return Card{Name: name, Account: account, Device: 2, IdentityKey: ik, ConsoleKey: k.Public().(ed25519.PublicKey)}
}

func TestCardRoundTripsThroughJSONWithItsFingerprint(t *testing.T) {
	t.Parallel()
	c := card("alice", "0d5c2d1e-1111-4000-8000-000000000001", 1)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCard(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.sameKeys(&c) || got.Name != "alice" {
		t.Fatalf("round trip: %+v", got)
	}
	fp := c.Fingerprint()
	if len(strings.Fields(fp)) != 12 || len(fp) != 12*5+11 {
		t.Fatalf("fingerprint %q is not 12 groups of 5 digits", fp)
	}
	other := card("alice", c.Account, 2)
	if other.Fingerprint() == fp {
		t.Fatal("different keys, same fingerprint")
	}
	renamed := c
	renamed.Name = "alicia"
	if renamed.Fingerprint() != fp {
		t.Fatal("the local name changed the fingerprint")
	}
}

func TestMalformedCardsAreRefused(t *testing.T) {
	t.Parallel()
	c := card("bob", "acct-b", 3)
	good, _ := json.Marshal(c)
	tampered := bytes.Replace(good, []byte(`"fingerprint":"`), []byte(`"fingerprint":"1`), 1)
	cases := map[string][]byte{
		"not json":           []byte("{"),
		"unknown field":      bytes.Replace(good, []byte(`{"version"`), []byte(`{"extra":1,"version"`), 1),
		"wrong version":      bytes.Replace(good, []byte(`"version":1`), []byte(`"version":2`), 1),
		"edited fingerprint": tampered,
		"trailing data":      append(append([]byte{}, good...), []byte(" {}")...),
		"huge":               bytes.Repeat([]byte(" "), 5000),
	}
	for name, b := range cases {
		if _, err := ParseCard(b); !errors.Is(err, ErrCard) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	bad := []func(*Card){
		func(c *Card) { c.Name = "" },
		func(c *Card) { c.Name = "al ice" },
		func(c *Card) { c.Name = "\x1b[31m" },
		func(c *Card) { c.Device = 0 },
		func(c *Card) { c.IdentityKey = c.IdentityKey[1:] },
		func(c *Card) { c.ConsoleKey = c.ConsoleKey[:31] },
		func(c *Card) { c.Account = "a\nb" },
	}
	for i, mut := range bad {
		x := card("carol", "acct-c", 4)
		mut(&x)
		if err := x.Validate(); !errors.Is(err, ErrCard) {
			t.Errorf("case %d: err = %v", i, err)
		}
	}
}

func TestChangedKeysBlockTheSignerUntilVerified(t *testing.T) {
	t.Parallel()
	var r Roster
	a := card("alice", "acct-a", 1)
	b := card("bob", "acct-b", 2)
	if err := r.Add(a, true); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(b, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(b, false); err != nil {
		t.Fatalf("adding the same card again: %v", err)
	}
	parties, err := r.Parties()
	if err != nil || len(parties) != 2 || parties[0].Account != "acct-a" {
		t.Fatalf("parties %v %v", parties, err)
	}
	prop := &dkg.Proposal{Threshold: 2, Parties: parties, RoundTimeout: time.Minute, Initiator: 1}
	if err := r.Trust(prop); err != nil {
		t.Fatalf("trust of the pinned roster: %v", err)
	}

	relinked := card("bob", "acct-b", 9) // bob's console reinstalled: new keys
	if err := r.Add(relinked, false); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("changed keys: err = %v", err)
	}
	if _, err := r.Parties(); !errors.Is(err, ErrKeyChanged) {
		t.Fatalf("parties with a blocked signer: %v", err)
	}
	if err := r.Trust(prop); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("trust with a blocked signer: %v", err)
	}
	if err := r.Verify("bob"); err != nil {
		t.Fatal(err)
	}
	m, _ := r.Lookup("bob")
	if !m.Verified || m.Blocked() || !bytes.Equal(m.Card.ConsoleKey, relinked.ConsoleKey) {
		t.Fatalf("after verify: %+v", m)
	}
	// The old roster's keys are no longer trusted.
	if err := r.Trust(prop); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("trust of stale keys: %v", err)
	}
}

func TestTrustRefusesStrangersAndNameClashes(t *testing.T) {
	t.Parallel()
	var r Roster
	r.Add(card("alice", "acct-a", 1), true)
	stranger := card("mallory", "acct-m", 7)
	prop := &dkg.Proposal{Threshold: 1, Parties: []dkg.Party{{Account: stranger.Account, Device: 2, IdentityKey: stranger.IdentityKey, ConsoleKey: stranger.ConsoleKey}}, RoundTimeout: time.Minute, Initiator: 1}
	if err := r.Trust(prop); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("stranger trusted: %v", err)
	}
	if err := r.Add(card("alice", "acct-z", 5), false); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("name clash: %v", err)
	}
	if err := r.Verify("nobody"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("verify unknown: %v", err)
	}
}

func FuzzParseCard(f *testing.F) {
	good, _ := json.Marshal(card("alice", "acct-a", 1))
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCard(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("parsed card does not marshal: %v", err)
		}
		c2, err := ParseCard(again)
		if err != nil || !c2.sameKeys(c) || c2.Name != c.Name {
			t.Fatalf("card does not round-trip: %v", err)
		}
	})
}
