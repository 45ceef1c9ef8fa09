package dkg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"slices"

	bls12381 "github.com/kilic/bls12-381"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// The reshare engine hands a group key X from an old group (t, n) to a new
// group (t', n') without anyone learning X's secret, refreshes a group's
// shares (the same group), or splits a key a trusted dealer imports
// (threshold-bls.md section 7, issue 16). It is a sibling of the keygen
// Engine with the same shape (Start, Decline, Handle, Timeout, Resend,
// Final, Result, Progress, LateAbort) and the same rounds, message kinds
// (but its deal and confirmation) and abort rules; keygen's code, wire
// format and behaviour are untouched.
//
// Each dealer i of D (old indices) deals a Feldman sharing of degree t'-1
// of lambda_i^D * x_i, its share weighted by its Lagrange coefficient over
// D, so that the dealt constant terms sum to X. Receivers check
// C'_{i,0} == lambda_i^D * X_i against the old group's public shares and
// their sub-share against the commitments, then echo, complain and justify
// as in keygen. Any failure aborts with signed evidence: the dealer set is
// never silently shrunk, so the qualified set is D itself, agreed through
// the echo hashes. A new signer's share is the sum of its sub-shares, the
// new public shares come from the summed commitments, and every new signer
// confirms as in keygen (partial proofs of possession that combine to one
// for the same X). An import is the same with one dealer (the importer)
// whose constant term is the imported key.

const (
	reshareDealsHashDomain = "cosigner-reshare-deals-v1\x00"
	reshareSeedLabel       = "reshare-coefficient"
)

// ReshareConfig is what a party needs to run one reshare or import.
type ReshareConfig struct {
	Proposal *ReshareProposal
	Self     uint32             // this party's participant index (ReshareProposal.Participants)
	Key      ed25519.PrivateKey // this party's console key
	// Seed derives the dealt polynomial; keep it (encrypted) with the
	// ceremony's inputs so a restarted dealer deals the same bytes.
	Seed [32]byte
	// OldShare is this party's share of the old epoch, required when it is
	// one of the dealers of a reshare. The engine copies it; the caller
	// keeps (and erases) its own.
	OldShare *share.Share
	// Secret is the whole key an importing dealer splits. The engine takes
	// it over and wipes it (and its own copies) as soon as it has dealt, or
	// when the ceremony ends first. Go cannot promise more: the bytes the
	// caller decoded it from, and any copy the runtime made while moving
	// values, are beyond this engine's reach. Since the key is never
	// stored, an importer restarted mid-ceremony resumes only if it is
	// given the key again (the same key and seed deal the same bytes);
	// otherwise it must decline. The sub-share envelopes Start returns
	// are, together, the key: send them and drop them, never store them
	// (the engine keeps none, so Resend cannot repeat them).
	Secret *bls.SecretKey
}

// ReshareResult is what a finished reshare or import leaves with a party.
type ReshareResult struct {
	Ceremony    [32]byte
	KeyID       [32]byte
	Epoch       uint32            // the new shares' epoch
	Group       *tbls.Group       // t', X (unchanged) and the new public shares
	Commitments share.Commitments // A'_0..A'_{t'-1}
	// Share is this party's new share, nil for a party of the old group
	// only: it holds nothing of the new epoch, and may erase its old share.
	Share    *share.Share
	GroupPoP *bls.Signature
	// Confirmations are the n' signed key confirmations in new-index order:
	// given to a signer of the old group only (VerifyHandover), they prove
	// that every new signer holds a share of X.
	Confirmations [][]byte
}

// ReshareEngine runs one party's side of one reshare or import. Not safe
// for concurrent use; one goroutine owns it.
type ReshareEngine struct {
	prop    *ReshareProposal
	id      [32]byte
	self    uint32
	key     ed25519.PrivateKey
	seed    [32]byte
	parts   []Party
	newN, t int
	dealers []uint32                // participant indices, in Dealers order
	c0      map[uint32]*bls.G1Point // expected C'_{i,0} per dealer
	// secret is lambda_i * x_i (reshare) or sk (import) until dealt.
	secret *bls.Scalar
	state  State
	round  Round

	inbox map[wire.Kind]map[uint32]received
	seen  map[wire.DedupKey]received

	poly       *share.Poly
	myDeal     []byte
	comms      map[uint32]share.Commitments
	shares     map[uint32]*bls.Scalar
	complaints []uint32
	dealsHash  []byte
	accused    map[uint32][]uint32
	revealRun  bool
	justifyRun bool

	result   *ReshareResult
	newComms [][]byte
	popHash  *bls.G2Point
	ownProof *bls.G2Point
	abortErr *AbortError
	lastOut  []Outgoing
	final    []Outgoing
	sent     []Outgoing
	past     map[uint32]Round
	dealt    bool
}

