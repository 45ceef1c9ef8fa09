package core

import (
	"bytes"
	"testing"

	"github.com/signal-mpc/cosigner/core/roster"
)

// A console's own card is signed; its serial stays while the addresses do
// and goes up when they change (a server added), so that every card it
// hands out replaces the ones before it on the other consoles, never the
// reverse.
func TestOwnCardSerialGoesUpWhenTheAddressesChange(t *testing.T) {
	t.Parallel()
	v := newMemVault()
	key, err := ConsoleKey(t.Context(), v)
	if err != nil {
		t.Fatal(err)
	}
	ident := func(i byte) []byte { return append([]byte{5}, bytes.Repeat([]byte{i}, 32)...) }
	a := roster.Address{Server: "https://a.example", Account: "acct-a", Device: 2, IdentityKey: ident(1)}
	b := roster.Address{Server: "https://b.example", Account: "acct-b", Device: 3, IdentityKey: ident(2)}
	var r roster.Roster
	for i, tc := range []struct {
		addrs  []roster.Address
		serial uint64
	}{
		{[]roster.Address{a}, 1},
		{[]roster.Address{a}, 1},    // started again: the same card
		{[]roster.Address{a, b}, 2}, // a server added
		{[]roster.Address{a, b}, 2},
		{[]roster.Address{a}, 3}, // and removed
	} {
		c, err := OwnCard(t.Context(), v, "alice", key, tc.addrs)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if !c.Signed() || c.Serial != tc.serial || len(c.Addresses) != len(tc.addrs) {
			t.Fatalf("step %d: serial %d with %d addresses, want serial %d", i, c.Serial, len(c.Addresses), tc.serial)
		}
		// Another console takes each newer card over the one before.
		if err := r.Add(c, true); err != nil {
			t.Fatalf("step %d: the card does not replace the one before: %v", i, err)
		}
	}
}
