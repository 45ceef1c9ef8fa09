package prekey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"unicode/utf8"

	"go.mau.fi/libsignal/keys/identity"
	"google.golang.org/protobuf/encoding/protowire"
)

const (
	// MaxEncryptedNameSize is the server's limit on the decoded DeviceName.
	MaxEncryptedNameSize = 225
	syntheticIVSize      = 16
)

// EncryptDeviceName encrypts a device name to the ACI identity public key
// (serialized, 33 bytes) as Desktop does and returns the b64 of the
// DeviceName protobuf {ephemeralPublic=1, syntheticIv=2, ciphertext=3}:
//
//	master     = X25519(eph, aciIdentity)
//	syntheticIv = HMAC(HMAC(master, "auth"), name)[:16]
//	cipherKey  = HMAC(HMAC(master, "cipher"), syntheticIv)
//	ciphertext = AES-256-CTR(cipherKey, zero counter, name)
func EncryptDeviceName(r io.Reader, name string, aciIdentityPublic []byte) (string, error) {
	if name == "" || !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: empty or not UTF-8", ErrBadDeviceName)
	}
	if r == nil {
		r = rand.Reader
	}
	pub, err := x25519Public(aciIdentityPublic)
	if err != nil {
		return "", err
	}
	var seed [32]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return "", fmt.Errorf("device name randomness: %w", err)
	}
	eph, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		return "", fmt.Errorf("device name key: %w", err)
	}
	master, err := eph.ECDH(pub)
	if err != nil {
		return "", fmt.Errorf("%w: degenerate identity key", ErrBadKey)
	}
	siv := hmacSHA256(hmacSHA256(master, []byte("auth")), []byte(name))[:syntheticIVSize]
	ct := ctr(hmacSHA256(hmacSHA256(master, []byte("cipher")), siv), []byte(name))
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, append([]byte{KeyTypeDJB}, eph.PublicKey().Bytes()...))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, siv)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, ct)
	if len(b) > MaxEncryptedNameSize {
		return "", fmt.Errorf("%w: %d bytes encrypted, the limit is %d", ErrBadDeviceName, len(b), MaxEncryptedNameSize)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecryptDeviceName reverses EncryptDeviceName with the ACI identity key
// pair (what the primary does to show the device list). It checks sizes and
// the synthetic IV, which authenticates the name.
func DecryptDeviceName(encoded string, aci *identity.KeyPair) (string, error) {
	if len(encoded) > 2*MaxEncryptedNameSize {
		return "", fmt.Errorf("%w: too long", ErrBadDeviceName)
	}
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadDeviceName, err)
	}
	var ephPub, siv, ct []byte
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 {
			return "", fmt.Errorf("%w: %v", ErrBadDeviceName, protowire.ParseError(n))
		}
		raw = raw[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, raw)
			if n < 0 {
				return "", fmt.Errorf("%w: %v", ErrBadDeviceName, protowire.ParseError(n))
			}
			raw = raw[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(raw)
		if n < 0 {
			return "", fmt.Errorf("%w: %v", ErrBadDeviceName, protowire.ParseError(n))
		}
		raw = raw[n:]
		switch num {
		case 1:
			ephPub = v
		case 2:
			siv = v
		case 3:
			ct = v
		}
	}
	if len(siv) != syntheticIVSize || len(ct) == 0 {
		return "", fmt.Errorf("%w: missing or short fields", ErrBadDeviceName)
	}
	pub, err := x25519Public(ephPub)
	if err != nil {
		return "", fmt.Errorf("%w: ephemeral key: %w", ErrBadDeviceName, err)
	}
	scalar := aci.PrivateKey().Serialize()
	priv, err := ecdh.X25519().NewPrivateKey(scalar[:])
	if err != nil {
		return "", fmt.Errorf("%w: identity key", ErrBadKey)
	}
	master, err := priv.ECDH(pub)
	if err != nil {
		return "", fmt.Errorf("%w: degenerate ephemeral key", ErrBadDeviceName)
	}
	name := ctr(hmacSHA256(hmacSHA256(master, []byte("cipher")), siv), ct)
	want := hmacSHA256(hmacSHA256(master, []byte("auth")), name)[:syntheticIVSize]
	if !hmac.Equal(want, siv) {
		return "", fmt.Errorf("%w: synthetic IV mismatch", ErrBadDeviceName)
	}
	if !utf8.Valid(name) {
		return "", fmt.Errorf("%w: not UTF-8", ErrBadDeviceName)
	}
	return string(name), nil
}

func x25519Public(b []byte) (*ecdh.PublicKey, error) {
	if len(b) != ECPublicKeySize || b[0] != KeyTypeDJB {
		return nil, fmt.Errorf("%w: want %d bytes starting 0x05, got %d", ErrBadKey, ECPublicKeySize, len(b))
	}
	pub, err := ecdh.X25519().NewPublicKey(b[1:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return pub, nil
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

func ctr(key, in []byte) []byte {
	block, _ := aes.NewCipher(key) // key is always 32 bytes
	out := make([]byte, len(in))
	cipher.NewCTR(block, make([]byte, aes.BlockSize)).XORKeyStream(out, in)
	return out
}