// NewReshare validates the configuration and builds an engine in
// StateCreated. A dealer's old share must match its public share in the
// proposal, and an importer's secret the proposal's key (ErrConfig).
func NewReshare(cfg ReshareConfig) (*ReshareEngine, error) {
	wipeSecret := func() {
		if cfg.Secret != nil {
			cfg.Secret.Wipe()
		}
	}
	if cfg.Proposal == nil {
		wipeSecret()
		return nil, fmt.Errorf("%w: no proposal", ErrConfig)
	}
	p := cfg.Proposal
	id, err := p.ID()
	if err != nil {
		wipeSecret()
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	parts := p.Participants()
	e := &ReshareEngine{
		prop: p, id: id, self: cfg.Self, key: cfg.Key, seed: cfg.Seed, parts: parts,
		newN: p.N(), t: p.Threshold, dealers: p.DealerIndices(),
		c0:     make(map[uint32]*bls.G1Point),
		inbox:  make(map[wire.Kind]map[uint32]received),
		seen:   make(map[wire.DedupKey]received),
		comms:  make(map[uint32]share.Commitments),
		shares: make(map[uint32]*bls.Scalar),
		past:   make(map[uint32]Round),
	}
	if err := e.configure(cfg); err != nil {
		wipeSecret()
		e.wipe()
		return nil, err
	}
	wipeSecret()
	return e, nil
}

func (e *ReshareEngine) configure(cfg ReshareConfig) error {
	p := e.prop
	if cfg.Self == 0 || int(cfg.Self) > len(e.parts) {
		return fmt.Errorf("%w: self index %d not in 1..%d", ErrConfig, cfg.Self, len(e.parts))
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: console key has %d bytes", ErrConfig, len(cfg.Key))
	}
	pub, _ := cfg.Key.Public().(ed25519.PublicKey)
	if !bytes.Equal(pub, e.parts[cfg.Self-1].ConsoleKey) {
		return fmt.Errorf("%w: console key does not match participant %d", ErrConfig, cfg.Self)
	}
	if cfg.Seed == ([32]byte{}) {
		return fmt.Errorf("%w: zero seed", ErrConfig)
	}
	g := bls12381.NewG1()
	if p.Import {
		e.c0[p.Initiator] = p.GroupKey.Point()
		if cfg.Self != p.Initiator {
			if cfg.Secret != nil {
				return fmt.Errorf("%w: only the importing dealer holds the secret key", ErrConfig)
			}
			return nil
		}
		if cfg.Secret == nil {
			return fmt.Errorf("%w: the importing dealer needs the secret key", ErrConfig)
		}
		// A SecretKey is in [1, r-1] by construction; its public key must
		// be the one every signer approved.
		if !cfg.Secret.PublicKey().Equal(p.GroupKey) {
			return fmt.Errorf("%w: the secret key is not the proposal's public key", ErrConfig)
		}
		e.secret = cfg.Secret.Scalar()
		return nil
	}
	old := make([]uint32, len(p.Dealers))
	copy(old, p.Dealers)
	lambdas, err := share.LagrangeAtZero(old)
	if err != nil {
		return fmt.Errorf("%w: dealers: %w", ErrConfig, err)
	}
	for k, i := range p.Dealers {
		e.c0[e.dealers[k]] = g.Affine(g.MulScalar(g.New(), p.Old.PublicShares[i-1].Point(), lambdas[k]))
	}
	k := slices.Index(e.dealers, cfg.Self)
	if k < 0 {
		if cfg.OldShare != nil {
			return fmt.Errorf("%w: participant %d does not deal, but was given an old share", ErrConfig, cfg.Self)
		}
		return nil
	}
	if cfg.Secret != nil {
		return fmt.Errorf("%w: a reshare deals old shares, not a secret key", ErrConfig)
	}
	s := cfg.OldShare
	if s == nil || s.Index != p.Dealers[k] {
		return fmt.Errorf("%w: dealer %d needs its share of old index %d", ErrConfig, cfg.Self, p.Dealers[k])
	}
	if !g.Equal(g.MulScalar(g.New(), g.One(), &s.Value), p.Old.PublicShares[s.Index-1].Point()) {
		return fmt.Errorf("%w: the old share does not match public share %d of the record", ErrConfig, s.Index)
	}
	e.secret = new(bls.Scalar)
	e.secret.Mul(lambdas[k], &s.Value)
	return nil
}

// Ceremony returns the ceremony id.
func (e *ReshareEngine) Ceremony() [32]byte { return e.id }

// Proposal returns the proposal.
func (e *ReshareEngine) Proposal() *ReshareProposal { return e.prop }

// Participants returns the ceremony's parties by participant index.
func (e *ReshareEngine) Participants() []Party { return slices.Clone(e.parts) }

// State returns the lifecycle state.
func (e *ReshareEngine) State() State { return e.state }

// Round returns the current round.
func (e *ReshareEngine) Round() Round { return e.round }

// Err returns the *AbortError once aborted, else nil.
func (e *ReshareEngine) Err() error {
	if e.abortErr == nil {
		return nil
	}
	return e.abortErr
}

// Result returns the outcome once Done.
func (e *ReshareEngine) Result() (*ReshareResult, error) {
	switch e.state {
	case StateDone:
		return e.result, nil
	case StateAborted:
		return nil, e.abortErr
	}
	return nil, fmt.Errorf("dkg: reshare not finished (state %s, round %s)", e.state, e.round)
}

func (e *ReshareEngine) move(to State) {
	if !e.state.canMove(to) {
		panic(fmt.Sprintf("dkg: invalid reshare state move %s -> %s", e.state, to))
	}
	e.state = to
}

func (e *ReshareEngine) isNew(j uint32) bool    { return j >= 1 && int(j) <= e.newN }
func (e *ReshareEngine) isDealer(j uint32) bool { return slices.Contains(e.dealers, j) }

// Start records this party's acceptance; a dealer deals with it.
func (e *ReshareEngine) Start() ([]Outgoing, error) {
	if e.state != StateCreated {
		return nil, fmt.Errorf("dkg: start in state %s", e.state)
	}
	e.move(StateRunning)
	e.round = RoundAccept
	out, err := e.broadcast(wire.KindAccept, RoundAccept, nil)
	if err != nil {
		return nil, err
	}
	if e.isDealer(e.self) {
		deal := e.deal()
		if e.state != StateRunning {
			return deal, nil
		}
		out = append(out, deal...)
	}
	e.round, e.dealt = RoundAccept, true
	e.lastOut = out
	more := e.advance()
	return e.emit(append(out, more...)), nil
}

// emit notes what this party sends, for Resend. An importer's sub-shares
// are not kept: n' of them are the key it must not hold after dealing, so
// a share lost on the way ends the import at its deadline instead. (The
// caller must not store them either: see ReshareConfig.Secret.)
func (e *ReshareEngine) emit(out []Outgoing) []Outgoing {
	if e.state == StateRunning {
		for _, o := range out {
			if e.prop.Import && o.Kind == wire.KindShare {
				continue
			}
			e.sent = append(e.sent, o)
		}
	}
	return out
}

// Decline aborts because this party's human declined.
func (e *ReshareEngine) Decline(detail string) ([]Outgoing, error) {
	if e.state != StateCreated && e.state != StateRunning {
		return nil, ErrFinished
	}
	return e.abort(&AbortError{Reason: ReasonDeclined, Blamed: []uint32{e.self}, Detail: truncate(detail)}), nil
}

// Timeout aborts the current round, naming the parties still awaited.
func (e *ReshareEngine) Timeout() ([]Outgoing, error) {
	if e.state != StateCreated && e.state != StateRunning {
		return nil, ErrFinished
	}
	waiting := e.Progress().Waiting
	return e.abort(&AbortError{
		Reason: ReasonTimeout,
		Blamed: waiting,
		Detail: fmt.Sprintf("no %s message from party %s before the deadline", e.round, joinIndices(waiting)),
	}), nil
}

// Resend is Engine.Resend for this ceremony.
func (e *ReshareEngine) Resend() []Outgoing {
	if e.state != StateRunning {
		return nil
	}
	var out []Outgoing
	for _, j := range e.others() {
		done, any := e.past[j]
		for _, o := range e.sent {
			if (o.To != 0 && o.To != j) || (any && o.Round <= done) {
				continue
			}
			o.To = j
			out = append(out, o)
		}
	}
	return out
}

// Final returns, once over, what a peer still sending may lack: its abort,
// or, once done, its broadcasts from the echo on (echo, any reveal and
// justification, and a new signer's confirmation).
func (e *ReshareEngine) Final() []Outgoing {
	if e.state != StateDone && e.state != StateAborted {
		return nil
	}
	return slices.Clone(e.final)
}

func reshareCompletedBefore(k wire.Kind) (Round, bool) {
	switch k {
	case wire.KindEcho:
		return RoundDeal, true
	case wire.KindDealReveal, wire.KindJustification, wire.KindReshareConfirm:
		return RoundEcho, true
	}
	return 0, false
}

var reshareRoundOfKind = map[wire.Kind]Round{
	wire.KindAccept:         RoundAccept,
	wire.KindReshareDeal:    RoundDeal,
	wire.KindShare:          RoundDeal,
	wire.KindEcho:           RoundEcho,
	wire.KindDealReveal:     RoundReveal,
	wire.KindJustification:  RoundJustify,
	wire.KindReshareConfirm: RoundConfirm,
}

// Handle takes one signed envelope from a peer, as Engine.Handle does.
func (e *ReshareEngine) Handle(raw []byte) ([]Outgoing, error) {
	if e.state == StateDone || e.state == StateAborted {
		return nil, ErrFinished
	}
	env, err := wire.Open(raw, consoleKeyOf(e.parts))
	if err != nil {
		return nil, fmt.Errorf("dkg: %w", err)
	}
	if env.Ceremony != e.id {
		return nil, ErrWrongCeremony
	}
	if env.From == e.self {
		return nil, fmt.Errorf("%w: own message from the network", ErrUnexpected)
	}
	if err := e.checkSlot(env); err != nil {
		return nil, err
	}
	key := env.Key()
	if prev, ok := e.seen[key]; ok {
		if !wire.Equivocation(prev.env, env) {
			return nil, ErrDuplicate
		}
		return e.abort(&AbortError{
			Reason:   ReasonEquivocation,
			Blamed:   []uint32{env.From},
			Detail:   fmt.Sprintf("party %d signed two different %s messages", env.From, env.Kind),
			Evidence: [][]byte{prev.raw, raw},
		}), nil
	}
	rec := received{env: env, raw: raw}
	e.seen[key] = rec
	if r, ok := reshareCompletedBefore(env.Kind); ok {
		if prev, had := e.past[env.From]; !had || r > prev {
			e.past[env.From] = r
		}
	}
	if env.Kind == wire.KindAbort {
		return nil, e.remoteAbort(rec)
	}
	if e.inbox[env.Kind] == nil {
		e.inbox[env.Kind] = make(map[uint32]received)
	}
	e.inbox[env.Kind][env.From] = rec
	if e.state != StateRunning {
		return nil, nil
	}
	return e.emit(e.advance()), nil
}

// checkSlot drops envelopes whose kind, round, sender or recipient cannot
// occur: only dealers deal and justify, only new signers receive shares,
// complain and confirm.
func (e *ReshareEngine) checkSlot(env *wire.Envelope) error {
	if env.Kind == wire.KindAbort {
		if env.To != 0 {
			return fmt.Errorf("%w: abort addressed to one party", ErrUnexpected)
		}
		return nil
	}
	r, ok := reshareRoundOfKind[env.Kind]
	if !ok {
		return fmt.Errorf("%w: %s is not a reshare message", ErrUnexpected, env.Kind)
	}
	if Round(env.Round) != r {
		return fmt.Errorf("%w: %s in round %d", ErrUnexpected, env.Kind, env.Round)
	}
	switch env.Kind {
	case wire.KindReshareDeal, wire.KindShare, wire.KindJustification:
		if !e.isDealer(env.From) {
			return fmt.Errorf("%w: %s from party %d, which does not deal", ErrUnexpected, env.Kind, env.From)
		}
	case wire.KindReshareConfirm:
		if !e.isNew(env.From) {
			return fmt.Errorf("%w: confirmation from party %d, which is not in the new group", ErrUnexpected, env.From)
		}
	}
	if env.Kind == wire.KindShare {
		if env.To != e.self || !e.isNew(e.self) {
			return fmt.Errorf("%w: share for party %d", ErrUnexpected, env.To)
		}
	} else if env.To != 0 {
		return fmt.Errorf("%w: %s addressed to one party", ErrUnexpected, env.Kind)
	}
	return nil
}

func (e *ReshareEngine) remoteAbort(rec received) error {
	m, err := decodeAbort(rec.env.Payload, len(e.parts))
	if err != nil {
		m = &abort{Reason: ReasonRemote, Detail: "unreadable abort message"}
	}
	a := &AbortError{
		Reason: m.Reason, Blamed: m.Blamed, By: rec.env.From,
		Detail: fmt.Sprintf("party %d aborted: %s", rec.env.From, m.Detail), Evidence: m.Evidence,
	}
	if a.misbehaviour() {
		a.Blamed = provenBlame(e, rec.env.From, m)
		for _, j := range m.Blamed {
			if !slices.Contains(a.Blamed, j) {
				a.Claimed = append(a.Claimed, j)
			}
		}
	}
	e.abort(a)
	return nil
}

func (e *ReshareEngine) abort(a *AbortError) []Outgoing {
	a.Round = e.round
	slices.Sort(a.Blamed)
	local := a.By == 0
	if local {
		a.By = e.self
	}
	e.abortErr = a
	e.move(StateAborted)
	e.wipe()
	e.lastOut = nil
	if !local {
		return nil
	}
	m := &abort{Reason: a.Reason, Blamed: a.Blamed, Detail: a.Detail, Evidence: a.Evidence}
	payload, err := m.encode()
	if err == nil {
		var out []Outgoing
		out, err = e.broadcast(wire.KindAbort, e.round, payload)
		if err == nil {
			e.final = out
			return out
		}
	}
	m.Evidence = nil
	payload, _ = m.encode()
	out, _ := e.broadcast(wire.KindAbort, e.round, payload)
	e.final = out
	return out
}

func (e *ReshareEngine) wipe() {
	if e.poly != nil {
		e.poly.Wipe()
		e.poly = nil
	}
	if e.secret != nil {
		bls.WipeScalar(e.secret)
		e.secret = nil
	}
	for _, s := range e.shares {
		bls.WipeScalar(s)
	}
	clear(e.shares)
	clear(e.seed[:])
	e.sent = nil
}

func (e *ReshareEngine) broadcast(kind wire.Kind, round Round, payload []byte) ([]Outgoing, error) {
	b, err := e.seal(kind, round, 0, payload)
	if err != nil {
		return nil, err
	}
	return []Outgoing{{To: 0, Kind: kind, Round: round, Envelope: b}}, nil
}

func (e *ReshareEngine) seal(kind wire.Kind, round Round, to uint32, payload []byte) ([]byte, error) {
	env := &wire.Envelope{Kind: kind, Ceremony: e.id, Round: uint32(round), From: e.self, To: to, Payload: payload}
	b, err := wire.Seal(env, e.key)
	if err != nil {
		return nil, fmt.Errorf("dkg: seal %s: %w", kind, err)
	}
	return b, nil
}

func (e *ReshareEngine) others() []uint32 {
	out := make([]uint32, 0, len(e.parts)-1)
	for j := 1; j <= len(e.parts); j++ {
		if uint32(j) != e.self {
			out = append(out, uint32(j))
		}
	}
	return out
}

func without(set []uint32, j uint32) []uint32 {
	return slices.DeleteFunc(slices.Clone(set), func(x uint32) bool { return x == j })
}

func (e *ReshareEngine) newOthers() []uint32 {
	var out []uint32
	for j := uint32(1); j <= uint32(e.newN); j++ {
		if j != e.self {
			out = append(out, j)
		}
	}
	return out
}

// wait is one kind of message a round waits for, and from whom.
type wait struct {
	kind wire.Kind
	from []uint32
}

func (e *ReshareEngine) expected() []wait {
	switch e.round {
	case RoundAccept:
		return []wait{{wire.KindAccept, e.others()}}
	case RoundDeal:
		w := []wait{{wire.KindReshareDeal, without(e.dealers, e.self)}}
		if e.isNew(e.self) {
			w = append(w, wait{wire.KindShare, without(e.dealers, e.self)})
		}
		return w
	case RoundEcho:
		return []wait{{wire.KindEcho, e.others()}}
	case RoundReveal:
		return []wait{{wire.KindDealReveal, e.others()}}
	case RoundJustify:
		var accused []uint32
		for i := range e.accused {
			if i != e.self {
				accused = append(accused, i)
			}
		}
		slices.Sort(accused)
		return []wait{{wire.KindJustification, accused}}
	case RoundConfirm:
		return []wait{{wire.KindReshareConfirm, e.newOthers()}}
	}
	return nil
}

func (e *ReshareEngine) missing(w wait) []uint32 {
	var out []uint32
	for _, j := range w.from {
		if _, ok := e.inbox[w.kind][j]; !ok {
			out = append(out, j)
		}
	}
	return out
}

// Progress reports the current round for display, by participant index.
func (e *ReshareEngine) Progress() Progress {
	p := Progress{State: e.state, Round: e.round, Total: 4}
	steps := []Round{RoundAccept, RoundDeal, RoundEcho}
	if e.revealRun {
		p.Total++
		steps = append(steps, RoundReveal)
	}
	if e.justifyRun {
		p.Total++
		steps = append(steps, RoundJustify)
	}
	steps = append(steps, RoundConfirm)
	p.Step = slices.Index(steps, e.round) + 1
	if e.state != StateRunning && e.state != StateCreated {
		return p
	}
	missing := map[uint32]bool{}
	var from []uint32
	for _, w := range e.expected() {
		from = append(from, w.from...)
		for _, j := range e.missing(w) {
			missing[j] = true
		}
	}
	if e.state == StateCreated {
		missing[e.self] = true
	}
	for j := uint32(1); j <= uint32(len(e.parts)); j++ {
		if missing[j] {
			p.Waiting = append(p.Waiting, j)
		} else if j == e.self || slices.Contains(from, j) {
			p.Got = append(p.Got, j)
		}
	}
	return p
}

func (e *ReshareEngine) advance() []Outgoing {
	var out []Outgoing
	for e.state == StateRunning {
		for _, w := range e.expected() {
			if len(e.missing(w)) > 0 {
				return out
			}
		}
		var step []Outgoing
		switch e.round {
		case RoundAccept:
			// Dealt (or, for a receiver, nothing to deal) with the
			// acceptance: the deal round only waits for the others'.
			e.round = RoundDeal
			e.lastOut = slices.DeleteFunc(slices.Clone(e.lastOut), func(o Outgoing) bool { return o.Kind == wire.KindAccept })
		case RoundDeal:
			step = e.echo()
		case RoundEcho:
			step = e.afterEcho()
		case RoundReveal:
			step = e.afterReveal()
		case RoundJustify:
			step = e.afterJustify()
		case RoundConfirm:
			step = e.afterConfirm()
		}
		out = append(out, step...)
	}
	return out
}

func (e *ReshareEngine) fail(reason AbortReason, blamed []uint32, detail string, evidence ...[]byte) []Outgoing {
	return e.abort(&AbortError{Reason: reason, Blamed: blamed, Detail: detail, Evidence: evidence})
}

func (e *ReshareEngine) internalFailure(err error) []Outgoing {
	return e.abort(&AbortError{Reason: ReasonDeclined, Blamed: []uint32{e.self}, Detail: "internal error: " + truncate(err.Error())})
}

// makePoly builds this dealer's polynomial: the constant term is its
// secret (lambda_i * x_i, or the imported key), the others come from the
// seed, so a restarted dealer deals exactly the same.
func (e *ReshareEngine) makePoly() (*share.Poly, error) {
	coeffs := make([]*bls.Scalar, e.t)
	coeffs[0] = new(bls.Scalar).Set(e.secret)
	for k := 1; k < e.t; k++ {
		coeffs[k] = deriveScalar(&e.seed, e.id, reshareSeedLabel, uint32(k))
	}
	poly, err := share.PolyFromCoefficients(coeffs)
	for _, c := range coeffs {
		bls.WipeScalar(c)
	}
	return poly, err
}

// deal is round 1 for a dealer: commit, send each new signer its
// sub-share. An importer wipes its key and polynomial right after: it
// keeps only its own share (if it is a new signer) and cannot justify, so
// a complaint against it aborts the import (complaintsStep).
func (e *ReshareEngine) deal() []Outgoing {
	poly, err := e.makePoly()
	if err != nil {
		return e.internalFailure(err)
	}
	bls.WipeScalar(e.secret)
	e.secret = nil
	comms := poly.Commit()
	payload, err := (&reshareDeal{Commitments: comms.Bytes()}).encode()
	if err != nil {
		poly.Wipe()
		return e.internalFailure(err)
	}
	dealEnv, err := e.seal(wire.KindReshareDeal, RoundDeal, 0, payload)
	if err != nil {
		poly.Wipe()
		return e.internalFailure(err)
	}
	e.poly = poly
	e.myDeal = dealEnv
	e.comms[e.self] = comms
	if e.isNew(e.self) {
		e.shares[e.self] = poly.Eval(e.self)
	}
	out := []Outgoing{{To: 0, Kind: wire.KindReshareDeal, Round: RoundDeal, Envelope: dealEnv}}
	for _, j := range e.newOthers() {
		s := poly.Eval(j)
		payload, err := (&shareMsg{Value: bls.ScalarBytes(s)}).encode()
		bls.WipeScalar(s)
		if err != nil {
			return e.internalFailure(err)
		}
		env, err := e.seal(wire.KindShare, RoundDeal, j, payload)
		if err != nil {
			return e.internalFailure(err)
		}
		out = append(out, Outgoing{To: j, Kind: wire.KindShare, Round: RoundDeal, Envelope: env})
	}
	if e.prop.Import {
		e.poly.Wipe()
		e.poly = nil
	}
	e.lastOut = out
	return out
}

// checkDeal decodes dealer i's commitments and checks that the constant
// term is the one the old group's record (or the imported key) pins.
func (e *ReshareEngine) checkDeal(i uint32, payload []byte) (share.Commitments, error) {
	d, err := decodeReshareDeal(payload, e.t)
	if err != nil {
		return nil, err
	}
	comms, err := share.CommitmentsFromBytes(d.Commitments, e.t)
	if err != nil {
		return nil, err
	}
	want, ok := e.c0[i]
	if !ok {
		return nil, fmt.Errorf("party %d is not a dealer", i)
	}
	if !bls12381.NewG1().Equal(&comms[0], want) {
		if e.prop.Import {
			return nil, fmt.Errorf("constant term is not the imported public key")
		}
		return nil, fmt.Errorf("constant term is not lambda * X_%d of the old group", e.oldIndex(i))
	}
	return comms, nil
}

func (e *ReshareEngine) oldIndex(participant uint32) uint32 {
	if k := slices.Index(e.dealers, participant); k >= 0 && !e.prop.Import {
		return e.prop.Dealers[k]
	}
	return 0
}

func (e *ReshareEngine) echo() []Outgoing {
	for _, i := range without(e.dealers, e.self) {
		rec := e.inbox[wire.KindReshareDeal][i]
		comms, err := e.checkDeal(i, rec.env.Payload)
		if err != nil {
			return e.fail(ReasonInvalidDeal, []uint32{i}, fmt.Sprintf("deal of party %d: %v", i, err), rec.raw)
		}
		e.comms[i] = comms
	}
	if e.isNew(e.self) {
		for _, i := range without(e.dealers, e.self) {
			rec := e.inbox[wire.KindShare][i]
			m, err := decodeShare(rec.env.Payload)
			var s *bls.Scalar
			if err == nil {
				s, err = bls.ScalarFromBytes(m.Value)
			}
			if err == nil {
				err = e.comms[i].VerifyShare(e.self, s)
			}
			if err != nil {
				e.complaints = append(e.complaints, i)
				continue
			}
			e.shares[i] = s
		}
		slices.Sort(e.complaints)
	}
	e.dealsHash = e.hashDeals(e.dealEnvelopes())
	payload, err := (&echo{DealsHash: e.dealsHash, Complaints: e.complaints}).encode()
	if err != nil {
		return e.internalFailure(err)
	}
	out, err := e.broadcast(wire.KindEcho, RoundEcho, payload)
	if err != nil {
		return e.internalFailure(err)
	}
	e.round = RoundEcho
	e.lastOut = out
	return out
}

// dealEnvelopes returns the signed deals in dealer order.
func (e *ReshareEngine) dealEnvelopes() [][]byte {
	out := make([][]byte, len(e.dealers))
	for k, i := range e.dealers {
		if i == e.self {
			out[k] = e.myDeal
		} else {
			out[k] = e.inbox[wire.KindReshareDeal][i].raw
		}
	}
	return out
}

func (e *ReshareEngine) hashDeals(deals [][]byte) []byte {
	h := sha512.New512_256()
	h.Write([]byte(reshareDealsHashDomain))
	for _, d := range deals {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(d)))
		h.Write(l[:])
		h.Write(d)
	}
	return h.Sum(nil)
}

