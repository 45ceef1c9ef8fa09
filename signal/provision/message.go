package provision

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"fmt"
	"strings"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
)

// Provision is what a new device learns from the primary: its account, its
// identity key pairs and the link token. It holds private keys: String and
// GoString redact them, never log the fields.
type Provision struct {
	ACI              string // lowercase UUID, no prefix
	PNI              string // lowercase UUID, untagged; empty for a phone-number-less account
	Number           string // E.164, may be empty
	ProvisioningCode string // the link token, the verificationCode of PUT /v1/devices/link
	UserAgent        string
	ReadReceipts     bool
	Version          uint32 // ProvisionMessage.provisioningVersion

	ACIIdentity *identity.KeyPair // always set
	PNIIdentity *identity.KeyPair // nil when the account has no PNI identity

	ProfileKey []byte // 32 bytes or nil
	MasterKey  []byte // 32 bytes or nil
}

// String shows who, never the keys.
func (p *Provision) String() string {
	return fmt.Sprintf("provision.Provision{ACI:%s PNI:%s keys:redacted}", p.ACI, p.PNI)
}

// GoString keeps %#v from printing the private keys.
func (p *Provision) GoString() string { return p.String() }

// ParseMessage validates a serialized ProvisionMessage. It accepts the ACI and
// PNI in binary form (aciBinary and pniBinary, used when both are present) or
// as strings (aci, pni; a PNI: prefix is tolerated), and requires the ACI, a
// consistent ACI identity key pair and the provisioning code. A PNI identity
// key pair is optional but, when present, must be complete and consistent.
func ParseMessage(b []byte) (*Provision, error) {
	var m signalpb.ProvisionMessage
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedMessage, err)
	}
	p := &Provision{
		Number:           m.GetNumber(),
		ProvisioningCode: m.GetProvisioningCode(),
		UserAgent:        m.GetUserAgent(),
		ReadReceipts:     m.GetReadReceipts(),
		Version:          m.GetProvisioningVersion(),
	}
	var err error
	if m.AciBinary != nil && m.PniBinary != nil {
		if p.ACI, err = uuidFromBytes(m.AciBinary); err != nil {
			return nil, fmt.Errorf("%w: aciBinary: %v", ErrMalformedMessage, err)
		}
		if p.PNI, err = uuidFromBytes(m.PniBinary); err != nil {
			return nil, fmt.Errorf("%w: pniBinary: %v", ErrMalformedMessage, err)
		}
	} else {
		switch {
		case m.Aci != nil:
			if p.ACI, err = uuidFromString(m.GetAci(), ""); err != nil {
				return nil, fmt.Errorf("%w: aci: %v", ErrMalformedMessage, err)
			}
		case m.AciBinary != nil:
			if p.ACI, err = uuidFromBytes(m.AciBinary); err != nil {
				return nil, fmt.Errorf("%w: aciBinary: %v", ErrMalformedMessage, err)
			}
		default:
			return nil, fmt.Errorf("%w: no ACI", ErrMalformedMessage)
		}
		if m.Pni != nil && m.GetPni() != "" {
			if p.PNI, err = uuidFromString(m.GetPni(), "PNI:"); err != nil {
				return nil, fmt.Errorf("%w: pni: %v", ErrMalformedMessage, err)
			}
		}
	}
	if p.ProvisioningCode == "" {
		return nil, fmt.Errorf("%w: no provisioning code", ErrMalformedMessage)
	}
	if p.ACIIdentity, err = keyPair(m.AciIdentityKeyPublic, m.AciIdentityKeyPrivate); err != nil {
		return nil, fmt.Errorf("%w: aci identity: %v", ErrMalformedMessage, err)
	}
	if m.PniIdentityKeyPublic != nil || m.PniIdentityKeyPrivate != nil {
		if p.PNIIdentity, err = keyPair(m.PniIdentityKeyPublic, m.PniIdentityKeyPrivate); err != nil {
			return nil, fmt.Errorf("%w: pni identity: %v", ErrMalformedMessage, err)
		}
		if p.PNI == "" {
			return nil, fmt.Errorf("%w: pni identity without a PNI", ErrMalformedMessage)
		}
	}
	if p.ProfileKey, err = optional32(m.ProfileKey); err != nil {
		return nil, fmt.Errorf("%w: profileKey: %v", ErrMalformedMessage, err)
	}
	if p.MasterKey, err = optional32(m.MasterKey); err != nil {
		return nil, fmt.Errorf("%w: masterKey: %v", ErrMalformedMessage, err)
	}
	return p, nil
}

