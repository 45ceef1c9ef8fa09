package wire

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// A bundle carries several envelopes for one recipient in one Signal
// message. A protocol step often sends one peer several envelopes at once
// (a DKG acceptance, its deal and the peer's share); as separate messages
// each pays its own encryption, relay round trip and commits on both sides,
// and they follow each other, so a keygen took three times the hops it
// needs. The bundle itself is not signed: every envelope in it is, and is
// opened on its own.
//
// A bundle is a message whose only field, 1, repeats the envelopes as byte
// strings. Its first byte is therefore 0x0a (field 1, bytes), which never
// starts an envelope (its first field is the varint version, 0x08), so a
// receiver tells the two apart by that byte.
const bundleField protowire.Number = 1

// bundleTag is the first byte of every bundle.
var bundleTag = protowire.AppendTag(nil, bundleField, protowire.BytesType)[0]

// MaxBundleCount bounds the envelopes of one bundle.
const MaxBundleCount = 32

// MaxBundleSize bounds an encoded bundle: like an envelope, it must fit in
// one Signal message.
const MaxBundleSize = MaxEnvelopeSize

// bundledSize is what an envelope of n bytes adds to a bundle.
func bundledSize(n int) int {
	return protowire.SizeTag(bundleField) + protowire.SizeBytes(n)
}

// Pack turns envelopes for one recipient into the messages to send, in
// order: consecutive envelopes are bundled as long as a bundle stays within
// MaxBundleCount and MaxBundleSize, and an envelope that ends up alone is
// sent as it is. Envelopes are not checked here (Seal made them).
func Pack(envs [][]byte) [][]byte {
	var out [][]byte
	for len(envs) > 0 {
		n, size := 0, 0
		for n < len(envs) && n < MaxBundleCount && size+bundledSize(len(envs[n])) <= MaxBundleSize {
			size += bundledSize(len(envs[n]))
			n++
		}
		if n <= 1 {
			out = append(out, envs[0])
			envs = envs[1:]
			continue
		}
		b := make([]byte, 0, size)
		for _, e := range envs[:n] {
			b = protowire.AppendTag(b, bundleField, protowire.BytesType)
			b = protowire.AppendBytes(b, e)
		}
		out = append(out, b)
		envs = envs[n:]
	}
	return out
}

// Unbundle returns the envelopes a received message carries: the message
// itself when it is not a bundle, else the bundle's entries (at least two:
// one message, one encoding). The entries are copies and are not decoded
// here; each is opened on its own. Errors wrap ErrMalformed or ErrTooLarge.
func Unbundle(b []byte) ([][]byte, error) {
	if len(b) == 0 || b[0] != bundleTag {
		return [][]byte{b}, nil
	}
	if len(b) > MaxBundleSize {
		return nil, fmt.Errorf("%w: bundle is %d bytes, max %d", ErrTooLarge, len(b), MaxBundleSize)
	}
	d := NewDecoder(b)
	envs, _ := d.Repeated(bundleField, MaxBundleCount, MaxEnvelopeSize)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("decode bundle: %w", err)
	}
	if len(envs) < 2 {
		return nil, fmt.Errorf("decode bundle: %w: %d envelope(s), a bundle has at least 2", ErrMalformed, len(envs))
	}
	return envs, nil
}