// decodeEcho decodes participant j's echo: complaints may only come from a
// new signer and name dealers.
func (e *ReshareEngine) decodeEcho(j uint32, payload []byte) (*echo, error) {
	m, err := decodeEcho(payload, len(e.parts))
	if err != nil {
		return nil, err
	}
	if len(m.Complaints) > 0 && !e.isNew(j) {
		return nil, fmt.Errorf("%w: complaints from a party that receives no share", ErrPayload)
	}
	for _, i := range m.Complaints {
		if !e.isDealer(i) {
			return nil, fmt.Errorf("%w: complaint about party %d, which does not deal", ErrPayload, i)
		}
	}
	return m, nil
}

func (e *ReshareEngine) afterEcho() []Outgoing {
	echoes := map[uint32]*echo{e.self: {DealsHash: e.dealsHash, Complaints: e.complaints}}
	agree := true
	for _, j := range e.others() {
		rec := e.inbox[wire.KindEcho][j]
		m, err := e.decodeEcho(j, rec.env.Payload)
		if err != nil {
			return e.fail(ReasonInconsistentEcho, []uint32{j}, fmt.Sprintf("echo of party %d: %v", j, err), rec.raw)
		}
		echoes[j] = m
		if !bytes.Equal(m.DealsHash, e.dealsHash) {
			agree = false
		}
	}
	if !agree {
		payload, err := (&reveal{Deals: e.dealEnvelopes()}).encode()
		if err != nil {
			return e.internalFailure(err)
		}
		out, err := e.broadcast(wire.KindDealReveal, RoundReveal, payload)
		if err != nil {
			return e.internalFailure(err)
		}
		e.round = RoundReveal
		e.revealRun = true
		e.lastOut = out
		return out
	}
	return e.complaintsStep(echoes)
}

