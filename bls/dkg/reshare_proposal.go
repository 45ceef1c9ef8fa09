package dkg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	bls12381 "github.com/kilic/bls12-381"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

const reshareProposalDomain = "cosigner-reshare-proposal-v1\x00"

// OldGroup is the public record of the group that holds a key now: what a
// reshare proposal carries and what every old signer compares with the
// record it stored.
type OldGroup struct {
	Threshold    int               // t
	Parties      []Party           // canonical order; old index = position + 1
	Commitments  share.Commitments // A_0..A_{t-1}; A_0 is the group key X
	PublicShares []*bls.PublicKey  // X_1..X_n
}

// ReshareProposal is round 0 of a key lifecycle ceremony. With Old set it
// reshares the group key X held by Old to the new group (a refresh when the
// new group is the old one): the old parties listed in Dealers deal. With
// Import set, the initiator (a new party) deals a whole secret key it holds
// as a trusted dealer. Its hash is the ceremony id.
//
// Participants, the index space of the ceremony's envelopes: the new
// parties first (participant j is new party j, so a new signer's index is
// its share's x-coordinate), then the dealers that are not new parties, in
// old-index order.
type ReshareProposal struct {
	Import    bool
	KeyID     [32]byte       // SHA-256 of the group key; kept across epochs
	GroupKey  *bls.PublicKey // X: the key the new group will share
	Epoch     uint32         // the epoch of the shares dealt from (0 for a keygen's); the new shares are at Epoch+1. 0 for an import.
	Old       *OldGroup      // nil for an import
	Dealers   []uint32       // old indices of the dealing parties, ascending, at least Old.Threshold; nil for an import
	Threshold int            // t'
	Parties   []Party        // the new group, canonical order; new index = position + 1

	Nonce        [32]byte
	RoundTimeout time.Duration // whole seconds
	Initiator    uint32        // participant index of the proposer (for an import: the dealer, a new party)
	Created      time.Time     // whole seconds (display)
}

// N is the size of the new group, n'.
func (p *ReshareProposal) N() int { return len(p.Parties) }

// Refresh reports whether the proposal keeps the group and threshold: new
// shares of the same key for the same signers.
func (p *ReshareProposal) Refresh() bool {
	if p.Import || p.Old == nil || p.Old.Threshold != p.Threshold || len(p.Old.Parties) != len(p.Parties) {
		return false
	}
	for i := range p.Parties {
		if !sameParty(p.Old.Parties[i], p.Parties[i]) {
			return false
		}
	}
	return true
}

func sameParty(a, b Party) bool {
	return a.Account == b.Account && a.Device == b.Device && bytes.Equal(a.IdentityKey, b.IdentityKey) && bytes.Equal(a.ConsoleKey, b.ConsoleKey)
}

// Participants returns every party of the ceremony by participant index
// (position + 1): the new parties, then the old-only dealers. Envelopes'
// From and To are these indices.
func (p *ReshareProposal) Participants() []Party {
	out := slices.Clone(p.Parties)
	if p.Import || p.Old == nil {
		return out
	}
	for _, i := range p.Dealers {
		if int(i) < 1 || int(i) > len(p.Old.Parties) {
			continue // Validate rejects it
		}
		q := p.Old.Parties[i-1]
		if !slices.ContainsFunc(p.Parties, func(np Party) bool { return bytes.Equal(np.ConsoleKey, q.ConsoleKey) }) {
			out = append(out, q)
		}
	}
	return out
}

// DealerIndices returns the participant indices of the dealers, in the
// order of Dealers (for an import: the initiator).
func (p *ReshareProposal) DealerIndices() []uint32 {
	if p.Import {
		return []uint32{p.Initiator}
	}
	parts := p.Participants()
	out := make([]uint32, 0, len(p.Dealers))
	for _, i := range p.Dealers {
		if int(i) < 1 || p.Old == nil || int(i) > len(p.Old.Parties) {
			continue
		}
		k := slices.IndexFunc(parts, func(q Party) bool { return bytes.Equal(q.ConsoleKey, p.Old.Parties[i-1].ConsoleKey) })
		out = append(out, uint32(k+1))
	}
	return out
}

// OldIndexOf returns the old index of a participant that holds an old
// share (by its console key), or false.
func (p *ReshareProposal) OldIndexOf(participant uint32) (uint32, bool) {
	parts := p.Participants()
	if p.Import || p.Old == nil || participant == 0 || int(participant) > len(parts) {
		return 0, false
	}
	k := slices.IndexFunc(p.Old.Parties, func(q Party) bool { return bytes.Equal(q.ConsoleKey, parts[participant-1].ConsoleKey) })
	if k < 0 {
		return 0, false
	}
	return uint32(k + 1), true
}

