// Package dkg is the distributed key generation engine: Joint-Feldman with
// proofs of knowledge, an echo round, complaints, justifications and key
// confirmation (docs: threshold-bls.md section 4).
//
// The engine is sans-IO. It owns no goroutines, timers or network: the caller
// feeds it signed envelopes (Handle), the human decision (Start, Decline) and
// round deadlines (Timeout), and sends the envelopes it returns. It is not
// safe for concurrent use; one goroutine owns it.
//
// All randomness comes from Config.Seed, so an engine rebuilt from the same
// configuration and fed the same inputs in the same order returns the same
// bytes: a console that crashed resumes by replaying its stored inputs, and
// never deals a second polynomial for one ceremony.
//
// The package also holds the key lifecycle engine (ReshareEngine, in
// reshare.go): resharing a group key to a new group, refreshing a group's
// shares, and importing a key from a trusted dealer, with the same shape.
package dkg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"

	bls12381 "github.com/kilic/bls12-381"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// State is the engine's lifecycle.
type State uint8

// Lifecycle states. Moves: Created -> Running -> Done, and Created or
// Running -> Aborted. Done and Aborted are final.
const (
	// StateCreated: built, buffering messages, waiting for this party's
	// human to accept (Start) or decline.
	StateCreated State = iota
	// StateRunning: accepted here; rounds are in progress.
	StateRunning
	// StateDone: the key is generated and confirmed; Result is available.
	StateDone
	// StateAborted: the ceremony stopped; Err says why. Secrets are wiped.
	StateAborted
)

