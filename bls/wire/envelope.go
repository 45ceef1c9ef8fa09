package wire

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Version is the envelope format version this code produces and accepts.
const Version = 1

// MaxEnvelopeSize bounds an encoded envelope. A Signal message body must stay
// under the server's 96 KiB limit after encryption and padding; 64 KiB leaves
// room for both. Open rejects anything larger before parsing a byte.
const MaxEnvelopeSize = 64 << 10

// signingPrefix starts the bytes an envelope signature covers. The console
// key may sign other things too (roster confirmations, say); without a
// distinct, NUL-terminated prefix a signature made for one purpose could be
// replayed as a valid signature for another whose encoding happens to match.
// The NUL makes the prefix unambiguous against any longer label, and the
// first byte ('c', read as a tag: field 12, wire type 3) can never start a
// valid envelope, so signed bytes are never mistaken for an envelope either.
const signingPrefix = "cosigner-mpc-envelope-v1\x00"

// Envelope field numbers. Part of the signed format: never renumber. The
// signature is field 15, the last one-byte tag, so that SigningBytes is a
// prefix-free encoding of fields 1..7 and the full encoding simply appends
// the signature.
const (
	fieldVersion   protowire.Number = 1
	fieldKind      protowire.Number = 2
	fieldCeremony  protowire.Number = 3
	fieldRound     protowire.Number = 4
	fieldFrom      protowire.Number = 5
	fieldTo        protowire.Number = 6
	fieldPayload   protowire.Number = 7
	fieldSignature protowire.Number = 15
)

// Envelope is one signed MPC protocol message. It binds the payload to its
// protocol version, kind, ceremony, round, sender and recipient (house rule
// 7), and the sender's Ed25519 signature makes it transferable evidence of
// what the sender said.
type Envelope struct {
	// Version is the format version; always Version when produced here.
	Version uint32
	// Kind says what Payload is.
	Kind Kind
	// Ceremony is the ceremony id (DKG) or request id (signing).
	Ceremony [32]byte
	// Round is the protocol round within the ceremony.
	Round uint32
	// From is the sender's party index, 1..n; 0 is never a party.
	From uint32
	// To is 0 for a broadcast, else the recipient's party index.
	To uint32
	// Payload is the protocol-specific message, encoded with this package's
	// codec.
	Payload []byte
	// Signature is the sender console key's Ed25519 signature over
	// SigningBytes.
	Signature [64]byte
}

// DedupKey identifies the slot an envelope fills: receivers keep one message
// per key and drop exact duplicates. Kind is part of it so that two different
// messages of one round from one sender (a deal and a share) do not collide.
// It is comparable, for use as a map key.
type DedupKey struct {
	Ceremony [32]byte
	Kind     Kind
	Round    uint32
	From, To uint32
}

// Key returns the envelope's deduplication key.
func (e *Envelope) Key() DedupKey {
	return DedupKey{Ceremony: e.Ceremony, Kind: e.Kind, Round: e.Round, From: e.From, To: e.To}
}

// encodeTo appends the canonical encoding of fields 1..7 to dst, then the
// signature if withSig.
func (e *Envelope) encodeTo(dst []byte, withSig bool) []byte {
	enc := Encoder{buf: dst}
	enc.Uint(fieldVersion, uint64(e.Version))
	enc.Uint(fieldKind, uint64(e.Kind))
	enc.Bytes(fieldCeremony, e.Ceremony[:])
	enc.Uint(fieldRound, uint64(e.Round))
	enc.Uint(fieldFrom, uint64(e.From))
	enc.Uint(fieldTo, uint64(e.To))
	enc.Bytes(fieldPayload, e.Payload)
	if withSig {
		enc.Bytes(fieldSignature, e.Signature[:])
	}
	b, err := enc.Finish()
	if err != nil {
		// The field order above is fixed and no repeated field is used, so
		// this cannot depend on the envelope's contents.
		panic("wire: envelope encoder invariant broken: " + err.Error())
	}
	return b
}

// SigningBytes returns what the signature covers: a domain-separation
// prefix followed by the canonical encoding of fields 1..7 (everything but
// the signature). See signingPrefix for why the prefix exists.
func (e *Envelope) SigningBytes() []byte {
	dst := make([]byte, 0, len(signingPrefix)+64+len(e.Payload))
	return e.encodeTo(append(dst, signingPrefix...), false)
}

// Encode returns the full canonical encoding: fields 1..7, then the
// signature. For any b that Decode accepts, Decode(b).Encode() equals b.
func (e *Envelope) Encode() []byte {
	return e.encodeTo(make([]byte, 0, 140+len(e.Payload)), true)
}

// Digest returns the SHA-256 of the full encoding: a short hex prefix of it
// names a message in logs, and two digests under one DedupKey flag a
// possible equivocation.
func (e *Envelope) Digest() [32]byte {
	return sha256.Sum256(e.Encode())
}