// IndexOfConsoleKey returns the participant index of the party with this
// console key.
func (p *ReshareProposal) IndexOfConsoleKey(k ed25519.PublicKey) (uint32, bool) {
	for i, q := range p.Participants() {
		if bytes.Equal(q.ConsoleKey, k) {
			return uint32(i + 1), true
		}
	}
	return 0, false
}

// Validate checks the proposal: both rosters, the thresholds, the dealers,
// and the old record itself: its commitments open at 0 to the group key and
// at every old index to the public share listed for it, so the public
// shares lie on one polynomial of degree t-1 whose value at 0 is X.
func (p *ReshareProposal) Validate() error {
	if err := share.CheckParams(p.Threshold, len(p.Parties)); err != nil {
		return fmt.Errorf("%w: new group: %w", ErrProposal, err)
	}
	if err := validateParties(p.Parties); err != nil {
		return fmt.Errorf("new group: %w", err)
	}
	if p.RoundTimeout < minRoundTimeout || p.RoundTimeout > maxRoundTimeout || p.RoundTimeout%time.Second != 0 {
		return fmt.Errorf("%w: round timeout %v, want whole seconds from %v to %v", ErrProposal, p.RoundTimeout, minRoundTimeout, maxRoundTimeout)
	}
	if p.GroupKey == nil {
		return fmt.Errorf("%w: no group key", ErrProposal)
	}
	if p.KeyID != tbls.KeyID(p.GroupKey) {
		return fmt.Errorf("%w: key id is not the group key's", ErrProposal)
	}
	if p.Import {
		if p.Old != nil || len(p.Dealers) != 0 || p.Epoch != 0 {
			return fmt.Errorf("%w: an import has no old group, dealers or epoch", ErrProposal)
		}
		if p.Initiator == 0 || int(p.Initiator) > len(p.Parties) {
			return fmt.Errorf("%w: the importing dealer %d is not in the new group", ErrProposal, p.Initiator)
		}
		return checkReshareSize(p.Threshold, len(p.Parties), 1)
	}
	if p.Old == nil {
		return fmt.Errorf("%w: a reshare needs the old group's record", ErrProposal)
	}
	if p.Epoch == ^uint32(0) {
		return fmt.Errorf("%w: epoch %d has no successor", ErrProposal, p.Epoch)
	}
	if err := p.Old.validate(p.GroupKey); err != nil {
		return err
	}
	if len(p.Dealers) < p.Old.Threshold {
		return fmt.Errorf("%w: %d dealers, the old group needs at least %d", ErrProposal, len(p.Dealers), p.Old.Threshold)
	}
	for k, i := range p.Dealers {
		if i == 0 || int(i) > len(p.Old.Parties) || (k > 0 && i <= p.Dealers[k-1]) {
			return fmt.Errorf("%w: dealers must be ascending old indices in 1..%d", ErrProposal, len(p.Old.Parties))
		}
	}
	// A console key names one participant: a dealer that stays must be
	// the same party in both rosters, and nobody else may use its key.
	for _, i := range p.Dealers {
		q := p.Old.Parties[i-1]
		for _, np := range p.Parties {
			sameKey := bytes.Equal(np.ConsoleKey, q.ConsoleKey)
			sameSignal := np.Account == q.Account && np.Device == q.Device
			if (sameKey || sameSignal) && !sameParty(np, q) {
				return fmt.Errorf("%w: old party %d appears changed in the new group", ErrProposal, i)
			}
		}
	}
	parts := p.Participants()
	if p.Initiator == 0 || int(p.Initiator) > len(parts) {
		return fmt.Errorf("%w: initiator %d is not a participant", ErrProposal, p.Initiator)
	}
	return checkReshareSize(p.Threshold, len(p.Parties), len(p.Dealers))
}

// checkReshareSize keeps every message within one envelope: the reveal
// round carries every dealer's signed deal of t' commitments.
func checkReshareSize(t, n, dealers int) error {
	const perDeal = 256 // envelope and framing, with slack
	if dealers*(t*(bls.G1Size+2)+perDeal) > wire.MaxEnvelopeSize || n > share.MaxParties || dealers > share.MaxParties {
		return fmt.Errorf("%w: %d dealers to a %d-of-%d group is too large for one deal exchange message", ErrProposal, dealers, t, n)
	}
	return nil
}

func (o *OldGroup) validate(key *bls.PublicKey) error {
	if err := share.CheckParams(o.Threshold, len(o.Parties)); err != nil {
		return fmt.Errorf("%w: old group: %w", ErrProposal, err)
	}
	if err := validateParties(o.Parties); err != nil {
		return fmt.Errorf("old group: %w", err)
	}
	if len(o.Commitments) != o.Threshold || len(o.PublicShares) != len(o.Parties) {
		return fmt.Errorf("%w: old group: %d commitments and %d public shares for %d-of-%d", ErrProposal,
			len(o.Commitments), len(o.PublicShares), o.Threshold, len(o.Parties))
	}
	g := bls12381.NewG1()
	if !g.Equal(&o.Commitments[0], key.Point()) {
		return fmt.Errorf("%w: old group: commitments are not to the group key", ErrProposal)
	}
	for j, x := range o.PublicShares {
		if x == nil || !g.Equal(o.Commitments.Eval(uint32(j+1)), x.Point()) {
			return fmt.Errorf("%w: old group: public share %d is not on the committed polynomial", ErrProposal, j+1)
		}
	}
	return nil
}

