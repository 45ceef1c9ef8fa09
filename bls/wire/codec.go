package wire

import (
	"bytes"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Encoder builds a canonical encoding field by field. Fields must be added in
// strictly ascending field-number order (the order the Decoder reads them
// in). Zero integers and empty byte strings are omitted, proto3 style, so
// that there is one encoding per value.
//
// The zero Encoder is ready to use. Misuse (fields out of order, a field
// number out of range, an empty element in a repeated field) is a caller
// bug; it is recorded rather than panicked on and reported by Finish.
type Encoder struct {
	buf  []byte
	last protowire.Number // highest field number added so far, 0 before any
	err  error            // first misuse; sticky
}

// order records field as the next field and reports whether it may be
// written. It is called for omitted fields too, so out-of-order calls are
// caught even when the value happens to be zero.
func (e *Encoder) order(field protowire.Number) bool {
	if e.err != nil {
		return false
	}
	if !field.IsValid() {
		e.err = fmt.Errorf("wire: encoder: invalid field number %d", field)
		return false
	}
	if field <= e.last {
		e.err = fmt.Errorf("wire: encoder: field %d after field %d: fields out of order", field, e.last)
		return false
	}
	e.last = field
	return true
}

// Uint adds an unsigned integer field. Zero is omitted.
func (e *Encoder) Uint(field protowire.Number, v uint64) {
	if !e.order(field) || v == 0 {
		return
	}
	e.buf = protowire.AppendTag(e.buf, field, protowire.VarintType)
	e.buf = protowire.AppendVarint(e.buf, v)
}

// Bytes adds a length-delimited field. An empty (or nil) b is omitted. The
// bytes are copied into the encoding.
func (e *Encoder) Bytes(field protowire.Number, b []byte) {
	if !e.order(field) || len(b) == 0 {
		return
	}
	e.buf = protowire.AppendTag(e.buf, field, protowire.BytesType)
	e.buf = protowire.AppendBytes(e.buf, b)
}

// Repeated adds a repeated bytes field: one length-delimited element per
// entry, contiguous, in the given order. An empty list is omitted. Elements
// must be non-empty: an empty element would be indistinguishable from a
// default value and the Decoder rejects it, so the Encoder refuses it too.
func (e *Encoder) Repeated(field protowire.Number, elems [][]byte) {
	if !e.order(field) {
		return
	}
	for i, b := range elems {
		if len(b) == 0 {
			e.err = fmt.Errorf("wire: encoder: field %d element %d is empty", field, i)
			return
		}
	}
	for _, b := range elems {
		e.buf = protowire.AppendTag(e.buf, field, protowire.BytesType)
		e.buf = protowire.AppendBytes(e.buf, b)
	}
}

// Finish returns the encoding, or the first misuse recorded. The Encoder
// must not be used afterwards: the returned slice is its buffer.
func (e *Encoder) Finish() ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	return e.buf, nil
}

// Decoder reads a canonical encoding. The caller drives it by asking for
// fields in ascending field-number order (the message's schema); whatever in
// the buffer does not fit that schema is an error wrapping ErrMalformed that
// names the field number. Finish a message with Done, which rejects trailing
// fields.
//
// Errors are sticky: after the first one every call returns it again, so a
// caller may read all fields and check once at Done. Each call still returns
// the error for callers that prefer to stop early.
type Decoder struct {
	buf      []byte
	asked    protowire.Number // last field number the caller asked for
	consumed protowire.Number // last field number read from the buffer
	err      error
}

// NewDecoder returns a Decoder reading b. Decoded byte slices never alias b.
func NewDecoder(b []byte) *Decoder {
	return &Decoder{buf: b}
}

// malformed records and returns an ErrMalformed naming field.
func (d *Decoder) malformed(field protowire.Number, format string, args ...any) error {
	d.err = fmt.Errorf("%w: field %d: %s", ErrMalformed, field, fmt.Sprintf(format, args...))
	return d.err
}

