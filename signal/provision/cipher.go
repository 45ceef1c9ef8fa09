// Package provision implements Signal's provisioning cipher (signal-wire.md
// section 1.4) in both directions: the new device's side (an ephemeral
// X25519 key, the sgnl://linkdevice URL, decryption of the ProvisionEnvelope
// the primary sends) and the primary's side (encrypting a ProvisionMessage to
// the public key of a link URL).
//
// The cipher: shared = X25519; okm = HKDF-SHA256(shared, salt 32 zero bytes,
// "TextSecure Provisioning Message", 64); AES-256-CBC with okm[0:32] and
// PKCS#7; HMAC-SHA256 with okm[32:64] over 0x01 || iv || ciphertext.
package provision

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
)

const (
	// Version is the only envelope body version Signal defines.
	Version = 1
	// KeyTypeDJB is the type byte of a serialized Curve25519 public key.
	KeyTypeDJB = 0x05
	// PublicKeySize is the size of a serialized public key: type byte and 32 bytes.
	PublicKeySize = 33
	// MaxEnvelopeSize bounds the ProvisionEnvelope accepted (the server's limit).
	MaxEnvelopeSize = 256 << 10

	hkdfInfo = "TextSecure Provisioning Message"
	ivSize   = aes.BlockSize
	macSize  = sha256.Size
	// minBody is version, IV, one ciphertext block and the MAC.
	minBody = 1 + ivSize + aes.BlockSize + macSize
)

// LinkKey is the new device's ephemeral provisioning key pair. Its public
// half goes into the link URL; its private half opens the envelope.
type LinkKey struct {
	priv *ecdh.PrivateKey
}

// NewLinkKey makes a fresh link key from rand (crypto/rand.Reader when nil).
func NewLinkKey(r io.Reader) (*LinkKey, error) {
	if r == nil {
		r = rand.Reader
	}
	var seed [32]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return nil, fmt.Errorf("provision: link key randomness: %w", err)
	}
	priv, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		return nil, fmt.Errorf("provision: link key: %w", err)
	}
	return &LinkKey{priv: priv}, nil
}

// PublicKey returns the serialized public key, 0x05 || 32 bytes.
func (k *LinkKey) PublicKey() []byte {
	return serializePublic(k.priv.PublicKey())
}

// String never shows the private key.
func (k *LinkKey) String() string { return "provision.LinkKey{redacted}" }

func serializePublic(pub *ecdh.PublicKey) []byte {
	out := make([]byte, 0, PublicKeySize)
	out = append(out, KeyTypeDJB)
	return append(out, pub.Bytes()...)
}

// parsePublic checks the type byte and length of a serialized public key.
func parsePublic(b []byte) (*ecdh.PublicKey, error) {
	if len(b) != PublicKeySize || b[0] != KeyTypeDJB {
		return nil, fmt.Errorf("%w: want %d bytes starting 0x05, got %d", ErrBadPublicKey, PublicKeySize, len(b))
	}
	pub, err := ecdh.X25519().NewPublicKey(b[1:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPublicKey, err)
	}
	return pub, nil
}

// deriveKeys runs X25519 and the HKDF of section 1.4.
func deriveKeys(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) (cipherKey, macKey []byte, err error) {
	shared, err := priv.ECDH(pub)
	if err != nil { // a low-order point gives the all-zero secret
		return nil, nil, fmt.Errorf("%w: degenerate shared secret", ErrBadPublicKey)
	}
	okm, err := hkdf.Key(sha256.New, shared, make([]byte, 32), hkdfInfo, 64)
	if err != nil {
		return nil, nil, fmt.Errorf("provision: hkdf: %w", err)
	}
	return okm[:32], okm[32:], nil
}