// NewOldGroup is the record of a group that holds a key, as a keygen
// (Result) or a reshare (ReshareResult) leaves it: the roster it ran with,
// the summed commitments and the group they derive.
func NewOldGroup(parties []Party, comms share.Commitments, group *tbls.Group) *OldGroup {
	return &OldGroup{Threshold: group.T, Parties: slices.Clone(parties), Commitments: slices.Clone(comms), PublicShares: slices.Clone(group.Shares)}
}

// Equal reports whether two old-group records are the same: the same
// threshold, roster, commitments and public shares.
func (o *OldGroup) Equal(b *OldGroup) bool {
	if o == nil || b == nil {
		return o == b
	}
	if o.Threshold != b.Threshold || len(o.Parties) != len(b.Parties) || len(o.Commitments) != len(b.Commitments) || len(o.PublicShares) != len(b.PublicShares) {
		return false
	}
	for i := range o.Parties {
		if !sameParty(o.Parties[i], b.Parties[i]) {
			return false
		}
	}
	g := bls12381.NewG1()
	for k := range o.Commitments {
		if !g.Equal(&o.Commitments[k], &b.Commitments[k]) {
			return false
		}
	}
	for j := range o.PublicShares {
		if o.PublicShares[j] == nil || b.PublicShares[j] == nil || !o.PublicShares[j].Equal(b.PublicShares[j]) {
			return false
		}
	}
	return true
}

// CheckRecord compares the proposal's old group with the record this
// console stored for the key (its id, epoch and group): an old signer
// refuses a proposal that describes the group otherwise (ErrRecordMismatch).
func (p *ReshareProposal) CheckRecord(keyID [32]byte, epoch uint32, local *OldGroup) error {
	if p.Import {
		return fmt.Errorf("%w: an import has no old group", ErrRecordMismatch)
	}
	switch {
	case p.KeyID != keyID:
		return fmt.Errorf("%w: another key", ErrRecordMismatch)
	case p.Epoch != epoch:
		return fmt.Errorf("%w: epoch %d, this console holds epoch %d", ErrRecordMismatch, p.Epoch, epoch)
	case !p.Old.Equal(local):
		return fmt.Errorf("%w: the old group differs from this console's record", ErrRecordMismatch)
	}
	return nil
}

// Reshare proposal field numbers.
const (
	frImport      = 1
	frKeyID       = 2
	frGroupKey    = 3
	frEpoch       = 4
	frOldT        = 5
	frOldParties  = 6
	frOldComms    = 7
	frOldShares   = 8
	frDealers     = 9
	frThreshold   = 10
	frParties     = 11
	frNonce       = 12
	frTimeout     = 13
	frInitiator   = 14
	frCreated     = 15
	maxPartyBytes = 512
)

// Encode returns the canonical encoding; an invalid proposal has none.
func (p *ReshareProposal) Encode() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	parties, err := encodeParties(p.Parties)
	if err != nil {
		return nil, err
	}
	var e wire.Encoder
	if p.Import {
		e.Uint(frImport, 1)
	} else {
		e.Uint(frImport, 0)
	}
	e.Bytes(frKeyID, p.KeyID[:])
	e.Bytes(frGroupKey, p.GroupKey.Bytes())
	e.Uint(frEpoch, uint64(p.Epoch))
	if p.Old != nil {
		old, err := encodeParties(p.Old.Parties)
		if err != nil {
			return nil, err
		}
		xs := make([][]byte, len(p.Old.PublicShares))
		for j, x := range p.Old.PublicShares {
			xs[j] = x.Bytes()
		}
		e.Uint(frOldT, uint64(p.Old.Threshold))
		e.Repeated(frOldParties, old)
		e.Repeated(frOldComms, p.Old.Commitments.Bytes())
		e.Repeated(frOldShares, xs)
		e.Bytes(frDealers, packIndices(p.Dealers))
	} else {
		e.Uint(frOldT, 0)
		e.Repeated(frOldParties, nil)
		e.Repeated(frOldComms, nil)
		e.Repeated(frOldShares, nil)
		e.Bytes(frDealers, nil)
	}
	e.Uint(frThreshold, uint64(p.Threshold))
	e.Repeated(frParties, parties)
	e.Bytes(frNonce, p.Nonce[:])
	e.Uint(frTimeout, uint64(p.RoundTimeout/time.Second))
	e.Uint(frInitiator, uint64(p.Initiator))
	if !p.Created.IsZero() {
		e.Uint(frCreated, uint64(p.Created.Unix()))
	} else {
		e.Uint(frCreated, 0)
	}
	b, err := e.Finish()
	if err != nil {
		return nil, err
	}
	// The proposal travels in one envelope: two rosters, the old
	// commitments and public shares must fit (with the envelope's own
	// fields and signature).
	if len(b)+256 > wire.MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: the proposal is %d bytes, too large for one message", ErrProposal, len(b))
	}
	return b, nil
}

