package wire

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the wrapping error
// names the field or party at fault. None of them ever carries key material.
var (
	// ErrMalformed: the bytes are not a canonical encoding of the expected
	// message (truncated, trailing bytes, fields out of order or repeated,
	// unknown field, wrong wire type, non-minimal varint, explicit zero value,
	// wrong fixed length, or a bound exceeded).
	ErrMalformed = errors.New("wire: malformed message")
	// ErrTooLarge: a message, field or list is larger than its bound. When
	// the bound is a field's, the error wraps ErrMalformed as well.
	ErrTooLarge = errors.New("wire: too large")
	// ErrVersion: the envelope was produced by a protocol version this code
	// does not speak.
	ErrVersion = errors.New("wire: unsupported envelope version")
	// ErrSignature: the envelope's Ed25519 signature does not verify under
	// the sender's console key.
	ErrSignature = errors.New("wire: bad envelope signature")
	// ErrUnknownSender: no console key is pinned for the envelope's From
	// party, so its signature cannot be checked. Kept apart from ErrSignature
	// because it points at the roster, not at a cheating or corrupted peer.
	ErrUnknownSender = errors.New("wire: unknown sender")
	// ErrKind: the envelope's kind is not one this code knows.
	ErrKind = errors.New("wire: unknown message kind")
	// ErrInvalid: an envelope handed to Seal violates an invariant that Open
	// would enforce (From is 0, From == To, unknown kind, bad key length).
	// It is a caller bug, never a peer's fault.
	ErrInvalid = errors.New("wire: invalid envelope")
)
