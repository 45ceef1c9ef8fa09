package ceremony

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// ErrUntrustedProposal: a proposal's roster is not the roster this console
// has pinned (unknown party, changed key), or its signer is not its
// initiator.
var ErrUntrustedProposal = errors.New("ceremony: untrusted keygen proposal")

// KeygenSession is one party's side of a key generation: the proposal round
// (a human accepts on every console) around the bls/dkg engine. Not safe
// for concurrent use: the event loop owns it.
type KeygenSession struct {
	prop    *dkg.Proposal
	propEnv []byte
	self    uint32
	seed    [32]byte
	engine  *dkg.Engine
}

// ProposeKeygen starts a ceremony from this console: it signs and
// broadcasts the proposal and, since proposing is this human's acceptance,
// its acceptance too. seed is fresh secret randomness kept with the
// ceremony (see dkg.Config.Seed).
func ProposeKeygen(prop *dkg.Proposal, consoleKey ed25519.PrivateKey, seed [32]byte) (*KeygenSession, []Outgoing, error) {
	k, out, err := ProposeKeygenPending(prop, consoleKey, seed)
	if err != nil {
		return nil, nil, err
	}
	more, err := k.Accept()
	if err != nil {
		return nil, nil, err
	}
	return k, append(out, more...), nil
}

// ProposeKeygenPending is ProposeKeygen without this console's acceptance:
// the proposal goes out, and this console's human answers it like the
// others (a script proposed it through a socket that may not approve). A
// restart reopens it with OpenKeygenProposal.
func ProposeKeygenPending(prop *dkg.Proposal, consoleKey ed25519.PrivateKey, seed [32]byte) (*KeygenSession, []Outgoing, error) {
	pub, _ := consoleKey.Public().(ed25519.PublicKey)
	self, ok := prop.IndexOfConsoleKey(pub)
	if !ok || self != prop.Initiator {
		return nil, nil, fmt.Errorf("%w: this console is not the proposal's initiator", ErrConfig)
	}
	id, err := prop.ID()
	if err != nil {
		return nil, nil, err
	}
	payload, err := prop.Encode()
	if err != nil {
		return nil, nil, err
	}
	env, err := wire.Seal(&wire.Envelope{Kind: wire.KindProposal, Ceremony: id, Round: uint32(dkg.RoundAccept), From: self, Payload: payload}, consoleKey)
	if err != nil {
		return nil, nil, fmt.Errorf("ceremony: seal proposal: %w", err)
	}
	k, err := newKeygen(prop, env, self, consoleKey, seed)
	if err != nil {
		return nil, nil, err
	}
	return k, []Outgoing{{Kind: wire.KindProposal, Round: uint32(dkg.RoundAccept), Envelope: env}}, nil
}

// OpenKeygenProposal checks a received proposal: well formed, signed by its
// initiator's console key as the proposal itself lists it, and trusted by
// the caller (trust compares the roster with the pinned one: without that
// check anyone could propose a roster of their own keys). The session waits
// for the human (Accept or Decline).
func OpenKeygenProposal(raw []byte, consoleKey ed25519.PrivateKey, seed [32]byte, trust func(*dkg.Proposal) error) (*KeygenSession, error) {
	env, err := wire.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("ceremony: proposal: %w", err)
	}
	if env.Kind != wire.KindProposal || env.To != 0 || env.Round != uint32(dkg.RoundAccept) {
		return nil, fmt.Errorf("%w: %s is not a proposal", ErrUnexpected, env.Kind)
	}
	prop, err := dkg.DecodeProposal(env.Payload)
	if err != nil {
		return nil, err
	}
	id, _ := prop.ID()
	if env.Ceremony != id || env.From != prop.Initiator {
		return nil, fmt.Errorf("%w: envelope does not match the proposal it carries", ErrUntrustedProposal)
	}
	if _, err := wire.Open(raw, func(j uint32) (ed25519.PublicKey, bool) {
		if j == 0 || int(j) > prop.N() {
			return nil, false
		}
		return prop.Parties[j-1].ConsoleKey, true
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrustedProposal, err)
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
		return nil, fmt.Errorf("%w: this console is not in the proposed roster", ErrUntrustedProposal)
	}
	return newKeygen(prop, raw, self, consoleKey, seed)
}

