package tbls

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/wire"
	"google.golang.org/protobuf/encoding/protowire"
)

// The signing protocol's payloads. Each rides in a signed wire.Envelope
// whose Ceremony field is the request id, so every partial, decline and
// result is bound to exactly one request.

// Limits on request fields.
const (
	// MaxMessageSize bounds the message to sign: it must fit one envelope
	// with room for the rest of the request.
	MaxMessageSize = 32 << 10
	// MaxDescriptionLen bounds the human description shown with a request.
	MaxDescriptionLen = 512
	// MaxDeclineReasonLen bounds a decline's reason.
	MaxDeclineReasonLen = 256
)

// ErrPayload: a signing payload is malformed.
var ErrPayload = errors.New("tbls: malformed signing message")

// KeyID names a group key: SHA-256 of its compressed encoding.
func KeyID(pk *bls.PublicKey) [32]byte { return sha256.Sum256(pk.Bytes()) }

// Request asks the group to sign Message with the key KeyID. The request id
// is the envelope's ceremony id, drawn at random by the requester.
type Request struct {
	KeyID       [32]byte
	Message     []byte
	Description string    // what the requester says the message is (shown, not trusted)
	Expires     time.Time // whole seconds; past it, the request counts as declined
	// Epoch binds the request to the key's shares of one epoch (a reshare
	// moves a key to the next): a signer at another epoch refuses it.
	// Omitted for epoch 0, so such a request encodes as before epochs.
	Epoch uint32
}

// Encode returns the canonical encoding.
func (r *Request) Encode() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	var e wire.Encoder
	e.Bytes(1, r.KeyID[:])
	e.Bytes(2, r.Message)
	e.Bytes(3, []byte(r.Description))
	e.Uint(4, uint64(r.Expires.Unix()))
	e.Uint(5, uint64(r.Epoch))
	return e.Finish()
}

func (r *Request) validate() error {
	if len(r.Message) > MaxMessageSize {
		return fmt.Errorf("%w: message of %d bytes, at most %d", ErrPayload, len(r.Message), MaxMessageSize)
	}
	if len(r.Description) > MaxDescriptionLen || !utf8.ValidString(r.Description) {
		return fmt.Errorf("%w: description must be UTF-8 of at most %d bytes", ErrPayload, MaxDescriptionLen)
	}
	if r.Expires.Unix() <= 0 || r.Expires.Unix() > 1<<40 {
		return fmt.Errorf("%w: expiry out of range", ErrPayload)
	}
	if r.KeyID == ([32]byte{}) {
		return fmt.Errorf("%w: no key id", ErrPayload)
	}
	return nil
}

// DecodeRequest strictly decodes a request. The empty message is allowed:
// BLS signs any byte string.
func DecodeRequest(b []byte) (*Request, error) {
	d := wire.NewDecoder(b)
	key, _ := d.Fixed(1, 32)
	msg, _ := d.Bytes(2, MaxMessageSize)
	desc, _ := d.Bytes(3, MaxDescriptionLen)
	exp, _ := d.Uint(4)
	epoch, _ := d.Uint32(5)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: request: %w", ErrPayload, err)
	}
	if exp == 0 || exp > 1<<40 {
		return nil, fmt.Errorf("%w: request expiry out of range", ErrPayload)
	}
	r := &Request{Message: msg, Description: string(desc), Expires: time.Unix(int64(exp), 0).UTC(), Epoch: epoch}
	copy(r.KeyID[:], key)
	if err := r.validate(); err != nil {
		return nil, err
	}
	if r.Message == nil {
		r.Message = []byte{}
	}
	return r, nil
}

// Head is a signer's audit-trail head when it answered a request: how many
// entries its trail held and the hash of the last one. Carried in its
// partial or decline, it lets the peers keep each other's heads, against
// which a cut-off or rolled-back trail shows. The zero Head (Count 0) means
// none and is not encoded.
type Head struct {
	Count uint64
	Hash  [32]byte
}

// encodeHead adds a head as fields 2 (count) and 3 (hash) of a partial or
// decline: both absent for the zero Head, both present otherwise.
func encodeHead(e *wire.Encoder, h Head) error { return encodeHeadAt(e, h, 2) }

// encodeHeadAt is encodeHead as fields n and n+1.
func encodeHeadAt(e *wire.Encoder, h Head, n protowire.Number) error {
	if h.Count == 0 {
		if h.Hash != ([32]byte{}) {
			return fmt.Errorf("%w: an audit head hash without a count", ErrPayload)
		}
		e.Uint(n, 0)
		e.Bytes(n+1, nil)
		return nil
	}
	e.Uint(n, h.Count)
	e.Bytes(n+1, h.Hash[:])
	return nil
}

// decodeHead reads what encodeHead wrote; an error is left in d.
func decodeHead(d *wire.Decoder) (Head, bool) { return decodeHeadAt(d, 2) }

// decodeHeadAt reads what encodeHeadAt wrote at n.
func decodeHeadAt(d *wire.Decoder, n protowire.Number) (Head, bool) {
	count, _ := d.Uint(n)
	hash, _ := d.Bytes(n+1, 32)
	var h Head
	if count == 0 && hash == nil {
		return h, true
	}
	if count == 0 || len(hash) != 32 {
		return h, false
	}
	h.Count = count
	copy(h.Hash[:], hash)
	return h, true
}

// EncodePartial is the payload of a partial signature: its 96-byte point.
// The signer's index is the envelope's sender.
func EncodePartial(p *Partial) ([]byte, error) { return EncodePartialHead(p, Head{}) }

