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
		if p, err := tbls.DecodePartial(1, b); err == nil {
			if again, err := tbls.EncodePartial(p); err != nil || !bytes.Equal(again, b) {
				t.Fatalf("partial not canonical: %v", err)
			}
		}
	})
}
