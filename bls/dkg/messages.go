package dkg

import (
	"fmt"
	"unicode/utf8"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// Round numbers of the protocol. They travel in the envelope, so they are
// fixed: a round that is skipped (reveal and justification on the happy path)
// keeps its number.
type Round uint32

// Rounds, in order.
const (
	// RoundAccept: every party's human accepts the proposal.
	RoundAccept Round = 0
	// RoundDeal: each dealer broadcasts commitments and a proof of knowledge
	// and sends every other party its share privately.
	RoundDeal Round = 1
	// RoundEcho: each party broadcasts a hash of all deals and complaints.
	RoundEcho Round = 2
	// RoundReveal: only when echo hashes differ: each party re-broadcasts
	// the signed deals it received, exposing an equivocating dealer.
	RoundReveal Round = 3
	// RoundJustify: only after complaints: accused dealers reveal the
	// disputed shares.
	RoundJustify Round = 4
	// RoundConfirm: each party proves it holds a share of the agreed key.
	RoundConfirm Round = 5
)

var roundNames = map[Round]string{
	RoundAccept:  "accept",
	RoundDeal:    "deal",
	RoundEcho:    "echo",
	RoundReveal:  "reveal",
	RoundJustify: "justification",
	RoundConfirm: "confirm",
}

func (r Round) String() string {
	if s, ok := roundNames[r]; ok {
		return s
	}
	return fmt.Sprintf("round(%d)", uint32(r))
}

// roundOfKind is the round each message kind belongs to; an envelope whose
// round disagrees is dropped. Abort may come in any round.
var roundOfKind = map[wire.Kind]Round{
	wire.KindAccept:        RoundAccept,
	wire.KindDeal:          RoundDeal,
	wire.KindShare:         RoundDeal,
	wire.KindEcho:          RoundEcho,
	wire.KindDealReveal:    RoundReveal,
	wire.KindJustification: RoundJustify,
	wire.KindConfirm:       RoundConfirm,
}

// Sizes and bounds of payload fields.
const (
	hashSize        = 32
	maxDetailLen    = 256
	maxEvidence     = 2 * share.MaxParties
	proofDomain     = "cosigner-dkg-pok-v1"
	dealsHashDomain = "cosigner-dkg-deals-v1\x00"
	confirmDomain   = "cosigner-dkg-confirm-v1\x00"
)

// deal is a dealer's round-1 broadcast: Feldman commitments C_0..C_{t-1}
// and a Schnorr proof of knowledge (R, mu) of a_0.
type deal struct {
	Commitments [][]byte
	R           []byte
	Mu          []byte
}

func (m *deal) encode() ([]byte, error) {
	var e wire.Encoder
	e.Repeated(1, m.Commitments)
	e.Bytes(2, m.R)
	e.Bytes(3, m.Mu)
	return e.Finish()
}

func decodeDeal(b []byte, t int) (*deal, error) {
	d := wire.NewDecoder(b)
	c, _ := d.RepeatedFixed(1, bls.G1Size, share.MaxParties)
	r, _ := d.Fixed(2, bls.G1Size)
	mu, _ := d.Fixed(3, bls.ScalarSize)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: deal: %w", ErrPayload, err)
	}
	if len(c) != t {
		return nil, fmt.Errorf("%w: deal has %d commitments, want %d", ErrPayload, len(c), t)
	}
	return &deal{Commitments: c, R: r, Mu: mu}, nil
}

// shareMsg is a dealer's private share for one party.
type shareMsg struct {
	Value []byte
}

func (m *shareMsg) encode() ([]byte, error) {
	var e wire.Encoder
	e.Bytes(1, m.Value)
	return e.Finish()
}

func decodeShare(b []byte) (*shareMsg, error) {
	d := wire.NewDecoder(b)
	v, _ := d.Fixed(1, bls.ScalarSize)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: share: %w", ErrPayload, err)
	}
	return &shareMsg{Value: v}, nil
}

// echo is round 2: the hash of all deals as this party saw them, and the
// dealers whose private share to this party failed its check.
type echo struct {
	DealsHash  []byte
	Complaints []uint32
}

