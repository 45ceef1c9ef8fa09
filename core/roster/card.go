package roster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

const (
	cardV1        = 1 // one address, no server named, unsigned
	cardV2        = 2 // one address per server, a version, signed by the console key
	maxNameLen    = 32
	maxAccountLen = 128
	maxAddresses  = 8
	maxCardJSON   = 16 << 10
	identityLen   = 33 // Signal identity keys: 0x05 || X25519 public key

	// cardContext prefixes what a console key signs for a card, so that
	// no card signature can pass for an MPC envelope's or the reverse.
	cardContext = "cosigner-card-v2\x00"
)

// Address is one Signal address of a signer: its account and device on one
// server, and the Signal identity key pinned for it.
type Address struct {
	// Server is the server's canonical URL (CanonicalServer). It is ""
	// only on a version 1 card, made when every console used one server:
	// see Roster.SetLegacyServer.
	Server      string
	Account     string // Signal account id (ACI) on that server
	Device      uint32 // Signal device id of the signer's console there
	IdentityKey []byte // Signal identity public key there
}

func (a Address) same(o Address) bool {
	return a.Server == o.Server && a.Account == o.Account && a.Device == o.Device && bytes.Equal(a.IdentityKey, o.IdentityKey)
}

// Card is what a signer hands the others (cosigner me --json).
//
// A version 1 card holds one address (Account, Device, IdentityKey) and no
// server; it is not signed, and the fingerprint humans compare covers all
// of it. A signed card (Serial > 0, see SignCard) lists one address per
// server in Addresses, and its console key signs the whole card but the
// name. Account, Device and IdentityKey are always the first address, so
// code that knows one address keeps working.
type Card struct {
	Name        string            // human label, e.g. "alice"; local, never signed
	Account     string            // first address: Signal account id (ACI)
	Device      uint32            // first address: Signal device id of the signer's console
	IdentityKey []byte            // first address: Signal identity public key
	ConsoleKey  ed25519.PublicKey // signs the signer's MPC messages and its card

	// Addresses lists a signed card's addresses, one per server, the
	// first equal to the fields above. Empty on a version 1 card.
	Addresses []Address
	// Serial is a signed card's version: a card with a higher serial
	// replaces one with a lower, never the reverse. 0 on a version 1
	// card.
	Serial uint64
	// Signature is the console key's Ed25519 signature over signedBytes.
	Signature []byte
}

// SignCard makes this console's signed card: serial is its version (1 or
// more, higher than any card it handed out before), addrs its addresses,
// one per server, the first being the one older code uses.
func SignCard(name string, serial uint64, key ed25519.PrivateKey, addrs []Address) (Card, error) {
	if len(addrs) == 0 {
		return Card{}, fmt.Errorf("%w: no address", ErrCard)
	}
	c := Card{Name: name, Account: addrs[0].Account, Device: addrs[0].Device, IdentityKey: addrs[0].IdentityKey,
		ConsoleKey: key.Public().(ed25519.PublicKey), Addresses: slices.Clone(addrs), Serial: serial}
	if serial == 0 {
		return Card{}, fmt.Errorf("%w: a signed card's serial starts at 1", ErrCard)
	}
	c.Signature = ed25519.Sign(key, c.signedBytes())
	return c, c.Validate()
}

// Signed reports whether the card is signed by its console key (version 2).
func (c *Card) Signed() bool { return c.Serial > 0 }

// Addrs returns the card's addresses, the first being Account, Device and
// IdentityKey.
func (c *Card) Addrs() []Address {
	if len(c.Addresses) == 0 {
		return []Address{{Account: c.Account, Device: c.Device, IdentityKey: c.IdentityKey}}
	}
	return slices.Clone(c.Addresses)
}