func newKeygen(prop *dkg.Proposal, env []byte, self uint32, consoleKey ed25519.PrivateKey, seed [32]byte) (*KeygenSession, error) {
	e, err := dkg.New(dkg.Config{Proposal: prop, Self: self, Key: consoleKey, Seed: seed})
	if err != nil {
		return nil, err
	}
	return &KeygenSession{prop: prop, propEnv: env, self: self, seed: seed, engine: e}, nil
}

// ID is the ceremony id.
func (k *KeygenSession) ID() [32]byte { return k.engine.Ceremony() }

// Proposal returns the parameters the human is asked to accept.
func (k *KeygenSession) Proposal() *dkg.Proposal { return k.prop }

// ProposalEnvelope is the signed proposal, to store or relay.
func (k *KeygenSession) ProposalEnvelope() []byte { return k.propEnv }

// Self is this console's party index.
func (k *KeygenSession) Self() uint32 { return k.self }

// Accept records this human's acceptance.
func (k *KeygenSession) Accept() ([]Outgoing, error) {
	out, err := k.engine.Start()
	return convert(out), err
}

// Decline aborts the ceremony and tells the others.
func (k *KeygenSession) Decline(reason string) ([]Outgoing, error) {
	out, err := k.engine.Decline(reason)
	return convert(out), err
}

// Handle takes one envelope of this ceremony. The initiator's proposal,
// re-sent while it waits, is a duplicate here.
func (k *KeygenSession) Handle(raw []byte) ([]Outgoing, error) {
	if bytes.Equal(raw, k.propEnv) {
		return nil, dkg.ErrDuplicate
	}
	out, err := k.engine.Handle(raw)
	return convert(out), err
}

// Timeout fails the current round, naming who is missing.
func (k *KeygenSession) Timeout() ([]Outgoing, error) {
	out, err := k.engine.Timeout()
	return convert(out), err
}

// Resend repeats this console's messages that a peer may lack; the
// initiator also repeats its proposal while acceptances are awaited.
func (k *KeygenSession) Resend() []Outgoing {
	out := convert(k.engine.Resend())
	// Also while the initiator's own human has not answered yet (a
	// proposal made without accepting it): a restart may have lost it.
	waiting := k.engine.State() == dkg.StateCreated || (k.engine.Round() == dkg.RoundAccept && k.engine.State() == dkg.StateRunning)
	if k.self == k.prop.Initiator && waiting {
		out = append([]Outgoing{{Kind: wire.KindProposal, Round: uint32(dkg.RoundAccept), Envelope: k.propEnv}}, out...)
	}
	return out
}

// Final is this console's last message once the ceremony is over (its
// key confirmation or its abort), to answer a peer still waiting for it.
func (k *KeygenSession) Final() []Outgoing { return convert(k.engine.Final()) }

// LateAbort checks a peer's abort that came after this keygen finished
// here: non-nil when its evidence proves a party cheated (dkg.Engine
// LateAbort), and the key must then not be used.
func (k *KeygenSession) LateAbort(raw []byte) (*dkg.AbortError, error) {
	return k.engine.LateAbort(raw)
}

// Progress reports the round for display.
func (k *KeygenSession) Progress() dkg.Progress { return k.engine.Progress() }

// Err is the abort reason (*dkg.AbortError), if aborted.
func (k *KeygenSession) Err() error { return k.engine.Err() }

// Done reports whether the key is generated and confirmed.
func (k *KeygenSession) Done() bool { return k.engine.State() == dkg.StateDone }

// Result returns the key record and this party's secret share once Done.
func (k *KeygenSession) Result() (*Key, *share.Share, error) {
	r, err := k.engine.Result()
	if err != nil {
		return nil, nil, err
	}
	s := r.Share
	return NewKey(k.prop, r), &s, nil
}

func convert(out []dkg.Outgoing) []Outgoing {
	if len(out) == 0 {
		return nil
	}
	res := make([]Outgoing, len(out))
	for i, o := range out {
		res[i] = Outgoing{To: o.To, Kind: o.Kind, Round: uint32(o.Round), Envelope: o.Envelope}
	}
	return res
}

// Seed returns the secret seed the session was built with, for the caller
// to store (encrypted) with the ceremony.
func (k *KeygenSession) Seed() [32]byte { return k.seed }
