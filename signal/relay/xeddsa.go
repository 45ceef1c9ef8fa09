package relay

import (
	"crypto/ed25519"
	"math/big"
)

// p25519 is the field prime 2^255 - 19.
var p25519 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

// verifyXEdDSA checks an XEdDSA signature (Signal's Curve25519 signatures)
// over msg by a serialized identity key (0x05 || Montgomery u).
//
// The Montgomery u-coordinate becomes the Edwards y = (u-1)/(u+1), the sign
// of x comes from the signature's top bit, and the rest is Ed25519
// verification. This is the computation of libsignal's curve25519 verify,
// written on the standard library so that the relay's hot path does not go
// through go.mau.fi/libsignal's global logger (racy lazy initialisation and
// a formatted debug line per call). A test checks it against libsignal.
func verifyXEdDSA(identity, msg, sig []byte) bool {
	if !validIdentityKey(identity) || len(sig) != signatureLen {
		return false
	}
	var le [32]byte
	copy(le[:], identity[1:])
	le[31] &= 0x7f
	u := new(big.Int).SetBytes(reverse(le[:]))
	u.Mod(u, p25519)

	num := new(big.Int).Sub(u, big.NewInt(1))
	den := new(big.Int).Add(u, big.NewInt(1))
	den.Mod(den, p25519)
	y := new(big.Int)
	if den.Sign() != 0 { // u = -1 maps to y = 0, as inverting 0 gives 0 there
		y.ModInverse(den, p25519)
		y.Mul(y, num)
		y.Mod(y, p25519)
	}
	var edPub [32]byte
	y.FillBytes(edPub[:])
	copy(edPub[:], reverse(edPub[:]))
	edPub[31] |= sig[63] & 0x80

	var s [64]byte
	copy(s[:], sig)
	s[63] &= 0x7f
	return ed25519.Verify(edPub[:], msg, s[:])
}

// reverse returns b reversed (a new slice).
func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		out[len(b)-1-i] = v
	}
	return out
}
