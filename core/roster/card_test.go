package roster

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
)

const (
	relayA = "https://relay-a.example"
	relayB = "https://relay-b.example:8443"
	relayC = "https://relay-c.example"
)

func consoleKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
}

func addr(server, account string, idSeed byte) Address {
	return Address{Server: server, Account: account, Device: 2, IdentityKey: append([]byte{5}, bytes.Repeat([]byte{idSeed}, 32)...)}
}

func signed(t testing.TB, name string, serial uint64, keySeed byte, addrs ...Address) Card {
	t.Helper()
	c, err := SignCard(name, serial, consoleKey(keySeed), addrs)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVersion1CardsKeepTheirFingerprintAndJSON(t *testing.T) {
	t.Parallel()
	// Written by the code before signed cards existed.
	const old = `{"version":1,"name":"alice","account":"0d5c2d1e-1111-4000-8000-000000000001","device":2,"identity_key":"BQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB","console_key":"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=","fingerprint":"43498 91302 82710 37037 34124 02435 39542 96326 69670 51214 42083 24936"}`
	c, err := ParseCard([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if c.Signed() || len(c.Addrs()) != 1 || c.Addrs()[0].Server != "" {
		t.Fatalf("version 1 card read as %+v", c)
	}
	b, err := json.Marshal(c)
	if err != nil || string(b) != old {
		t.Fatalf("version 1 card written as %s, %v", b, err)
	}
}

func TestSignedCardRoundTripsAndItsFingerprintIsTheConsoleKey(t *testing.T) {
	t.Parallel()
	c := signed(t, "alice", 3, 1, addr(relayA, "acct-a", 1), addr(relayB, "acct-a2", 2))
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"version":2`)) {
		t.Fatalf("signed card written as %s", b)
	}
	got, err := ParseCard(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.sameContent(&c) || got.Name != "alice" || got.Account != "acct-a" || !bytes.Equal(got.Signature, c.Signature) {
		t.Fatalf("round trip: %+v", got)
	}
	more := signed(t, "alice", 4, 1, addr(relayA, "acct-a", 1), addr(relayB, "acct-a2", 2), addr(relayC, "acct-a3", 3))
	if more.Fingerprint() != c.Fingerprint() {
		t.Fatal("a new address changed the fingerprint: the console key signs it, no new comparison is due")
	}
	if other := signed(t, "alice", 3, 2, c.Addresses...); other.Fingerprint() == c.Fingerprint() {
		t.Fatal("another console key, same fingerprint")
	}
	v1 := Card{Name: "alice", Account: "acct-a", Device: 2, IdentityKey: c.IdentityKey, ConsoleKey: c.ConsoleKey}
	if v1.Fingerprint() == c.Fingerprint() {
		t.Fatal("a version 1 card's fingerprint must cover its identity key, not only the console key")
	}
}

func TestMalformedSignedCardsAreRefused(t *testing.T) {
	t.Parallel()
	c := signed(t, "alice", 2, 1, addr(relayA, "acct-a", 1), addr(relayB, "acct-b", 2))
	good, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) []byte {
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("%q not in %s", old, good)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	nine := make([]Address, 9)
	for i := range nine {
		nine[i] = addr("https://r"+string(rune('a'+i))+".example", "acct", 1)
	}
	many := c
	many.Addresses = nine
	manyJSON, _ := json.Marshal(cardV2JSON{Version: 2, Name: "alice", Serial: 2, ConsoleKey: "x", Signature: "x", Addresses: make([]addressJSON, 9)})
	noAddresses := withKey(c, consoleKey(1))
	noAddresses.Addresses = nil
	cases := map[string][]byte{
		"address edited after signing":  edit(`"account":"acct-b"`, `"account":"acct-x"`),
		"server edited after signing":   edit(relayB, "https://relay-x.example"),
		"serial edited after signing":   edit(`"serial":2`, `"serial":3`),
		"serial 0":                      edit(`"serial":2`, `"serial":0`),
		"no addresses":                  mustJSON(t, noAddresses),
		"unknown field":                 edit(`{"version":2`, `{"extra":1,"version":2`),
		"edited fingerprint":            edit(`"fingerprint":"`, `"fingerprint":"1`),
		"signature not base64":          edit(`"signature":"`, `"signature":"*`),
		"non-canonical server":          edit(relayA, "https://Relay-A.example/"),
		"trailing data":                 append(append([]byte{}, good...), " {}"...),
		"too many addresses":            manyJSON,
		"version 3":                     edit(`"version":2`, `"version":3`),
		"version 1 with a signed body":  edit(`"version":2`, `"version":1`),
		"version as a string":           edit(`"version":2`, `"version":"2"`),
		"signature of another card key": mustJSON(t, withKey(c, consoleKey(9))),
	}
	for name, b := range cases {
		if _, err := ParseCard(b); !errors.Is(err, ErrCard) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	bad := map[string]func(*Card){
		"first address not the account fields": func(c *Card) { c.Account = "acct-z" },
		"two addresses on one server":          func(c *Card) { c.Addresses[1].Server = relayA },
		"no server":                            func(c *Card) { c.Addresses[1].Server = "" },
		"device 0 at the second address":       func(c *Card) { c.Addresses[1].Device = 0 },
		"short identity key":                   func(c *Card) { c.Addresses[1].IdentityKey = c.Addresses[1].IdentityKey[1:] },
		"too many addresses":                   func(c *Card) { c.Addresses = many.Addresses },
		"unsigned with addresses":              func(c *Card) { c.Serial = 0 },
		"unsigned with a signature":            func(c *Card) { c.Serial, c.Addresses = 0, nil },
		"signature cut":                        func(c *Card) { c.Signature = c.Signature[:10] },
	}
	for name, mut := range bad {
		x := signed(t, "alice", 2, 1, addr(relayA, "acct-a", 1), addr(relayB, "acct-b", 2))
		mut(&x)
		if err := x.Validate(); !errors.Is(err, ErrCard) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := SignCard("alice", 0, consoleKey(1), []Address{addr(relayA, "a", 1)}); !errors.Is(err, ErrCard) {
		t.Errorf("serial 0 signed: %v", err)
	}
	if _, err := SignCard("alice", 1, consoleKey(1), nil); !errors.Is(err, ErrCard) {
		t.Errorf("no address signed: %v", err)
	}
}

// withKey swaps the console key of a signed card for key's, keeping the
// signature: the JSON then carries a signature by another key.
func withKey(c Card, key ed25519.PrivateKey) cardV2JSON {
	j := cardV2JSON{Version: 2, Name: c.Name, Serial: c.Serial, ConsoleKey: b64.EncodeToString(key.Public().(ed25519.PublicKey)),
		Signature: b64.EncodeToString(c.Signature)}
	for _, a := range c.Addresses {
		j.Addresses = append(j.Addresses, addressJSON{Server: a.Server, Account: a.Account, Device: a.Device, IdentityKey: b64.EncodeToString(a.IdentityKey)})
	}
	return j
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
