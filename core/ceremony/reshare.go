package ceremony

import (
	"bytes"
	"crypto/ed25519"
	"fmt"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// ReshareSession is one party's side of a reshare, refresh or import: the
// proposal round (a human accepts on every participating console) around
// the bls/dkg reshare engine. Envelope indices are participant indices
// (dkg.ReshareProposal.Participants): the new group first, then the old
// signers that deal without staying. Not safe for concurrent use.
type ReshareSession struct {
	prop    *dkg.ReshareProposal
	propEnv []byte
	parts   []dkg.Party
	self    uint32
	seed    [32]byte
	engine  *dkg.ReshareEngine
}

// ReshareKeys is what a console brings to a reshare besides its console
// key: its share of the old epoch when it deals (nil otherwise), or, for
// the importing console only, the whole key it splits (the engine wipes
// it).
type ReshareKeys struct {
	OldShare *share.Share
	Secret   *bls.SecretKey
}

// ProposeReshare starts a reshare or import from this console (its
// initiator): it signs the proposal and, since proposing is this human's
// acceptance, accepts (a dealer deals at once).
func ProposeReshare(prop *dkg.ReshareProposal, consoleKey ed25519.PrivateKey, seed [32]byte, keys ReshareKeys) (*ReshareSession, []Outgoing, error) {
	wipe := func() {
		if keys.Secret != nil {
			keys.Secret.Wipe()
		}
	}
	pub, _ := consoleKey.Public().(ed25519.PublicKey)
	self, ok := prop.IndexOfConsoleKey(pub)
	if !ok || self != prop.Initiator {
		wipe()
		return nil, nil, fmt.Errorf("%w: this console is not the proposal's initiator", ErrConfig)
	}
	id, err := prop.ID()
	if err != nil {
		wipe()
		return nil, nil, err
	}
	payload, err := prop.Encode()
	if err != nil {
		wipe()
		return nil, nil, err
	}
	env, err := wire.Seal(&wire.Envelope{Kind: wire.KindReshareProposal, Ceremony: id, Round: uint32(dkg.RoundAccept), From: self, Payload: payload}, consoleKey)
	if err != nil {
		wipe()
		return nil, nil, fmt.Errorf("ceremony: seal reshare proposal: %w", err)
	}
	r, err := newReshare(prop, env, self, consoleKey, seed, keys)
	if err != nil {
		return nil, nil, err
	}
	out := []Outgoing{{Kind: wire.KindReshareProposal, Round: uint32(dkg.RoundAccept), Envelope: env}}
	more, err := r.Accept()
	if err != nil {
		return nil, nil, err
	}
	return r, append(out, more...), nil
}

// DecodeReshareProposal checks a received proposal envelope: well formed,
// and signed by its initiator's console key as the proposal lists it. It
// does not decide whether this console trusts it (OpenReshareProposal).
func DecodeReshareProposal(raw []byte) (*dkg.ReshareProposal, *wire.Envelope, error) {
	env, err := wire.Decode(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("ceremony: reshare proposal: %w", err)
	}
	if env.Kind != wire.KindReshareProposal || env.To != 0 || env.Round != uint32(dkg.RoundAccept) {
		return nil, nil, fmt.Errorf("%w: %s is not a reshare proposal", ErrUnexpected, env.Kind)
	}
	prop, err := dkg.DecodeReshareProposal(env.Payload)
	if err != nil {
		return nil, nil, err
	}
	id, _ := prop.ID()
	if env.Ceremony != id || env.From != prop.Initiator {
		return nil, nil, fmt.Errorf("%w: envelope does not match the proposal it carries", ErrUntrustedProposal)
	}
	parts := prop.Participants()
	if _, err := wire.Open(raw, func(j uint32) (ed25519.PublicKey, bool) {
		if j == 0 || int(j) > len(parts) {
			return nil, false
		}
		return parts[j-1].ConsoleKey, true
	}); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUntrustedProposal, err)
	}
	return prop, env, nil
}

// OpenReshareProposal checks a received proposal (DecodeReshareProposal),
// lets trust refuse it (the caller compares the rosters with its pinned
// one and, on an old signer, the old group with its record), and builds
// this console's session, waiting for the human. keys.OldShare is this
// console's old share when the proposal names it a dealer.
func OpenReshareProposal(raw []byte, consoleKey ed25519.PrivateKey, seed [32]byte, keys ReshareKeys, trust func(*dkg.ReshareProposal) error) (*ReshareSession, error) {
	prop, _, err := DecodeReshareProposal(raw)
	if err != nil {
		return nil, err
	}
	if trust == nil {
		return nil, fmt.Errorf("%w: no roster to check it against", ErrUntrustedProposal)
	}
	if err := trust(prop); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrustedProposal, err)
	}
	pub, _ := consoleKey.Public().(ed25519.PublicKey)
	self, ok := prop.IndexOfConsoleKey(pub)
	if !ok {
		return nil, fmt.Errorf("%w: this console takes no part in the reshare", ErrUntrustedProposal)
	}
	return newReshare(prop, raw, self, consoleKey, seed, keys)
}