// signedBytes is the canonical encoding the console key signs: the
// context, the serial, the console key and each address in order, every
// variable field length-prefixed. The name is left out: it is a local
// label that each console may change.
func (c *Card) signedBytes() []byte {
	b := []byte(cardContext)
	lp := func(f []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint64(b, c.Serial)
	lp(c.ConsoleKey)
	b = binary.BigEndian.AppendUint32(b, uint32(len(c.Addresses)))
	for _, a := range c.Addresses {
		lp([]byte(a.Server))
		lp([]byte(a.Account))
		b = binary.BigEndian.AppendUint32(b, a.Device)
		lp(a.IdentityKey)
	}
	return b
}

// Validate checks the card's fields and, on a signed card, its signature.
func (c *Card) Validate() error {
	if c.Name == "" || len(c.Name) > maxNameLen || strings.IndexFunc(c.Name, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return fmt.Errorf("%w: name must be 1..%d letters, digits, '-', '_' or '.'", ErrCard, maxNameLen)
	}
	if len(c.ConsoleKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: console key must be %d bytes", ErrCard, ed25519.PublicKeySize)
	}
	if !c.Signed() {
		if len(c.Addresses) != 0 || len(c.Signature) != 0 {
			return fmt.Errorf("%w: a card with several addresses or a signature needs a serial", ErrCard)
		}
		return checkAddress(Address{Account: c.Account, Device: c.Device, IdentityKey: c.IdentityKey}, "")
	}
	if len(c.Addresses) == 0 || len(c.Addresses) > maxAddresses {
		return fmt.Errorf("%w: a signed card lists 1..%d addresses", ErrCard, maxAddresses)
	}
	first := Address{Server: c.Addresses[0].Server, Account: c.Account, Device: c.Device, IdentityKey: c.IdentityKey}
	if !first.same(c.Addresses[0]) {
		return fmt.Errorf("%w: the account, device and identity key are not the first address", ErrCard)
	}
	seen := make(map[string]bool, len(c.Addresses))
	for i, a := range c.Addresses {
		where := fmt.Sprintf("address %d: ", i+1)
		canon, err := CanonicalServer(a.Server)
		if err != nil || canon != a.Server {
			return fmt.Errorf("%w: %sserver must be a canonical URL", ErrCard, where)
		}
		if seen[a.Server] {
			return fmt.Errorf("%w: %sa second address on %s", ErrCard, where, a.Server)
		}
		seen[a.Server] = true
		if err := checkAddress(a, where); err != nil {
			return err
		}
	}
	if len(c.Signature) != ed25519.SignatureSize || !ed25519.Verify(c.ConsoleKey, c.signedBytes(), c.Signature) {
		return fmt.Errorf("%w: the console key's signature does not match the card", ErrCard)
	}
	return nil
}

func checkAddress(a Address, where string) error {
	if a.Account == "" || len(a.Account) > maxAccountLen || strings.ContainsFunc(a.Account, unicode.IsControl) {
		return fmt.Errorf("%w: %saccount id", ErrCard, where)
	}
	if a.Device == 0 {
		return fmt.Errorf("%w: %sdevice id 0", ErrCard, where)
	}
	if len(a.IdentityKey) != identityLen || a.IdentityKey[0] != 0x05 {
		return fmt.Errorf("%w: %sidentity key must be %d bytes starting 0x05", ErrCard, where, identityLen)
	}
	return nil
}

// sameContent: the same card but for the name.
func (c *Card) sameContent(o *Card) bool {
	return c.Serial == o.Serial && bytes.Equal(c.ConsoleKey, o.ConsoleKey) &&
		slices.EqualFunc(c.Addrs(), o.Addrs(), Address.same)
}

// Fingerprint is what two humans read to each other to verify a card: 60
// digits in 12 groups of 5. The name is a local label and never covered.
//
// A version 1 card's fingerprint covers its account, device and both keys:
// nothing else binds the Signal identity key to the console key. A signed
// card's covers the console key alone: the key signs every address and
// identity key on the card, so a human who compared it has vouched for
// all of them, and for the addresses a newer card from the same key adds.
// That is why a new server needs no new comparison, while a changed
// identity key at a known address still blocks the signer (a stolen or
// re-linked Signal device is what a human should hear about).
func (c *Card) Fingerprint() string {
	h := sha512.New()
	var buf [4]byte
	field := func(f []byte) {
		binary.BigEndian.PutUint32(buf[:], uint32(len(f)))
		h.Write(buf[:])
		h.Write(f)
	}
	if c.Signed() {
		h.Write([]byte("cosigner-card-fingerprint-v2\x00"))
		field(c.ConsoleKey)
	} else {
		h.Write([]byte("cosigner-card-fingerprint-v1\x00"))
		for _, f := range [][]byte{[]byte(c.Account), c.IdentityKey, c.ConsoleKey} {
			field(f)
		}
		binary.BigEndian.PutUint32(buf[:], c.Device)
		h.Write(buf[:])
	}
	sum := h.Sum(nil) // 64 bytes; 60 make the 12 groups
	groups := make([]string, 12)
	for i := range groups {
		var v uint64
		for _, x := range sum[i*5 : i*5+5] {
			v = v<<8 | uint64(x)
		}
		groups[i] = fmt.Sprintf("%05d", v%100000)
	}
	return strings.Join(groups, " ")
}

type cardJSON struct {
	Version     int    `json:"version"`
	Name        string `json:"name"`
	Account     string `json:"account"`
	Device      uint32 `json:"device"`
	IdentityKey string `json:"identity_key"`
	ConsoleKey  string `json:"console_key"`
	Fingerprint string `json:"fingerprint"`
}

type addressJSON struct {
	Server      string `json:"server"`
	Account     string `json:"account"`
	Device      uint32 `json:"device"`
	IdentityKey string `json:"identity_key"`
}

type cardV2JSON struct {
	Version     int           `json:"version"`
	Name        string        `json:"name"`
	Serial      uint64        `json:"serial"`
	Addresses   []addressJSON `json:"addresses"`
	ConsoleKey  string        `json:"console_key"`
	Signature   string        `json:"signature"`
	Fingerprint string        `json:"fingerprint"`
}

var b64 = base64.StdEncoding.Strict()

// MarshalJSON writes the card with its fingerprint: a version 1 card as
// before signed cards existed, so that older consoles still read it.
func (c Card) MarshalJSON() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Signed() {
		return json.Marshal(cardJSON{
			Version: cardV1, Name: c.Name, Account: c.Account, Device: c.Device,
			IdentityKey: b64.EncodeToString(c.IdentityKey),
			ConsoleKey:  b64.EncodeToString(c.ConsoleKey),
			Fingerprint: c.Fingerprint(),
		})
	}
	j := cardV2JSON{Version: cardV2, Name: c.Name, Serial: c.Serial,
		ConsoleKey: b64.EncodeToString(c.ConsoleKey), Signature: b64.EncodeToString(c.Signature),
		Fingerprint: c.Fingerprint()}
	for _, a := range c.Addresses {
		j.Addresses = append(j.Addresses, addressJSON{Server: a.Server, Account: a.Account, Device: a.Device,
			IdentityKey: b64.EncodeToString(a.IdentityKey)})
	}
	return json.Marshal(j)
}

