package wire

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// testKey returns party i's deterministic console key.
func testKey(i byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i}, ed25519.SeedSize))
}

// testPubs holds the console keys of parties 1..3, derived once so that
// BenchmarkOpen measures Open and not key derivation.
var testPubs = func() map[uint32]ed25519.PublicKey {
	m := make(map[uint32]ed25519.PublicKey)
	for i := range uint32(3) {
		m[i+1] = testKey(byte(i + 1)).Public().(ed25519.PublicKey)
	}
	return m
}()

// roster pins console keys for parties 1..3.
func roster(from uint32) (ed25519.PublicKey, bool) {
	k, ok := testPubs[from]
	return k, ok
}

func sampleEnvelope() *Envelope {
	e := &Envelope{Kind: KindShare, Round: 1, From: 2, To: 3, Payload: []byte("share for party 3")}
	copy(e.Ceremony[:], "ceremony-id-0123456789abcdefghij")
	return e
}

func mustSeal(t testing.TB, e *Envelope) []byte {
	t.Helper()
	b, err := Seal(e, testKey(byte(e.From)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forge encodes e as is, signed by party signer, without Seal's checks: a
// peer that wants to get a bad envelope past Open can do exactly this.
func forge(e Envelope, signer byte) []byte {
	copy(e.Signature[:], ed25519.Sign(testKey(signer), e.SigningBytes()))
	return e.Encode()
}

// envelopeFields returns the field encodings of a valid sealed envelope in
// order: version, kind, ceremony, round, from, to, payload, signature.
func envelopeFields(t testing.TB) [][]byte {
	e := sampleEnvelope()
	mustSeal(t, e)
	return [][]byte{
		rawVarint(1, uint64(e.Version)),
		rawVarint(2, uint64(e.Kind)),
		rawBytes(3, e.Ceremony[:]),
		rawVarint(4, uint64(e.Round)),
		rawVarint(5, uint64(e.From)),
		rawVarint(6, uint64(e.To)),
		rawBytes(7, e.Payload),
		rawBytes(15, e.Signature[:]),
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  *Envelope
	}{
		{"private share", sampleEnvelope()},
		{"broadcast deal", &Envelope{Kind: KindDeal, Round: 1, From: 1, Payload: []byte("commitments")}},
		{"round 0 proposal, no payload", &Envelope{Kind: KindProposal, From: 3}},
		{"signing partial, max values", &Envelope{Kind: KindPartial, Round: math.MaxUint32, From: 3, To: math.MaxUint32, Payload: []byte{0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := mustSeal(t, tt.env)
			if tt.env.Version != Version {
				t.Fatalf("Seal left Version %d", tt.env.Version)
			}
			got, err := Open(b, roster)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got.Key() != tt.env.Key() || !bytes.Equal(got.Payload, tt.env.Payload) || got.Signature != tt.env.Signature {
				t.Fatalf("Open = %+v, want %+v", got, tt.env)
			}
			if !bytes.Equal(got.Encode(), b) {
				t.Fatal("Encode of the opened envelope differs from the sealed bytes")
			}
			if got.Digest() != tt.env.Digest() {
				t.Fatal("digests differ")
			}
			if Equivocation(got, tt.env) {
				t.Fatal("an envelope equivocates with itself")
			}
		})
	}
}

func TestOpenedPayloadDoesNotAliasInput(t *testing.T) {
	t.Parallel()
	b := mustSeal(t, sampleEnvelope())
	e, err := Open(b, roster)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if want := sampleEnvelope().Payload; !bytes.Equal(e.Payload, want) {
		t.Fatalf("payload %q changed with the input buffer", e.Payload)
	}
}

func TestSigningBytesAreDomainSeparated(t *testing.T) {
	t.Parallel()
	e := sampleEnvelope()
	b := mustSeal(t, e)
	sb := e.SigningBytes()
	if !bytes.HasPrefix(sb, []byte("cosigner-mpc-envelope-v1\x00")) {
		t.Fatalf("signing bytes lack the domain prefix: %q", sb[:30])
	}
	if !bytes.HasPrefix(b, sb[len(signingPrefix):]) {
		t.Fatal("the encoding does not start with the signed fields")
	}
	if _, err := Decode(sb); err == nil {
		t.Fatal("signing bytes decode as an envelope")
	}
	// A signature over the bare fields (no prefix) must not verify.
	e.Signature = [64]byte(ed25519.Sign(testKey(2), sb[len(signingPrefix):]))
	if _, err := Open(e.Encode(), roster); !errors.Is(err, ErrSignature) {
		t.Fatalf("signature without the prefix: %v, want ErrSignature", err)
	}
}

func TestOpenRejects(t *testing.T) {
	t.Parallel()
	f := envelopeFields(t)
	valid := cat(f...)
	with := func(i int, field []byte) []byte {
		g := append([][]byte(nil), f...)
		g[i] = field
		return cat(g...)
	}
	base := *sampleEnvelope()
	mod := func(change func(e *Envelope)) Envelope {
		e := base
		e.Version = Version
		change(&e)
		return e
	}
	tampered := bytes.Clone(valid)
	tampered[len(valid)-64-3] ^= 1 // last payload byte
	tests := []struct {
		name string
		in   []byte
		pub  func(uint32) (ed25519.PublicKey, bool)
		want error
	}{
		{"empty input", nil, roster, ErrMalformed},
		{"truncated", valid[:len(valid)-1], roster, ErrMalformed},
		{"truncated mid-field", valid[:20], roster, ErrMalformed},
		{"trailing unknown field", cat(valid, rawVarint(16, 1)), roster, ErrMalformed},
		{"trailing byte", cat(valid, []byte{0}), roster, ErrMalformed},
		{"out-of-order fields", cat(f[0], f[1], f[2], f[4], f[3], f[5], f[6], f[7]), roster, ErrMalformed},
		{"signature before payload", cat(f[0], f[1], f[2], f[3], f[4], f[5], f[7], f[6]), roster, ErrMalformed},
		{"duplicate field", cat(f[0], f[1], f[2], f[3], f[4], f[4], f[5], f[6], f[7]), roster, ErrMalformed},
		{"duplicate signature", cat(valid, f[7]), roster, ErrMalformed},
		{"non-minimal varint", with(3, []byte{0x20, 0x81, 0x00}), roster, ErrMalformed},
		{"non-minimal tag", with(3, []byte{0xa0, 0x00, 0x01}), roster, ErrMalformed},
		{"explicit zero round", with(3, rawVarint(4, 0)), roster, ErrMalformed},
		{"explicit zero to", with(5, rawVarint(6, 0)), roster, ErrMalformed},
		{"explicit empty payload", with(6, rawBytes(7, nil)), roster, ErrMalformed},
		{"unknown field", cat(f[0], f[1], f[2], f[3], f[4], f[5], f[6], rawVarint(8, 1), f[7]), roster, ErrMalformed},
		{"wrong wire type", with(1, rawBytes(2, []byte{4})), roster, ErrMalformed},
		{"ceremony of 31 bytes", with(2, rawBytes(3, make([]byte, 31))), roster, ErrMalformed},
		{"ceremony of 33 bytes", with(2, rawBytes(3, make([]byte, 33))), roster, ErrMalformed},
		{"ceremony missing", with(2, nil), roster, ErrMalformed},
		{"signature missing", valid[:len(valid)-66], roster, ErrMalformed},
		{"signature of 63 bytes", with(7, rawBytes(15, make([]byte, 63))), roster, ErrMalformed},
		{"round over 32 bits", with(3, rawVarint(4, math.MaxUint32+1)), roster, ErrMalformed},
		{"from over 32 bits", with(4, rawVarint(5, 1<<32|2)), roster, ErrMalformed},
		{"oversize envelope", cat(valid, make([]byte, MaxEnvelopeSize)), roster, ErrTooLarge},
		{"oversize payload", forge(mod(func(e *Envelope) { e.Payload = make([]byte, MaxEnvelopeSize) }), 2), roster, ErrTooLarge},
		{"version 2", forge(mod(func(e *Envelope) { e.Version = 2 }), 2), roster, ErrVersion},
		{"version missing", forge(mod(func(e *Envelope) { e.Version = 0 }), 2), roster, ErrVersion},
		{"unknown kind", forge(mod(func(e *Envelope) { e.Kind = 13 }), 2), roster, ErrKind},
		{"kind missing", forge(mod(func(e *Envelope) { e.Kind = 0 }), 2), roster, ErrKind},
		{"kind over 8 bits", with(1, rawVarint(2, 256+uint64(KindShare))), roster, ErrKind},
		{"from = 0", forge(mod(func(e *Envelope) { e.From = 0 }), 2), roster, ErrMalformed},
		{"from == to", forge(mod(func(e *Envelope) { e.To = e.From }), 2), roster, ErrMalformed},
		{"tampered payload", tampered, roster, ErrSignature},
		{"tampered signature", func() []byte { b := bytes.Clone(valid); b[len(b)-1] ^= 1; return b }(), roster, ErrSignature},
		{"signed by another party's key", forge(mod(func(*Envelope) {}), 1), roster, ErrSignature},
		{"sender claims another index", forge(mod(func(e *Envelope) { e.From = 1 }), 2), roster, ErrSignature},
		{"unknown sender", forge(mod(func(e *Envelope) { e.From = 4 }), 4), roster, ErrUnknownSender},
		{"no roster", valid, nil, ErrUnknownSender},
		{"pinned key of the wrong length", valid, func(uint32) (ed25519.PublicKey, bool) { return make([]byte, 31), true }, ErrUnknownSender},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := Open(tt.in, tt.pub)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %+v, %v; want %v", e, err, tt.want)
			}
			if e != nil {
				t.Fatal("Open returned an envelope with an error")
			}
		})
	}
	if _, err := Open(valid, roster); err != nil {
		t.Fatalf("the unmodified envelope is rejected: %v", err)
	}
}

func TestOpenErrorsSayWhatWasWrong(t *testing.T) {
	t.Parallel()
	e := *sampleEnvelope()
	e.Version = 2
	_, err := Open(forge(e, 2), roster)
	if err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("version error %v does not name version 2", err)
	}
	f := envelopeFields(t)
	_, err = Open(cat(f[0], f[1], rawBytes(3, make([]byte, 31)), f[3], f[4], f[5], f[6], f[7]), roster)
	if err == nil || !strings.Contains(err.Error(), "field 3") {
		t.Fatalf("ceremony error %v does not name field 3", err)
	}
}

