// Package roster holds the signers of a group: their cards (Signal
// addresses, one per server, each with its Signal identity key, and the
// console key), the fingerprints humans compare, and which cards a human
// has verified. A signer is its console key. Keys are trusted on first use
// and pinned, each address's identity key on its own; a changed key stops
// the group until a human verifies it.
package roster

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/signal-mpc/cosigner/bls/dkg"
)

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
	legacy  string // see SetLegacyServer
}

// SetLegacyServer names the server (its canonical URL) that the address of
// a version 1 card is on. Such cards name no server: they were exchanged
// while every console used one. Unset (""), that address matches on any
// server, which is right for a console that uses one; a console on several
// servers sets its first (the one its version 1 card was made on).
func (r *Roster) SetLegacyServer(server string) { r.legacy = server }

// sameAddress matches addresses: account and device on one server, an address
// without a server being on the legacy one.
func (r *Roster) sameAddress(a, b Address) bool {
	if a.Account != b.Account || a.Device != b.Device {
		return false
	}
	as, bs := a.Server, b.Server
	if as == "" {
		as = r.legacy
	}
	if bs == "" {
		bs = r.legacy
	}
	return as == "" || bs == "" || as == bs
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

// holder returns the index of the member other than except whose pinned
// card holds one of addrs, or -1.
func (r *Roster) holder(addrs []Address, except int) int {
	for i := range r.members {
		if i == except {
			continue
		}
		for _, a := range r.members[i].Card.Addrs() {
			for _, b := range addrs {
				if r.sameAddress(a, b) {
					return i
				}
			}
		}
	}
	return -1
}

func (r *Roster) byConsoleKey(key ed25519.PublicKey) int {
	return slices.IndexFunc(r.members, func(m Member) bool { return bytes.Equal(m.Card.ConsoleKey, key) })
}

// Add adds a card, trusting it on first use. A signer is its console key:
//   - a card from a new console key at addresses nobody holds is a new
//     signer; at an address another signer holds, it is held as pending,
//     that signer is blocked, and ErrKeyChanged is returned;
//   - the same card again only refreshes the name;
//   - a signed card with a higher serial replaces the pinned one: new
//     addresses need no new verification (the verified console key signed
//     them), but a changed identity key at a pinned address is held as
//     pending and blocks the signer (ErrKeyChanged), as does any changed
//     version 1 card;
//   - a card with a lower serial is refused (ErrStaleCard), one with the
//     same serial and other content too (ErrCardConflict), and so is a
//     card listing another signer's address (ErrAddressTaken).
//
// A refused card changes nothing.
func (r *Roster) Add(c Card, verified bool) error {
	if err := c.Validate(); err != nil {
		return err
	}
	c = c.clone()
	addrs := c.Addrs()
	i := r.byConsoleKey(c.ConsoleKey)
	if i < 0 {
		if j := r.holder(addrs, -1); j >= 0 {
			m := &r.members[j]
			m.Pending = &c
			return fmt.Errorf("%w: %s (%s): compare the new fingerprint %s, then run group verify", ErrKeyChanged, m.Card.Name, c.Account, c.Fingerprint())
		}
		if r.nameTaken(c.Name, -1) {
			return fmt.Errorf("%w: %s", ErrNameTaken, c.Name)
		}
		r.members = append(r.members, Member{Card: c, Verified: verified})
		return nil
	}
	m := &r.members[i]
	if j := r.holder(addrs, i); j >= 0 {
		return fmt.Errorf("%w: %s's card lists an address of %s", ErrAddressTaken, m.Card.Name, r.members[j].Card.Name)
	}
	switch {
	case c.Serial < m.Card.Serial:
		return fmt.Errorf("%w: %s's card %d, the pinned one is %d", ErrStaleCard, m.Card.Name, c.Serial, m.Card.Serial)
	case c.sameContent(&m.Card):
		if m.Card.Name != c.Name && r.nameTaken(c.Name, i) {
			return fmt.Errorf("%w: %s", ErrNameTaken, c.Name)
		}
		m.Card.Name = c.Name
		m.Verified = m.Verified || verified
		return nil
	case c.Serial == m.Card.Serial && c.Signed():
		return fmt.Errorf("%w: %s's card %d", ErrCardConflict, m.Card.Name, c.Serial)
	}
	if !c.Signed() || r.identityChanged(&m.Card, &c) {
		m.Pending = &c
		return fmt.Errorf("%w: %s (%s): compare the new fingerprint %s, then run group verify", ErrKeyChanged, m.Card.Name, c.Account, c.Fingerprint())
	}
	if c.Name != m.Card.Name && r.nameTaken(c.Name, i) {
		return fmt.Errorf("%w: %s", ErrNameTaken, c.Name)
	}
	m.Card = c
	m.Verified = m.Verified || verified
	if p := m.Pending; p != nil && bytes.Equal(p.ConsoleKey, c.ConsoleKey) && p.Serial <= c.Serial {
		m.Pending = nil // superseded by a newer card of the same signer
	}
	return nil
}

// identityChanged: an address pinned on old carries another identity key
// on c.
func (r *Roster) identityChanged(old, c *Card) bool {
	for _, a := range old.Addrs() {
		for _, b := range c.Addrs() {
			if r.sameAddress(a, b) && !bytes.Equal(a.IdentityKey, b.IdentityKey) {
				return true
			}
		}
	}
	return false
}

func (c Card) clone() Card {
	c.IdentityKey = slices.Clone(c.IdentityKey)
	c.ConsoleKey = slices.Clone(c.ConsoleKey)
	c.Signature = slices.Clone(c.Signature)
	c.Addresses = slices.Clone(c.Addresses)
	for i := range c.Addresses {
		c.Addresses[i].IdentityKey = slices.Clone(c.Addresses[i].IdentityKey)
	}
	return c
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
// changed card replaces the old one only through this call, and not when
// it would give two signers one address or one console key
// (ErrAddressTaken, nothing changed).
func (r *Roster) Verify(name string) error {
	for i := range r.members {
		m := &r.members[i]
		if m.Card.Name != name {
			continue
		}
		if p := m.Pending; p != nil {
			// Other cards may have been pinned since this one was held:
			// it must not make two signers of one address or one key.
			if j := r.holder(p.Addrs(), i); j >= 0 {
				return fmt.Errorf("%w: %s's new card lists an address of %s", ErrAddressTaken, name, r.members[j].Card.Name)
			}
			if j := r.byConsoleKey(p.ConsoleKey); j >= 0 && j != i {
				return fmt.Errorf("%w: %s's new card has the console key of %s", ErrAddressTaken, name, r.members[j].Card.Name)
			}
			m.Card, m.Pending = *p, nil
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

// ByAddress finds the member whose pinned card holds the account and
// device on the server (a canonical URL; see SetLegacyServer for version 1
// cards), whichever of its addresses that is.
func (r *Roster) ByAddress(server, account string, device uint32) (*Member, bool) {
	q := Address{Server: server, Account: account, Device: device}
	if server == "" {
		return nil, false
	}
	if i := r.holder([]Address{q}, -1); i >= 0 {
		m := r.members[i]
		return &m, true
	}
	return nil, false
}

// ByConsoleKey finds the member that is this console key.
func (r *Roster) ByConsoleKey(key ed25519.PublicKey) (*Member, bool) {
	if i := r.byConsoleKey(key); i >= 0 {
		m := r.members[i]
		return &m, true
	}
	return nil, false
}

// Parties returns the roster as DKG parties in canonical order, refusing
// while any signer is blocked. A party's address is its card's first.
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
// party must be a member, found by one of its addresses (a proposal names
// no server), with exactly the pinned keys there, and none blocked. (The
// proposal may name a subset of the roster.)
func (r *Roster) Trust(p *dkg.Proposal) error {
	for i, q := range p.Parties {
		found := false
		for _, m := range r.members {
			for _, a := range m.Card.Addrs() {
				if a.Account != q.Account || a.Device != q.Device {
					continue
				}
				found = true
				if m.Blocked() {
					return fmt.Errorf("%w: %s's keys changed and are not verified", ErrNotTrusted, m.Card.Name)
				}
				if !bytes.Equal(a.IdentityKey, q.IdentityKey) || !bytes.Equal(m.Card.ConsoleKey, q.ConsoleKey) {
					return fmt.Errorf("%w: party %d (%s) has keys other than the pinned ones", ErrNotTrusted, i+1, m.Card.Name)
				}
			}
		}
		if !found {
			return fmt.Errorf("%w: party %d (%s device %d) is not in the roster", ErrNotTrusted, i+1, q.Account, q.Device)
		}
	}
	return nil
}

// NameOf returns the member name for a Signal address on any server (the
// callers know no server yet), or "".
func (r *Roster) NameOf(account string, device uint32) string {
	for _, m := range r.members {
		for _, a := range m.Card.Addrs() {
			if a.Account == account && a.Device == device {
				return m.Card.Name
			}
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

// UnmarshalJSON reads a stored roster (version 1 and signed cards alike),
// checking every card again.
func (r *Roster) UnmarshalJSON(b []byte) error {
	var in []memberJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("%w: roster: %v", ErrCard, err)
	}
	members := make([]Member, 0, len(in))
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
		members = append(members, m)
	}
	r.members = members
	return nil
}
