package ceremony

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// Rounds of the signing protocol, as carried in envelopes.
const (
	SignRoundRequest uint32 = 0 // the request
	SignRoundAnswer  uint32 = 1 // partials and declines
	SignRoundResult  uint32 = 2 // the combined signature
)

// Sentinel errors of signing sessions.
var (
	ErrNotForSession = errors.New("ceremony: message for another request")
	ErrUnexpected    = errors.New("ceremony: unexpected message")
	ErrDuplicate     = errors.New("ceremony: duplicate message")
	ErrDecided       = errors.New("ceremony: already decided")
	ErrConfig        = errors.New("ceremony: invalid configuration")
	ErrRequest       = errors.New("ceremony: invalid signing request")
	// ErrEpoch: a request for the key's shares of another epoch (before
	// or after a reshare this console has seen end).
	ErrEpoch = errors.New("ceremony: signing request for another epoch of the key")
)

// Decision is this party's answer to a request.
type Decision uint8

// Decisions. Moves: Pending -> Approved | Declined | Expired; the others
// are final (the first answer wins).
const (
	// DecisionPending: shown to the human, not answered yet.
	DecisionPending Decision = iota
	// DecisionApproved: this party sent its partial signature.
	DecisionApproved
	// DecisionDeclined: this party declined and told the others.
	DecisionDeclined
	// DecisionExpired: nobody answered before the expiry: a decline.
	DecisionExpired
)

func (d Decision) String() string {
	return [...]string{"pending", "approved", "declined", "expired"}[min(int(d), 3)]
}

// Outcome is the request's fate as this party sees it.
type Outcome uint8

// Outcomes. Moves: Collecting -> Signed | Failed; both final.
const (
	// OutcomeCollecting: fewer than t valid partials so far.
	OutcomeCollecting Outcome = iota
	// OutcomeSigned: t valid partials combined into a signature that
	// verifies under the group key.
	OutcomeSigned
	// OutcomeFailed: t approvals can no longer be reached (declines,
	// blame) or the request expired first.
	OutcomeFailed
)

func (o Outcome) String() string {
	return [...]string{"collecting", "signed", "failed"}[min(int(o), 2)]
}

// SignConfig is what one party needs for signing with a key.
type SignConfig struct {
	Key        *Key
	Self       uint32
	Share      *share.Share // this party's secret share
	ConsoleKey ed25519.PrivateKey
	// Head, when set, gives this party's audit head; nil: none (and the
	// answers encode as in builds without heads, which reject one). A
	// session reads it once, when it opens (the request's start), and its
	// partial or decline carries that head, whenever the answer comes.
	//
	// Read at the start rather than at the answer so that one value per
	// request, stored with the request (SignSession.OwnHead), makes a
	// restarted console's replayed answer the same bytes it sent before:
	// its trail may have grown meanwhile, and a partial that differed would
	// be equivocation that the peers blame. Reopen a stored request with
	// WithHead(the stored head), never with the live Head.
	Head func() tbls.Head
}

// WithHead returns a copy of c whose sessions carry the head h: for
// reopening a stored request with the head it was first opened with.
func (c SignConfig) WithHead(h tbls.Head) SignConfig {
	c.Head = func() tbls.Head { return h }
	return c
}

func (c *SignConfig) check() error {
	if c.Key == nil || c.Share == nil || c.Self == 0 || int(c.Self) > c.Key.N() || c.Share.Index != c.Self {
		return fmt.Errorf("%w: key, share and index disagree", ErrConfig)
	}
	if len(c.ConsoleKey) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: console key", ErrConfig)
	}
	pub, _ := c.ConsoleKey.Public().(ed25519.PublicKey)
	if own, _ := c.Key.consoleKey(c.Self); !bytes.Equal(pub, own) {
		return fmt.Errorf("%w: console key is not party %d's", ErrConfig, c.Self)
	}
	return nil
}

// SignProgress is what a console shows for a request.
type SignProgress struct {
	Decision  Decision
	Outcome   Outcome
	Requester uint32
	Approved  []uint32 // parties whose valid partial is here (self included)
	Declined  []uint32
	Blamed    []uint32 // parties whose partial was bad
	// Waiting: parties whose answer this console would see and has not
	// seen. Partials go to the requester only, so on another console that
	// is only this party itself, until it answers.
	Waiting []uint32
	// Unseen: parties whose partial, if any, this console never gets (on a
	// console that is not the requester: the requester's and the other
	// signers'); their declines and the final result still arrive.
	Unseen []uint32
	Reason string // why it failed, if it did
	// Expired: it failed because the expiry came before t valid partials
	// (callers tell "too late" from "declined" without parsing Reason).
	Expired bool
}

