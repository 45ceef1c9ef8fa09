// Package roster holds the signers of a group: their cards (Signal account
// and device, Signal identity key, console key), the fingerprints humans
// compare, and which cards a human has verified. Keys are trusted on first
// use and pinned; a changed key stops the group until a human verifies it.
package roster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/signal-mpc/cosigner/bls/dkg"
)

// Sentinel errors.
var (
	// ErrCard: a card is malformed.
	ErrCard = errors.New("roster: invalid card")
	// ErrKeyChanged: a card for a known signer carries other keys. The
	// signer is blocked until a human verifies the new card.
	ErrKeyChanged = errors.New("roster: signer's keys changed")
	// ErrUnknown: no such signer.
	ErrUnknown = errors.New("roster: unknown signer")
	// ErrNameTaken: another signer already has this name.
	ErrNameTaken = errors.New("roster: name taken")
	// ErrNotTrusted: a roster offered by a peer differs from the pinned
	// one, or includes a blocked signer.
	ErrNotTrusted = errors.New("roster: not trusted")
)

const (
	cardVersion   = 1
	maxNameLen    = 32
	maxAccountLen = 128
	identityLen   = 33 // Signal identity keys: 0x05 || X25519 public key
)

// Card is what a signer hands the others (cosigner me --json).
type Card struct {
	Name        string            // human label, e.g. "alice"
	Account     string            // Signal account id (ACI)
	Device      uint32            // Signal device id of the signer's console
	IdentityKey []byte            // Signal identity public key
	ConsoleKey  ed25519.PublicKey // signs the signer's MPC messages
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

// Validate checks the card's fields.
func (c *Card) Validate() error {
	if c.Name == "" || len(c.Name) > maxNameLen || strings.IndexFunc(c.Name, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return fmt.Errorf("%w: name must be 1..%d letters, digits, '-', '_' or '.'", ErrCard, maxNameLen)
	}
	if c.Account == "" || len(c.Account) > maxAccountLen || strings.ContainsFunc(c.Account, unicode.IsControl) {
		return fmt.Errorf("%w: account id", ErrCard)
	}
	if c.Device == 0 {
		return fmt.Errorf("%w: device id 0", ErrCard)
	}
	if len(c.IdentityKey) != identityLen || c.IdentityKey[0] != 0x05 {
		return fmt.Errorf("%w: identity key must be %d bytes starting 0x05", ErrCard, identityLen)
	}
	if len(c.ConsoleKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: console key must be %d bytes", ErrCard, ed25519.PublicKeySize)
	}
	return nil
}

// MarshalJSON writes the card with its fingerprint.
func (c Card) MarshalJSON() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(cardJSON{
		Version: cardVersion, Name: c.Name, Account: c.Account, Device: c.Device,
		IdentityKey: base64.StdEncoding.EncodeToString(c.IdentityKey),
		ConsoleKey:  base64.StdEncoding.EncodeToString(c.ConsoleKey),
		Fingerprint: c.Fingerprint(),
	})
}

// ParseCard reads a card and checks it; a fingerprint in the card, if any,
// must match the keys (a card edited by hand is refused).
func ParseCard(b []byte) (*Card, error) {
	if len(b) > 4096 {
		return nil, fmt.Errorf("%w: %d bytes", ErrCard, len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var j cardJSON
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCard, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrCard)
	}
	if j.Version != cardVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrCard, j.Version, cardVersion)
	}
	ik, err := base64.StdEncoding.DecodeString(j.IdentityKey)
	if err != nil {
		return nil, fmt.Errorf("%w: identity key: %v", ErrCard, err)
	}
	ck, err := base64.StdEncoding.DecodeString(j.ConsoleKey)
	if err != nil {
		return nil, fmt.Errorf("%w: console key: %v", ErrCard, err)
	}
	c := &Card{Name: j.Name, Account: j.Account, Device: j.Device, IdentityKey: ik, ConsoleKey: ck}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if j.Fingerprint != "" && j.Fingerprint != c.Fingerprint() {
		return nil, fmt.Errorf("%w: fingerprint does not match the keys", ErrCard)
	}
	return c, nil
}