// validate checks the invariants Open enforces beyond the codec. base is the
// sentinel for structural faults: ErrMalformed for received bytes, ErrInvalid
// for an envelope being sealed.
func (e *Envelope) validate(base error) error {
	if e.Version != Version {
		return fmt.Errorf("%w: version %d, this console speaks version %d", ErrVersion, e.Version, Version)
	}
	if !e.Kind.Valid() {
		return fmt.Errorf("%w: %s", ErrKind, e.Kind)
	}
	if e.From == 0 {
		return fmt.Errorf("%w: from is 0 (party indices start at 1)", base)
	}
	if e.From == e.To {
		return fmt.Errorf("%w: party %d addressed a message to itself", base, e.From)
	}
	return nil
}

// Decode strictly decodes an envelope and checks its version, kind, From and
// To, but not its signature: it is for displaying evidence and for fuzzing.
// Anything acted upon must come from Open. Errors wrap ErrTooLarge,
// ErrMalformed, ErrVersion or ErrKind.
func Decode(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: envelope is %d bytes, max %d", ErrTooLarge, len(b), MaxEnvelopeSize)
	}
	d := NewDecoder(b)
	var e Envelope
	e.Version, _ = d.Uint32(fieldVersion)
	kind, _ := d.Uint(fieldKind)
	ceremony, _ := d.Fixed(fieldCeremony, len(e.Ceremony))
	e.Round, _ = d.Uint32(fieldRound)
	e.From, _ = d.Uint32(fieldFrom)
	e.To, _ = d.Uint32(fieldTo)
	e.Payload, _ = d.Bytes(fieldPayload, MaxEnvelopeSize)
	sig, _ := d.Fixed(fieldSignature, len(e.Signature))
	// Errors are sticky: Done returns the first one.
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	if kind > math.MaxUint8 {
		return nil, fmt.Errorf("decode envelope: %w: kind(%d)", ErrKind, kind)
	}
	e.Kind = Kind(kind)
	copy(e.Ceremony[:], ceremony)
	copy(e.Signature[:], sig)
	if err := e.validate(ErrMalformed); err != nil {
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	return &e, nil
}

// Seal sets env.Version to Version, checks env as Open would (known kind,
// From != 0, From != To, size), signs it with the console key and stores the
// signature in env.Signature. It returns the full encoding, ready to send.
// The key is used for this one signature and not retained.
func Seal(env *Envelope, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		// ed25519.Sign would panic; report the length only, never the bytes.
		return nil, fmt.Errorf("seal: %w: private key is %d bytes, want %d", ErrInvalid, len(key), ed25519.PrivateKeySize)
	}
	env.Version = Version
	if err := env.validate(ErrInvalid); err != nil {
		return nil, fmt.Errorf("seal %s: %w", env.Kind, err)
	}
	msg := env.SigningBytes()
	// The full encoding is the signed fields plus a 66-byte signature field.
	size := len(msg) - len(signingPrefix) + protowire.SizeTag(fieldSignature) + protowire.SizeBytes(len(env.Signature))
	if size > MaxEnvelopeSize {
		return nil, fmt.Errorf("seal %s: %w: envelope would be %d bytes, max %d", env.Kind, ErrTooLarge, size, MaxEnvelopeSize)
	}
	copy(env.Signature[:], ed25519.Sign(key, msg))
	return env.Encode(), nil
}

// Open checks the size first, strictly decodes b, checks version, kind, From
// and To, then verifies the signature under the console key that pub returns
// for the sender (From). pub returns false for a party with no pinned key.
// Errors wrap ErrTooLarge, ErrMalformed, ErrVersion, ErrKind,
// ErrUnknownSender or ErrSignature.
func Open(b []byte, pub func(from uint32) (ed25519.PublicKey, bool)) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, fmt.Errorf("open: %w: envelope is %d bytes, max %d", ErrTooLarge, len(b), MaxEnvelopeSize)
	}
	e, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	var key ed25519.PublicKey
	ok := false
	if pub != nil {
		key, ok = pub(e.From)
	}
	if !ok {
		return nil, fmt.Errorf("open %s: %w: no console key for party %d", e.Kind, ErrUnknownSender, e.From)
	}
	if len(key) != ed25519.PublicKeySize {
		// ed25519.Verify would panic; a roster entry with a bad key is as
		// good as none.
		return nil, fmt.Errorf("open %s: %w: console key for party %d is %d bytes", e.Kind, ErrUnknownSender, e.From, len(key))
	}
	if !ed25519.Verify(key, e.SigningBytes(), e.Signature[:]) {
		return nil, fmt.Errorf("open %s round %d from party %d: %w", e.Kind, e.Round, e.From, ErrSignature)
	}
	return e, nil
}

// Equivocation reports whether a and b fill the same slot (same Key) with
// different signed content. Both must have come from Open, so both
// signatures verified: two validly signed envelopes with one key and
// different content are transferable proof that the sender equivocated,
// which anyone holding the sender's console key can check. Signatures are
// not compared: one message may carry several valid signatures, which is
// not equivocation.
func Equivocation(a, b *Envelope) bool {
	return a.Key() == b.Key() && !bytes.Equal(a.SigningBytes(), b.SigningBytes())
}
