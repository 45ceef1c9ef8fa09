package prekey

import "errors"

// Sentinel errors. Messages never carry private key material.
var (
	// ErrMalformedBundle: a GET /v2/keys response that is not valid JSON of
	// the documented shape, is too large, or has a key, signature, id or
	// count out of range.
	ErrMalformedBundle = errors.New("prekey: malformed prekey bundle response")
	// ErrBadSignature: a signed prekey or Kyber prekey in a bundle whose
	// XEdDSA signature does not verify under the bundle's identity key.
	ErrBadSignature = errors.New("prekey: bad prekey signature")
	// ErrMalformedResponse: a PUT /v1/devices/link response without a valid
	// ACI or device id.
	ErrMalformedResponse = errors.New("prekey: malformed link response")
	// ErrBadDeviceName: a device name that is empty, too long, or (when
	// decrypting) malformed or not authentic.
	ErrBadDeviceName = errors.New("prekey: bad device name")
	// ErrBadKey: a serialized key or key record of the wrong size or type.
	ErrBadKey = errors.New("prekey: bad key")
	// ErrInvalidArgument: a caller error (zero key id, missing ACI keys).
	ErrInvalidArgument = errors.New("prekey: invalid argument")
)