// Fingerprint is what two humans read to each other to verify a card: 60
// digits in 12 groups of 5, from a hash of the account, device and both
// keys (the name is a local label and is not covered).
func (c *Card) Fingerprint() string {
	h := sha512.New()
	h.Write([]byte("cosigner-card-fingerprint-v1\x00"))
	var buf [4]byte
	for _, f := range [][]byte{[]byte(c.Account), c.IdentityKey, c.ConsoleKey} {
		binary.BigEndian.PutUint32(buf[:], uint32(len(f)))
		h.Write(buf[:])
		h.Write(f)
	}
	binary.BigEndian.PutUint32(buf[:], c.Device)
	h.Write(buf[:])
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

func (c *Card) sameKeys(o *Card) bool {
	return c.Account == o.Account && c.Device == o.Device &&
		bytes.Equal(c.IdentityKey, o.IdentityKey) && bytes.Equal(c.ConsoleKey, o.ConsoleKey)
}

// Member is a signer in the roster.
type Member struct {
	Card     Card
	Verified bool  // a human compared the fingerprint
	Pending  *Card // a changed card waiting for verification; blocks the signer
}

// Blocked reports whether the signer's keys changed and await a human.
func (m *Member) Blocked() bool { return m.Pending != nil }

// Roster is the set of signers, this console's own card included.
type Roster struct {
	members []Member
}

// Members returns a copy of the members in canonical order.
func (r *Roster) Members() []Member {
	out := slices.Clone(r.members)
	slices.SortFunc(out, func(a, b Member) int { return compare(&a.Card, &b.Card) })
	return out
}

func compare(a, b *Card) int {
	if c := strings.Compare(a.Account, b.Account); c != 0 {
		return c
	}
	return int(a.Device) - int(b.Device)
}

// Add adds a card, trusting it on first use. A card for a known signer
// with the same keys only refreshes the name; with other keys it is held as
// pending, the signer is blocked, and ErrKeyChanged is returned.
func (r *Roster) Add(c Card, verified bool) error {
	if err := c.Validate(); err != nil {
		return err
	}
	for i := range r.members {
		m := &r.members[i]
		if m.Card.Account == c.Account && m.Card.Device == c.Device {
			if m.Card.sameKeys(&c) {
				if m.Card.Name != c.Name && r.nameTaken(c.Name, i) {
					return fmt.Errorf("%w: %s", ErrNameTaken, c.Name)
				}
				m.Card.Name = c.Name
				m.Verified = m.Verified || verified
				return nil
			}
			pending := c
			m.Pending = &pending
			return fmt.Errorf("%w: %s (%s): compare the new fingerprint %s, then run group verify", ErrKeyChanged, m.Card.Name, c.Account, c.Fingerprint())
		}
	}
	if r.nameTaken(c.Name, -1) {
		return fmt.Errorf("%w: %s", ErrNameTaken, c.Name)
	}
	r.members = append(r.members, Member{Card: c, Verified: verified})
	return nil
}

func (r *Roster) nameTaken(name string, except int) bool {
	for i := range r.members {
		if i != except && r.members[i].Card.Name == name {
			return true
		}
	}
	return false
}

// Verify records that a human compared the signer's fingerprint. A pending
// changed card replaces the old one only through this call.
func (r *Roster) Verify(name string) error {
	for i := range r.members {
		m := &r.members[i]
		if m.Card.Name != name {
			continue
		}
		if m.Pending != nil {
			m.Card, m.Pending = *m.Pending, nil
		}
		m.Verified = true
		return nil
	}
	return fmt.Errorf("%w: %s", ErrUnknown, name)
}

// Lookup finds a member by name.
func (r *Roster) Lookup(name string) (*Member, bool) {
	for i := range r.members {
		if r.members[i].Card.Name == name {
			m := r.members[i]
			return &m, true
		}
	}
	return nil, false
}

// Parties returns the roster as DKG parties in canonical order, refusing
// while any signer is blocked.
func (r *Roster) Parties() ([]dkg.Party, error) {
	var out []dkg.Party
	for _, m := range r.Members() {
		if m.Blocked() {
			return nil, fmt.Errorf("%w: %s", ErrKeyChanged, m.Card.Name)
		}
		out = append(out, dkg.Party{Account: m.Card.Account, Device: m.Card.Device, IdentityKey: m.Card.IdentityKey, ConsoleKey: m.Card.ConsoleKey})
	}
	return out, nil
}

// Trust checks a proposed ceremony roster against the pinned cards: every
// party must be a member with exactly the pinned keys and none blocked.
// (The proposal may name a subset of the roster.)
func (r *Roster) Trust(p *dkg.Proposal) error {
	for i, q := range p.Parties {
		found := false
		for _, m := range r.members {
			if m.Card.Account != q.Account || m.Card.Device != q.Device {
				continue
			}
			found = true
			if m.Blocked() {
				return fmt.Errorf("%w: %s's keys changed and are not verified", ErrNotTrusted, m.Card.Name)
			}
			if !bytes.Equal(m.Card.IdentityKey, q.IdentityKey) || !bytes.Equal(m.Card.ConsoleKey, q.ConsoleKey) {
				return fmt.Errorf("%w: party %d (%s) has keys other than the pinned ones", ErrNotTrusted, i+1, m.Card.Name)
			}
		}
		if !found {
			return fmt.Errorf("%w: party %d (%s device %d) is not in the roster", ErrNotTrusted, i+1, q.Account, q.Device)
		}
	}
	return nil
}

// NameOf returns the member name for a Signal address, or "".
func (r *Roster) NameOf(account string, device uint32) string {
	for _, m := range r.members {
		if m.Card.Account == account && m.Card.Device == device {
			return m.Card.Name
		}
	}
	return ""
}

type memberJSON struct {
	Card     json.RawMessage `json:"card"`
	Verified bool            `json:"verified"`
	Pending  json.RawMessage `json:"pending,omitempty"`
}

// MarshalJSON writes the roster for storage.
func (r *Roster) MarshalJSON() ([]byte, error) {
	out := make([]memberJSON, 0, len(r.members))
	for _, m := range r.members {
		c, err := json.Marshal(m.Card)
		if err != nil {
			return nil, err
		}
		mj := memberJSON{Card: c, Verified: m.Verified}
		if m.Pending != nil {
			if mj.Pending, err = json.Marshal(*m.Pending); err != nil {
				return nil, err
			}
		}
		out = append(out, mj)
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads a stored roster, checking every card again.
func (r *Roster) UnmarshalJSON(b []byte) error {
	var in []memberJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("%w: roster: %v", ErrCard, err)
	}
	r.members = nil
	for _, mj := range in {
		c, err := ParseCard(mj.Card)
		if err != nil {
			return err
		}
		m := Member{Card: *c, Verified: mj.Verified}
		if len(mj.Pending) > 0 {
			p, err := ParseCard(mj.Pending)
			if err != nil {
				return err
			}
			m.Pending = p
		}
		r.members = append(r.members, m)
	}
	return nil
}
