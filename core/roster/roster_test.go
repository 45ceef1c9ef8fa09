package roster

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
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
	if !got.sameContent(&c) || got.Name != "alice" {
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
	v2, _ := json.Marshal(signed(f, "alice", 7, 1, addr(relayA, "acct-a", 1), addr(relayB, "acct-b", 2)))
	f.Add(v2)
	f.Add([]byte(`{"version":2,"addresses":[{}]}`))
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
		if err != nil || !c2.sameContent(c) || c2.Name != c.Name || c2.Fingerprint() != c.Fingerprint() {
			t.Fatalf("card does not round-trip: %v", err)
		}
	})
}

// v1 is a version 1 card at one address (no server) with the console key
// of keySeed.
func v1(name, account string, idSeed, keySeed byte) Card {
	a := addr("", account, idSeed)
	return Card{Name: name, Account: a.Account, Device: a.Device, IdentityKey: a.IdentityKey, ConsoleKey: consoleKey(keySeed).Public().(ed25519.PublicKey)}
}

func TestCardVersionsAndAddressesFollowTheRules(t *testing.T) {
	t.Parallel()
	a1, a2, a3 := addr(relayA, "acct-a", 1), addr(relayB, "acct-a-b", 2), addr(relayC, "acct-a-c", 3)
	bob := addr(relayB, "acct-b", 7)
	cases := []struct {
		name    string
		pinned  []Card // added in order, verified
		add     Card
		wantErr error
		// what alice's member looks like afterwards
		wantSerial  uint64
		wantAddrs   int
		wantBlocked bool
		wantVerif   bool
	}{
		{name: "a new signed card is trusted on first use",
			add: signed(t, "alice", 1, 1, a1, a2), wantSerial: 1, wantAddrs: 2},
		{name: "a newer card adds a server without a new verification",
			pinned: []Card{signed(t, "alice", 1, 1, a1)}, add: signed(t, "alice", 2, 1, a1, a2),
			wantSerial: 2, wantAddrs: 2, wantVerif: true},
		{name: "a newer card may drop a server",
			pinned: []Card{signed(t, "alice", 1, 1, a1, a2)}, add: signed(t, "alice", 2, 1, a2),
			wantSerial: 2, wantAddrs: 1, wantVerif: true},
		{name: "an older card never replaces a newer one",
			pinned: []Card{signed(t, "alice", 2, 1, a1, a2)}, add: signed(t, "alice", 1, 1, a1),
			wantErr: ErrStaleCard, wantSerial: 2, wantAddrs: 2, wantVerif: true},
		{name: "a version 1 card never replaces a signed one",
			pinned: []Card{signed(t, "alice", 1, 1, a1)}, add: v1("alice", "acct-a", 1, 1),
			wantErr: ErrStaleCard, wantSerial: 1, wantAddrs: 1, wantVerif: true},
		{name: "the same serial with other content is refused",
			pinned: []Card{signed(t, "alice", 2, 1, a1)}, add: signed(t, "alice", 2, 1, a1, a3),
			wantErr: ErrCardConflict, wantSerial: 2, wantAddrs: 1, wantVerif: true},
		{name: "the same card again only renames",
			pinned: []Card{signed(t, "alice", 2, 1, a1, a2)}, add: signed(t, "alice", 2, 1, a1, a2),
			wantSerial: 2, wantAddrs: 2, wantVerif: true},
		{name: "a changed identity key at a pinned address blocks",
			pinned: []Card{signed(t, "alice", 1, 1, a1, a2)}, add: signed(t, "alice", 2, 1, a1, addr(relayB, "acct-a-b", 9)),
			wantErr: ErrKeyChanged, wantSerial: 1, wantAddrs: 2, wantBlocked: true, wantVerif: true},
		{name: "a version 1 card upgrades to a signed one from the same console key",
			pinned: []Card{v1("alice", "acct-a", 1, 1)}, add: signed(t, "alice", 1, 1, a1, a2),
			wantSerial: 1, wantAddrs: 2, wantVerif: true},
		{name: "a version 1 card's changed identity key blocks, as before",
			pinned: []Card{v1("alice", "acct-a", 1, 1)}, add: v1("alice", "acct-a", 9, 1),
			wantErr: ErrKeyChanged, wantAddrs: 1, wantBlocked: true, wantVerif: true},
		{name: "a signed upgrade with another identity key at the old address blocks",
			pinned: []Card{v1("alice", "acct-a", 1, 1)}, add: signed(t, "alice", 1, 1, addr(relayA, "acct-a", 9)),
			wantErr: ErrKeyChanged, wantAddrs: 1, wantBlocked: true, wantVerif: true},
		{name: "another console key at a second-server address blocks its holder",
			pinned: []Card{signed(t, "alice", 1, 1, a1, a2)}, add: signed(t, "mallory", 5, 6, addr(relayC, "acct-m", 6), a2),
			wantErr: ErrKeyChanged, wantSerial: 1, wantAddrs: 2, wantBlocked: true, wantVerif: true},
		{name: "a card listing another signer's address is refused",
			pinned: []Card{signed(t, "alice", 1, 1, a1), signed(t, "bob", 1, 7, bob)}, add: signed(t, "alice", 2, 1, a1, bob),
			wantErr: ErrAddressTaken, wantSerial: 1, wantAddrs: 1, wantVerif: true},
		{name: "an address on a server nobody here uses is accepted",
			pinned: []Card{signed(t, "alice", 1, 1, a1)}, add: signed(t, "alice", 2, 1, a1, addr("https://elsewhere.example", "x", 4)),
			wantSerial: 2, wantAddrs: 2, wantVerif: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r Roster
			for _, c := range tc.pinned {
				if err := r.Add(c, true); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := r.MarshalJSON()
			err := r.Add(tc.add, false)
			if tc.wantErr == nil && err != nil || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Add: err = %v, want %v", err, tc.wantErr)
			}
			if after, _ := r.MarshalJSON(); err != nil && !errors.Is(err, ErrKeyChanged) && !bytes.Equal(before, after) {
				t.Fatalf("a refused card changed the roster:\n%s\n%s", before, after)
			}
			m, ok := r.ByConsoleKey(consoleKey(1).Public().(ed25519.PublicKey))
			if !ok {
				t.Fatal("alice is not in the roster")
			}
			if m.Card.Serial != tc.wantSerial || len(m.Card.Addrs()) != tc.wantAddrs || m.Blocked() != tc.wantBlocked || m.Verified != tc.wantVerif {
				t.Fatalf("alice: serial %d, %d addresses, blocked %v, verified %v", m.Card.Serial, len(m.Card.Addrs()), m.Blocked(), m.Verified)
			}
			if tc.wantBlocked {
				if err := r.Verify("alice"); err != nil {
					t.Fatal(err)
				}
				m, _ = r.Lookup(tc.add.Name)
				if m == nil || m.Blocked() || !m.Card.sameContent(&tc.add) {
					t.Fatalf("after verify: %+v", m)
				}
			}
		})
	}
}