func (s State) String() string {
	switch s {
	case StateCreated:
		return "created"
	case StateRunning:
		return "running"
	case StateDone:
		return "done"
	case StateAborted:
		return "aborted"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// canMove is the one transition function of the lifecycle.
func (s State) canMove(to State) bool {
	switch s {
	case StateCreated:
		return to == StateRunning || to == StateAborted
	case StateRunning:
		return to == StateDone || to == StateAborted
	}
	return false
}

// Config is what a party needs to run one ceremony.
type Config struct {
	Proposal *Proposal
	Self     uint32             // this party's index in Proposal.Parties (1-based)
	Key      ed25519.PrivateKey // this party's console key; signs every envelope
	// Seed is secret randomness from which the polynomial and the proof
	// nonce are derived. Keep it (encrypted) with the ceremony's inputs to
	// resume after a crash; never reuse it for another ceremony.
	Seed [32]byte
}

// Outgoing is an envelope to send. To is 0 for a broadcast (the same bytes
// to every other party) or the index of the one recipient.
type Outgoing struct {
	To       uint32
	Kind     wire.Kind
	Round    Round
	Envelope []byte
}

// Result is what a successful ceremony leaves with this party.
type Result struct {
	Ceremony    [32]byte
	Group       *tbls.Group       // t, group key X and every public share X_j
	Commitments share.Commitments // A_0..A_{t-1}; X = A_0
	Share       share.Share       // this party's secret share x_j (secret!)
	GroupPoP    *bls.Signature    // proof of possession of X, from t shares
}

// Progress is what a console shows for the current round.
type Progress struct {
	State   State
	Round   Round
	Step    int      // 1-based position of Round among the rounds run
	Total   int      // rounds this ceremony runs (grows if reveal/justify are needed)
	Got     []uint32 // parties whose message of this round arrived (self included once sent)
	Waiting []uint32 // parties still awaited
}

type received struct {
	env *wire.Envelope
	raw []byte
}

// Engine runs one party's side of one ceremony.
type Engine struct {
	prop  *Proposal
	id    [32]byte
	self  uint32
	key   ed25519.PrivateKey
	seed  [32]byte
	n, t  int
	state State
	round Round

	// inbox holds every accepted envelope by kind and sender (and, through
	// seen, detects duplicates and equivocation).
	inbox map[wire.Kind]map[uint32]received
	seen  map[wire.DedupKey]received

	poly       *share.Poly
	myDeal     []byte
	comms      map[uint32]share.Commitments // verified deals
	shares     map[uint32]*bls.Scalar       // verified shares to self, by dealer
	complaints []uint32                     // dealers whose share to self failed
	dealsHash  []byte
	accused    map[uint32][]uint32 // dealer -> complainers, after echo agreement
	revealRun  bool
	justifyRun bool

	result   *Result
	keyHash  []byte
	popHash  *bls.G2Point // hash_to_G2(X, PopDST), shared by all proofs
	ownProof *bls.G2Point
	abortErr *AbortError
	lastOut  []Outgoing
	final    []Outgoing // the last broadcast, once finished (see Final)
	// sent is every message this party sent while running, in order, and
	// past[j] the last round party j has shown it completed (see
	// completedBefore): Resend repeats to each peer what it may still lack.
	// The current round's messages are not enough: a peer can stay in an
	// earlier round because this party's message of that round was lost
	// (a process stopped while it was queued) after this party moved on.
	sent []Outgoing
	past map[uint32]Round

	// dealt: the deal and shares went out with the acceptance (Start);
	// the deal round then only waits for the others'.
	dealt bool
}

// New validates the configuration and builds an engine in StateCreated.
func New(cfg Config) (*Engine, error) {
	if cfg.Proposal == nil {
		return nil, fmt.Errorf("%w: no proposal", ErrConfig)
	}
	id, err := cfg.Proposal.ID()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	n := cfg.Proposal.N()
	if cfg.Self == 0 || int(cfg.Self) > n {
		return nil, fmt.Errorf("%w: self index %d not in 1..%d", ErrConfig, cfg.Self, n)
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: console key has %d bytes", ErrConfig, len(cfg.Key))
	}
	pub, _ := cfg.Key.Public().(ed25519.PublicKey)
	if !bytes.Equal(pub, cfg.Proposal.Parties[cfg.Self-1].ConsoleKey) {
		return nil, fmt.Errorf("%w: console key does not match party %d of the roster", ErrConfig, cfg.Self)
	}
	if cfg.Seed == ([32]byte{}) {
		return nil, fmt.Errorf("%w: zero seed", ErrConfig)
	}
	if err := checkGroupSize(cfg.Proposal.Threshold, n); err != nil {
		return nil, err
	}
	e := &Engine{
		prop:   cfg.Proposal,
		id:     id,
		self:   cfg.Self,
		key:    cfg.Key,
		seed:   cfg.Seed,
		n:      n,
		t:      cfg.Proposal.Threshold,
		inbox:  make(map[wire.Kind]map[uint32]received),
		seen:   make(map[wire.DedupKey]received),
		comms:  make(map[uint32]share.Commitments),
		shares: make(map[uint32]*bls.Scalar),
		past:   make(map[uint32]Round),
	}
	return e, nil
}

// checkGroupSize keeps every message within one envelope: the reveal round
// carries all n signed deals, each with t commitments.
func checkGroupSize(t, n int) error {
	const perDeal = bls.G1Size*2 + bls.ScalarSize + 256 // R, mu, envelope and framing, with slack
	if n*(t*(bls.G1Size+2)+perDeal) > wire.MaxEnvelopeSize {
		return fmt.Errorf("%w: %d-of-%d is too large for one deal exchange message", ErrProposal, t, n)
	}
	return nil
}

// Ceremony returns the ceremony id.
func (e *Engine) Ceremony() [32]byte { return e.id }

// State returns the lifecycle state.
func (e *Engine) State() State { return e.state }

// Round returns the current round.
func (e *Engine) Round() Round { return e.round }

// Err returns the *AbortError once aborted, else nil.
func (e *Engine) Err() error {
	if e.abortErr == nil {
		return nil
	}
	return e.abortErr
}

// Result returns the outcome once Done.
func (e *Engine) Result() (*Result, error) {
	switch e.state {
	case StateDone:
		return e.result, nil
	case StateAborted:
		return nil, e.abortErr
	}
	return nil, fmt.Errorf("dkg: not finished (state %s, round %s)", e.state, e.round)
}

func (e *Engine) move(to State) {
	if !e.state.canMove(to) {
		// Every caller checks the state first; reaching this is a bug in
		// this package, not something input can cause.
		panic(fmt.Sprintf("dkg: invalid state move %s -> %s", e.state, to))
	}
	e.state = to
}

// Start records that this party's human accepted the proposal: it
// broadcasts the acceptance and runs whatever the buffered messages allow.
func (e *Engine) Start() ([]Outgoing, error) {
	if e.state != StateCreated {
		return nil, fmt.Errorf("dkg: start in state %s", e.state)
	}
	e.move(StateRunning)
	e.round = RoundAccept
	out, err := e.broadcast(wire.KindAccept, RoundAccept, nil)
	if err != nil {
		return nil, err
	}
	// The deal leaves with the acceptance instead of a round later: the
	// others buffer it until everyone accepted, and nobody processes a deal
	// before then, so execution still starts when all n accept (a share of
	// a ceremony that never runs is worthless: the polynomial is this
	// ceremony's alone). This saves a message round per keygen.
	deal := e.deal()
	if e.state != StateRunning { // the deal failed and aborted
		return deal, nil
	}
	e.round, e.dealt = RoundAccept, true
	out = append(out, deal...)
	e.lastOut = out
	more := e.advance()
	return e.emit(append(out, more...)), nil
}

// emit notes what this party sends while the ceremony runs, for Resend.
func (e *Engine) emit(out []Outgoing) []Outgoing {
	if e.state == StateRunning {
		e.sent = append(e.sent, out...)
	}
	return out
}

// completedBefore is the round a party must have completed before it sends
// a message of kind k, as far as this party can tell (-1: none). Every round
// waits for all the others' messages (justification only for the accused),
// so a peer that sent k has this party's messages of the earlier rounds.
// Conservative where a round may or may not run: an extra re-send is
// dropped as a duplicate, a missing one stalls the ceremony.
func completedBefore(k wire.Kind) (Round, bool) {
	switch k {
	case wire.KindEcho:
		return RoundDeal, true
	case wire.KindDealReveal, wire.KindJustification, wire.KindConfirm:
		return RoundEcho, true
	}
	// An acceptance, and a deal or share (dealt with the acceptance), say
	// nothing about what the sender received.
	return 0, false
}

// Decline aborts because this party's human declined (or gave up on) the
// ceremony, and tells the others.
func (e *Engine) Decline(detail string) ([]Outgoing, error) {
	if e.state != StateCreated && e.state != StateRunning {
		return nil, ErrFinished
	}
	return e.abort(&AbortError{Reason: ReasonDeclined, Blamed: []uint32{e.self}, Detail: truncate(detail)}), nil
}

// Timeout is fed by the caller when the current round's deadline passes.
// It aborts, naming the parties still awaited, and tells the others.
func (e *Engine) Timeout() ([]Outgoing, error) {
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

// Resend returns, for the caller to send again while it waits, every
// message this party sent (the same bytes) that a peer may still lack: those
// of the rounds the peer has not shown it completed, addressed to that peer
// alone. Signal is store-and-forward, but a message can still be lost
// before it leaves (the process stopped while it was queued, or its sends
// failed for longer than their retries), and a peer stuck in an earlier
// round waits for it until the deadline.
func (e *Engine) Resend() []Outgoing {
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

// Final returns, once the ceremony is over, the last message this party
// broadcast: its key confirmation, or the abort it detected. Resend stops
// at the end, and the last round has no next round whose arrival would tell
// a peer to stop waiting, so the caller answers a peer still sending with
// these bytes.
func (e *Engine) Final() []Outgoing {
	if e.state != StateDone && e.state != StateAborted {
		return nil
	}
	return slices.Clone(e.final)
}

// Handle takes one signed envelope from a peer. It returns the envelopes to
// send in response. An error that is not an abort means the input was
// rejected and nothing changed (ErrDuplicate and ErrWrongCeremony are
// routine). Misbehaviour proven by a validly signed message aborts the
// ceremony: the returned messages then carry the abort, and Err says why.
func (e *Engine) Handle(raw []byte) ([]Outgoing, error) {
	if e.state == StateDone || e.state == StateAborted {
		return nil, ErrFinished
	}
	env, err := wire.Open(raw, e.prop.consoleKey)
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
	if r, ok := completedBefore(env.Kind); ok {
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

// checkSlot drops envelopes whose kind, round or recipient cannot occur.
func (e *Engine) checkSlot(env *wire.Envelope) error {
	if env.Kind == wire.KindAbort {
		if env.To != 0 {
			return fmt.Errorf("%w: abort addressed to one party", ErrUnexpected)
		}
		return nil
	}
	r, ok := roundOfKind[env.Kind]
	if !ok {
		return fmt.Errorf("%w: %s is not a DKG message", ErrUnexpected, env.Kind)
	}
	if Round(env.Round) != r {
		return fmt.Errorf("%w: %s in round %d", ErrUnexpected, env.Kind, env.Round)
	}
	if env.Kind == wire.KindShare {
		if env.To != e.self {
			return fmt.Errorf("%w: share for party %d", ErrUnexpected, env.To)
		}
	} else if env.To != 0 {
		return fmt.Errorf("%w: %s addressed to one party", ErrUnexpected, env.Kind)
	}
	return nil
}

func (e *Engine) remoteAbort(rec received) error {
	m, err := decodeAbort(rec.env.Payload, e.n)
	if err != nil {
		m = &abort{Reason: ReasonRemote, Detail: "unreadable abort message"}
	}
	a := &AbortError{
		Reason:   m.Reason,
		Blamed:   m.Blamed,
		By:       rec.env.From,
		Detail:   fmt.Sprintf("party %d aborted: %s", rec.env.From, m.Detail),
		Evidence: m.Evidence,
	}
	if a.misbehaviour() {
		// Adopted only as far as the evidence proves it here (evidence.go).
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

// abort ends the ceremony, wipes secrets and, if this party detected the
// reason, returns the abort broadcast.
func (e *Engine) abort(a *AbortError) []Outgoing {
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
	// Evidence too large for one envelope: tell the others without it; the
	// evidence stays in Err for this console to show.
	m.Evidence = nil
	payload, _ = m.encode()
	out, _ := e.broadcast(wire.KindAbort, e.round, payload)
	e.final = out
	return out
}

func (e *Engine) wipe() {
	if e.poly != nil {
		e.poly.Wipe()
		e.poly = nil
	}
	for _, s := range e.shares {
		bls.WipeScalar(s)
	}
	clear(e.shares)
	clear(e.seed[:])
	e.sent = nil // holds the shares dealt to the others
}

func (e *Engine) seal(kind wire.Kind, round Round, to uint32, payload []byte) ([]byte, error) {
	env := &wire.Envelope{Kind: kind, Ceremony: e.id, Round: uint32(round), From: e.self, To: to, Payload: payload}
	b, err := wire.Seal(env, e.key)
	if err != nil {
		return nil, fmt.Errorf("dkg: seal %s: %w", kind, err)
	}
	return b, nil
}

func (e *Engine) broadcast(kind wire.Kind, round Round, payload []byte) ([]Outgoing, error) {
	b, err := e.seal(kind, round, 0, payload)
	if err != nil {
		return nil, err
	}
	return []Outgoing{{To: 0, Kind: kind, Round: round, Envelope: b}}, nil
}

// others returns every index but self, ascending.
func (e *Engine) others() []uint32 {
	out := make([]uint32, 0, e.n-1)
	for j := 1; j <= e.n; j++ {
		if uint32(j) != e.self {
			out = append(out, uint32(j))
		}
	}
	return out
}

// waitingFor lists the parties (other than self) whose message of kind has
// not arrived yet, from the given set.
func (e *Engine) waitingFor(kind wire.Kind, from []uint32) []uint32 {
	var out []uint32
	for _, j := range from {
		if _, ok := e.inbox[kind][j]; !ok {
			out = append(out, j)
		}
	}
	return out
}

// expected returns what the current round waits on: message kinds and the
// parties that must send them.
func (e *Engine) expected() (kinds []wire.Kind, from []uint32) {
	switch e.round {
	case RoundAccept:
		return []wire.Kind{wire.KindAccept}, e.others()
	case RoundDeal:
		return []wire.Kind{wire.KindDeal, wire.KindShare}, e.others()
	case RoundEcho:
		return []wire.Kind{wire.KindEcho}, e.others()
	case RoundReveal:
		return []wire.Kind{wire.KindDealReveal}, e.others()
	case RoundJustify:
		var accused []uint32
		for i := range e.accused {
			if i != e.self {
				accused = append(accused, i)
			}
		}
		slices.Sort(accused)
		return []wire.Kind{wire.KindJustification}, accused
	case RoundConfirm:
		return []wire.Kind{wire.KindConfirm}, e.others()
	}
	return nil, nil
}

// Progress reports the current round for display.
func (e *Engine) Progress() Progress {
	p := Progress{State: e.state, Round: e.round, Total: 4}
	if e.revealRun {
		p.Total++
	}
	if e.justifyRun {
		p.Total++
	}
	steps := []Round{RoundAccept, RoundDeal, RoundEcho}
	if e.revealRun {
		steps = append(steps, RoundReveal)
	}
	if e.justifyRun {
		steps = append(steps, RoundJustify)
	}
	steps = append(steps, RoundConfirm)
	p.Step = slices.Index(steps, e.round) + 1
	if e.state != StateRunning && e.state != StateCreated {
		return p
	}
	kinds, from := e.expected()
	missing := map[uint32]bool{}
	for _, k := range kinds {
		for _, j := range e.waitingFor(k, from) {
			missing[j] = true
		}
	}
	if e.state == StateCreated {
		missing[e.self] = true
	}
	for j := uint32(1); j <= uint32(e.n); j++ {
		if missing[j] {
			p.Waiting = append(p.Waiting, j)
		} else if j == e.self || slices.Contains(from, j) {
			p.Got = append(p.Got, j)
		}
	}
	return p
}

// advance runs every round whose inputs are complete.
func (e *Engine) advance() []Outgoing {
	var out []Outgoing
	for e.state == StateRunning {
		kinds, from := e.expected()
		complete := true
		for _, k := range kinds {
			if len(e.waitingFor(k, from)) > 0 {
				complete = false
			}
		}
		if !complete {
			return out
		}
		var step []Outgoing
		switch e.round {
		case RoundAccept:
			if e.dealt {
				e.round = RoundDeal
				e.lastOut = slices.DeleteFunc(slices.Clone(e.lastOut), func(o Outgoing) bool { return o.Kind == wire.KindAccept })
			} else {
				step = e.deal()
			}
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

// fail aborts for a reason this party proved; it is the common exit of the
// round functions.
func (e *Engine) fail(reason AbortReason, blamed []uint32, detail string, evidence ...[]byte) []Outgoing {
	return e.abort(&AbortError{Reason: reason, Blamed: blamed, Detail: detail, Evidence: evidence})
}

// internalFailure stops the ceremony when this party itself cannot go on
// (its own message does not encode). It blames nobody.
func (e *Engine) internalFailure(err error) []Outgoing {
	return e.abort(&AbortError{Reason: ReasonDeclined, Blamed: []uint32{e.self}, Detail: "internal error: " + truncate(err.Error())})
}

// deriveScalar draws the k-th non-zero scalar for label from the seed:
// HMAC-SHA-512 keyed by the seed over (ceremony, label, k, counter), reduced
// mod r. 64 bytes reduced mod a 255-bit r are within 2^-256 of uniform.
func (e *Engine) deriveScalar(label string, k uint32) *bls.Scalar {
	return deriveScalar(&e.seed, e.id, label, k)
}

// deriveScalar is Engine.deriveScalar for any engine of this package: the
// ceremony id and the label keep the draws of different ceremonies and
// uses apart.
func deriveScalar(seed *[32]byte, id [32]byte, label string, k uint32) *bls.Scalar {
	for ctr := uint32(0); ; ctr++ {
		mac := hmac.New(sha512.New, seed[:])
		mac.Write([]byte("cosigner-dkg-seed-v1\x00"))
		mac.Write(id[:])
		mac.Write([]byte(label))
		var buf [8]byte
		binary.BigEndian.PutUint32(buf[:4], k)
		binary.BigEndian.PutUint32(buf[4:], ctr)
		mac.Write(buf[:])
		v := new(big.Int).SetBytes(mac.Sum(nil))
		v.Mod(v, bls12381.NewG1().Q())
		if v.Sign() == 0 {
			continue
		}
		var b [bls.ScalarSize]byte
		v.FillBytes(b[:])
		s, _ := bls.ScalarFromBytes(b[:])
		return s
	}
}

// deal is round 1: draw the polynomial, commit to it, prove knowledge of
// its constant term, and deal the shares.
func (e *Engine) deal() []Outgoing {
	poly, comms, d, err := e.makeDeal()
	if err != nil {
		return e.internalFailure(err)
	}
	payload, err := d.encode()
	if err != nil {
		poly.Wipe()
		return e.internalFailure(err)
	}
	dealEnv, err := e.seal(wire.KindDeal, RoundDeal, 0, payload)
	if err != nil {
		poly.Wipe()
		return e.internalFailure(err)
	}
	e.poly = poly
	e.myDeal = dealEnv
	e.comms[e.self] = comms
	e.shares[e.self] = poly.Eval(e.self)

	out := []Outgoing{{To: 0, Kind: wire.KindDeal, Round: RoundDeal, Envelope: dealEnv}}
	for _, j := range e.others() {
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
	e.round = RoundDeal
	e.lastOut = out
	return out
}

// makeDeal derives this party's polynomial from the seed and builds its
// broadcast: commitments and a Schnorr proof of knowledge of a_0 bound to
// the ceremony and this party's index.
func (e *Engine) makeDeal() (*share.Poly, share.Commitments, *deal, error) {
	coeffs := make([]*bls.Scalar, e.t)
	for k := range coeffs {
		coeffs[k] = e.deriveScalar("coefficient", uint32(k))
	}
	poly, err := share.PolyFromCoefficients(coeffs)
	for _, c := range coeffs {
		bls.WipeScalar(c)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	comms := poly.Commit()
	k := e.deriveScalar("pok-nonce", 0)
	r := bls.MulG1Blinded(bls.G1Generator(), k)
	c := pokChallenge(e.id, e.self, bls.G1Bytes(&comms[0]), bls.G1Bytes(r))
	a0 := poly.Secret()
	mu := new(bls.Scalar)
	mu.Mul(c, a0)
	mu.Add(mu, k)
	bls.WipeScalar(a0)
	bls.WipeScalar(k)
	return poly, comms, &deal{Commitments: comms.Bytes(), R: bls.G1Bytes(r), Mu: bls.ScalarBytes(mu)}, nil
}

// pokChallenge is c = Hs("pok" || ceremony || i || C_0 || R).
func pokChallenge(id [32]byte, i uint32, c0, r []byte) *bls.Scalar {
	msg := make([]byte, 0, 3+32+4+2*bls.G1Size)
	msg = append(msg, "pok"...)
	msg = append(msg, id[:]...)
	msg = binary.BigEndian.AppendUint32(msg, i)
	msg = append(msg, c0...)
	msg = append(msg, r...)
	return bls.HashToScalar(msg, []byte(proofDomain))
}

// checkDeal decodes a dealer's broadcast and verifies its commitments and
// proof of knowledge.
func (e *Engine) checkDeal(i uint32, payload []byte) (share.Commitments, error) {
	d, err := decodeDeal(payload, e.t)
	if err != nil {
		return nil, err
	}
	comms, err := share.CommitmentsFromBytes(d.Commitments, e.t)
	if err != nil {
		return nil, err
	}
	r, err := bls.G1FromBytes(d.R)
	if err != nil {
		return nil, fmt.Errorf("proof commitment: %w", err)
	}
	mu, err := bls.ScalarFromBytes(d.Mu)
	if err != nil {
		return nil, fmt.Errorf("proof response: %w", err)
	}
	if !verifyKnowledge(e.id, i, comms, d.Commitments[0], r, d.R, mu) {
		return nil, fmt.Errorf("proof of knowledge of the secret does not verify")
	}
	return comms, nil
}

// verifyKnowledge checks the Schnorr proof mu*P1 == R + c*C_0, with c
// computed over the encodings the dealer signed.
func verifyKnowledge(id [32]byte, i uint32, comms share.Commitments, c0Bytes []byte, r *bls.G1Point, rBytes []byte, mu *bls.Scalar) bool {
	c := pokChallenge(id, i, c0Bytes, rBytes)
	g := bls12381.NewG1()
	lhs := g.MulScalar(g.New(), g.One(), mu)
	rhs := g.MulScalar(g.New(), &comms[0], c)
	g.Add(rhs, rhs, r)
	return g.Equal(lhs, rhs)
}

// echo ends round 1: check every deal and the share each sent here, then
// broadcast the hash of the deals and the complaints.
func (e *Engine) echo() []Outgoing {
	for _, i := range e.others() {
		rec := e.inbox[wire.KindDeal][i]
		comms, err := e.checkDeal(i, rec.env.Payload)
		if err != nil {
			return e.fail(ReasonInvalidDeal, []uint32{i}, fmt.Sprintf("deal of party %d: %v", i, err), rec.raw)
		}
		e.comms[i] = comms
	}
	for _, i := range e.others() {
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

// dealEnvelopes returns the signed deals this party holds, in index order.
func (e *Engine) dealEnvelopes() [][]byte {
	out := make([][]byte, e.n)
	for j := 1; j <= e.n; j++ {
		if uint32(j) == e.self {
			out[j-1] = e.myDeal
		} else {
			out[j-1] = e.inbox[wire.KindDeal][uint32(j)].raw
		}
	}
	return out
}

func (e *Engine) hashDeals(deals [][]byte) []byte {
	h := sha512.New512_256()
	h.Write([]byte(dealsHashDomain))
	for _, d := range deals {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(d)))
		h.Write(l[:])
		h.Write(d)
	}
	return h.Sum(nil)
}

// afterEcho compares every party's view of the deals. Agreement goes on to
// the complaints; disagreement to the reveal round.
func (e *Engine) afterEcho() []Outgoing {
	echoes := map[uint32]*echo{e.self: {DealsHash: e.dealsHash, Complaints: e.complaints}}
	agree := true
	for _, j := range e.others() {
		rec := e.inbox[wire.KindEcho][j]
		m, err := decodeEcho(rec.env.Payload, e.n)
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

// afterReveal looks for a dealer who signed two different deals among all
// the deals every party relayed; failing that, it blames the parties whose
// echo disagrees with the deals everyone now holds.
func (e *Engine) afterReveal() []Outgoing {
	mine := e.dealEnvelopes()
	for _, j := range e.others() {
		rec := e.inbox[wire.KindDealReveal][j]
		m, err := decodeReveal(rec.env.Payload, e.n)
		if err != nil {
			return e.fail(ReasonInconsistentEcho, []uint32{j}, fmt.Sprintf("reveal of party %d: %v", j, err), rec.raw)
		}
		for i, theirs := range m.Deals {
			dealer := uint32(i + 1)
			env, err := wire.Open(theirs, e.prop.consoleKey)
			if err != nil || env.Ceremony != e.id || env.Kind != wire.KindDeal || env.From != dealer || env.To != 0 || Round(env.Round) != RoundDeal {
				return e.fail(ReasonInconsistentEcho, []uint32{j}, fmt.Sprintf("party %d relayed an invalid deal for party %d", j, dealer), rec.raw)
			}
			ours, _ := wire.Decode(mine[i])
			if wire.Equivocation(ours, env) {
				return e.fail(ReasonEquivocation, []uint32{dealer},
					fmt.Sprintf("party %d signed two different deals", dealer), mine[i], theirs)
			}
		}
	}
	// Every relayed deal equals ours, so every honest echo hash equals ours.
	var blamed []uint32
	var evidence [][]byte
	for _, j := range e.others() {
		rec := e.inbox[wire.KindEcho][j]
		m, _ := decodeEcho(rec.env.Payload, e.n) // decoded before, in afterEcho
		if !bytes.Equal(m.DealsHash, e.dealsHash) {
			blamed = append(blamed, j)
			evidence = append(evidence, rec.raw)
		}
	}
	if len(blamed) > 0 {
		return e.fail(ReasonInconsistentEcho, blamed, "echo hash disagrees with the deals every party relayed", evidence...)
	}
	echoes := map[uint32]*echo{e.self: {DealsHash: e.dealsHash, Complaints: e.complaints}}
	for _, j := range e.others() {
		echoes[j], _ = decodeEcho(e.inbox[wire.KindEcho][j].env.Payload, e.n)
	}
	return e.complaintsStep(echoes)
}

// complaintsStep tallies complaints once the deals are agreed. A dealer
// with t or more complaints is disqualified; other accused dealers must
// justify; with no complaints the key is finalized.
func (e *Engine) complaintsStep(echoes map[uint32]*echo) []Outgoing {
	e.accused = make(map[uint32][]uint32)
	for j := uint32(1); j <= uint32(e.n); j++ {
		for _, i := range echoes[j].Complaints {
			e.accused[i] = append(e.accused[i], j)
		}
	}
	if len(e.accused) == 0 {
		return e.finalize()
	}
	for i := uint32(1); i <= uint32(e.n); i++ {
		if len(e.accused[i]) >= e.t {
			var evidence [][]byte
			for _, j := range e.accused[i] {
				if j != e.self {
					evidence = append(evidence, e.inbox[wire.KindEcho][j].raw)
				}
			}
			return e.fail(ReasonComplaints, []uint32{i},
				fmt.Sprintf("party %d drew %d complaints (threshold %d)", i, len(e.accused[i]), e.t), evidence...)
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

// afterJustify checks every accused dealer's revealed shares against its
// commitments; a complainer adopts the revealed share as its own.
func (e *Engine) afterJustify() []Outgoing {
	for i := uint32(1); i <= uint32(e.n); i++ {
		complainers, ok := e.accused[i]
		if !ok || i == e.self {
			continue
		}
		rec := e.inbox[wire.KindJustification][i]
		m, err := decodeJustification(rec.env.Payload, e.n)
		evidence := [][]byte{rec.raw, e.inbox[wire.KindDeal][i].raw}
		if err != nil {
			return e.fail(ReasonBadJustification, []uint32{i}, fmt.Sprintf("justification of party %d: %v", i, err), evidence...)
		}
		if len(m.Shares) != len(complainers) {
			return e.fail(ReasonBadJustification, []uint32{i},
				fmt.Sprintf("party %d revealed %d shares for %d complaints", i, len(m.Shares), len(complainers)), evidence...)
		}
		for k, rs := range m.Shares {
			if rs.To != complainers[k] {
				return e.fail(ReasonBadJustification, []uint32{i},
					fmt.Sprintf("party %d revealed a share for party %d, who did not complain", i, rs.To), evidence...)
			}
			s, err := bls.ScalarFromBytes(rs.Value)
			if err == nil {
				err = e.comms[i].VerifyShare(rs.To, s)
			}
			if err != nil {
				return e.fail(ReasonBadJustification, []uint32{i},
					fmt.Sprintf("party %d revealed a wrong share for party %d", i, rs.To), evidence...)
			}
			if rs.To == e.self {
				e.shares[i] = s
			}
		}
	}
	return e.finalize()
}

// finalize sums the shares and commitments, derives the group and broadcasts
// the key confirmation.
func (e *Engine) finalize() []Outgoing {
	x := new(bls.Scalar)
	all := make([]share.Commitments, e.n)
	for j := uint32(1); j <= uint32(e.n); j++ {
		s, ok := e.shares[j]
		if !ok {
			// Complaints were settled by justification, so every share is
			// here; a gap is a bug in this package.
			return e.internalFailure(fmt.Errorf("share from party %d missing at finalize", j))
		}
		x.Add(x, s)
		all[j-1] = e.comms[j]
	}
	sum, err := share.Sum(all)
	if err != nil {
		return e.internalFailure(err)
	}
	group, err := tbls.NewGroup(sum, e.n)
	if err != nil {
		// A sum of valid deals that lands on the identity: only a rushing
		// adversary that cancels the honest deals could cause this, and the
		// proofs of knowledge prevent it.
		return e.internalFailure(err)
	}
	mine, _ := group.PublicShare(e.self)
	g := bls12381.NewG1()
	if !g.Equal(g.MulScalar(g.New(), g.One(), x), mine.Point()) {
		return e.internalFailure(fmt.Errorf("own share does not match the public share"))
	}
	if e.poly != nil {
		e.poly.Wipe()
		e.poly = nil
	}
	e.keyHash = e.hashKey(group, sum)
	e.popHash = bls.HashToG2(group.Key.Bytes(), bls.PopDST)
	proof := bls.MulG2Blinded(e.popHash, x)
	e.ownProof = proof
	e.result = &Result{Ceremony: e.id, Group: group, Commitments: sum, Share: share.Share{Index: e.self, Value: *x}}
	bls.WipeScalar(x)
	payload, err := (&confirm{KeyHash: e.keyHash, Proof: bls.G2Bytes(proof)}).encode()
	if err != nil {
		return e.internalFailure(err)
	}
	out, err := e.broadcast(wire.KindConfirm, RoundConfirm, payload)
	if err != nil {
		return e.internalFailure(err)
	}
	e.round = RoundConfirm
	e.lastOut = out
	return out
}

// hashKey is SHA-256-sized hash over (X, A_0..A_{t-1}, ceremony id): the
// ceremony id binds the roster.
func (e *Engine) hashKey(group *tbls.Group, sum share.Commitments) []byte {
	h := sha512.New512_256()
	h.Write([]byte(confirmDomain))
	h.Write(group.Key.Bytes())
	for _, c := range sum.Bytes() {
		h.Write(c)
	}
	h.Write(e.id[:])
	return h.Sum(nil)
}

// afterConfirm checks that everyone derived the same key and holds a share
// of it, then assembles the group's proof of possession from t proofs.
func (e *Engine) afterConfirm() []Outgoing {
	group := e.result.Group
	h := e.popHash
	partials := make([]*tbls.Partial, 0, e.n)
	raws := make(map[uint32][]byte, e.n)
	for _, j := range e.others() {
		rec := e.inbox[wire.KindConfirm][j]
		raws[j] = rec.raw
		m, err := decodeConfirm(rec.env.Payload)
		if err != nil {
			return e.fail(ReasonBadConfirmation, []uint32{j}, fmt.Sprintf("confirmation of party %d: %v", j, err), rec.raw)
		}
		if !bytes.Equal(m.KeyHash, e.keyHash) {
			return e.fail(ReasonBadConfirmation, []uint32{j}, fmt.Sprintf("party %d confirmed a different key", j), rec.raw)
		}
		p, err := tbls.PartialFromBytes(j, m.Proof)
		if err != nil {
			return e.fail(ReasonBadConfirmation, []uint32{j}, fmt.Sprintf("confirmation of party %d: %v", j, err), rec.raw)
		}
		partials = append(partials, p)
	}
	own := tbls.Partial{Index: e.self, Sig: *e.ownProof}
	all := append(slices.Clone(partials), &own)
	slices.SortFunc(all, func(a, b *tbls.Partial) int { return int(a.Index) - int(b.Index) })
	// Interpolated before the proofs are checked, so that one batch check
	// covers them and PopVerify(X, pop) (same hash): a bad proof among the
	// t is found and blamed below before the result could be used.
	pt, err := tbls.Interpolate(all[:e.t])
	if err != nil {
		return e.internalFailure(err)
	}
	bad, popOK := verifyProofs(group, h, partials, pt)
	if len(bad) > 0 {
		var evidence [][]byte
		for _, j := range bad {
			evidence = append(evidence, raws[j])
		}
		return e.fail(ReasonBadConfirmation, bad, "key confirmation proof does not verify against the public share", evidence...)
	}
	pop, err := bls.NewSignatureFromSubgroupPoint(pt)
	if err == nil && !popOK {
		err = bls.ErrVerify
	}
	if err != nil {
		return e.internalFailure(fmt.Errorf("group proof of possession: %w", err))
	}
	e.result.GroupPoP = pop
	e.move(StateDone)
	e.final = e.lastOut // the key confirmation
	e.lastOut = nil
	e.sent = nil
	clear(e.seed[:])
	return nil
}

// verifyProofs checks every confirmation proof pi_j against its public
// share X_j, and the group's proof of possession pop against the group key
// X (a proof over the same hash H), with one randomized batch check,
// e(X + sum r_j X_j, H) == e(P1, pop + sum r_j pi_j): one pairing check
// instead of two. Only when the batch fails does it check one by one, to
// name the bad proofs (bad) and tell whether pop holds. With 64-bit random
// weights a wrong proof passes the batch with probability about 2^-63 (one
// weight can be 1: what matters is that the others are unpredictable
// relative to it); the short weights make each multiplication a quarter of
// a full one.
func verifyProofs(group *tbls.Group, h *bls.G2Point, ps []*tbls.Partial, pop *bls.G2Point) (bad []uint32, popOK bool) {
	g1, g2 := bls12381.NewG1(), bls12381.NewG2()
	var seed [8]byte
	weight := func() uint64 {
		if _, err := rand.Read(seed[:]); err != nil {
			panic(fmt.Sprintf("dkg: crypto/rand failed: %v", err))
		}
		return binary.LittleEndian.Uint64(seed[:]) | 1 // odd, so never zero
	}
	accX, accP := g1.New().Set(group.Key.Point()), g2.New().Set(pop)
	for _, p := range ps {
		xj, _ := group.PublicShare(p.Index)
		r := weight()
		g1.Add(accX, accX, mulG1Small(g1, xj.Point(), r))
		g2.Add(accP, accP, mulG2Small(g2, &p.Sig, r))
	}
	if !g1.IsZero(accX) && !g2.IsZero(accP) && bls.PairingCheck(g1.Affine(accX), h, g2.Affine(accP)) {
		return nil, true
	}
	for _, p := range ps {
		if group.VerifyPartial(h, p) != nil {
			bad = append(bad, p.Index)
		}
	}
	return bad, bls.PairingCheck(group.Key.Point(), h, pop)
}

// mulG1Small and mulG2Small multiply by a public 64-bit scalar with plain
// double-and-add, which beats kilic's full-width GLV multiplication for
// short scalars.
func mulG1Small(g *bls12381.G1, p *bls.G1Point, k uint64) *bls.G1Point {
	acc := g.Zero()
	for i := 63; i >= 0; i-- {
		g.Double(acc, acc)
		if k>>uint(i)&1 == 1 {
			g.Add(acc, acc, p)
		}
	}
	return acc
}

func mulG2Small(g *bls12381.G2, p *bls.G2Point, k uint64) *bls.G2Point {
	acc := g.Zero()
	for i := 63; i >= 0; i-- {
		g.Double(acc, acc)
		if k>>uint(i)&1 == 1 {
			g.Add(acc, acc, p)
		}
	}
	return acc
}

func truncate(s string) string {
	if len(s) <= maxDetailLen {
		return s
	}
	// Cut on a rune boundary so the detail stays valid UTF-8.
	cut := maxDetailLen
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut]
}

func joinIndices(idx []uint32) string {
	var b bytes.Buffer
	for i, j := range idx {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, j)
	}
	return b.String()
}
