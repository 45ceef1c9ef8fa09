package core

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeEpochKey: a stored key record never panics the decoder, and
// what decodes encodes back to the same bytes.
func FuzzDecodeEpochKey(f *testing.F) {
	good, _ := encodeEpochKey(&EpochKey{KeyID: [32]byte{1}, Ceremony: [32]byte{2}, Proposal: []byte("p"), Confirmations: [][]byte{[]byte("c")},
		Self: 1, Share: bytes.Repeat([]byte{7}, 32), Created: time.Unix(1_800_000_000, 0)})
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := decodeEpochKey(b)
		if err != nil {
			return
		}
		again, err := encodeEpochKey(k)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}