func TestSealRejectsWhatOpenWould(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(e *Envelope)
		key    ed25519.PrivateKey
		want   error
	}{
		{"unknown kind", func(e *Envelope) { e.Kind = 42 }, testKey(2), ErrKind},
		{"from = 0", func(e *Envelope) { e.From = 0 }, testKey(2), ErrInvalid},
		{"from == to", func(e *Envelope) { e.To = 2 }, testKey(2), ErrInvalid},
		{"payload too large", func(e *Envelope) { e.Payload = make([]byte, MaxEnvelopeSize-100) }, testKey(2), ErrTooLarge},
		{"short key", func(*Envelope) {}, testKey(2)[:32], ErrInvalid},
		{"nil key", func(*Envelope) {}, nil, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := sampleEnvelope()
			tt.change(e)
			if b, err := Seal(e, tt.key); !errors.Is(err, tt.want) || b != nil {
				t.Fatalf("Seal = %d bytes, %v; want %v", len(b), err, tt.want)
			}
		})
	}
}

func TestSealLargestPayload(t *testing.T) {
	t.Parallel()
	// Find the largest payload Seal accepts; Open must accept what Seal made.
	e := sampleEnvelope()
	e.Payload = make([]byte, MaxEnvelopeSize)
	for {
		b, err := Seal(e, testKey(2))
		if err == nil {
			if len(b) != MaxEnvelopeSize {
				t.Fatalf("largest sealed envelope is %d bytes, want %d", len(b), MaxEnvelopeSize)
			}
			if _, err := Open(b, roster); err != nil {
				t.Fatalf("Open of the largest envelope: %v", err)
			}
			return
		}
		if !errors.Is(err, ErrTooLarge) {
			t.Fatal(err)
		}
		e.Payload = e.Payload[:len(e.Payload)-1]
	}
}