// SignSession is one party's view of one signing request. Not safe for
// concurrent use: the event loop owns it.
type SignSession struct {
	cfg       SignConfig
	id        [32]byte
	req       *tbls.Request
	reqEnv    []byte
	requester uint32
	h         *bls.G2Point // H(message), computed on first use (hash)

	decision Decision
	outcome  Outcome
	reason   string
	expired  bool

	seen     map[wire.DedupKey]received
	partials map[uint32]*tbls.Partial
	declined map[uint32]string
	blamed   map[uint32][][]byte // evidence: the signed bad partial
	result   *tbls.Result
	lastOut  []Outgoing
	// partialEnv keeps the signed partials so that a bad one can be shown
	// as evidence once the combination names it.
	partialEnv map[uint32][]byte

	head  tbls.Head            // this party's audit head, read when the session opened
	heads map[uint32]tbls.Head // the peers', from their answers
}

type received struct {
	env *wire.Envelope
	raw []byte
}

// NewSignRequest starts a request from this party: it broadcasts the
// request and, since asking is this human's approval, its own partial.
func NewSignRequest(cfg SignConfig, id [32]byte, req tbls.Request) (*SignSession, []Outgoing, error) {
	s, out, err := ProposeSignRequest(cfg, id, req)
	if err != nil {
		return nil, nil, err
	}
	more, err := s.approve()
	if err != nil {
		return nil, nil, err
	}
	return s, append(out, more...), nil
}

// ProposeSignRequest is NewSignRequest without the requester's own
// approval: the caller sends the request at once and then calls Approve
// (hashing the message and the partial signature then overlap with the
// request's way to the others).
func ProposeSignRequest(cfg SignConfig, id [32]byte, req tbls.Request) (*SignSession, []Outgoing, error) {
	if err := cfg.check(); err != nil {
		return nil, nil, err
	}
	req.KeyID, req.Epoch = cfg.Key.ID, cfg.Key.Epoch
	payload, err := req.Encode()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	env, err := wire.Seal(&wire.Envelope{Kind: wire.KindSignRequest, Ceremony: id, Round: SignRoundRequest, From: cfg.Self, Payload: payload}, cfg.ConsoleKey)
	if err != nil {
		return nil, nil, err
	}
	s := newSession(cfg, id, &req, env, cfg.Self)
	return s, []Outgoing{{Kind: wire.KindSignRequest, Round: SignRoundRequest, Envelope: env}}, nil
}

