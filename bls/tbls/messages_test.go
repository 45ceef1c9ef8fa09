package tbls_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

func TestSigningMessagesRoundTrip(t *testing.T) {
	t.Parallel()
	g, shares, _ := dealt(t, 2, 3)
	req := &tbls.Request{KeyID: tbls.KeyID(g.Key), Message: []byte("pay 1 ETH"), Description: "invoice 42", Expires: time.Unix(1_800_000_000, 0).UTC()}
	b, err := req.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := tbls.DecodeRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.KeyID != req.KeyID || !bytes.Equal(got.Message, req.Message) || got.Description != req.Description || !got.Expires.Equal(req.Expires) {
		t.Fatalf("request round trip: %+v", got)
	}
	empty := &tbls.Request{KeyID: req.KeyID, Expires: req.Expires}
	b, _ = empty.Encode()
	if got, err := tbls.DecodeRequest(b); err != nil || got.Message == nil || len(got.Message) != 0 {
		t.Fatalf("empty message: %v %+v", err, got)
	}

	p, _ := tbls.Sign(&shares[1], req.Message)
	pb, err := tbls.EncodePartial(p)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := tbls.DecodePartial(2, pb)
	if err != nil || !bytes.Equal(p2.Bytes(), p.Bytes()) || p2.Index != 2 {
		t.Fatalf("partial round trip: %v", err)
	}

	d, _ := (&tbls.Decline{Reason: "unknown payee"}).Encode()
	if got, err := tbls.DecodeDecline(d); err != nil || got.Reason != "unknown payee" {
		t.Fatalf("decline: %v %+v", err, got)
	}

	p1, _ := tbls.Sign(&shares[0], req.Message)
	res, err := g.Combine(req.Message, []*tbls.Partial{p1, p})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := (&tbls.SignResult{Signature: res.Signature, Signers: res.Signers}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := tbls.DecodeSignResult(rb)
	if err != nil || !r2.Signature.Equal(res.Signature) || !slices.Equal(r2.Signers, []uint32{1, 2}) {
		t.Fatalf("result: %v %+v", err, r2)
	}
	if err := bls.Verify(g.Key, req.Message, r2.Signature); err != nil {
		t.Fatal(err)
	}
}

func TestSigningMessagesRejectBadInput(t *testing.T) {
	t.Parallel()
	key := [32]byte{1}
	exp := time.Unix(1_800_000_000, 0)
	cases := map[string]*tbls.Request{
		"no key id":          {Message: []byte("m"), Expires: exp},
		"no expiry":          {KeyID: key, Message: []byte("m")},
		"message too large":  {KeyID: key, Message: make([]byte, tbls.MaxMessageSize+1), Expires: exp},
		"long description":   {KeyID: key, Description: strings.Repeat("x", tbls.MaxDescriptionLen+1), Expires: exp},
		"invalid utf-8 text": {KeyID: key, Description: "\xff", Expires: exp},
	}
	for name, r := range cases {
		if _, err := r.Encode(); !errors.Is(err, tbls.ErrPayload) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	identity := append([]byte{0x0a, 0x60, 0xc0}, make([]byte, 95)...)
	if _, err := tbls.DecodePartial(1, identity); !errors.Is(err, bls.ErrIdentity) {
		t.Errorf("identity partial: %v", err)
	}
	if _, err := tbls.DecodeSignResult(identity); err == nil {
		t.Error("identity result accepted")
	}
	if _, err := tbls.DecodeDecline([]byte{0x0a, 0x01, 0xff}); !errors.Is(err, tbls.ErrPayload) {
		t.Errorf("non-UTF-8 decline: %v", err)
	}
	if _, err := (&tbls.SignResult{Signers: []uint32{2, 1}}).Encode(); !errors.Is(err, tbls.ErrPayload) {
		t.Errorf("unsorted signers: %v", err)
	}
}

// FuzzDecodeSigningMessages feeds the same bytes to every signing decoder:
// whatever decodes must re-encode to exactly the input.
func FuzzDecodeSigningMessages(f *testing.F) {
	req, _ := (&tbls.Request{KeyID: [32]byte{9}, Message: []byte("m"), Description: "d", Expires: time.Unix(1_800_000_000, 0)}).Encode()
	f.Add(req)
	dec, _ := (&tbls.Decline{Reason: "no"}).Encode()
	f.Add(dec)
	sk, _ := bls.GenerateKey(nil)
	sig, _ := sk.Sign([]byte("m"))
	res, _ := (&tbls.SignResult{Signature: sig, Signers: []uint32{1, 3}}).Encode()
	f.Add(res)
	part, _ := tbls.EncodePartial(&tbls.Partial{Index: 1, Sig: *sig.Point()})
	f.Add(part)
	head := tbls.Head{Count: 300, Hash: [32]byte{1, 2, 3}}
	partHead, _ := tbls.EncodePartialHead(&tbls.Partial{Index: 1, Sig: *sig.Point()}, head)
	f.Add(partHead)
	decHead, _ := (&tbls.Decline{Reason: "no", Head: head}).Encode()
	f.Add(decHead)
	resHead, _ := (&tbls.SignResult{Signature: sig, Signers: []uint32{1, 3}, Head: head}).Encode()
	f.Add(resHead)
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := tbls.DecodeRequest(b); err == nil {
			if again, err := r.Encode(); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("request not canonical: %v", err)
			}
		}
		if d, err := tbls.DecodeDecline(b); err == nil {
			if again, err := d.Encode(); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("decline not canonical: %v", err)
			}
		}
		if r, err := tbls.DecodeSignResult(b); err == nil {
			if again, err := r.Encode(); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("result not canonical: %v", err)
			}
		}
		if p, h, err := tbls.DecodePartialHead(1, b); err == nil {
			if again, err := tbls.EncodePartialHead(p, h); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("partial not canonical: %v", err)
			}
			if _, err := tbls.DecodePartial(1, b); err != nil {
				t.Fatalf("DecodePartial refuses what DecodePartialHead reads: %v", err)
			}
		}
	})
}