// afterReveal finds a dealer that signed two different deals, or else the
// parties whose echo disagrees with the deals everyone relayed.
func (e *ReshareEngine) afterReveal() []Outgoing {
	mine := e.dealEnvelopes()
	for _, j := range e.others() {
		rec := e.inbox[wire.KindDealReveal][j]
		m, err := decodeReveal(rec.env.Payload, len(e.dealers))
		if err != nil {
			return e.fail(ReasonInconsistentEcho, []uint32{j}, fmt.Sprintf("reveal of party %d: %v", j, err), rec.raw)
		}
		for k, theirs := range m.Deals {
			dealer := e.dealers[k]
			env, err := wire.Open(theirs, consoleKeyOf(e.parts))
			if err != nil || !e.isDeal(env, dealer) {
				return e.fail(ReasonInconsistentEcho, []uint32{j}, fmt.Sprintf("party %d relayed an invalid deal for party %d", j, dealer), rec.raw)
			}
			ours, _ := wire.Decode(mine[k])
			if wire.Equivocation(ours, env) {
				return e.fail(ReasonEquivocation, []uint32{dealer}, fmt.Sprintf("party %d signed two different deals", dealer), mine[k], theirs)
			}
		}
	}
	var blamed []uint32
	var evidence [][]byte
	echoes := map[uint32]*echo{e.self: {DealsHash: e.dealsHash, Complaints: e.complaints}}
	for _, j := range e.others() {
		rec := e.inbox[wire.KindEcho][j]
		m, _ := e.decodeEcho(j, rec.env.Payload) // decoded before, in afterEcho
		echoes[j] = m
		if !bytes.Equal(m.DealsHash, e.dealsHash) {
			blamed = append(blamed, j)
			evidence = append(evidence, rec.raw)
		}
	}
	if len(blamed) > 0 {
		return e.fail(ReasonInconsistentEcho, blamed, "echo hash disagrees with the deals every party relayed", evidence...)
	}
	return e.complaintsStep(echoes)
}