// tooLarge records and returns an error wrapping both ErrMalformed and
// ErrTooLarge: the input broke the schema's bound, and callers that only
// care about size can still tell.
func (d *Decoder) tooLarge(field protowire.Number, format string, args ...any) error {
	d.err = fmt.Errorf("%w: %w: field %d: %s", ErrMalformed, ErrTooLarge, field, fmt.Sprintf(format, args...))
	return d.err
}

// varint reads a minimally encoded varint at the head of b. It returns the
// value and its length, or n < 0 for truncated, overflowing or non-minimal
// input (so a value has one encoding).
func varint(b []byte) (v uint64, n int) {
	v, n = protowire.ConsumeVarint(b)
	if n < 0 || n != protowire.SizeVarint(v) {
		return 0, -1
	}
	return v, n
}

// peek parses the tag at the head of the buffer without consuming it. At
// the end of the buffer it returns num == 0 and no error.
func (d *Decoder) peek() (num protowire.Number, typ protowire.Type, n int, err error) {
	if len(d.buf) == 0 {
		return 0, 0, 0, nil
	}
	x, n := varint(d.buf)
	if n < 0 {
		// The field number is unreadable; name the last good one.
		d.err = fmt.Errorf("%w: tag after field %d: truncated, overflowing or non-minimal", ErrMalformed, d.consumed)
		return 0, 0, 0, d.err
	}
	num, typ = protowire.DecodeTag(x)
	if !num.IsValid() {
		return 0, 0, 0, d.malformed(num, "invalid field number")
	}
	return num, typ, n, nil
}

// unexpected reports a field found in the buffer where the schema does not
// allow it: at or below the last field read (duplicate, non-contiguous
// repeated element, or out of order), or between known fields (unknown).
func (d *Decoder) unexpected(num protowire.Number) error {
	switch {
	case num == d.consumed:
		return d.malformed(num, "repeated where at most one, or contiguous elements, are allowed")
	case num < d.consumed:
		return d.malformed(num, "out of order (after field %d)", d.consumed)
	default:
		return d.malformed(num, "unknown field")
	}
}

// find positions the Decoder at field. It reports whether field is present
// with wire type want; on return with present == true, the tag (n bytes) is
// still at the head of the buffer.
func (d *Decoder) find(field protowire.Number, want protowire.Type) (present bool, n int, err error) {
	if d.err != nil {
		return false, 0, d.err
	}
	if !field.IsValid() || field <= d.asked {
		// A schema bug in the caller, not bad input: do not blame the peer.
		d.err = fmt.Errorf("wire: decoder: field %d asked for after field %d", field, d.asked)
		return false, 0, d.err
	}
	d.asked = field
	num, typ, n, err := d.peek()
	switch {
	case err != nil:
		return false, 0, err
	case num == 0 || num > field:
		return false, 0, nil // absent: end of buffer, or a later field
	case num < field:
		return false, 0, d.unexpected(num)
	case typ != want:
		return false, 0, d.malformed(num, "wire type %d, want %s", typ, typeName(want))
	}
	return true, n, nil
}

func typeName(t protowire.Type) string {
	if t == protowire.VarintType {
		return "varint"
	}
	return "bytes"
}

// element consumes the length-delimited field of tag length n at the head of
// the buffer and returns a copy of its contents. The declared length is
// checked against the remaining input and maxLen before anything is
// allocated.
func (d *Decoder) element(field protowire.Number, n, maxLen int) ([]byte, error) {
	rest := d.buf[n:]
	l, m := varint(rest)
	if m < 0 {
		return nil, d.malformed(field, "truncated or non-minimal length")
	}
	rest = rest[m:]
	if l > uint64(len(rest)) {
		return nil, d.malformed(field, "truncated: length %d, %d bytes left", l, len(rest))
	}
	if l == 0 {
		return nil, d.malformed(field, "explicit empty bytes (non-canonical: omit it)")
	}
	if l > uint64(maxLen) {
		return nil, d.tooLarge(field, "%d bytes, max %d", l, maxLen)
	}
	v := bytes.Clone(rest[:l])
	d.buf = rest[l:]
	d.consumed = field
	return v, nil
}