// decodeStrict reads exactly one JSON value into v, refusing unknown
// fields and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrCard, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data", ErrCard)
	}
	return nil
}

// ParseCard reads a card (version 1 or 2) and checks it, a signed card's
// signature included; a fingerprint in the card, if any, must match the
// keys (a card edited by hand is refused).
func ParseCard(b []byte) (*Card, error) {
	if len(b) > maxCardJSON {
		return nil, fmt.Errorf("%w: %d bytes", ErrCard, len(b))
	}
	var probe struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCard, err)
	}
	var (
		c   *Card
		fp  string
		err error
	)
	switch probe.Version {
	case cardV1:
		c, fp, err = parseV1(b)
	case cardV2:
		c, fp, err = parseV2(b)
	default:
		return nil, fmt.Errorf("%w: version %d, want %d or %d", ErrCard, probe.Version, cardV1, cardV2)
	}
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if fp != "" && fp != c.Fingerprint() {
		return nil, fmt.Errorf("%w: fingerprint does not match the keys", ErrCard)
	}
	return c, nil
}

func parseV1(b []byte) (*Card, string, error) {
	var j cardJSON
	if err := decodeStrict(b, &j); err != nil {
		return nil, "", err
	}
	// Lenient base64, as version 1 cards were always read.
	ik, err := base64.StdEncoding.DecodeString(j.IdentityKey)
	if err != nil {
		return nil, "", fmt.Errorf("%w: identity key: %v", ErrCard, err)
	}
	ck, err := base64.StdEncoding.DecodeString(j.ConsoleKey)
	if err != nil {
		return nil, "", fmt.Errorf("%w: console key: %v", ErrCard, err)
	}
	return &Card{Name: j.Name, Account: j.Account, Device: j.Device, IdentityKey: ik, ConsoleKey: ck}, j.Fingerprint, nil
}

func parseV2(b []byte) (*Card, string, error) {
	var j cardV2JSON
	if err := decodeStrict(b, &j); err != nil {
		return nil, "", err
	}
	if len(j.Addresses) == 0 || len(j.Addresses) > maxAddresses {
		return nil, "", fmt.Errorf("%w: a signed card lists 1..%d addresses", ErrCard, maxAddresses)
	}
	if j.Serial == 0 {
		return nil, "", fmt.Errorf("%w: a signed card's serial starts at 1", ErrCard)
	}
	ck, err := b64.DecodeString(j.ConsoleKey)
	if err != nil {
		return nil, "", fmt.Errorf("%w: console key: %v", ErrCard, err)
	}
	sig, err := b64.DecodeString(j.Signature)
	if err != nil {
		return nil, "", fmt.Errorf("%w: signature: %v", ErrCard, err)
	}
	c := &Card{Name: j.Name, ConsoleKey: ck, Serial: j.Serial, Signature: sig}
	for i, a := range j.Addresses {
		ik, err := b64.DecodeString(a.IdentityKey)
		if err != nil {
			return nil, "", fmt.Errorf("%w: address %d: identity key: %v", ErrCard, i+1, err)
		}
		c.Addresses = append(c.Addresses, Address{Server: a.Server, Account: a.Account, Device: a.Device, IdentityKey: ik})
	}
	c.Account, c.Device, c.IdentityKey = c.Addresses[0].Account, c.Addresses[0].Device, c.Addresses[0].IdentityKey
	return c, j.Fingerprint, nil
}
