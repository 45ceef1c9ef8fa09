package wire

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// Raw field builders for crafting encodings the Encoder would refuse to make.
func rawVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func rawBytes(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// testMsg is the fixed schema used by the codec tests and FuzzDecoder.
type testMsg struct {
	A uint64   // 1
	B uint32   // 2
	C []byte   // 3, at most 16 bytes
	D []byte   // 4, required, exactly 8 bytes
	E [][]byte // 5, at most 4 elements of at most 8 bytes
	F [][]byte // 6, at most 3 elements of exactly 4 bytes
}

func (m *testMsg) encode() ([]byte, error) {
	var e Encoder
	e.Uint(1, m.A)
	e.Uint(2, uint64(m.B))
	e.Bytes(3, m.C)
	e.Bytes(4, m.D)
	e.Repeated(5, m.E)
	e.Repeated(6, m.F)
	return e.Finish()
}

func decodeTestMsg(b []byte) (*testMsg, error) {
	d := NewDecoder(b)
	var m testMsg
	m.A, _ = d.Uint(1)
	m.B, _ = d.Uint32(2)
	m.C, _ = d.Bytes(3, 16)
	m.D, _ = d.Fixed(4, 8)
	m.E, _ = d.Repeated(5, 4, 8)
	m.F, _ = d.RepeatedFixed(6, 4, 3)
	if err := d.Done(); err != nil {
		return nil, err
	}
	return &m, nil
}

func sampleMsg() *testMsg {
	return &testMsg{
		A: 1 << 40, B: math.MaxUint32, C: []byte("hello"), D: []byte("8 bytes!"),
		E: [][]byte{[]byte("a"), []byte("bcdefghi")},
		F: [][]byte{[]byte("1234"), []byte("5678"), []byte("9abc")},
	}
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  *testMsg
	}{
		{"all fields set", sampleMsg()},
		{"only the required field", &testMsg{D: []byte("12345678")}},
		{"smallest non-zero values", &testMsg{A: 1, B: 1, C: []byte{0}, D: make([]byte, 8), E: [][]byte{{0}}, F: [][]byte{make([]byte, 4)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := tt.msg.encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeTestMsg(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			b2, err := got.encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, b2) {
				t.Fatalf("re-encoding differs:\n%x\n%x", b, b2)
			}
			if got.A != tt.msg.A || got.B != tt.msg.B || !bytes.Equal(got.C, tt.msg.C) || !bytes.Equal(got.D, tt.msg.D) ||
				len(got.E) != len(tt.msg.E) || len(got.F) != len(tt.msg.F) {
				t.Fatalf("decoded %+v, want %+v", got, tt.msg)
			}
		})
	}
}

func TestEncoderOmitsZeroValues(t *testing.T) {
	t.Parallel()
	var e Encoder
	e.Uint(1, 0)
	e.Bytes(2, nil)
	e.Bytes(3, []byte{})
	e.Repeated(4, nil)
	e.Uint(5, 7)
	b, err := e.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if want := rawVarint(5, 7); !bytes.Equal(b, want) {
		t.Fatalf("got %x, want %x", b, want)
	}
}

func TestEncoderMisuseIsReportedByFinish(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		do   func(e *Encoder)
	}{
		{"fields out of order", func(e *Encoder) { e.Uint(2, 1); e.Uint(1, 1) }},
		{"same field twice", func(e *Encoder) { e.Bytes(3, []byte("x")); e.Bytes(3, []byte("y")) }},
		{"out of order even when the value is omitted", func(e *Encoder) { e.Uint(2, 0); e.Uint(1, 5) }},
		{"field number zero", func(e *Encoder) { e.Uint(0, 1) }},
		{"field number too large", func(e *Encoder) { e.Uint(protowire.MaxValidNumber+1, 1) }},
		{"empty repeated element", func(e *Encoder) { e.Repeated(1, [][]byte{[]byte("a"), nil}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var e Encoder
			tt.do(&e)
			if b, err := e.Finish(); err == nil {
				t.Fatalf("Finish succeeded with %x", b)
			}
		})
	}
}

func TestDecoderRejects(t *testing.T) {
	t.Parallel()
	d8 := rawBytes(4, []byte("12345678"))
	tests := []struct {
		name    string
		in      []byte
		tooLong bool // also wraps ErrTooLarge
	}{
		{"truncated varint", cat(rawVarint(1, 300)[:2]), false},
		{"truncated bytes", rawBytes(3, []byte("abc"))[:4], false},
		{"truncated tag", cat(d8, []byte{0x80}), false},
		{"length beyond input", cat([]byte{0x1a, 0x7f}, []byte("abc")), false},
		{"trailing unknown field", cat(d8, rawVarint(7, 1)), false},
		{"trailing garbage", cat(d8, []byte{0xff}), false},
		{"field number zero", cat(d8, []byte{0x00}), false},
		{"out of order", cat(rawVarint(2, 1), rawVarint(1, 1), d8), false},
		{"duplicate field", cat(rawVarint(1, 1), rawVarint(1, 2), d8), false},
		{"duplicate required field", cat(d8, d8), false},
		{"non-minimal varint", cat([]byte{0x08, 0x81, 0x00}, d8), false},
		{"non-minimal tag", cat([]byte{0x88, 0x00, 0x01}, d8), false},
		{"non-minimal length", cat([]byte{0x1a, 0x81, 0x00, 'x'}, d8), false},
		{"varint overflow", cat([]byte{0x08}, bytes.Repeat([]byte{0xff}, 10), []byte{0x01}, d8), false},
		{"explicit zero varint", cat(rawVarint(1, 0), d8), false},
		{"explicit empty bytes", cat(rawBytes(3, nil), d8), false},
		{"wrong wire type: bytes for varint", cat(rawBytes(1, []byte{1}), d8), false},
		{"wrong wire type: varint for bytes", cat(rawVarint(3, 1), d8), false},
		{"wrong wire type: fixed32", cat(protowire.AppendFixed32(protowire.AppendTag(nil, 1, protowire.Fixed32Type), 1), d8), false},
		{"uint32 overflow", cat(rawVarint(2, math.MaxUint32+1), d8), false},
		{"bytes too long", cat(rawBytes(3, make([]byte, 17)), d8), true},
		{"fixed missing", nil, false},
		{"fixed too short", rawBytes(4, []byte("1234567")), false},
		{"fixed too long", rawBytes(4, []byte("123456789")), true},
		{"repeated: too many elements", cat(d8, rawBytes(5, []byte("a")), rawBytes(5, []byte("b")), rawBytes(5, []byte("c")), rawBytes(5, []byte("d")), rawBytes(5, []byte("e"))), true},
		{"repeated: element too long", cat(d8, rawBytes(5, []byte("123456789"))), true},
		{"repeated: empty element", cat(d8, rawBytes(5, []byte("a")), rawBytes(5, nil)), false},
		{"repeated: non-contiguous", cat(d8, rawBytes(5, []byte("a")), rawBytes(6, []byte("1234")), rawBytes(5, []byte("b"))), false},
		{"repeated: wrong wire type on a later element", cat(d8, rawBytes(5, []byte("a")), rawVarint(5, 1)), false},
		{"repeated fixed: short element", cat(d8, rawBytes(6, []byte("1234")), rawBytes(6, []byte("123"))), false},
		{"repeated fixed: too many", cat(d8, rawBytes(6, []byte("1234")), rawBytes(6, []byte("1234")), rawBytes(6, []byte("1234")), rawBytes(6, []byte("1234"))), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := decodeTestMsg(tt.in)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode %x = %+v, %v; want ErrMalformed", tt.in, m, err)
			}
			if got := errors.Is(err, ErrTooLarge); got != tt.tooLong {
				t.Fatalf("errors.Is(%v, ErrTooLarge) = %v, want %v", err, got, tt.tooLong)
			}
		})
	}
}

