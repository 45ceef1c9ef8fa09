package dkg

import (
	"bytes"
	"testing"

	"github.com/signal-mpc/cosigner/bls/wire"
)

func FuzzDecodeProposal(f *testing.F) {
	prop, _ := testGroup(f, "fuzz-proposal", 2, 3)
	b, err := prop.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeProposal(b)
		if err != nil {
			return
		}
		again, err := p.Encode()
		if err != nil {
			t.Fatalf("decoded proposal does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("proposal encoding is not canonical:\n in  %x\n out %x", b, again)
		}
	})
}

// FuzzDecodePayloads runs every payload decoder on the same bytes; whatever
// decodes must re-encode to exactly those bytes.
func FuzzDecodePayloads(f *testing.F) {
	seeds := []interface{ encode() ([]byte, error) }{
		&deal{Commitments: [][]byte{bytes.Repeat([]byte{0x80}, 48), bytes.Repeat([]byte{0x81}, 48)}, R: bytes.Repeat([]byte{0x82}, 48), Mu: bytes.Repeat([]byte{1}, 32)},
		&shareMsg{Value: bytes.Repeat([]byte{2}, 32)},
		&echo{DealsHash: bytes.Repeat([]byte{3}, 32), Complaints: []uint32{1, 3}},
		&reveal{Deals: [][]byte{{1}, {2}, {3}}},
		&justification{Shares: []revealedShare{{To: 2, Value: bytes.Repeat([]byte{4}, 32)}}},
		&confirm{KeyHash: bytes.Repeat([]byte{5}, 32), Proof: bytes.Repeat([]byte{6}, 96)},
		&abort{Reason: ReasonTimeout, Blamed: []uint32{2}, Detail: "late", Evidence: [][]byte{{7}}},
	}
	for _, s := range seeds {
		b, err := s.encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	const n, th = 3, 2
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(name string, m interface{ encode() ([]byte, error) }, err error) {
			if err != nil {
				return
			}
			again, err := m.encode()
			if err != nil {
				t.Fatalf("%s: decoded but does not encode: %v", name, err)
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("%s: not canonical:\n in  %x\n out %x", name, b, again)
			}
		}
		d, err := decodeDeal(b, th)
		check("deal", d, err)
		s, err := decodeShare(b)
		check("share", s, err)
		e, err := decodeEcho(b, n)
		check("echo", e, err)
		r, err := decodeReveal(b, n)
		check("reveal", r, err)
		j, err := decodeJustification(b, n)
		check("justification", j, err)
		c, err := decodeConfirm(b)
		check("confirm", c, err)
		a, err := decodeAbort(b, n)
		check("abort", a, err)
	})
}

// FuzzEngineHandle signs fuzzed payloads as the other parties of a 2-of-3
// ceremony and feeds them to an engine that has started: whatever they say,
// the engine must not panic, and it must end up in a valid state.
func FuzzEngineHandle(f *testing.F) {
	f.Add(uint8(wire.KindAccept), uint8(0), uint8(2), []byte{}, uint8(wire.KindDeal), uint8(1), []byte{0x0a, 0x30})
	f.Add(uint8(wire.KindEcho), uint8(2), uint8(3), bytes.Repeat([]byte{1}, 40), uint8(wire.KindAbort), uint8(0), []byte{8, 1})
	f.Fuzz(func(t *testing.T, k1, r1, from uint8, p1 []byte, k2, r2 uint8, p2 []byte) {
		_, ps := testGroup(t, "fuzz-handle", 2, 3)
		e := ps[0].engine
		if _, err := e.Start(); err != nil {
			t.Fatal(err)
		}
		sender := ps[1+int(from)%2]
		// Both others accept, so the engine deals and then reads what follows.
		for _, p := range ps[1:] {
			out, _ := p.engine.Start()
			if _, err := e.Handle(out[0].Envelope); err != nil {
				t.Fatal(err)
			}
		}
		for _, m := range []struct {
			kind, round uint8
			payload     []byte
		}{{k1, r1, p1}, {k2, r2, p2}} {
			to := uint32(0)
			if wire.Kind(m.kind) == wire.KindShare {
				to = 1
			}
			env := &wire.Envelope{Kind: wire.Kind(m.kind), Ceremony: e.Ceremony(), Round: uint32(m.round), From: sender.idx, To: to, Payload: m.payload}
			b, err := wire.Seal(env, sender.key)
			if err != nil {
				continue
			}
			_, _ = e.Handle(b)
		}
		if st := e.State(); st != StateRunning && st != StateAborted {
			t.Fatalf("state %s after fuzzed input", st)
		}
		_ = e.Progress()
	})
}