func (e *ReshareEngine) isDeal(env *wire.Envelope, dealer uint32) bool {
	return env.Ceremony == e.id && env.Kind == wire.KindReshareDeal && env.From == dealer && env.To == 0 && Round(env.Round) == RoundDeal
}

// complaintsStep: a dealer with t' or more complaints is disqualified;
// other accused dealers must justify. An importer has wiped its key, so
// any complaint against it ends the import: the complainers' word against
// a trusted dealer's, settled by humans re-running it.
func (e *ReshareEngine) complaintsStep(echoes map[uint32]*echo) []Outgoing {
	e.accused = make(map[uint32][]uint32)
	for j := uint32(1); j <= uint32(len(e.parts)); j++ {
		for _, i := range echoes[j].Complaints {
			e.accused[i] = append(e.accused[i], j)
		}
	}
	if len(e.accused) == 0 {
		return e.finalize()
	}
	for _, i := range e.dealers {
		complainers := e.accused[i]
		if len(complainers) == 0 {
			continue
		}
		var evidence [][]byte
		for _, j := range complainers {
			if j != e.self {
				evidence = append(evidence, e.inbox[wire.KindEcho][j].raw)
			}
		}
		if len(complainers) >= e.t {
			return e.fail(ReasonComplaints, []uint32{i},
				fmt.Sprintf("party %d drew %d complaints (threshold %d)", i, len(complainers), e.t), evidence...)
		}
		if e.prop.Import {
			return e.abort(&AbortError{Reason: ReasonComplaints, Claimed: []uint32{i}, Evidence: evidence,
				Detail: fmt.Sprintf("party %s complained about the importing dealer's share; it erased the key after dealing and cannot justify: re-run the import", joinIndices(complainers))})
		}
	}
	e.round = RoundJustify
	e.justifyRun = true
	e.lastOut = nil
	complainers, accusedHere := e.accused[e.self]
	if !accusedHere {
		return nil
	}
	j := &justification{}
	for _, c := range complainers {
		s := e.poly.Eval(c)
		j.Shares = append(j.Shares, revealedShare{To: c, Value: bls.ScalarBytes(s)})
		bls.WipeScalar(s)
	}
	payload, err := j.encode()
	if err != nil {
		return e.internalFailure(err)
	}
	out, err := e.broadcast(wire.KindJustification, RoundJustify, payload)
	if err != nil {
		return e.internalFailure(err)
	}
	e.lastOut = out
	return out
}

