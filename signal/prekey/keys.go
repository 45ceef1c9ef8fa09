// Package prekey holds a linked device's key material in the forms the
// current Signal API wants (signal-wire.md sections 2.1 and 4): registration
// ids, signed EC prekeys, signed Kyber1024 (round 3) prekeys, one-time EC
// and Kyber prekeys, the JSON bodies of PUT /v1/devices/link and
// PUT /v2/keys, the encrypted device name, and the parsing of
// GET /v2/keys/{serviceId}/{deviceId} responses into libsignal bundles.
//
// libsignal logs through a package-global logger: call liblog.Silence once
// at start before using this package from several goroutines.
package prekey

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/cloudflare/circl/kem/kyber/kyber1024"
	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/state/record"
)

const (
	// KeyTypeDJB is the type byte of a serialized Curve25519 public key.
	KeyTypeDJB = 0x05
	// KeyTypeKyber1024 is the type byte of a serialized Kyber1024 (round 3)
	// public key. FIPS-203 ML-KEM would be 0x0A; it is a different algorithm.
	KeyTypeKyber1024 = 0x08
	// ECPublicKeySize is 0x05 || 32 bytes.
	ECPublicKeySize = 33
	// KyberPublicKeySize is 0x08 || 1568 bytes.
	KyberPublicKeySize = 1 + kyber1024.PublicKeySize
	// SignatureSize is the size of an XEdDSA signature.
	SignatureSize = 64
	// MaxKeyID is the largest key id used here (libsignal's 24-bit "medium").
	MaxKeyID = 0xFFFFFF
	// MaxRegistrationID is the largest registration id Signal allows.
	MaxRegistrationID = 0x3FFF
)

// serializer is libsignal's serializer for records (JSON) and wire messages
// (protobuf), with our own serializers for the session messages (see
// messages.go). Records made here carry it.
var serializer = func() *serialize.Serializer {
	s := serialize.NewProtoBufSerializer()
	s.SignalMessage = signalMessageSerializer{}
	s.PreKeySignalMessage = preKeyMessageSerializer{}
	return s
}()

// Serializer returns the libsignal serializer the records of this package use.
func Serializer() *serialize.Serializer { return serializer }

// RegistrationID returns a random registration id in 1..16383 (never 0).
func RegistrationID(r io.Reader) (uint32, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [4]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("registration id randomness: %w", err)
		}
		if id := binary.LittleEndian.Uint32(b[:]) & MaxRegistrationID; id != 0 {
			return id, nil
		}
	}
}

// NextID returns the key id after id, wrapping from MaxKeyID to 1: key ids
// are never 0 (libsignal reads one-time prekey id 0 as "none").
func NextID(id uint32) uint32 {
	if id >= MaxKeyID {
		return 1
	}
	return id + 1
}

func checkID(id uint32) error {
	if id == 0 || id > MaxKeyID {
		return fmt.Errorf("%w: key id %d outside 1..%d", ErrInvalidArgument, id, MaxKeyID)
	}
	return nil
}

// NewSignedPreKey makes an EC prekey signed (XEdDSA) by the identity key
// over its serialized public key.
func NewSignedPreKey(id uint32, ik *identity.KeyPair, now time.Time) (*record.SignedPreKey, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	kp, err := ecc.GenerateKeyPair()
	if err != nil {
		return nil, fmt.Errorf("signed prekey: %w", err)
	}
	sig := ecc.CalculateSignature(ik.PrivateKey(), kp.PublicKey().Serialize())
	return record.NewSignedPreKey(id, now.UnixMilli(), kp, sig, serializer.SignedPreKeyRecord), nil
}

// NewPreKeys makes count one-time EC prekeys with ids start, NextID(start), ...
func NewPreKeys(start uint32, count int) ([]*record.PreKey, error) {
	if err := checkID(start); err != nil {
		return nil, err
	}
	out := make([]*record.PreKey, 0, count)
	id := start
	for range count {
		kp, err := ecc.GenerateKeyPair()
		if err != nil {
			return nil, fmt.Errorf("one-time prekey: %w", err)
		}
		out = append(out, record.NewPreKey(id, kp, serializer.PreKeyRecord))
		id = NextID(id)
	}
	return out, nil
}