func (m *echo) encode() ([]byte, error) {
	var e wire.Encoder
	e.Bytes(1, m.DealsHash)
	e.Bytes(2, packIndices(m.Complaints))
	return e.Finish()
}

func decodeEcho(b []byte, n int) (*echo, error) {
	d := wire.NewDecoder(b)
	h, _ := d.Fixed(1, hashSize)
	c, _ := d.Bytes(2, n)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: echo: %w", ErrPayload, err)
	}
	complaints, err := unpackIndices(c, n)
	if err != nil {
		return nil, fmt.Errorf("%w: echo complaints: %w", ErrPayload, err)
	}
	return &echo{DealsHash: h, Complaints: complaints}, nil
}

// reveal is round 3: the signed deal envelopes this party received, one per
// dealer in index order.
type reveal struct {
	Deals [][]byte
}

func (m *reveal) encode() ([]byte, error) {
	var e wire.Encoder
	e.Repeated(1, m.Deals)
	return e.Finish()
}

func decodeReveal(b []byte, n int) (*reveal, error) {
	d := wire.NewDecoder(b)
	deals, _ := d.Repeated(1, n, wire.MaxEnvelopeSize)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: reveal: %w", ErrPayload, err)
	}
	if len(deals) != n {
		return nil, fmt.Errorf("%w: reveal has %d deals, want %d", ErrPayload, len(deals), n)
	}
	return &reveal{Deals: deals}, nil
}

// revealedShare is one share an accused dealer discloses.
type revealedShare struct {
	To    uint32
	Value []byte
}

// justification is round 4: an accused dealer discloses the shares of the
// parties that complained about it.
type justification struct {
	Shares []revealedShare // ascending To
}

func (m *justification) encode() ([]byte, error) {
	items := make([][]byte, len(m.Shares))
	for i, s := range m.Shares {
		var e wire.Encoder
		e.Uint(1, uint64(s.To))
		e.Bytes(2, s.Value)
		b, err := e.Finish()
		if err != nil {
			return nil, err
		}
		items[i] = b
	}
	var e wire.Encoder
	e.Repeated(1, items)
	return e.Finish()
}

func decodeJustification(b []byte, n int) (*justification, error) {
	d := wire.NewDecoder(b)
	items, _ := d.Repeated(1, n, 64)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: justification: %w", ErrPayload, err)
	}
	m := &justification{Shares: make([]revealedShare, len(items))}
	for i, it := range items {
		id := wire.NewDecoder(it)
		to, _ := id.Uint32(1)
		v, _ := id.Fixed(2, bls.ScalarSize)
		if err := id.Done(); err != nil {
			return nil, fmt.Errorf("%w: justification share %d: %w", ErrPayload, i, err)
		}
		if to == 0 || int(to) > n || (i > 0 && to <= m.Shares[i-1].To) {
			return nil, fmt.Errorf("%w: justification: recipients not ascending in 1..%d", ErrPayload, n)
		}
		m.Shares[i] = revealedShare{To: to, Value: v}
	}
	return m, nil
}

// confirm is round 5: the hash of the agreed key material and this party's
// share of the group's proof of possession.
type confirm struct {
	KeyHash []byte
	Proof   []byte
}

func (m *confirm) encode() ([]byte, error) {
	var e wire.Encoder
	e.Bytes(1, m.KeyHash)
	e.Bytes(2, m.Proof)
	return e.Finish()
}

func decodeConfirm(b []byte) (*confirm, error) {
	d := wire.NewDecoder(b)
	h, _ := d.Fixed(1, hashSize)
	p, _ := d.Fixed(2, bls.G2Size)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: confirm: %w", ErrPayload, err)
	}
	return &confirm{KeyHash: h, Proof: p}, nil
}

// abort tells the others to stop, why, whom it blames, and the evidence.
type abort struct {
	Reason   AbortReason
	Blamed   []uint32
	Detail   string
	Evidence [][]byte
}