func (e *ReshareEngine) afterJustify() []Outgoing {
	for _, i := range e.dealers {
		complainers, ok := e.accused[i]
		if !ok || i == e.self {
			continue
		}
		rec := e.inbox[wire.KindJustification][i]
		evidence := [][]byte{rec.raw, e.inbox[wire.KindReshareDeal][i].raw}
		if reason := e.badJustification(i, rec.env.Payload, complainers); reason != "" {
			return e.fail(ReasonBadJustification, []uint32{i}, reason, evidence...)
		}
		m, _ := decodeJustification(rec.env.Payload, e.newN)
		for _, rs := range m.Shares {
			if rs.To == e.self {
				e.shares[i], _ = bls.ScalarFromBytes(rs.Value)
			}
		}
	}
	return e.finalize()
}

// badJustification says what is wrong with dealer i's justification ("" if
// nothing): it must reveal, for exactly the complainers (nil: whoever it
// names), shares that lie on its committed polynomial.
func (e *ReshareEngine) badJustification(i uint32, payload []byte, complainers []uint32) string {
	m, err := decodeJustification(payload, e.newN)
	if err != nil {
		return fmt.Sprintf("justification of party %d: %v", i, err)
	}
	if complainers != nil && len(m.Shares) != len(complainers) {
		return fmt.Sprintf("party %d revealed %d shares for %d complaints", i, len(m.Shares), len(complainers))
	}
	for k, rs := range m.Shares {
		if complainers != nil && rs.To != complainers[k] {
			return fmt.Sprintf("party %d revealed a share for party %d, who did not complain", i, rs.To)
		}
		s, err := bls.ScalarFromBytes(rs.Value)
		if err == nil {
			err = e.comms[i].VerifyShare(rs.To, s)
			bls.WipeScalar(s)
		}
		if err != nil {
			return fmt.Sprintf("party %d revealed a wrong share for party %d", i, rs.To)
		}
	}
	return ""
}

