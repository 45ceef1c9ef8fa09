package provision

import "errors"

// Sentinel errors of the provisioning cipher. Callers branch on them with
// errors.Is; the wrapped messages never contain key material.
var (
	// ErrBadLinkURL: a link URL that is not sgnl://linkdevice (or the legacy
	// tsdevice:/) with a uuid and a 33-byte pub_key.
	ErrBadLinkURL = errors.New("provision: malformed link url")
	// ErrBadPublicKey: a public key that is not 0x05 followed by 32 bytes, or
	// that gives a degenerate X25519 shared secret.
	ErrBadPublicKey = errors.New("provision: bad public key")
	// ErrMalformedEnvelope: bytes that are not a ProvisionEnvelope, are too
	// large, or lack one of its fields.
	ErrMalformedEnvelope = errors.New("provision: malformed envelope")
	// ErrTruncated: an envelope body too short for version, IV, one block and
	// MAC, or whose ciphertext is not a whole number of AES blocks.
	ErrTruncated = errors.New("provision: truncated envelope body")
	// ErrUnsupportedVersion: an envelope body whose version byte is not 1.
	ErrUnsupportedVersion = errors.New("provision: unsupported envelope version")
	// ErrBadMAC: the HMAC over version, IV and ciphertext does not verify
	// (tampered, or encrypted to another key). Nothing was decrypted.
	ErrBadMAC = errors.New("provision: envelope mac mismatch")
	// ErrBadPadding: the PKCS#7 padding of an authenticated plaintext is
	// invalid. Only a broken sender produces this.
	ErrBadPadding = errors.New("provision: bad padding")
	// ErrMalformedMessage: the decrypted ProvisionMessage does not parse or
	// lacks what a linked device needs (ACI, a consistent ACI identity key
	// pair, a provisioning code), or has malformed optional fields.
	ErrMalformedMessage = errors.New("provision: malformed provision message")
)