func TestDecodeEncodeIsCanonical(t *testing.T) {
	t.Parallel()
	for _, e := range []*Envelope{sampleEnvelope(), {Kind: KindSignResult, From: 1, Round: 300}} {
		b := mustSeal(t, e)
		d, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d.Encode(), b) {
			t.Fatalf("Decode(b).Encode() != b for %s", e.Kind)
		}
	}
}

func TestDedupKeyAndEquivocation(t *testing.T) {
	t.Parallel()
	a := sampleEnvelope()
	mustSeal(t, a)
	tests := []struct {
		name        string
		change      func(e *Envelope)
		sameKey     bool
		equivocates bool
	}{
		{"exact duplicate", func(*Envelope) {}, true, false},
		{"same content, another signature", func(e *Envelope) { e.Signature[0] ^= 1 }, true, false},
		{"different payload", func(e *Envelope) { e.Payload = []byte("another share") }, true, true},
		{"other kind in the same round", func(e *Envelope) { e.Kind = KindDeal }, false, false},
		{"other recipient", func(e *Envelope) { e.To = 1 }, false, false},
		{"other round", func(e *Envelope) { e.Round = 2 }, false, false},
		{"other sender", func(e *Envelope) { e.From = 1 }, false, false},
		{"other ceremony", func(e *Envelope) { e.Ceremony[0] ^= 1 }, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := *a
			tt.change(&b)
			if got := a.Key() == b.Key(); got != tt.sameKey {
				t.Fatalf("same key = %v, want %v", got, tt.sameKey)
			}
			if got := Equivocation(a, &b); got != tt.equivocates {
				t.Fatalf("Equivocation = %v, want %v", got, tt.equivocates)
			}
			if got := a.Digest() == b.Digest(); got != bytes.Equal(a.Encode(), b.Encode()) {
				t.Fatalf("digest equality %v disagrees with encoding equality", got)
			}
		})
	}
}

func TestKindNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		k     Kind
		name  string
		valid bool
	}{
		{KindProposal, "proposal", true},
		{KindAccept, "accept", true},
		{KindDeal, "deal", true},
		{KindShare, "share", true},
		{KindEcho, "echo", true},
		{KindDealReveal, "deal-reveal", true},
		{KindJustification, "justification", true},
		{KindConfirm, "confirm", true},
		{KindAbort, "abort", true},
		{KindSignRequest, "sign-request", true},
		{KindPartial, "partial", true},
		{KindDecline, "decline", true},
		{KindSignResult, "sign-result", true},
		{0, "kind(0)", false},
		{KindReshareProposal, "reshare-proposal", true},
		{KindReshareDeal, "reshare-deal", true},
		{KindReshareConfirm, "reshare-confirm", true},
		{13, "kind(13)", false},
		{255, "kind(255)", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.k.String() != tt.name || tt.k.Valid() != tt.valid {
				t.Fatalf("Kind(%d) = %q valid=%v, want %q valid=%v", tt.k, tt.k, tt.k.Valid(), tt.name, tt.valid)
			}
		})
	}
}

// The envelope's field numbers are part of the signed format.
func TestEnvelopeFieldNumbersAreStable(t *testing.T) {
	t.Parallel()
	got := []protowire.Number{fieldVersion, fieldKind, fieldCeremony, fieldRound, fieldFrom, fieldTo, fieldPayload, fieldSignature}
	want := []protowire.Number{1, 2, 3, 4, 5, 6, 7, 15}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("field numbers %v, want %v", got, want)
		}
	}
	if Version != 1 || MaxEnvelopeSize != 65536 {
		t.Fatal("Version or MaxEnvelopeSize changed")
	}
}

func BenchmarkOpen(b *testing.B) {
	e := sampleEnvelope()
	e.Payload = bytes.Repeat([]byte{0xa5}, 1024)
	msg := mustSeal(b, e)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(msg, roster); err != nil {
			b.Fatal(err)
		}
	}
}