// OpenSignRequest checks a received request envelope and starts this
// party's session for it, pending the human's decision.
func OpenSignRequest(cfg SignConfig, raw []byte) (*SignSession, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	env, err := wire.Open(raw, cfg.Key.consoleKey)
	if err != nil {
		return nil, fmt.Errorf("ceremony: sign request: %w", err)
	}
	if env.Kind != wire.KindSignRequest || env.Round != SignRoundRequest || env.To != 0 {
		return nil, fmt.Errorf("%w: %s in round %d is not a request", ErrUnexpected, env.Kind, env.Round)
	}
	req, err := tbls.DecodeRequest(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	if req.KeyID != cfg.Key.ID {
		return nil, fmt.Errorf("%w: for key %s, not %s", ErrRequest, ShortID(req.KeyID), ShortID(cfg.Key.ID))
	}
	if req.Epoch != cfg.Key.Epoch {
		return nil, fmt.Errorf("%w: key %s at epoch %d, this console signs at epoch %d", ErrEpoch, ShortID(req.KeyID), req.Epoch, cfg.Key.Epoch)
	}
	return newSession(cfg, env.Ceremony, req, raw, env.From), nil
}

func newSession(cfg SignConfig, id [32]byte, req *tbls.Request, reqEnv []byte, requester uint32) *SignSession {
	s := &SignSession{
		cfg: cfg, id: id, req: req, reqEnv: reqEnv, requester: requester,
		seen:     make(map[wire.DedupKey]received),
		partials: make(map[uint32]*tbls.Partial),
		declined: make(map[uint32]string),
		blamed:   make(map[uint32][][]byte),
		heads:    make(map[uint32]tbls.Head),
	}
	if cfg.Head != nil {
		s.head = cfg.Head()
	}
	return s
}

// OwnHead is the audit head this party's answer carries (read from
// SignConfig.Head when the session opened; zero: none). Store it with the
// request, to reopen it with SignConfig.WithHead.
func (s *SignSession) OwnHead() tbls.Head { return s.head }

// PeerHeads returns the audit heads the other parties' answers carried,
// by party index: the partials this console received (the requester gets
// them all) and every decline. Parties that sent none are absent.
func (s *SignSession) PeerHeads() map[uint32]tbls.Head {
	out := make(map[uint32]tbls.Head, len(s.heads))
	for j, h := range s.heads {
		out[j] = h
	}
	return out
}

// noteHead keeps a peer's head from its answer.
func (s *SignSession) noteHead(j uint32, h tbls.Head) {
	if h.Count != 0 {
		s.heads[j] = h
	}
}

// hash is H(message), computed once, when first needed: a requester's
// request leaves before it pays for hashing.
func (s *SignSession) hash() *bls.G2Point {
	if s.h == nil {
		s.h = tbls.HashMessage(s.req.Message)
	}
	return s.h
}

// ID is the request id.
func (s *SignSession) ID() [32]byte { return s.id }

// Request returns the request as signed by the requester.
func (s *SignSession) Request() *tbls.Request { return s.req }

// RequestEnvelope is the signed request, to relay or store.
func (s *SignSession) RequestEnvelope() []byte { return s.reqEnv }

// Requester is the index of the party that asked.
func (s *SignSession) Requester() uint32 { return s.requester }

// Result returns the combined signature once Signed.
func (s *SignSession) Result() *tbls.Result { return s.result }

// Evidence returns the signed bad partials of blamed parties.
func (s *SignSession) Evidence() map[uint32][][]byte {
	out := make(map[uint32][][]byte, len(s.blamed))
	for k, v := range s.blamed {
		out[k] = slices.Clone(v)
	}
	return out
}

// Approve sends this party's partial signature. The first answer wins.
func (s *SignSession) Approve() ([]Outgoing, error) {
	if s.decision != DecisionPending {
		return nil, fmt.Errorf("%w: %s", ErrDecided, s.decision)
	}
	return s.approve()
}

func (s *SignSession) approve() ([]Outgoing, error) {
	p, err := tbls.SignHashed(s.cfg.Share, s.hash())
	if err != nil {
		return nil, err
	}
	payload, err := tbls.EncodePartialHead(p, s.head)
	if err != nil {
		return nil, err
	}
	env, err := s.seal(wire.KindPartial, SignRoundAnswer, payload)
	if err != nil {
		return nil, err
	}
	s.decision = DecisionApproved
	s.partials[s.cfg.Self] = p
	// The partial goes to the requester only (the envelope itself stays a
	// broadcast: anyone shown it can check it). Only the requester
	// combines; the others check its result, which costs them one pairing
	// check like a combination would, spares them the other signers'
	// partials (in a 2-of-3 signing, six messages instead of ten), and
	// keeps their work out of the way while the requester combines. The
	// requester's own partial goes nowhere.
	out := []Outgoing{{To: s.requester, Kind: wire.KindPartial, Round: SignRoundAnswer, Envelope: env}}
	s.lastOut = out
	return append(out, s.tryCombine()...), nil
}

// Decline tells the others this party will not sign. The first answer wins.
func (s *SignSession) Decline(reason string) ([]Outgoing, error) {
	if s.decision != DecisionPending {
		return nil, fmt.Errorf("%w: %s", ErrDecided, s.decision)
	}
	return s.decline(DecisionDeclined, reason)
}

func (s *SignSession) decline(d Decision, reason string) ([]Outgoing, error) {
	payload, err := (&tbls.Decline{Reason: truncate(reason, tbls.MaxDeclineReasonLen), Head: s.head}).Encode()
	if err != nil {
		return nil, err
	}
	env, err := s.seal(wire.KindDecline, SignRoundAnswer, payload)
	if err != nil {
		return nil, err
	}
	s.decision = d
	s.declined[s.cfg.Self] = reason
	out := []Outgoing{{Kind: wire.KindDecline, Round: SignRoundAnswer, Envelope: env}}
	s.lastOut = out
	s.checkReachable()
	return out, nil
}

// Tick applies the clock: past the expiry an unanswered request is declined
// (expiry means decline) and a request still short of t partials fails.
func (s *SignSession) Tick(now time.Time) ([]Outgoing, error) {
	if now.Before(s.req.Expires) {
		return nil, nil
	}
	var out []Outgoing
	if s.decision == DecisionPending {
		o, err := s.decline(DecisionExpired, "expired before an answer")
		if err != nil {
			return nil, err
		}
		out = o
	}
	if s.outcome == OutcomeCollecting {
		s.outcome, s.expired = OutcomeFailed, true
		s.reason = fmt.Sprintf("expired with %d of %d partial signatures", len(s.partials), s.cfg.Key.T())
	}
	return out, nil
}

// Retire ends a request still collecting, unsigned, because its key moved
// to another epoch (a reshare ended): its partials are of shares that are
// being erased and could never combine with the new ones. It sends
// nothing; the others retire it when they see the reshare end.
func (s *SignSession) Retire(reason string) bool {
	if s.outcome != OutcomeCollecting {
		return false
	}
	s.outcome, s.reason = OutcomeFailed, reason
	return true
}

// Resend returns this party's last answer (and, for the requester, the
// request), the same bytes, for the caller to send again while the request
// is open.
func (s *SignSession) Resend() []Outgoing {
	if s.outcome != OutcomeCollecting {
		return nil
	}
	out := slices.Clone(s.lastOut)
	if s.requester == s.cfg.Self {
		out = append([]Outgoing{{Kind: wire.KindSignRequest, Round: SignRoundRequest, Envelope: s.reqEnv}}, out...)
	}
	return out
}

// Final returns the requester's result envelope once the request is
// signed (nil otherwise), for a peer that still asks after the request
// ended here: the process may have stopped before it left. The bytes are
// the same after a restart (BLS and Ed25519 signatures are deterministic).
func (s *SignSession) Final() []Outgoing {
	if s.outcome != OutcomeSigned || s.requester != s.cfg.Self {
		return nil
	}
	for _, o := range s.lastOut {
		if o.Kind == wire.KindSignResult {
			return []Outgoing{o}
		}
	}
	return nil
}

// Handle takes a partial, a decline or a result for this request. Errors
// that are not about misbehaviour leave the session unchanged.
func (s *SignSession) Handle(raw []byte) ([]Outgoing, error) {
	env, err := wire.Open(raw, s.cfg.Key.consoleKey)
	if err != nil {
		return nil, fmt.Errorf("ceremony: %w", err)
	}
	if env.Ceremony != s.id {
		return nil, ErrNotForSession
	}
	if env.From == s.cfg.Self {
		return nil, fmt.Errorf("%w: own message from the network", ErrUnexpected)
	}
	if env.To != 0 {
		return nil, fmt.Errorf("%w: signing messages are broadcasts", ErrUnexpected)
	}
	key := env.Key()
	if prev, ok := s.seen[key]; ok {
		if !wire.Equivocation(prev.env, env) {
			return nil, ErrDuplicate
		}
		s.blame(env.From, prev.raw, raw)
		return nil, nil
	}
	switch {
	case env.Kind == wire.KindSignRequest && env.Round == SignRoundRequest:
		if bytes.Equal(raw, s.reqEnv) {
			return nil, ErrDuplicate
		}
		return nil, fmt.Errorf("%w: a second request under the same id", ErrUnexpected)
	case env.Kind == wire.KindPartial && env.Round == SignRoundAnswer:
		return s.handlePartial(key, env, raw)
	case env.Kind == wire.KindDecline && env.Round == SignRoundAnswer:
		m, err := tbls.DecodeDecline(env.Payload)
		if err != nil {
			return nil, fmt.Errorf("ceremony: decline from party %d: %w", env.From, err)
		}
		if prev, ok := s.otherAnswer(key); ok {
			// The first answer wins (the partial stands), and two signed
			// answers to one request are equivocation.
			s.seen[key] = received{env, raw}
			s.blame(env.From, prev.raw, raw)
			return nil, nil
		}
		s.seen[key] = received{env, raw}
		s.declined[env.From] = m.Reason
		s.noteHead(env.From, m.Head)
		s.checkReachable()
		return nil, nil
	case env.Kind == wire.KindSignResult && env.Round == SignRoundResult:
		return nil, s.handleResult(key, env, raw)
	}
	return nil, fmt.Errorf("%w: %s in round %d", ErrUnexpected, env.Kind, env.Round)
}

func (s *SignSession) handlePartial(key wire.DedupKey, env *wire.Envelope, raw []byte) ([]Outgoing, error) {
	if prev, ok := s.otherAnswer(key); ok {
		// The first answer wins (the decline stands), and two signed
		// answers to one request are equivocation.
		s.seen[key] = received{env, raw}
		s.blame(env.From, prev.raw, raw)
		return nil, nil
	}
	p, head, err := tbls.DecodePartialHead(env.From, env.Payload)
	if err != nil {
		// Validly signed garbage is evidence against its sender.
		s.seen[key] = received{env, raw}
		s.blame(env.From, raw)
		return nil, nil
	}
	s.seen[key] = received{env, raw}
	s.noteHead(env.From, head)
	if s.outcome != OutcomeCollecting {
		return nil, nil
	}
	s.partials[env.From] = p
	s.rawPartial(env.From, raw)
	return s.tryCombine(), nil
}

// otherAnswer returns the party's other answer to this request (its
// decline for a partial's key, its partial for a decline's), if seen.
func (s *SignSession) otherAnswer(key wire.DedupKey) (received, bool) {
	switch key.Kind {
	case wire.KindPartial:
		key.Kind = wire.KindDecline
	case wire.KindDecline:
		key.Kind = wire.KindPartial
	default:
		return received{}, false
	}
	prev, ok := s.seen[key]
	return prev, ok
}

func (s *SignSession) rawPartial(from uint32, raw []byte) {
	if s.partialEnv == nil {
		s.partialEnv = make(map[uint32][]byte)
	}
	s.partialEnv[from] = raw
}

// tryCombine combines once t partials are here (optimistic path: one final
// verification; partials are checked one by one only to blame).
func (s *SignSession) tryCombine() []Outgoing {
	if s.outcome != OutcomeCollecting || len(s.partials) < s.cfg.Key.T() {
		return nil
	}
	ps := make([]*tbls.Partial, 0, len(s.partials))
	for _, j := range sortedKeys(s.partials) {
		ps = append(ps, s.partials[j])
	}
	res, err := s.cfg.Key.Group.CombineHashed(s.hash(), ps)
	var blame *tbls.BlameError
	if errors.As(err, &blame) {
		for _, j := range blame.Parties {
			s.dropBad(j)
		}
		s.checkReachable()
		return nil
	}
	if err != nil {
		s.outcome, s.reason = OutcomeFailed, err.Error()
		return nil
	}
	for _, j := range res.Blamed {
		s.dropBad(j)
	}
	// The result names everyone blamed in this request, also those whose
	// bad partial came before an earlier, failed combination.
	res.Blamed = sortedKeys(s.blamed)
	s.result = res
	s.outcome = OutcomeSigned
	if s.requester != s.cfg.Self {
		return nil
	}
	payload, err := (&tbls.SignResult{Signature: res.Signature, Signers: res.Signers, Blamed: res.Blamed, Head: s.head}).Encode()
	if err != nil {
		return nil
	}
	env, err := s.seal(wire.KindSignResult, SignRoundResult, payload)
	if err != nil {
		return nil
	}
	out := []Outgoing{{Kind: wire.KindSignResult, Round: SignRoundResult, Envelope: env}}
	s.lastOut = append(s.lastOut, out...)
	return out
}

func (s *SignSession) dropBad(j uint32) {
	if raw, ok := s.partialEnv[j]; ok {
		s.blame(j, raw)
	} else {
		s.blame(j)
	}
	delete(s.partials, j)
}

func (s *SignSession) blame(j uint32, evidence ...[]byte) {
	s.blamed[j] = append(s.blamed[j], evidence...)
	delete(s.partials, j)
	s.checkReachable()
}

// checkReachable fails the request once fewer than t parties can still
// contribute a valid partial.
func (s *SignSession) checkReachable() {
	if s.outcome != OutcomeCollecting {
		return
	}
	out := map[uint32]bool{}
	for j := range s.declined {
		out[j] = true
	}
	for j := range s.blamed {
		out[j] = true
	}
	if s.cfg.Key.N()-len(out) < s.cfg.Key.T() {
		s.outcome = OutcomeFailed
		s.reason = fmt.Sprintf("%d of %d parties declined or were blamed; %d signatures are needed", len(out), s.cfg.Key.N(), s.cfg.Key.T())
	}
}

// handleResult accepts the requester's result only if it verifies: a
// result is a claim, checked here against the group key.
func (s *SignSession) handleResult(key wire.DedupKey, env *wire.Envelope, raw []byte) error {
	if env.From != s.requester {
		return fmt.Errorf("%w: result from party %d, not the requester", ErrUnexpected, env.From)
	}
	m, err := tbls.DecodeSignResult(env.Payload)
	if err != nil {
		return fmt.Errorf("ceremony: result: %w", err)
	}
	if !s.possibleClaim(m) {
		// A valid signature does not make its party lists true: shown,
		// they would name signers who did not sign.
		s.seen[key] = received{env, raw}
		s.blame(env.From, raw)
		return nil
	}
	if s.result != nil && s.result.Signature.Equal(m.Signature) {
		// The same signature this console combined and verified itself:
		// BLS signatures are unique, so there is nothing more to check.
		s.seen[key] = received{env, raw}
		s.noteHead(env.From, m.Head)
		return nil
	}
	// Checked with the hash this session already holds: Verify(X, m, sig).
	if !bls.PairingCheck(s.cfg.Key.Group.Key.Point(), s.hash(), m.Signature.Point()) {
		s.seen[key] = received{env, raw}
		s.blame(env.From, raw)
		return nil
	}
	s.seen[key] = received{env, raw}
	s.noteHead(env.From, m.Head)
	if s.outcome == OutcomeCollecting {
		s.result = &tbls.Result{Signature: m.Signature, Signers: m.Signers, Blamed: m.Blamed}
		s.outcome = OutcomeSigned
	}
	return nil
}

// possibleClaim reports whether a result's party lists could come from an
// honest requester: exactly t signers (Combine uses t partials), all in the
// roster, none of them blamed, and this party among them only if it sent
// its partial.
func (s *SignSession) possibleClaim(m *tbls.SignResult) bool {
	n := uint32(s.cfg.Key.N())
	if len(m.Signers) != s.cfg.Key.T() {
		return false
	}
	for _, j := range m.Signers {
		if j > n || slices.Contains(m.Blamed, j) {
			return false
		}
	}
	for _, j := range m.Blamed {
		if j > n {
			return false
		}
	}
	return s.decision == DecisionApproved || !slices.Contains(m.Signers, s.cfg.Self)
}

// Progress reports the request for display.
func (s *SignSession) Progress() SignProgress {
	p := SignProgress{Decision: s.decision, Outcome: s.outcome, Requester: s.requester, Reason: s.reason, Expired: s.expired}
	for j := uint32(1); j <= uint32(s.cfg.Key.N()); j++ {
		_, approved := s.partials[j]
		_, declined := s.declined[j]
		_, blamed := s.blamed[j]
		switch {
		case blamed:
			p.Blamed = append(p.Blamed, j)
		case approved:
			p.Approved = append(p.Approved, j)
		case declined:
			p.Declined = append(p.Declined, j)
		case s.requester == s.cfg.Self || j == s.cfg.Self:
			p.Waiting = append(p.Waiting, j)
		default:
			p.Unseen = append(p.Unseen, j)
		}
	}
	if s.result != nil {
		p.Approved = slices.Clone(s.result.Signers)
		signed := func(j uint32) bool { return slices.Contains(p.Approved, j) }
		p.Waiting = slices.DeleteFunc(p.Waiting, signed)
		p.Unseen = slices.DeleteFunc(p.Unseen, signed)
	}
	return p
}

func (s *SignSession) seal(kind wire.Kind, round uint32, payload []byte) ([]byte, error) {
	b, err := wire.Seal(&wire.Envelope{Kind: kind, Ceremony: s.id, Round: round, From: s.cfg.Self, Payload: payload}, s.cfg.ConsoleKey)
	if err != nil {
		return nil, fmt.Errorf("ceremony: seal %s: %w", kind, err)
	}
	return b, nil
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut]
}