// DecodeReshareProposal strictly decodes and validates a reshare or import
// proposal (points through the subgroup-checking decoders).
func DecodeReshareProposal(b []byte) (*ReshareProposal, error) {
	d := wire.NewDecoder(b)
	imp, _ := d.Uint(frImport)
	keyID, _ := d.Fixed(frKeyID, 32)
	groupKey, _ := d.Fixed(frGroupKey, bls.G1Size)
	epoch, _ := d.Uint32(frEpoch)
	oldT, _ := d.Uint32(frOldT)
	oldParties, _ := d.Repeated(frOldParties, share.MaxParties, maxPartyBytes)
	oldComms, _ := d.RepeatedFixed(frOldComms, bls.G1Size, share.MaxParties)
	oldShares, _ := d.RepeatedFixed(frOldShares, bls.G1Size, share.MaxParties)
	dealers, _ := d.Bytes(frDealers, share.MaxParties)
	t, _ := d.Uint32(frThreshold)
	parties, _ := d.Repeated(frParties, share.MaxParties, maxPartyBytes)
	nonce, _ := d.Fixed(frNonce, 32)
	timeout, _ := d.Uint(frTimeout)
	initiator, _ := d.Uint32(frInitiator)
	created, _ := d.Uint(frCreated)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProposal, err)
	}
	if imp > 1 || timeout > uint64(maxRoundTimeout/time.Second) || created > 1<<40 || t > share.MaxParties || oldT > share.MaxParties {
		return nil, fmt.Errorf("%w: field out of range", ErrProposal)
	}
	p := &ReshareProposal{
		Import:       imp == 1,
		Epoch:        epoch,
		Threshold:    int(t),
		RoundTimeout: time.Duration(timeout) * time.Second,
		Initiator:    initiator,
	}
	copy(p.KeyID[:], keyID)
	copy(p.Nonce[:], nonce)
	if created != 0 {
		p.Created = time.Unix(int64(created), 0).UTC()
	}
	var err error
	if p.GroupKey, err = bls.PublicKeyFromBytes(groupKey); err != nil {
		return nil, fmt.Errorf("%w: group key: %w", ErrProposal, err)
	}
	if p.Parties, err = decodeParties(parties); err != nil {
		return nil, err
	}
	if oldT != 0 || len(oldParties) != 0 || len(oldComms) != 0 || len(oldShares) != 0 || len(dealers) != 0 {
		old := &OldGroup{Threshold: int(oldT)}
		if old.Parties, err = decodeParties(oldParties); err != nil {
			return nil, err
		}
		if old.Commitments, err = share.CommitmentsFromBytes(oldComms, len(oldComms)); err != nil {
			return nil, fmt.Errorf("%w: old group: %w", ErrProposal, err)
		}
		for j, xb := range oldShares {
			x, err := bls.PublicKeyFromBytes(xb)
			if err != nil {
				return nil, fmt.Errorf("%w: old public share %d: %w", ErrProposal, j+1, err)
			}
			old.PublicShares = append(old.PublicShares, x)
		}
		if p.Dealers, err = unpackIndices(dealers, share.MaxParties); err != nil {
			return nil, fmt.Errorf("%w: dealers: %w", ErrProposal, err)
		}
		p.Old = old
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeParties(enc [][]byte) ([]Party, error) {
	out := make([]Party, len(enc))
	for i, pb := range enc {
		q, err := decodeParty(pb)
		if err != nil {
			return nil, fmt.Errorf("%w: party %d: %w", ErrProposal, i+1, err)
		}
		out[i] = q
	}
	return out, nil
}

// ID is the ceremony id: SHA-256 over a domain prefix (not keygen's) and
// the canonical encoding.
func (p *ReshareProposal) ID() ([32]byte, error) {
	b, err := p.Encode()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(append([]byte(reshareProposalDomain), b...)), nil
}

// consoleKeyOf returns participant j's console key, for wire.Open.
func consoleKeyOf(parts []Party) func(uint32) (ed25519.PublicKey, bool) {
	return func(j uint32) (ed25519.PublicKey, bool) {
		if j == 0 || int(j) > len(parts) {
			return nil, false
		}
		return parts[j-1].ConsoleKey, true
	}
}
