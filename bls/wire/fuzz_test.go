package wire

import (
	"bytes"
	"errors"
	"testing"
)

// envelopeSeeds returns valid sealed envelopes of several shapes plus a few
// near misses, so the fuzzer starts from the interesting region.
func envelopeSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, e := range []*Envelope{
		sampleEnvelope(),
		{Kind: KindDeal, Round: 1, From: 1, Payload: bytes.Repeat([]byte{7}, 200)},
		{Kind: KindProposal, From: 3},
		{Kind: KindSignResult, Round: 1 << 20, From: 2, To: 1, Payload: []byte{1}},
	} {
		seeds = append(seeds, mustSeal(f, e))
	}
	v := seeds[0]
	seeds = append(seeds, nil, v[:len(v)-1], append(bytes.Clone(v), 0x80))
	return seeds
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range envelopeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if e != nil {
				t.Fatal("Decode returned an envelope with an error")
			}
			return
		}
		if got := e.Encode(); !bytes.Equal(got, b) {
			t.Fatalf("not canonical: Decode accepted\n%x\nbut Encode gives\n%x", b, got)
		}
		if e.Version != Version || !e.Kind.Valid() || e.From == 0 || e.From == e.To {
			t.Fatalf("Decode accepted an invalid envelope %+v", e)
		}
		// Open must not panic, and may only fail on the signature or key.
		if _, err := Open(b, roster); err != nil && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrUnknownSender) {
			t.Fatalf("Decode accepted but Open failed with %v", err)
		}
	})
}

func FuzzOpen(f *testing.F) {
	for _, s := range envelopeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Open(b, roster)
		if err != nil {
			for _, s := range []error{ErrMalformed, ErrTooLarge, ErrVersion, ErrKind, ErrSignature, ErrUnknownSender} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("Open error %v wraps no documented sentinel", err)
		}
		if !bytes.Equal(e.Encode(), b) {
			t.Fatal("Open accepted a non-canonical encoding")
		}
		// Re-sealing with the sender's key must reproduce the same signed
		// content (Ed25519 signing here is deterministic).
		again := *e
		again.Payload = bytes.Clone(e.Payload)
		if _, err := Seal(&again, testKey(byte(e.From))); err != nil {
			t.Fatalf("Seal rejected what Open accepted: %v", err)
		}
		if Equivocation(e, &again) {
			t.Fatal("re-sealed envelope differs in signed content")
		}
	})
}

func FuzzDecoder(f *testing.F) {
	for _, m := range []*testMsg{sampleMsg(), {D: []byte("12345678")}} {
		b, err := m.encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x08, 0x80, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeTestMsg(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(m.C) > 16 || len(m.D) != 8 || len(m.E) > 4 || len(m.F) > 3 {
			t.Fatalf("bounds not enforced: %+v", m)
		}
		for _, x := range m.F {
			if len(x) != 4 {
				t.Fatalf("RepeatedFixed element of %d bytes", len(x))
			}
		}
		again, err := m.encode()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("not canonical: decoded\n%x\nre-encoded\n%x", b, again)
		}
	})
}
