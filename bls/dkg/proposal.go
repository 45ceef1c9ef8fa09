package dkg

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// Limits on proposal fields: generous for real values, small enough that a
// hostile proposal cannot make a console allocate much.
const (
	maxAccountLen     = 128
	maxIdentityKeyLen = 64
	maxRoundTimeout   = 7 * 24 * time.Hour
	minRoundTimeout   = time.Second
	proposalDomain    = "cosigner-dkg-proposal-v1\x00"
)

// Party is one member of the roster as the DKG sees it. The Signal fields are
// opaque here: they are bound into the ceremony id and the key confirmation
// so that every party agrees on who holds which share.
type Party struct {
	Account     string            // Signal account id
	Device      uint32            // Signal device id of the party's console
	IdentityKey []byte            // Signal identity public key
	ConsoleKey  ed25519.PublicKey // signs every MPC envelope of this party
}

// compareParties is the canonical roster order: by account id, then device.
func compareParties(a, b Party) int {
	if c := cmp.Compare(a.Account, b.Account); c != 0 {
		return c
	}
	return cmp.Compare(a.Device, b.Device)
}

// SortParties puts a roster into canonical order, which fixes the party
// indices: the party at position i has index i+1.
func SortParties(ps []Party) { slices.SortFunc(ps, compareParties) }

// Proposal is round 0: the parameters every party accepts before any key
// material exists. Its hash is the ceremony id, so every later message is
// bound to exactly these parameters.
type Proposal struct {
	Threshold    int           // t: signatures need t shares
	Parties      []Party       // canonical order; index = position + 1
	Nonce        [32]byte      // makes every ceremony id unique
	RoundTimeout time.Duration // deadline of each round, whole seconds
	Initiator    uint32        // index of the party that proposed
	Created      time.Time     // when it was proposed, whole seconds (display)
}

// N is the number of parties.
func (p *Proposal) N() int { return len(p.Parties) }

// Validate checks parameters and roster: 1 <= t <= n, canonical order with
// no duplicate (account, device), well-formed keys, distinct console keys,
// a sane deadline, and an initiator in the roster.
func (p *Proposal) Validate() error {
	if err := share.CheckParams(p.Threshold, len(p.Parties)); err != nil {
		return fmt.Errorf("%w: %w", ErrProposal, err)
	}
	if p.RoundTimeout < minRoundTimeout || p.RoundTimeout > maxRoundTimeout || p.RoundTimeout%time.Second != 0 {
		return fmt.Errorf("%w: round timeout %v, want whole seconds from %v to %v", ErrProposal, p.RoundTimeout, minRoundTimeout, maxRoundTimeout)
	}
	if p.Initiator == 0 || int(p.Initiator) > len(p.Parties) {
		return fmt.Errorf("%w: initiator %d not in the roster", ErrProposal, p.Initiator)
	}
	return validateParties(p.Parties)
}

// validateParties checks a roster: canonical order with no duplicate
// (account, device), well-formed keys and distinct console keys.
func validateParties(ps []Party) error {
	keys := make(map[string]bool, len(ps))
	for i, q := range ps {
		if q.Account == "" || len(q.Account) > maxAccountLen || !utf8.ValidString(q.Account) {
			return fmt.Errorf("%w: party %d: account id must be 1..%d bytes of UTF-8", ErrProposal, i+1, maxAccountLen)
		}
		if len(q.IdentityKey) == 0 || len(q.IdentityKey) > maxIdentityKeyLen {
			return fmt.Errorf("%w: party %d: identity key of %d bytes", ErrProposal, i+1, len(q.IdentityKey))
		}
		if len(q.ConsoleKey) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: party %d: console key of %d bytes, want %d", ErrProposal, i+1, len(q.ConsoleKey), ed25519.PublicKeySize)
		}
		if keys[string(q.ConsoleKey)] {
			return fmt.Errorf("%w: party %d reuses another party's console key", ErrProposal, i+1)
		}
		keys[string(q.ConsoleKey)] = true
		if i > 0 && compareParties(ps[i-1], q) >= 0 {
			return fmt.Errorf("%w: roster not in canonical order or has a duplicate at party %d", ErrProposal, i+1)
		}
	}
	return nil
}

// Proposal field numbers.
const (
	fpThreshold = 1
	fpParties   = 2
	fpNonce     = 3
	fpTimeout   = 4
	fpInitiator = 5
	fpCreated   = 6

	fPartyAccount  = 1
	fPartyDevice   = 2
	fPartyIdentity = 3
	fPartyConsole  = 4
)

