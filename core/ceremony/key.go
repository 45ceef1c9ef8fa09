// Package ceremony holds the ceremonies of a co-signer group as sans-IO
// state machines: key generation (driving the bls/dkg engine), reshare,
// refresh and import (driving its reshare engine), and signing (request, human approval or decline, partials, combination,
// verification, result). They take signed envelopes and human decisions in
// and give envelopes to send and progress out; core's event loop owns them,
// feeds them, persists their inputs and sends their outputs.
package ceremony

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// Key is the public record of a group key at one epoch: who holds shares,
// the threshold, the group key and public shares, and the group's proof of
// possession. It is what every party stores after a DKG or a reshare. The
// id never changes; a reshare or refresh moves the key to the next epoch
// with new parties, threshold and public shares.
type Key struct {
	ID       [32]byte // KeyID: SHA-256 of the compressed group key
	Ceremony [32]byte // the DKG or reshare that made this epoch
	// Proposal is the keygen's proposal for a key at the epoch its
	// keygen made; nil once a reshare moved it on.
	Proposal  *dkg.Proposal
	Epoch     uint32      // 0 from a keygen or an import; a reshare adds one
	Parties   []dkg.Party // the signers of this epoch; party j is Parties[j-1]
	Group     *tbls.Group
	GroupPoP  *bls.Signature
	Committed share.Commitments
}

// NewKey builds the record from a finished DKG.
func NewKey(p *dkg.Proposal, r *dkg.Result) *Key {
	return &Key{
		ID:        tbls.KeyID(r.Group.Key),
		Ceremony:  r.Ceremony,
		Proposal:  p,
		Parties:   p.Parties,
		Group:     r.Group,
		GroupPoP:  r.GroupPoP,
		Committed: r.Commitments,
	}
}

// NewReshareKey builds the record of the epoch a finished reshare or
// import made: the proposal's new group holds it.
func NewReshareKey(p *dkg.ReshareProposal, r *dkg.ReshareResult) *Key {
	return &Key{
		ID:        r.KeyID,
		Ceremony:  r.Ceremony,
		Epoch:     r.Epoch,
		Parties:   slices.Clone(p.Parties),
		Group:     r.Group,
		GroupPoP:  r.GroupPoP,
		Committed: r.Commitments,
	}
}

// OldGroup is the key's record as a reshare proposal must carry it (the
// record an old signer compares the proposal with).
func (k *Key) OldGroup() *dkg.OldGroup { return dkg.NewOldGroup(k.Parties, k.Committed, k.Group) }

// T is the threshold, N the number of parties.
func (k *Key) T() int { return k.Group.T }
func (k *Key) N() int { return k.Group.N() }

// consoleKey returns party j's console key, for wire.Open.
func (k *Key) consoleKey(j uint32) (ed25519.PublicKey, bool) {
	if j == 0 || int(j) > len(k.Parties) {
		return nil, false
	}
	return k.Parties[j-1].ConsoleKey, true
}

// ShortID is the first 4 bytes of an id in hex, for display.
func ShortID(id [32]byte) string { return fmt.Sprintf("%x", id[:4]) }

// Outgoing is an envelope to send: To 0 is a broadcast to every other party.
type Outgoing struct {
	To       uint32
	Kind     wire.Kind
	Round    uint32
	Envelope []byte
}

// Digest is the SHA-256 of an envelope, for logs.
func Digest(env []byte) [32]byte { return sha256.Sum256(env) }
