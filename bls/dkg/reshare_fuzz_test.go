package dkg

import (
	"bytes"
	"testing"

	"github.com/signal-mpc/cosigner/bls/wire"
)

func FuzzDecodeReshareProposal(f *testing.F) {
	h := dealtKey(f, 2, []int{1, 2, 3})
	for _, p := range []*ReshareProposal{
		proposeReshare(f, "fuzz", h, []int{1, 3}, 2, []int{1, 3, 4}),
		proposeImport(f, "fuzz-import", importVectorSecret(f), 2, []int{1, 2, 3}),
	} {
		b, err := p.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeReshareProposal(b)
		if err != nil {
			return
		}
		again, err := p.Encode()
		if err != nil {
			t.Fatalf("decoded proposal does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("reshare proposal encoding is not canonical:\n in  %x\n out %x", b, again)
		}
		_ = p.Participants()
		_ = p.DealerIndices()
	})
}

// FuzzDecodeResharePayloads runs the reshare's own payload decoders; what
// decodes must re-encode to the same bytes.
func FuzzDecodeResharePayloads(f *testing.F) {
	for _, s := range []interface{ encode() ([]byte, error) }{
		&reshareDeal{Commitments: [][]byte{bytes.Repeat([]byte{0x80}, 48), bytes.Repeat([]byte{0x81}, 48)}},
		&reshareConfirm{Commitments: [][]byte{bytes.Repeat([]byte{0x80}, 48), bytes.Repeat([]byte{0x81}, 48)}, Proof: bytes.Repeat([]byte{6}, 96)},
	} {
		b, err := s.encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(name string, m interface{ encode() ([]byte, error) }, err error) {
			if err != nil {
				return
			}
			again, err := m.encode()
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("%s: not canonical (%v):\n in  %x\n out %x", name, err, b, again)
			}
		}
		d, err := decodeReshareDeal(b, 2)
		check("reshare deal", d, err)
		c, err := decodeReshareConfirm(b, 2)
		check("reshare confirm", c, err)
	})
}

// FuzzReshareHandle signs fuzzed messages as other participants of a
// 2-of-3 to 2-of-3 reshare and feeds them to a started engine: it must not
// panic and must stay in a valid state.
func FuzzReshareHandle(f *testing.F) {
	f.Add(uint8(wire.KindAccept), uint8(0), uint8(2), []byte{}, uint8(wire.KindReshareDeal), uint8(1), []byte{0x0a, 0x30})
	f.Add(uint8(wire.KindEcho), uint8(2), uint8(3), bytes.Repeat([]byte{1}, 40), uint8(wire.KindReshareConfirm), uint8(5), []byte{8, 1})
	h := dealtKey(f, 2, []int{1, 2, 3})
	prop := proposeReshare(f, "fuzz-handle", h, []int{1, 2, 3}, 2, []int{1, 2, 3})
	f.Fuzz(func(t *testing.T, k1, r1, from uint8, p1 []byte, k2, r2 uint8, p2 []byte) {
		ps := reshareParties(t, "fuzz-handle", prop, h, nil)
		e := ps[0].engine
		if _, err := e.Start(); err != nil {
			t.Fatal(err)
		}
		sender := ps[1+int(from)%2]
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

// FuzzVerifyHandover feeds fuzzed confirmation sets to the old-only
// signer's verifier: it must not panic, and must refuse all but the real
// set.
func FuzzVerifyHandover(f *testing.F) {
	h := dealtKey(f, 2, []int{1, 2, 3})
	prop := proposeReshare(f, "fuzz-handover", h, []int{1, 2, 3}, 2, []int{1, 2})
	_, ps := runReshare(f, "fuzz-handover", prop, h)
	r, _ := ps[0].engine.Result()
	f.Add(r.Confirmations[0], r.Confirmations[1])
	f.Fuzz(func(t *testing.T, a, b []byte) {
		res, err := VerifyHandover(prop, [][]byte{a, b})
		if err == nil && !res.Group.Key.Equal(prop.GroupKey) {
			t.Fatal("a handover to another key verified")
		}
	})
}