func TestDecoderErrorsNameTheField(t *testing.T) {
	t.Parallel()
	_, err := decodeTestMsg(cat(rawVarint(2, 1), rawVarint(2, 1), rawBytes(4, []byte("12345678"))))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("field 2")) {
		t.Fatalf("error %v does not name field 2", err)
	}
	_, err = decodeTestMsg(nil)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("field 4: missing")) {
		t.Fatalf("error %v does not say field 4 is missing", err)
	}
}

func TestDecoderErrorsAreSticky(t *testing.T) {
	t.Parallel()
	d := NewDecoder(cat(rawVarint(1, 0), rawVarint(2, 5)))
	_, first := d.Uint(1)
	if !errors.Is(first, ErrMalformed) {
		t.Fatalf("first error %v, want ErrMalformed", first)
	}
	if v, err := d.Uint(2); err != first || v != 0 {
		t.Fatalf("after an error Uint = %d, %v; want 0 and the first error", v, err)
	}
	if err := d.Done(); err != first {
		t.Fatalf("Done = %v, want the first error %v", err, first)
	}
}

func TestDecoderCallerAskingOutOfOrderIsNotBlamedOnInput(t *testing.T) {
	t.Parallel()
	d := NewDecoder(rawVarint(3, 1))
	if _, err := d.Uint(3); err != nil {
		t.Fatal(err)
	}
	_, err := d.Uint(2)
	if err == nil || errors.Is(err, ErrMalformed) {
		t.Fatalf("asking for field 2 after 3: %v; want a non-ErrMalformed error", err)
	}
}