// A changed card held for verification may clash with cards pinned since:
// verifying it then changes nothing.
func TestVerifyingACardThatWouldMakeTwoSignersOfOneIsRefused(t *testing.T) {
	t.Parallel()
	a1, c3 := addr(relayA, "acct-a", 1), addr(relayC, "acct-c", 3)
	for _, tc := range []struct {
		name    string
		pending Card // offered while alice holds a1
		later   Card // pinned after it
	}{
		{"an address", signed(t, "alice", 1, 9, a1, c3), signed(t, "carol", 1, 3, c3)},
		{"a console key", signed(t, "alice", 1, 9, a1), signed(t, "carol", 1, 9, c3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r Roster
			if err := r.Add(signed(t, "alice", 1, 1, a1), true); err != nil {
				t.Fatal(err)
			}
			if err := r.Add(tc.pending, false); !errors.Is(err, ErrKeyChanged) {
				t.Fatalf("changed card: %v", err)
			}
			if err := r.Add(tc.later, false); err != nil {
				t.Fatal(err)
			}
			before, _ := r.MarshalJSON()
			if err := r.Verify("alice"); !errors.Is(err, ErrAddressTaken) {
				t.Fatalf("Verify = %v, want ErrAddressTaken", err)
			}
			if after, _ := r.MarshalJSON(); !bytes.Equal(before, after) {
				t.Fatal("a refused verification changed the roster")
			}
		})
	}
}