func newReshare(prop *dkg.ReshareProposal, env []byte, self uint32, consoleKey ed25519.PrivateKey, seed [32]byte, keys ReshareKeys) (*ReshareSession, error) {
	e, err := dkg.NewReshare(dkg.ReshareConfig{Proposal: prop, Self: self, Key: consoleKey, Seed: seed, OldShare: keys.OldShare, Secret: keys.Secret})
	if err != nil {
		return nil, err
	}
	return &ReshareSession{prop: prop, propEnv: env, parts: prop.Participants(), self: self, seed: seed, engine: e}, nil
}

// ID is the ceremony id.
func (r *ReshareSession) ID() [32]byte { return r.engine.Ceremony() }

// Proposal returns the parameters the human is asked to accept.
func (r *ReshareSession) Proposal() *dkg.ReshareProposal { return r.prop }

// Participants returns the parties by envelope index.
func (r *ReshareSession) Participants() []dkg.Party { return r.parts }

// ProposalEnvelope is the signed proposal, to store or relay.
func (r *ReshareSession) ProposalEnvelope() []byte { return r.propEnv }

// Self is this console's participant index.
func (r *ReshareSession) Self() uint32 { return r.self }

// Seed returns the secret seed the session was built with, for the caller
// to store (encrypted) with the ceremony.
func (r *ReshareSession) Seed() [32]byte { return r.seed }

// Accept records this human's acceptance; a dealer deals.
func (r *ReshareSession) Accept() ([]Outgoing, error) {
	out, err := r.engine.Start()
	return convert(out), err
}

// Decline aborts the ceremony and tells the others.
func (r *ReshareSession) Decline(reason string) ([]Outgoing, error) {
	out, err := r.engine.Decline(reason)
	return convert(out), err
}

// Handle takes one envelope of this ceremony. The initiator's proposal,
// re-sent while it waits, is a duplicate here.
func (r *ReshareSession) Handle(raw []byte) ([]Outgoing, error) {
	if bytes.Equal(raw, r.propEnv) {
		return nil, dkg.ErrDuplicate
	}
	out, err := r.engine.Handle(raw)
	return convert(out), err
}

// Timeout fails the current round, naming who is missing.
func (r *ReshareSession) Timeout() ([]Outgoing, error) {
	out, err := r.engine.Timeout()
	return convert(out), err
}

// Resend repeats this console's messages that a peer may lack; the
// initiator also repeats its proposal while acceptances are awaited.
func (r *ReshareSession) Resend() []Outgoing {
	out := convert(r.engine.Resend())
	if r.self == r.prop.Initiator && r.engine.State() == dkg.StateRunning && r.engine.Round() == dkg.RoundAccept {
		out = append([]Outgoing{{Kind: wire.KindReshareProposal, Round: uint32(dkg.RoundAccept), Envelope: r.propEnv}}, out...)
	}
	return out
}

// Final is what a peer still waiting may lack once the ceremony is over.
func (r *ReshareSession) Final() []Outgoing { return convert(r.engine.Final()) }

// LateAbort checks a peer's abort that came after this reshare finished
// here (dkg.ReshareEngine.LateAbort).
func (r *ReshareSession) LateAbort(raw []byte) (*dkg.AbortError, error) {
	return r.engine.LateAbort(raw)
}

// Progress reports the round for display, by participant index.
func (r *ReshareSession) Progress() dkg.Progress { return r.engine.Progress() }

// Err is the abort reason (*dkg.AbortError), if aborted.
func (r *ReshareSession) Err() error { return r.engine.Err() }

// Done reports whether every new signer confirmed.
func (r *ReshareSession) Done() bool { return r.engine.State() == dkg.StateDone }

// Result returns the new epoch's key record, this party's new share (nil
// for a signer of the old group only) and the engine's result (its
// Confirmations go to the old signers that took no part) once Done.
func (r *ReshareSession) Result() (*Key, *share.Share, *dkg.ReshareResult, error) {
	res, err := r.engine.Result()
	if err != nil {
		return nil, nil, nil, err
	}
	return NewReshareKey(r.prop, res), res.Share, res, nil
}