// keyPair checks a serialized public key (0x05 || 32) against the raw
// X25519 private scalar it must belong to.
func keyPair(pub, priv []byte) (*identity.KeyPair, error) {
	if len(pub) != PublicKeySize || pub[0] != KeyTypeDJB {
		return nil, fmt.Errorf("public key: want %d bytes starting 0x05, got %d", PublicKeySize, len(pub))
	}
	if len(priv) != 32 {
		return nil, fmt.Errorf("private key: want 32 bytes, got %d", len(priv))
	}
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("private key: %v", err)
	}
	if !bytes.Equal(k.PublicKey().Bytes(), pub[1:]) {
		return nil, fmt.Errorf("public key does not match the private key")
	}
	// Stored clamped, as X25519 uses it (XEdDSA signs with the clamped
	// scalar). ecc.CreateKeyPair would do the same but logs.
	var scalar, public [32]byte
	copy(scalar[:], priv)
	scalar[0] &= 248
	scalar[31] &= 127
	scalar[31] |= 64
	copy(public[:], pub[1:])
	return identity.NewKeyPair(identity.NewKey(ecc.NewDjbECPublicKey(public)), ecc.NewDjbECPrivateKey(scalar)), nil
}

func optional32(b []byte) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("want 32 bytes, got %d", len(b))
	}
	return bytes.Clone(b), nil
}

// uuidFromBytes formats 16 bytes as a lowercase UUID string.
func uuidFromBytes(b []byte) (string, error) {
	if len(b) != 16 {
		return "", fmt.Errorf("want 16 bytes, got %d", len(b))
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}

// uuidFromString checks the 8-4-4-4-12 hex form, strips an optional prefix
// and returns the lowercase form.
func uuidFromString(s, prefix string) (string, error) {
	if prefix != "" {
		s = strings.TrimPrefix(s, prefix)
	}
	if len(s) != 36 {
		return "", fmt.Errorf("want a 36-character UUID, got %d characters", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", fmt.Errorf("not a UUID")
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return "", fmt.Errorf("not a UUID")
			}
		}
	}
	return strings.ToLower(s), nil
}

// Message is the primary's side of ParseMessage: the ProvisionMessage that
// carries p, with the ACI and PNI in both the binary and the string forms so
// that old and new parsers read it.
func (p *Provision) Message() (*signalpb.ProvisionMessage, error) {
	if p.ACIIdentity == nil {
		return nil, fmt.Errorf("%w: no ACI identity", ErrMalformedMessage)
	}
	m := &signalpb.ProvisionMessage{
		ProvisioningCode:    proto.String(p.ProvisioningCode),
		ReadReceipts:        proto.Bool(p.ReadReceipts),
		ProvisioningVersion: proto.Uint32(p.Version),
		ProfileKey:          p.ProfileKey,
		MasterKey:           p.MasterKey,
	}
	if p.Number != "" {
		m.Number = proto.String(p.Number)
	}
	if p.UserAgent != "" {
		m.UserAgent = proto.String(p.UserAgent)
	}
	aci, err := uuidBytes(p.ACI)
	if err != nil {
		return nil, fmt.Errorf("%w: aci: %v", ErrMalformedMessage, err)
	}
	m.Aci, m.AciBinary = proto.String(p.ACI), aci
	if p.PNI != "" {
		pni, err := uuidBytes(p.PNI)
		if err != nil {
			return nil, fmt.Errorf("%w: pni: %v", ErrMalformedMessage, err)
		}
		m.Pni, m.PniBinary = proto.String(p.PNI), pni
	}
	m.AciIdentityKeyPublic, m.AciIdentityKeyPrivate = serializePair(p.ACIIdentity)
	if p.PNIIdentity != nil {
		m.PniIdentityKeyPublic, m.PniIdentityKeyPrivate = serializePair(p.PNIIdentity)
	}
	return m, nil
}

func serializePair(k *identity.KeyPair) (pub, priv []byte) {
	s := k.PrivateKey().Serialize()
	return k.PublicKey().Serialize(), s[:]
}

// uuidBytes parses a UUID string into its 16 bytes.
func uuidBytes(s string) ([]byte, error) {
	s, err := uuidFromString(s, "")
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(strings.ReplaceAll(s, "-", ""))
}
