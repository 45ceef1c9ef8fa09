package bls

import "errors"

// Sentinel errors. Callers branch on them with errors.Is; the wrapping error
// says which input was at fault.
var (
	// ErrLength: an encoding has the wrong number of bytes.
	ErrLength = errors.New("wrong length")
	// ErrEncoding: the bytes are not a valid compressed point or canonical
	// scalar (compression flag missing, coordinate not reduced, malformed
	// infinity encoding).
	ErrEncoding = errors.New("invalid encoding")
	// ErrNotOnCurve: the x coordinate has no point on the curve.
	ErrNotOnCurve = errors.New("not a point on the curve")
	// ErrNotInSubgroup: the point is on the curve but outside the prime-order
	// subgroup.
	ErrNotInSubgroup = errors.New("point not in the prime-order subgroup")
	// ErrIdentity: the point is the identity (point at infinity), which is
	// never a valid public key, signature or commitment here.
	ErrIdentity = errors.New("identity point")
	// ErrScalarRange: a scalar is not below the group order r.
	ErrScalarRange = errors.New("scalar out of range")
	// ErrZeroScalar: a secret scalar is zero.
	ErrZeroScalar = errors.New("zero scalar")
	// ErrVerify: the signature does not verify for this key and message.
	ErrVerify = errors.New("signature does not verify")
	// ErrEmpty: an aggregate was asked of no inputs.
	ErrEmpty = errors.New("no inputs")
)