// Uint reads an unsigned integer field; an absent field is 0.
func (d *Decoder) Uint(field protowire.Number) (uint64, error) {
	ok, n, err := d.find(field, protowire.VarintType)
	if !ok {
		return 0, err
	}
	v, m := varint(d.buf[n:])
	if m < 0 {
		return 0, d.malformed(field, "truncated, overflowing or non-minimal varint")
	}
	if v == 0 {
		return 0, d.malformed(field, "explicit zero (non-canonical: omit it)")
	}
	d.buf = d.buf[n+m:]
	d.consumed = field
	return v, nil
}

// Uint32 reads an unsigned integer field that must fit in 32 bits; an absent
// field is 0.
func (d *Decoder) Uint32(field protowire.Number) (uint32, error) {
	v, err := d.Uint(field)
	if err != nil {
		return 0, err
	}
	if v > math.MaxUint32 {
		return 0, d.malformed(field, "value %d exceeds 32 bits", v)
	}
	return uint32(v), nil
}

// Bytes reads a length-delimited field of at most maxLen bytes. An absent
// field is nil. The result is a copy.
func (d *Decoder) Bytes(field protowire.Number, maxLen int) ([]byte, error) {
	ok, n, err := d.find(field, protowire.BytesType)
	if !ok {
		return nil, err
	}
	return d.element(field, n, maxLen)
}

// Fixed reads a required length-delimited field of exactly size bytes (a
// hash, an id, a signature, a point). Absence is an error. The result is a
// copy.
func (d *Decoder) Fixed(field protowire.Number, size int) ([]byte, error) {
	ok, n, err := d.find(field, protowire.BytesType)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, d.malformed(field, "missing")
	}
	v, err := d.element(field, n, size)
	if err != nil {
		return nil, err
	}
	if len(v) != size {
		return nil, d.malformed(field, "%d bytes, want %d", len(v), size)
	}
	return v, nil
}

// Repeated reads a repeated bytes field: at most maxCount contiguous
// elements, each non-empty and at most maxLen bytes. An absent field is nil.
// The elements are copies.
func (d *Decoder) Repeated(field protowire.Number, maxCount, maxLen int) ([][]byte, error) {
	return d.repeated(field, maxCount, maxLen, 0)
}

// RepeatedFixed reads a repeated bytes field whose elements are each exactly
// size bytes, at most maxCount of them. An absent field is nil.
func (d *Decoder) RepeatedFixed(field protowire.Number, size, maxCount int) ([][]byte, error) {
	return d.repeated(field, maxCount, size, size)
}

// repeated reads elements while the next tag is field; exact > 0 demands
// that every element has that length.
func (d *Decoder) repeated(field protowire.Number, maxCount, maxLen, exact int) ([][]byte, error) {
	ok, n, err := d.find(field, protowire.BytesType)
	if !ok {
		return nil, err
	}
	var out [][]byte
	for ok {
		if len(out) >= maxCount {
			return nil, d.tooLarge(field, "more than %d elements", maxCount)
		}
		v, err := d.element(field, n, maxLen)
		if err != nil {
			return nil, err
		}
		if exact > 0 && len(v) != exact {
			return nil, d.malformed(field, "element %d is %d bytes, want %d", len(out), len(v), exact)
		}
		out = append(out, v)
		var num protowire.Number
		var typ protowire.Type
		num, typ, n, err = d.peek()
		if err != nil {
			return nil, err
		}
		ok = num == field
		if ok && typ != protowire.BytesType {
			return nil, d.malformed(num, "wire type %d, want bytes", typ)
		}
	}
	return out, nil
}

// Done reports the first error, or an error if any field remains unread
// (an unknown, duplicate or out-of-order field after the last one asked).
func (d *Decoder) Done() error {
	if d.err != nil {
		return d.err
	}
	num, _, _, err := d.peek()
	if err != nil {
		return err
	}
	if num != 0 {
		return d.unexpected(num)
	}
	return nil
}