func (m *abort) encode() ([]byte, error) {
	var e wire.Encoder
	e.Uint(1, uint64(m.Reason))
	e.Bytes(2, packIndices(m.Blamed))
	e.Bytes(3, []byte(m.Detail))
	e.Repeated(4, m.Evidence)
	return e.Finish()
}

func decodeAbort(b []byte, n int) (*abort, error) {
	d := wire.NewDecoder(b)
	reason, _ := d.Uint(1)
	blamed, _ := d.Bytes(2, n)
	detail, _ := d.Bytes(3, maxDetailLen)
	evidence, _ := d.Repeated(4, maxEvidence, wire.MaxEnvelopeSize)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: abort: %w", ErrPayload, err)
	}
	if reason == 0 || reason > 255 {
		return nil, fmt.Errorf("%w: abort reason %d", ErrPayload, reason)
	}
	idx, err := unpackIndices(blamed, n)
	if err != nil {
		return nil, fmt.Errorf("%w: abort blamed: %w", ErrPayload, err)
	}
	if !utf8.Valid(detail) {
		return nil, fmt.Errorf("%w: abort detail is not UTF-8", ErrPayload)
	}
	return &abort{Reason: AbortReason(reason), Blamed: idx, Detail: string(detail), Evidence: evidence}, nil
}

// packIndices encodes ascending party indices one byte each (n <= 255).
func packIndices(idx []uint32) []byte {
	out := make([]byte, len(idx))
	for i, j := range idx {
		out[i] = byte(j)
	}
	return out
}

// unpackIndices decodes strictly ascending indices in 1..n.
func unpackIndices(b []byte, n int) ([]uint32, error) {
	out := make([]uint32, len(b))
	for i, v := range b {
		if v == 0 || int(v) > n || (i > 0 && v <= b[i-1]) {
			return nil, fmt.Errorf("indices must ascend within 1..%d", n)
		}
		out[i] = uint32(v)
	}
	return out, nil
}

// reshareDeal is a reshare or import dealer's round-1 broadcast: Feldman
// commitments C'_0..C'_{t'-1} to its sub-sharing. C'_0 is pinned to a
// public value (lambda_i * X_i, or the imported key), so no proof of
// knowledge is needed: nobody can choose it to cancel others.
type reshareDeal struct {
	Commitments [][]byte
}

func (m *reshareDeal) encode() ([]byte, error) {
	var e wire.Encoder
	e.Repeated(1, m.Commitments)
	return e.Finish()
}

func decodeReshareDeal(b []byte, t int) (*reshareDeal, error) {
	d := wire.NewDecoder(b)
	c, _ := d.RepeatedFixed(1, bls.G1Size, share.MaxParties)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: reshare deal: %w", ErrPayload, err)
	}
	if len(c) != t {
		return nil, fmt.Errorf("%w: reshare deal has %d commitments, want %d", ErrPayload, len(c), t)
	}
	return &reshareDeal{Commitments: c}, nil
}

// reshareConfirm is a new signer's key confirmation: the new commitments
// A'_0..A'_{t'-1} it derived (whose hash keygen's confirmation carries;
// here the whole vector, so that a signer of the old group only, which
// received no deal, can check the handover from the confirmations alone)
// and its share of the proof of possession of the group key.
type reshareConfirm struct {
	Commitments [][]byte
	Proof       []byte
}

func (m *reshareConfirm) encode() ([]byte, error) {
	var e wire.Encoder
	e.Repeated(1, m.Commitments)
	e.Bytes(2, m.Proof)
	return e.Finish()
}

func decodeReshareConfirm(b []byte, t int) (*reshareConfirm, error) {
	d := wire.NewDecoder(b)
	c, _ := d.RepeatedFixed(1, bls.G1Size, share.MaxParties)
	p, _ := d.Fixed(2, bls.G2Size)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: reshare confirm: %w", ErrPayload, err)
	}
	if len(c) != t {
		return nil, fmt.Errorf("%w: reshare confirm has %d commitments, want %d", ErrPayload, len(c), t)
	}
	return &reshareConfirm{Commitments: c, Proof: p}, nil
}