// Seal encrypts msg to the new device's serialized public key theirPub (the
// primary's side) and returns the serialized ProvisionEnvelope. r supplies
// the ephemeral key and the IV (crypto/rand.Reader when nil).
func Seal(r io.Reader, theirPub []byte, msg *signalpb.ProvisionMessage) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	pub, err := parsePublic(theirPub)
	if err != nil {
		return nil, err
	}
	plain, err := proto.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("provision: marshal message: %w", err)
	}
	eph, err := NewLinkKey(r)
	if err != nil {
		return nil, err
	}
	cipherKey, macKey, err := deriveKeys(eph.priv, pub)
	if err != nil {
		return nil, err
	}
	body, err := sealBody(r, cipherKey, macKey, plain)
	if err != nil {
		return nil, err
	}
	out, err := proto.Marshal(&signalpb.ProvisionEnvelope{PublicKey: eph.PublicKey(), Body: body})
	if err != nil {
		return nil, fmt.Errorf("provision: marshal envelope: %w", err)
	}
	if len(out) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformedEnvelope, len(out), MaxEnvelopeSize)
	}
	return out, nil
}

// sealBody returns 0x01 || iv || AES-256-CBC(PKCS#7(plain)) || HMAC.
func sealBody(r io.Reader, cipherKey, macKey, plain []byte) ([]byte, error) {
	block, err := aes.NewCipher(cipherKey)
	if err != nil {
		return nil, fmt.Errorf("provision: aes: %w", err)
	}
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	ctLen := len(plain) + pad
	body := make([]byte, 1+ivSize+ctLen, 1+ivSize+ctLen+macSize)
	body[0] = Version
	iv := body[1 : 1+ivSize]
	if _, err := io.ReadFull(r, iv); err != nil {
		return nil, fmt.Errorf("provision: iv randomness: %w", err)
	}
	ct := body[1+ivSize:]
	copy(ct, plain)
	for i := len(plain); i < ctLen; i++ {
		ct[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)
	mac := hmac.New(sha256.New, macKey)
	mac.Write(body)
	return mac.Sum(body), nil
}

// Open decrypts a serialized ProvisionEnvelope sent to this link key and
// returns the parsed, validated provisioning data. The MAC is checked in
// constant time before anything is decrypted. Errors wrap ErrMalformedEnvelope,
// ErrBadPublicKey, ErrTruncated, ErrUnsupportedVersion, ErrBadMAC,
// ErrBadPadding or ErrMalformedMessage.
func (k *LinkKey) Open(envelope []byte) (*Provision, error) {
	plain, err := k.OpenRaw(envelope)
	if err != nil {
		return nil, err
	}
	return ParseMessage(plain)
}

// OpenRaw is Open without parsing: it returns the serialized
// ProvisionMessage.
func (k *LinkKey) OpenRaw(envelope []byte) ([]byte, error) {
	if len(envelope) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformedEnvelope, len(envelope), MaxEnvelopeSize)
	}
	var env signalpb.ProvisionEnvelope
	if err := proto.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedEnvelope, err)
	}
	if env.PublicKey == nil || env.Body == nil {
		return nil, fmt.Errorf("%w: missing publicKey or body", ErrMalformedEnvelope)
	}
	pub, err := parsePublic(env.PublicKey)
	if err != nil {
		return nil, err
	}
	body := env.Body
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrTruncated)
	}
	if body[0] != Version {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, body[0])
	}
	if len(body) < minBody {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrTruncated, len(body), minBody)
	}
	if (len(body)-1-ivSize-macSize)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: ciphertext is not a whole number of blocks", ErrTruncated)
	}
	cipherKey, macKey, err := deriveKeys(k.priv, pub)
	if err != nil {
		return nil, err
	}
	signed, got := body[:len(body)-macSize], body[len(body)-macSize:]
	mac := hmac.New(sha256.New, macKey)
	mac.Write(signed)
	if subtle.ConstantTimeCompare(mac.Sum(nil), got) != 1 {
		return nil, ErrBadMAC
	}
	block, err := aes.NewCipher(cipherKey)
	if err != nil {
		return nil, fmt.Errorf("provision: aes: %w", err)
	}
	iv := signed[1 : 1+ivSize]
	plain := make([]byte, len(signed)-1-ivSize)
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, signed[1+ivSize:])
	return unpad(plain)
}

// unpad strips PKCS#7 padding strictly: 1..16 bytes, all equal to the count.
func unpad(b []byte) ([]byte, error) {
	if len(b) == 0 || len(b)%aes.BlockSize != 0 {
		return nil, ErrBadPadding
	}
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize {
		return nil, ErrBadPadding
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, ErrBadPadding
		}
	}
	return b[:len(b)-n], nil
}