// finalize sums the dealers' commitments (and, for a new signer, its
// sub-shares), checks that the key is still X, and confirms.
func (e *ReshareEngine) finalize() []Outgoing {
	all := make([]share.Commitments, len(e.dealers))
	for k, i := range e.dealers {
		all[k] = e.comms[i]
	}
	sum, err := share.Sum(all)
	if err != nil {
		return e.internalFailure(err)
	}
	// Each C'_{i,0} was checked against lambda_i * X_i, so their sum is X
	// by interpolation; checked again because the whole point is that the
	// key does not change.
	if !bls12381.NewG1().Equal(&sum[0], e.prop.GroupKey.Point()) {
		return e.internalFailure(fmt.Errorf("the dealt constant terms do not sum to the group key"))
	}
	group, err := tbls.NewGroup(sum, e.newN)
	if err != nil {
		return e.internalFailure(err)
	}
	if e.poly != nil {
		e.poly.Wipe()
		e.poly = nil
	}
	e.newComms = sum.Bytes()
	e.popHash = bls.HashToG2(group.Key.Bytes(), bls.PopDST)
	e.result = &ReshareResult{Ceremony: e.id, KeyID: e.prop.KeyID, Epoch: e.newEpoch(), Group: group, Commitments: sum}
	e.round = RoundConfirm
	if !e.isNew(e.self) {
		e.lastOut = nil
		return nil
	}
	x := new(bls.Scalar)
	for _, i := range e.dealers {
		s, ok := e.shares[i]
		if !ok {
			return e.internalFailure(fmt.Errorf("sub-share from party %d missing at finalize", i))
		}
		x.Add(x, s)
	}
	mine, _ := group.PublicShare(e.self)
	g := bls12381.NewG1()
	if !g.Equal(g.MulScalar(g.New(), g.One(), x), mine.Point()) {
		bls.WipeScalar(x)
		return e.internalFailure(fmt.Errorf("own share does not match the public share"))
	}
	for _, s := range e.shares {
		bls.WipeScalar(s)
	}
	clear(e.shares)
	e.ownProof = bls.MulG2Blinded(e.popHash, x)
	e.result.Share = &share.Share{Index: e.self, Value: *x}
	bls.WipeScalar(x)
	payload, err := (&reshareConfirm{Commitments: e.newComms, Proof: bls.G2Bytes(e.ownProof)}).encode()
	if err != nil {
		return e.internalFailure(err)
	}
	out, err := e.broadcast(wire.KindReshareConfirm, RoundConfirm, payload)
	if err != nil {
		return e.internalFailure(err)
	}
	e.lastOut = out
	return out
}

func (e *ReshareEngine) newEpoch() uint32 {
	if e.prop.Import {
		return 0
	}
	return e.prop.Epoch + 1
}