// KyberPreKey is a signed Kyber1024 (round 3) prekey: a one-time key or the
// last-resort key. Its private half is secret: never log it.
type KyberPreKey struct {
	ID         uint32
	Timestamp  int64  // unix milliseconds of creation
	LastResort bool   // a last-resort key is reused, never removed on use
	Public     []byte // serialized: 0x08 || 1568 bytes
	Signature  [SignatureSize]byte
	private    *kyber1024.PrivateKey
}

// String never shows the private key.
func (k *KyberPreKey) String() string {
	return fmt.Sprintf("prekey.KyberPreKey{ID:%d LastResort:%t}", k.ID, k.LastResort)
}

// NewKyberPreKey makes a Kyber1024 key pair whose serialized public key is
// signed (XEdDSA) by the identity key. r is crypto/rand.Reader when nil.
func NewKyberPreKey(r io.Reader, id uint32, ik *identity.KeyPair, lastResort bool, now time.Time) (*KyberPreKey, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if r == nil {
		r = rand.Reader
	}
	pk, sk, err := kyber1024.GenerateKeyPair(r)
	if err != nil {
		return nil, fmt.Errorf("kyber prekey: %w", err)
	}
	pub := make([]byte, KyberPublicKeySize)
	pub[0] = KeyTypeKyber1024
	pk.Pack(pub[1:])
	return &KyberPreKey{
		ID:         id,
		Timestamp:  now.UnixMilli(),
		LastResort: lastResort,
		Public:     pub,
		Signature:  ecc.CalculateSignature(ik.PrivateKey(), pub),
		private:    sk,
	}, nil
}

// NewKyberPreKeys makes count one-time Kyber prekeys with ids start, NextID(start), ...
func NewKyberPreKeys(start uint32, count int, ik *identity.KeyPair, now time.Time) ([]*KyberPreKey, error) {
	if err := checkID(start); err != nil {
		return nil, err
	}
	out := make([]*KyberPreKey, 0, count)
	id := start
	for range count {
		k, err := NewKyberPreKey(nil, id, ik, false, now)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
		id = NextID(id)
	}
	return out, nil
}

// Decapsulate recovers the shared secret of a Kyber1024 ciphertext sent to
// this key.
func (k *KyberPreKey) Decapsulate(ct []byte) ([]byte, error) {
	if len(ct) != kyber1024.CiphertextSize {
		return nil, fmt.Errorf("%w: kyber ciphertext of %d bytes, want %d", ErrBadKey, len(ct), kyber1024.CiphertextSize)
	}
	if k.private == nil {
		return nil, fmt.Errorf("%w: no private key", ErrBadKey)
	}
	ss := make([]byte, kyber1024.SharedKeySize)
	k.private.DecapsulateTo(ss, ct)
	return ss, nil
}

// kyberRecordSize is the size of a marshalled KyberPreKey:
// id(4) timestamp(8) flags(1) public(1569) signature(64) private.
const kyberRecordSize = 4 + 8 + 1 + KyberPublicKeySize + SignatureSize + kyber1024.PrivateKeySize

// MarshalBinary encodes the key with its private half, for an encrypted store.
func (k *KyberPreKey) MarshalBinary() ([]byte, error) {
	if k.private == nil || len(k.Public) != KyberPublicKeySize {
		return nil, fmt.Errorf("%w: incomplete kyber prekey", ErrBadKey)
	}
	out := make([]byte, 0, kyberRecordSize)
	out = binary.BigEndian.AppendUint32(out, k.ID)
	out = binary.BigEndian.AppendUint64(out, uint64(k.Timestamp))
	var flags byte
	if k.LastResort {
		flags = 1
	}
	out = append(out, flags)
	out = append(out, k.Public...)
	out = append(out, k.Signature[:]...)
	priv := make([]byte, kyber1024.PrivateKeySize)
	k.private.Pack(priv)
	return append(out, priv...), nil
}

