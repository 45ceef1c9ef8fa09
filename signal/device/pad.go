package device

import (
	"bytes"
	"fmt"
)

// MPCTag prefixes every MPC ciphertext, outside the encryption, so a console
// recognises MPC traffic without decrypting anything else. Signal message
// serialisations start with a version byte (0x33 or 0x44), never 'M'.
var MPCTag = []byte("MPC\x01")

// fillerContent is what the other devices of a signer's account (a phone)
// get instead of the MPC message: a PLAINTEXT_CONTENT (type 8) body,
// 0xC0 || Content{nullMessage{}} || 0x80, which Signal apps accept and
// discard. (0x22 0x00 is field 4, nullMessage, empty.)
var fillerContent = []byte{0xC0, 0x22, 0x00, 0x80}

// padBlock is Signal's padding granularity.
const padBlock = 160

// pad appends 0x80 and zeros up to a multiple of 160 bytes, as Signal pads
// message plaintext (ISO 7816-4 style).
func pad(b []byte) []byte {
	n := (len(b) + 1 + padBlock - 1) / padBlock * padBlock
	out := make([]byte, n)
	copy(out, b)
	out[len(b)] = 0x80
	return out
}

// unpad strips trailing zeros and the 0x80 marker. It accepts any amount of
// zero padding (Signal's mock pads with the marker alone).
func unpad(b []byte) ([]byte, error) {
	i := len(bytes.TrimRight(b, "\x00")) - 1
	if i < 0 || b[i] != 0x80 {
		return nil, fmt.Errorf("%w: no 0x80 marker", ErrPadding)
	}
	return b[:i], nil
}