// afterConfirm checks every new signer's confirmation and assembles the
// group's proof of possession.
func (e *ReshareEngine) afterConfirm() []Outgoing {
	envs := make(map[uint32]received, e.newN)
	for _, j := range e.newOthers() {
		envs[j] = e.inbox[wire.KindReshareConfirm][j]
	}
	var own *tbls.Partial
	if e.isNew(e.self) {
		own = &tbls.Partial{Index: e.self, Sig: *e.ownProof}
		envs[e.self] = received{raw: e.lastOut[0].Envelope}
	}
	pop, bad, detail := checkConfirmations(e.result.Group, e.popHash, e.newComms, envs, own)
	if len(bad) > 0 {
		var evidence [][]byte
		for _, j := range bad {
			evidence = append(evidence, envs[j].raw)
		}
		return e.fail(ReasonBadConfirmation, bad, detail, evidence...)
	}
	if pop == nil {
		return e.internalFailure(fmt.Errorf("group proof of possession: %s", detail))
	}
	e.result.GroupPoP = pop
	e.result.Confirmations = make([][]byte, e.newN)
	for j := uint32(1); j <= uint32(e.newN); j++ {
		e.result.Confirmations[j-1] = envs[j].raw
	}
	e.move(StateDone)
	// Unlike keygen, a party can finish while a peer still lacks its echo:
	// the signers of the old group only do not confirm, so nobody waits
	// for them past the echo. Final answers such a peer with every
	// broadcast from the echo on.
	e.final = nil
	for _, o := range e.sent {
		if o.To == 0 && o.Round >= RoundEcho {
			e.final = append(e.final, o)
		}
	}
	e.lastOut = nil
	e.sent = nil
	clear(e.seed[:])
	return nil
}

// checkConfirmations checks the confirmations of new signers (envs, by new
// index; own, if this party is one, is already trusted): each names the
// commitments want and carries a proof that verifies against its public
// share; t' of them combine to the group's proof of possession. It returns
// the proof, or the parties whose confirmation is bad (evidence), or, with
// neither, what failed.
func checkConfirmations(group *tbls.Group, h *bls.G2Point, want [][]byte, envs map[uint32]received, own *tbls.Partial) (*bls.Signature, []uint32, string) {
	var partials []*tbls.Partial
	for j := uint32(1); j <= uint32(group.N()); j++ {
		if own != nil && j == own.Index {
			continue
		}
		m, err := decodeReshareConfirm(envs[j].env.Payload, group.T)
		if err != nil {
			return nil, []uint32{j}, fmt.Sprintf("confirmation of party %d: %v", j, err)
		}
		if !slices.EqualFunc(m.Commitments, want, bytes.Equal) {
			return nil, []uint32{j}, fmt.Sprintf("party %d confirmed a different key", j)
		}
		p, err := tbls.PartialFromBytes(j, m.Proof)
		if err != nil {
			return nil, []uint32{j}, fmt.Sprintf("confirmation of party %d: %v", j, err)
		}
		partials = append(partials, p)
	}
	all := slices.Clone(partials)
	if own != nil {
		all = append(all, own)
	}
	slices.SortFunc(all, func(a, b *tbls.Partial) int { return int(a.Index) - int(b.Index) })
	pt, err := tbls.Interpolate(all[:group.T])
	if err != nil {
		return nil, nil, err.Error()
	}
	bad, popOK := verifyProofs(group, h, partials, pt)
	if len(bad) > 0 {
		return nil, bad, "key confirmation proof does not verify against the public share"
	}
	pop, err := bls.NewSignatureFromSubgroupPoint(pt)
	if err == nil && !popOK {
		err = bls.ErrVerify
	}
	if err != nil {
		return nil, nil, err.Error()
	}
	return pop, nil, ""
}

// VerifyHandover checks, for a signer of the old group that took no part
// (offline, or not a dealer), that a reshare finished: confirmations must
// hold one validly signed key confirmation of this ceremony from every new
// signer, all for the same commitments, whose constant term is the group
// key, with proofs that verify against the new public shares and combine
// to a valid proof of possession of X. Then every new signer holds a share
// of X and the old share may be erased. The result has no Share.
func VerifyHandover(prop *ReshareProposal, confirmations [][]byte) (*ReshareResult, error) {
	id, err := prop.ID()
	if err != nil {
		return nil, err
	}
	parts := prop.Participants()
	envs := make(map[uint32]received, prop.N())
	for _, raw := range confirmations {
		env, err := wire.Open(raw, consoleKeyOf(parts))
		if err != nil {
			return nil, fmt.Errorf("dkg: handover: %w", err)
		}
		if env.Ceremony != id {
			return nil, ErrWrongCeremony
		}
		if env.Kind != wire.KindReshareConfirm || Round(env.Round) != RoundConfirm || env.To != 0 || int(env.From) > prop.N() {
			return nil, fmt.Errorf("%w: %s from party %d is not a new signer's confirmation", ErrUnexpected, env.Kind, env.From)
		}
		if _, dup := envs[env.From]; dup {
			return nil, fmt.Errorf("%w: two confirmations from party %d", ErrUnexpected, env.From)
		}
		envs[env.From] = received{env: env, raw: raw}
	}
	if len(envs) != prop.N() {
		return nil, fmt.Errorf("%w: %d of %d new signers confirmed", ErrNotConfirmed, len(envs), prop.N())
	}
	m, err := decodeReshareConfirm(envs[1].env.Payload, prop.Threshold)
	if err != nil {
		return nil, err
	}
	comms, err := share.CommitmentsFromBytes(m.Commitments, prop.Threshold)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if !bls12381.NewG1().Equal(&comms[0], prop.GroupKey.Point()) {
		return nil, fmt.Errorf("%w: the confirmed key is not the group key", ErrMisbehaviour)
	}
	group, err := tbls.NewGroup(comms, prop.N())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	h := bls.HashToG2(group.Key.Bytes(), bls.PopDST)
	pop, bad, detail := checkConfirmations(group, h, comms.Bytes(), envs, nil)
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w: party %s: %s", ErrMisbehaviour, joinIndices(bad), detail)
	}
	if pop == nil {
		return nil, fmt.Errorf("%w: %s", ErrMisbehaviour, detail)
	}
	epoch := prop.Epoch + 1
	if prop.Import {
		epoch = 0
	}
	res := &ReshareResult{Ceremony: id, KeyID: prop.KeyID, Epoch: epoch, Group: group, Commitments: comms, GroupPoP: pop,
		Confirmations: make([][]byte, prop.N())}
	for j := uint32(1); j <= uint32(prop.N()); j++ {
		res.Confirmations[j-1] = envs[j].raw
	}
	return res, nil
}