// UnmarshalKyberPreKey decodes what MarshalBinary produced, checking sizes,
// the type byte and that the private key belongs to the public key.
func UnmarshalKyberPreKey(b []byte) (*KyberPreKey, error) {
	if len(b) != kyberRecordSize {
		return nil, fmt.Errorf("%w: kyber record of %d bytes, want %d", ErrBadKey, len(b), kyberRecordSize)
	}
	k := &KyberPreKey{
		ID:        binary.BigEndian.Uint32(b[0:4]),
		Timestamp: int64(binary.BigEndian.Uint64(b[4:12])),
	}
	switch b[12] {
	case 0:
	case 1:
		k.LastResort = true
	default:
		return nil, fmt.Errorf("%w: kyber record flags %#x", ErrBadKey, b[12])
	}
	rest := b[13:]
	k.Public = append([]byte(nil), rest[:KyberPublicKeySize]...)
	if k.Public[0] != KeyTypeKyber1024 {
		return nil, fmt.Errorf("%w: kyber key type %#x", ErrBadKey, k.Public[0])
	}
	rest = rest[KyberPublicKeySize:]
	copy(k.Signature[:], rest[:SignatureSize])
	k.private = new(kyber1024.PrivateKey)
	k.private.Unpack(rest[SignatureSize:])
	repacked := make([]byte, kyber1024.PrivateKeySize)
	k.private.Pack(repacked)
	if string(repacked) != string(rest[SignatureSize:]) {
		return nil, fmt.Errorf("%w: non-canonical kyber private key", ErrBadKey)
	}
	pub := make([]byte, kyber1024.PublicKeySize)
	k.private.Public().(*kyber1024.PublicKey).Pack(pub)
	if string(pub) != string(k.Public[1:]) {
		return nil, fmt.Errorf("%w: kyber private key does not match its public key", ErrBadKey)
	}
	return k, nil
}

// Options says which ids and how many keys NewKeys makes. Zero ids mean 1,
// except KyberPreKeyStart, which defaults to the id after LastResortID:
// one-time and last-resort Kyber keys share one id space.
type Options struct {
	SignedPreKeyID   uint32
	LastResortID     uint32
	PreKeyStart      uint32
	KyberPreKeyStart uint32
	PreKeys          int // one-time EC prekeys
	KyberPreKeys     int // one-time Kyber prekeys
	Now              time.Time
}

// NewKeys makes a registration id and the prekeys of one identity: a signed
// EC prekey, a last-resort Kyber key and the requested one-time keys, all
// signed by ik.
func NewKeys(ik *identity.KeyPair, o Options) (*Keys, error) {
	if ik == nil {
		return nil, fmt.Errorf("%w: no identity key", ErrInvalidArgument)
	}
	one := func(id uint32) uint32 {
		if id == 0 {
			return 1
		}
		return id
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	k := &Keys{Identity: ik}
	var err error
	if k.RegistrationID, err = RegistrationID(nil); err != nil {
		return nil, err
	}
	if k.SignedPreKey, err = NewSignedPreKey(one(o.SignedPreKeyID), ik, o.Now); err != nil {
		return nil, err
	}
	if k.LastResort, err = NewKyberPreKey(nil, one(o.LastResortID), ik, true, o.Now); err != nil {
		return nil, err
	}
	if k.PreKeys, err = NewPreKeys(one(o.PreKeyStart), o.PreKeys); err != nil {
		return nil, err
	}
	kyberStart := o.KyberPreKeyStart
	if kyberStart == 0 {
		kyberStart = NextID(k.LastResort.ID)
	}
	if k.KyberPreKeys, err = NewKyberPreKeys(kyberStart, o.KyberPreKeys, ik, o.Now); err != nil {
		return nil, err
	}
	for _, kk := range k.KyberPreKeys {
		if kk.ID == k.LastResort.ID {
			return nil, fmt.Errorf("%w: one-time kyber key id %d is the last-resort id", ErrInvalidArgument, kk.ID)
		}
	}
	return k, nil
}

// NewPassword returns a new device password as Desktop makes it: 16 random
// bytes in standard base64 without the padding (22 characters).
func NewPassword(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("password randomness: %w", err)
	}
	return base64.RawStdEncoding.EncodeToString(b), nil
}
