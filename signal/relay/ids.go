package relay

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// uuid is a 16-byte UUID; its text form is lower-case with dashes.
type uuid [16]byte

func newUUID() uuid {
	var u uuid
	rand.Read(u[:])         // never fails (crypto/rand)
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return u
}

// parseUUID accepts the 36-character form with dashes, in either case.
func parseUUID(s string) (uuid, error) {
	var u uuid
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%w: not a UUID", ErrBadServiceID)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, fmt.Errorf("%w: not a UUID", ErrBadServiceID)
	}
	return u, nil
}

func (u uuid) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}

// serviceID names an identity of an account: its ACI (the account UUID) or
// its PNI (the phone-number identity).
type serviceID struct {
	pni  bool
	uuid uuid
}

// parseServiceID accepts a bare ACI UUID or "PNI:<UUID>". An "ACI:" prefix is
// refused, as Signal does in paths.
func parseServiceID(s string) (serviceID, error) {
	if rest, ok := strings.CutPrefix(s, "PNI:"); ok {
		u, err := parseUUID(rest)
		return serviceID{pni: true, uuid: u}, err
	}
	u, err := parseUUID(s)
	return serviceID{uuid: u}, err
}

func (s serviceID) String() string {
	if s.pni {
		return "PNI:" + s.uuid.String()
	}
	return s.uuid.String()
}

// binary is the compact wire form used in envelopes: 16 bytes for an ACI,
// 0x01 followed by 16 bytes for a PNI.
func (s serviceID) binary() []byte {
	if s.pni {
		return append([]byte{0x01}, s.uuid[:]...)
	}
	return append([]byte(nil), s.uuid[:]...)
}

// key is the fixed 17-byte form used in store keys: kind byte, then the UUID.
func (s serviceID) key() []byte {
	k := make([]byte, 17)
	if s.pni {
		k[0] = 1
	}
	copy(k[1:], s.uuid[:])
	return k
}

// MarshalText and UnmarshalText store a UUID in its text form in JSON records.
func (u uuid) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

func (u *uuid) UnmarshalText(b []byte) error {
	v, err := parseUUID(string(b))
	if err != nil {
		return err
	}
	*u = v
	return nil
}

// parseDeviceID parses a device id in 1..127.
func parseDeviceID(s string) (uint8, error) {
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n < 1 || n > maxDeviceID {
		return 0, fmt.Errorf("bad device id %q", s)
	}
	return uint8(n), nil
}