func TestDecoderAbsentFields(t *testing.T) {
	t.Parallel()
	d := NewDecoder(rawVarint(9, 1))
	if v, err := d.Uint(1); v != 0 || err != nil {
		t.Fatalf("Uint = %d, %v", v, err)
	}
	if b, err := d.Bytes(2, 10); b != nil || err != nil {
		t.Fatalf("Bytes = %x, %v", b, err)
	}
	if l, err := d.Repeated(3, 1, 1); l != nil || err != nil {
		t.Fatalf("Repeated = %x, %v", l, err)
	}
	if l, err := d.RepeatedFixed(4, 1, 1); l != nil || err != nil {
		t.Fatalf("RepeatedFixed = %x, %v", l, err)
	}
	if v, err := d.Uint(9); v != 1 || err != nil {
		t.Fatalf("Uint(9) = %d, %v", v, err)
	}
	if err := d.Done(); err != nil {
		t.Fatal(err)
	}
}

func TestDecoderRepeatedBounds(t *testing.T) {
	t.Parallel()
	elems := func(n, size int) []byte {
		var b []byte
		for range n {
			b = append(b, rawBytes(1, bytes.Repeat([]byte{'x'}, size))...)
		}
		return b
	}
	tests := []struct {
		name          string
		in            []byte
		fixed         bool
		size, count   int
		wantN         int
		wantTooLarge  bool
		wantMalformed bool
	}{
		{"exactly maxCount", elems(3, 2), false, 2, 3, 3, false, false},
		{"one over maxCount", elems(4, 2), false, 2, 3, 0, true, true},
		{"exactly maxLen", elems(1, 5), false, 5, 3, 1, false, false},
		{"one over maxLen", elems(1, 6), false, 5, 3, 0, true, true},
		{"fixed exactly maxCount", elems(2, 4), true, 4, 2, 2, false, false},
		{"fixed one over maxCount", elems(3, 4), true, 4, 2, 0, true, true},
		{"fixed wrong size", elems(1, 3), true, 4, 2, 0, false, true},
		{"maxCount zero rejects any element", elems(1, 1), false, 1, 0, 0, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := NewDecoder(tt.in)
			var got [][]byte
			var err error
			if tt.fixed {
				got, err = d.RepeatedFixed(1, tt.size, tt.count)
			} else {
				got, err = d.Repeated(1, tt.count, tt.size)
			}
			if err == nil {
				err = d.Done()
			}
			if errors.Is(err, ErrTooLarge) != tt.wantTooLarge || errors.Is(err, ErrMalformed) != tt.wantMalformed {
				t.Fatalf("err = %v; want tooLarge=%v malformed=%v", err, tt.wantTooLarge, tt.wantMalformed)
			}
			if err == nil && len(got) != tt.wantN {
				t.Fatalf("got %d elements, want %d", len(got), tt.wantN)
			}
		})
	}
}

func TestDecodedBytesDoNotAliasInput(t *testing.T) {
	t.Parallel()
	in, err := sampleMsg().encode()
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeTestMsg(in)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleMsg()
	for i := range in {
		in[i] ^= 0xff
	}
	if !bytes.Equal(m.C, want.C) || !bytes.Equal(m.D, want.D) {
		t.Fatalf("Bytes/Fixed alias the input: %q %q", m.C, m.D)
	}
	for i := range want.E {
		if !bytes.Equal(m.E[i], want.E[i]) {
			t.Fatalf("Repeated element %d aliases the input: %q", i, m.E[i])
		}
	}
	for i := range want.F {
		if !bytes.Equal(m.F[i], want.F[i]) {
			t.Fatalf("RepeatedFixed element %d aliases the input: %q", i, m.F[i])
		}
	}
}
