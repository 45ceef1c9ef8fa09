package relay

import (
	"bytes"
	"testing"

	"go.mau.fi/libsignal/ecc"
)

func TestXEdDSAAgreesWithLibsignal(t *testing.T) {
	t.Parallel()
	id := newIdentity(t)
	other := newIdentity(t)
	msg := kyberKey(t)
	sig := id.sign(msg)
	flip := func(b []byte, i int, mask byte) []byte {
		c := bytes.Clone(b)
		c[i] ^= mask
		return c
	}
	tests := []struct {
		name          string
		key, msg, sig []byte
		want          bool
	}{
		{"a valid signature verifies", id.public(), msg, sig, true},
		{"another key does not verify", other.public(), msg, sig, false},
		{"a changed message does not verify", id.public(), flip(msg, 5, 1), sig, false},
		{"a changed R does not verify", id.public(), msg, flip(sig, 0, 1), false},
		{"a changed s does not verify", id.public(), msg, flip(sig, 40, 1), false},
		{"a flipped sign bit does not verify", id.public(), msg, flip(sig, 63, 0x80), false},
		{"a short signature does not verify", id.public(), msg, sig[:63], false},
		{"a key without its type byte does not verify", id.public()[1:], msg, sig, false},
		{"a key of another type does not verify", flip(id.public(), 0, 0x0d), msg, sig, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := verifyXEdDSA(tt.key, tt.msg, tt.sig); got != tt.want {
				t.Errorf("verifyXEdDSA = %v, want %v", got, tt.want)
			}
			if len(tt.key) == 33 && tt.key[0] == 5 && len(tt.sig) == 64 {
				pub, _ := ecc.DecodePoint(tt.key, 0)
				if lib := ecc.VerifySignature(pub, tt.msg, [64]byte(tt.sig)); lib != tt.want {
					t.Errorf("libsignal says %v, want %v", lib, tt.want)
				}
			}
		})
	}
}

// FuzzXEdDSA checks the verifier against libsignal's on arbitrary keys,
// messages and signatures, seeded with valid signatures.
func FuzzXEdDSA(f *testing.F) {
	for range 4 {
		id := newIdentity(f)
		msg := ecKey(f)
		f.Add(id.public()[1:], msg, id.sign(msg))
	}
	f.Fuzz(func(t *testing.T, key, msg, sig []byte) {
		if len(key) != 32 || len(sig) != 64 {
			return
		}
		full := append([]byte{0x05}, key...)
		pub, _ := ecc.DecodePoint(full, 0)
		want := ecc.VerifySignature(pub, msg, [64]byte(sig))
		if got := verifyXEdDSA(full, msg, sig); got != want {
			t.Fatalf("verifyXEdDSA = %v, libsignal = %v", got, want)
		}
	})
}