// EncodePartialHead is EncodePartial with the signer's audit head (fields 2
// and 3, absent for the zero Head). Builds before the head reject a
// partial that carries one (unknown field): a group turns it on only once
// every signer runs a build that reads it.
func EncodePartialHead(p *Partial, h Head) ([]byte, error) {
	var e wire.Encoder
	e.Bytes(1, p.Bytes())
	if err := encodeHead(&e, h); err != nil {
		return nil, err
	}
	return e.Finish()
}

// DecodePartial decodes the payload of a partial from party index, with the
// strict point decoding of PartialFromBytes; an audit head it carries is
// checked and dropped (DecodePartialHead returns it).
func DecodePartial(index uint32, b []byte) (*Partial, error) {
	p, _, err := DecodePartialHead(index, b)
	return p, err
}

// DecodePartialHead decodes a partial and the audit head it carries (the
// zero Head when none).
func DecodePartialHead(index uint32, b []byte) (*Partial, Head, error) {
	d := wire.NewDecoder(b)
	sig, _ := d.Fixed(1, bls.G2Size)
	h, ok := decodeHead(d)
	if err := d.Done(); err != nil {
		return nil, Head{}, fmt.Errorf("%w: partial: %w", ErrPayload, err)
	}
	if !ok {
		return nil, Head{}, fmt.Errorf("%w: partial: an audit head needs both its count and its 32-byte hash", ErrPayload)
	}
	p, err := PartialFromBytes(index, sig)
	if err != nil {
		return nil, Head{}, err
	}
	return p, h, nil
}

// Decline tells the group this party will not sign the request, so nobody
// waits for its partial. Head is the decliner's audit head (zero: none;
// builds before it reject a decline that carries one, as for partials).
type Decline struct {
	Reason string
	Head   Head
}

// Encode returns the canonical encoding.
func (m *Decline) Encode() ([]byte, error) {
	if len(m.Reason) > MaxDeclineReasonLen || !utf8.ValidString(m.Reason) {
		return nil, fmt.Errorf("%w: decline reason must be UTF-8 of at most %d bytes", ErrPayload, MaxDeclineReasonLen)
	}
	var e wire.Encoder
	e.Bytes(1, []byte(m.Reason))
	if err := encodeHead(&e, m.Head); err != nil {
		return nil, err
	}
	return e.Finish()
}

// DecodeDecline strictly decodes a decline.
func DecodeDecline(b []byte) (*Decline, error) {
	d := wire.NewDecoder(b)
	reason, _ := d.Bytes(1, MaxDeclineReasonLen)
	h, ok := decodeHead(d)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: decline: %w", ErrPayload, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: decline: an audit head needs both its count and its 32-byte hash", ErrPayload)
	}
	if !utf8.Valid(reason) {
		return nil, fmt.Errorf("%w: decline reason is not UTF-8", ErrPayload)
	}
	return &Decline{Reason: string(reason), Head: h}, nil
}

// SignResult announces the combined signature and whose partials made it.
// Receivers verify it themselves against the group key before trusting it.
type SignResult struct {
	Signature *bls.Signature
	Signers   []uint32 // ascending party indices
	Blamed    []uint32 // ascending; parties whose partials were bad
	// Head is the requester's audit head (fields 4 and 5, absent for the
	// zero Head, which builds before heads require): its own partial is
	// never sent, so the result carries it to the others.
	Head Head
}

// Encode returns the canonical encoding.
func (m *SignResult) Encode() ([]byte, error) {
	for _, l := range [][]uint32{m.Signers, m.Blamed} {
		if !strictlyAscending(l) {
			return nil, fmt.Errorf("%w: party lists must ascend within 1..%d", ErrPayload, share.MaxParties)
		}
	}
	var e wire.Encoder
	e.Bytes(1, m.Signature.Bytes())
	e.Bytes(2, packIndices(m.Signers))
	e.Bytes(3, packIndices(m.Blamed))
	if err := encodeHeadAt(&e, m.Head, 4); err != nil {
		return nil, err
	}
	return e.Finish()
}

// DecodeSignResult strictly decodes a result; the signature point is
// subgroup-checked but not verified (the receiver knows the key and message).
func DecodeSignResult(b []byte) (*SignResult, error) {
	d := wire.NewDecoder(b)
	sig, _ := d.Fixed(1, bls.G2Size)
	signers, _ := d.Bytes(2, share.MaxParties)
	blamed, _ := d.Bytes(3, share.MaxParties)
	head, headOK := decodeHeadAt(d, 4)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: result: %w", ErrPayload, err)
	}
	if !headOK {
		return nil, fmt.Errorf("%w: result: an audit head needs both its count and its 32-byte hash", ErrPayload)
	}
	s, err := bls.SignatureFromBytes(sig)
	if err != nil {
		return nil, fmt.Errorf("%w: result: %w", ErrPayload, err)
	}
	m := &SignResult{Signature: s, Signers: unpackIndices(signers), Blamed: unpackIndices(blamed), Head: head}
	if len(m.Signers) == 0 || !strictlyAscending(m.Signers) || !strictlyAscending(m.Blamed) {
		return nil, fmt.Errorf("%w: result: party lists must be non-empty and ascend within 1..%d", ErrPayload, share.MaxParties)
	}
	return m, nil
}

func packIndices(idx []uint32) []byte {
	out := make([]byte, len(idx))
	for i, j := range idx {
		out[i] = byte(j)
	}
	return out
}

func unpackIndices(b []byte) []uint32 {
	out := make([]uint32, len(b))
	for i, v := range b {
		out[i] = uint32(v)
	}
	return out
}

func strictlyAscending(idx []uint32) bool {
	for i, j := range idx {
		if j == 0 || j > share.MaxParties || (i > 0 && j <= idx[i-1]) {
			return false
		}
	}
	return slices.IsSorted(idx)
}