func TestAMemberIsFoundByAnyOfItsAddresses(t *testing.T) {
	t.Parallel()
	var r Roster
	alice := signed(t, "alice", 1, 1, addr(relayA, "acct-a", 1), addr(relayB, "acct-a-b", 2))
	carol := v1("carol", "acct-c", 3, 3) // made before servers were named
	for _, c := range []Card{alice, carol} {
		if err := r.Add(c, true); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		legacy, server, account string
		want                    string
	}{
		{"", relayA, "acct-a", "alice"},
		{"", relayB, "acct-a-b", "alice"},
		{"", relayA, "acct-a-b", ""}, // that account is alice's on relay B only
		{"", relayC, "acct-a", ""},
		{"", "", "acct-a", ""}, // a lookup names its server
		{"", relayA, "acct-c", "carol"},
		{"", relayB, "acct-c", "carol"}, // one server: a version 1 address is on it
		{relayA, relayA, "acct-c", "carol"},
		{relayA, relayB, "acct-c", ""}, // several: only on the one it was made on
	}
	for _, c := range cases {
		r.SetLegacyServer(c.legacy)
		got := ""
		if m, ok := r.ByAddress(c.server, c.account, 2); ok {
			got = m.Card.Name
		}
		if got != c.want {
			t.Errorf("legacy %q: ByAddress(%q, %q) = %q, want %q", c.legacy, c.server, c.account, got, c.want)
		}
	}
	if n := r.NameOf("acct-a-b", 2); n != "alice" {
		t.Errorf("NameOf a second address = %q", n)
	}
	parties, err := r.Parties()
	if err != nil || len(parties) != 2 || parties[0].Account != "acct-a" {
		t.Fatalf("parties %+v %v", parties, err)
	}
	// A proposal may name a party by its address on any server.
	second := parties[0]
	second.Account, second.IdentityKey = "acct-a-b", alice.Addresses[1].IdentityKey
	if err := r.Trust(&dkg.Proposal{Threshold: 1, Parties: []dkg.Party{second}, RoundTimeout: time.Minute, Initiator: 1}); err != nil {
		t.Fatalf("trust of a second address: %v", err)
	}
	second.IdentityKey = alice.Addresses[0].IdentityKey
	if err := r.Trust(&dkg.Proposal{Threshold: 1, Parties: []dkg.Party{second}, RoundTimeout: time.Minute, Initiator: 1}); !errors.Is(err, ErrNotTrusted) {
		t.Fatalf("trust of another address's identity key: %v", err)
	}
}

func TestStoredRostersOfBothCardVersionsLoad(t *testing.T) {
	t.Parallel()
	// A roster as stored before signed cards existed.
	const old = `[{"card":{"version":1,"name":"alice","account":"0d5c2d1e-1111-4000-8000-000000000001","device":2,"identity_key":"BQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB","console_key":"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=","fingerprint":"43498 91302 82710 37037 34124 02435 39542 96326 69670 51214 42083 24936"},"verified":true}]`
	var r Roster
	if err := json.Unmarshal([]byte(old), &r); err != nil {
		t.Fatal(err)
	}
	if b, err := json.Marshal(&r); err != nil || string(b) != old {
		t.Fatalf("old roster written back as %s, %v", b, err)
	}
	bob := signed(t, "bob", 3, 2, addr(relayA, "acct-b", 2), addr(relayB, "acct-b2", 3))
	if err := r.Add(bob, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(signed(t, "bob", 4, 2, addr(relayA, "acct-b", 2), addr(relayB, "acct-b2", 9)), false); !errors.Is(err, ErrKeyChanged) {
		t.Fatal(err)
	}
	b, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	var again Roster
	if err := json.Unmarshal(b, &again); err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(r.Members(), again.Members(), func(a, b Member) bool {
		return a.Card.sameContent(&b.Card) && a.Card.Name == b.Card.Name && a.Verified == b.Verified && (a.Pending == nil) == (b.Pending == nil)
	}) {
		t.Fatalf("mixed roster does not round-trip: %s", b)
	}
	// A stored card whose signature no longer matches is refused.
	bad := bytes.Replace(b, []byte(`"serial":3`), []byte(`"serial":5`), 1)
	if err := json.Unmarshal(bad, &again); !errors.Is(err, ErrCard) {
		t.Fatalf("tampered stored card: %v", err)
	}
}