// A partial and a decline carry the signer's audit head when it has one,
// and encode exactly as before when it has none (older builds read them).
func TestAnswersCarryTheAuditHead(t *testing.T) {
	t.Parallel()
	_, shares, _ := dealt(t, 2, 3)
	p, _ := tbls.Sign(&shares[0], []byte("m"))
	plain, err := tbls.EncodePartial(p)
	if err != nil {
		t.Fatal(err)
	}
	heads := []tbls.Head{
		{},
		{Count: 1, Hash: [32]byte{0xaa}},
		{Count: 1 << 40, Hash: [32]byte{31: 0xff}},
		{Count: 7}, // an all-zero hash is still a hash
	}
	for _, h := range heads {
		b, err := tbls.EncodePartialHead(p, h)
		if err != nil {
			t.Fatalf("%+v: %v", h, err)
		}
		if (h == tbls.Head{}) != bytes.Equal(b, plain) {
			t.Fatalf("%+v: encoded with a head %x, without %x", h, b, plain)
		}
		got, gh, err := tbls.DecodePartialHead(1, b)
		if err != nil || gh != h || !bytes.Equal(got.Bytes(), p.Bytes()) {
			t.Fatalf("%+v: partial round trip gave %+v, %v", h, gh, err)
		}
		d, err := (&tbls.Decline{Reason: "no", Head: h}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		gd, err := tbls.DecodeDecline(d)
		if err != nil || gd.Head != h || gd.Reason != "no" {
			t.Fatalf("%+v: decline round trip gave %+v, %v", h, gd, err)
		}
		// The requester's head rides in its result (its partial is never sent).
		sig, err := bls.SignatureFromBytes(p.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		without, err := (&tbls.SignResult{Signature: sig, Signers: []uint32{1, 2}}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		r, err := (&tbls.SignResult{Signature: sig, Signers: []uint32{1, 2}, Head: h}).Encode()
		if err != nil {
			t.Fatal(err)
		}
		if (h == tbls.Head{}) != bytes.Equal(r, without) {
			t.Fatalf("%+v: result encoded with a head %x, without %x", h, r, without)
		}
		gr, err := tbls.DecodeSignResult(r)
		if err != nil || gr.Head != h || !gr.Signature.Equal(sig) {
			t.Fatalf("%+v: result round trip gave %+v, %v", h, gr, err)
		}
	}
}

func TestABadAuditHeadIsRefused(t *testing.T) {
	t.Parallel()
	_, shares, _ := dealt(t, 2, 3)
	p, _ := tbls.Sign(&shares[0], []byte("m"))
	if _, err := tbls.EncodePartialHead(p, tbls.Head{Hash: [32]byte{1}}); !errors.Is(err, tbls.ErrPayload) {
		t.Fatalf("a hash without a count was encoded: %v", err)
	}
	if _, err := (&tbls.Decline{Head: tbls.Head{Hash: [32]byte{1}}}).Encode(); !errors.Is(err, tbls.ErrPayload) {
		t.Fatalf("a decline's hash without a count was encoded: %v", err)
	}
	plain, _ := tbls.EncodePartial(p)
	hash := append([]byte{0x1a, 0x20}, make([]byte, 32)...)
	cases := map[string][]byte{
		"count without hash":  append(slices.Clone(plain), 0x10, 0x05),
		"hash without count":  append(slices.Clone(plain), hash...),
		"short hash":          append(slices.Clone(plain), 0x10, 0x05, 0x1a, 0x02, 0x01, 0x02),
		"explicit zero count": append(append(slices.Clone(plain), 0x10, 0x00), hash...),
		"hash before count":   append(append(slices.Clone(plain), hash...), 0x10, 0x05),
		"unknown field after": append(append(append(slices.Clone(plain), 0x10, 0x05), hash...), 0x20, 0x01),
	}
	for name, b := range cases {
		if _, _, err := tbls.DecodePartialHead(1, b); !errors.Is(err, tbls.ErrPayload) {
			t.Errorf("partial, %s: %v", name, err)
		}
		if _, err := tbls.DecodePartial(1, b); !errors.Is(err, tbls.ErrPayload) {
			t.Errorf("partial (no head wanted), %s: %v", name, err)
		}
		d := append([]byte{0x0a, 0x02, 'n', 'o'}, b[len(plain):]...)
		if _, err := tbls.DecodeDecline(d); !errors.Is(err, tbls.ErrPayload) {
			t.Errorf("decline, %s: %v", name, err)
		}
	}
}

func TestRequestCarriesItsEpochAndEpochZeroEncodesAsBefore(t *testing.T) {
	t.Parallel()
	base := tbls.Request{KeyID: [32]byte{1}, Message: []byte("m"), Expires: time.Unix(1_800_000_000, 0).UTC()}
	plain, err := base.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var e wire.Encoder
	e.Bytes(1, base.KeyID[:])
	e.Bytes(2, base.Message)
	e.Uint(4, uint64(base.Expires.Unix()))
	legacy, _ := e.Finish()
	if !bytes.Equal(plain, legacy) {
		t.Fatal("an epoch-0 request no longer encodes as before epochs")
	}
	base.Epoch = 3
	b, err := base.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := tbls.DecodeRequest(b)
	if err != nil || got.Epoch != 3 {
		t.Fatalf("decoded epoch %v, %v", got, err)
	}
}