// Encode returns the canonical encoding. It validates first: an invalid
// proposal has no encoding.
func (p *Proposal) Encode() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	parties, err := encodeParties(p.Parties)
	if err != nil {
		return nil, err
	}
	var e wire.Encoder
	e.Uint(fpThreshold, uint64(p.Threshold))
	e.Repeated(fpParties, parties)
	e.Bytes(fpNonce, p.Nonce[:])
	e.Uint(fpTimeout, uint64(p.RoundTimeout/time.Second))
	e.Uint(fpInitiator, uint64(p.Initiator))
	if !p.Created.IsZero() {
		e.Uint(fpCreated, uint64(p.Created.Unix()))
	}
	return e.Finish()
}

// encodeParties encodes each party of a roster on its own.
func encodeParties(ps []Party) ([][]byte, error) {
	out := make([][]byte, len(ps))
	for i, q := range ps {
		var e wire.Encoder
		e.Bytes(fPartyAccount, []byte(q.Account))
		e.Uint(fPartyDevice, uint64(q.Device))
		e.Bytes(fPartyIdentity, q.IdentityKey)
		e.Bytes(fPartyConsole, q.ConsoleKey)
		b, err := e.Finish()
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func decodeParty(b []byte) (Party, error) {
	pd := wire.NewDecoder(b)
	account, _ := pd.Bytes(fPartyAccount, maxAccountLen)
	device, _ := pd.Uint32(fPartyDevice)
	identity, _ := pd.Bytes(fPartyIdentity, maxIdentityKeyLen)
	console, _ := pd.Fixed(fPartyConsole, ed25519.PublicKeySize)
	if err := pd.Done(); err != nil {
		return Party{}, err
	}
	return Party{Account: string(account), Device: device, IdentityKey: identity, ConsoleKey: console}, nil
}

// DecodeProposal strictly decodes and validates a proposal.
func DecodeProposal(b []byte) (*Proposal, error) {
	d := wire.NewDecoder(b)
	t, _ := d.Uint32(fpThreshold)
	enc, _ := d.Repeated(fpParties, share.MaxParties, 512)
	nonce, _ := d.Fixed(fpNonce, 32)
	timeout, _ := d.Uint(fpTimeout)
	initiator, _ := d.Uint32(fpInitiator)
	created, _ := d.Uint(fpCreated)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProposal, err)
	}
	if timeout > uint64(maxRoundTimeout/time.Second) || created > 1<<40 {
		return nil, fmt.Errorf("%w: time field out of range", ErrProposal)
	}
	p := &Proposal{
		Threshold:    int(t),
		Parties:      make([]Party, len(enc)),
		RoundTimeout: time.Duration(timeout) * time.Second,
		Initiator:    initiator,
	}
	if created != 0 {
		p.Created = time.Unix(int64(created), 0).UTC()
	}
	copy(p.Nonce[:], nonce)
	for i, pb := range enc {
		q, err := decodeParty(pb)
		if err != nil {
			return nil, fmt.Errorf("%w: party %d: %w", ErrProposal, i+1, err)
		}
		p.Parties[i] = q
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// ID is the ceremony id: SHA-256 over a domain prefix and the canonical
// encoding. Every message of the ceremony carries it.
func (p *Proposal) ID() ([32]byte, error) {
	b, err := p.Encode()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(append([]byte(proposalDomain), b...)), nil
}

// IndexOf returns the index of the party with this account and device.
func (p *Proposal) IndexOf(account string, device uint32) (uint32, bool) {
	for i, q := range p.Parties {
		if q.Account == account && q.Device == device {
			return uint32(i + 1), true
		}
	}
	return 0, false
}

// IndexOfConsoleKey returns the index of the party with this console key.
func (p *Proposal) IndexOfConsoleKey(k ed25519.PublicKey) (uint32, bool) {
	for i, q := range p.Parties {
		if bytes.Equal(q.ConsoleKey, k) {
			return uint32(i + 1), true
		}
	}
	return 0, false
}

// consoleKey returns the console key of party j, for wire.Open.
func (p *Proposal) consoleKey(j uint32) (ed25519.PublicKey, bool) {
	if j == 0 || int(j) > len(p.Parties) {
		return nil, false
	}
	return p.Parties[j-1].ConsoleKey, true
}
