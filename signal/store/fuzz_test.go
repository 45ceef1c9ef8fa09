package store

import (
	"testing"

	"go.mau.fi/libsignal/protocol"
)

// FuzzRecordDecoders feeds arbitrary bytes to every decoder of stored
// records. Records are authenticated before decoding, so this guards
// against a bug of our own rather than an attacker; none may panic.
func FuzzRecordDecoders(f *testing.F) {
	f.Add([]byte(`{"ACI":"a","ACIPublic":"BQ==","ACIPrivate":""}`))
	f.Add([]byte(`{"Sessions":null}`))
	f.Add(make([]byte, 104))
	f.Add(DefaultKDF.marshal(make([]byte, saltSize)))
	addr := protocol.NewSignalAddress("fuzz", 1)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeAccount(b)
		_, _ = decodeSession(b, addr)
		_, _ = decodePreKey(1, b)
		_, _ = decodeSignedPreKey(1, b)
		if p, salt, err := unmarshalKDF(b); err == nil && (p.valid() != nil || len(salt) != saltSize) {
			t.Fatalf("accepted invalid kdf header %+v", p)
		}
	})
}
