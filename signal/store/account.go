package store

import (
	"context"
	"encoding/json"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"

	"github.com/signal-mpc/cosigner/signal/prekey"
)

// Account is this device's registration: who it is and how it
// authenticates. It holds secrets (password, identity private keys):
// String redacts them; never log the fields.
type Account struct {
	ACI      string // lowercase UUID
	PNI      string // untagged lowercase UUID; empty without a phone number
	Number   string // E.164, may be empty
	DeviceID uint32
	Password string

	ACIIdentity       *identity.KeyPair
	PNIIdentity       *identity.KeyPair // nil without a PNI identity
	ACIRegistrationID uint32
	PNIRegistrationID uint32
}

// String shows who, never the secrets.
func (a *Account) String() string {
	return fmt.Sprintf("store.Account{ACI:%s PNI:%s DeviceID:%d secrets:redacted}", a.ACI, a.PNI, a.DeviceID)
}

// GoString keeps %#v from printing the secrets.
func (a *Account) GoString() string { return a.String() }

// Identity returns the identity key pair and registration id of a kind.
func (a *Account) Identity(kind prekey.Identity) (*identity.KeyPair, uint32, error) {
	switch kind {
	case prekey.ACI:
		if a.ACIIdentity != nil {
			return a.ACIIdentity, a.ACIRegistrationID, nil
		}
	case prekey.PNI:
		if a.PNIIdentity != nil {
			return a.PNIIdentity, a.PNIRegistrationID, nil
		}
	default:
		return nil, 0, fmt.Errorf("%w: identity kind %v", ErrInvalidArgument, kind)
	}
	return nil, 0, fmt.Errorf("%w: %v", ErrNoIdentity, kind)
}

type accountJSON struct {
	ACI, PNI, Number, Password string
	DeviceID                   uint32
	ACIPublic, ACIPrivate      []byte
	PNIPublic, PNIPrivate      []byte
	ACIRegistrationID          uint32
	PNIRegistrationID          uint32
}

var keyAccount = []byte("account")

// SaveAccount replaces the stored account in one transaction.
func (s *Store) SaveAccount(ctx context.Context, a *Account) error {
	if a == nil || a.ACIIdentity == nil {
		return fmt.Errorf("%w: account without an ACI identity", ErrInvalidArgument)
	}
	j := accountJSON{ACI: a.ACI, PNI: a.PNI, Number: a.Number, Password: a.Password, DeviceID: a.DeviceID,
		ACIRegistrationID: a.ACIRegistrationID, PNIRegistrationID: a.PNIRegistrationID}
	j.ACIPublic, j.ACIPrivate = pairBytes(a.ACIIdentity)
	if a.PNIIdentity != nil {
		j.PNIPublic, j.PNIPrivate = pairBytes(a.PNIIdentity)
	}
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("store: encode account: %w", err)
	}
	return s.put(ctx, s.path(bucketAccount), keyAccount, b)
}

// Account loads the stored account; ErrNotFound before the first SaveAccount.
func (s *Store) Account(ctx context.Context) (*Account, error) {
	b, err := s.get(ctx, s.path(bucketAccount), keyAccount)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: account", ErrNotFound)
	}
	return decodeAccount(b)
}

// decodeAccount decodes and checks a stored account record.
func decodeAccount(b []byte) (*Account, error) {
	var j accountJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%w: account", ErrCorrupt)
	}
	a := &Account{ACI: j.ACI, PNI: j.PNI, Number: j.Number, Password: j.Password, DeviceID: j.DeviceID,
		ACIRegistrationID: j.ACIRegistrationID, PNIRegistrationID: j.PNIRegistrationID}
	var err error
	if a.ACIIdentity, err = pairFromBytes(j.ACIPublic, j.ACIPrivate); err != nil {
		return nil, err
	}
	if j.PNIPublic != nil {
		if a.PNIIdentity, err = pairFromBytes(j.PNIPublic, j.PNIPrivate); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func pairBytes(k *identity.KeyPair) (pub, priv []byte) {
	p := k.PrivateKey().Serialize()
	return k.PublicKey().Serialize(), p[:]
}

func pairFromBytes(pub, priv []byte) (*identity.KeyPair, error) {
	p, err := publicKey(pub)
	if err != nil {
		return nil, err
	}
	if len(priv) != 32 {
		return nil, fmt.Errorf("%w: identity private key", ErrCorrupt)
	}
	var k [32]byte
	copy(k[:], priv)
	return identity.NewKeyPair(identity.NewKey(p), ecc.NewDjbECPrivateKey(k)), nil
}

// publicKey decodes a checked 0x05 || 32-byte key (never ecc.DecodePoint on
// unchecked bytes).
func publicKey(b []byte) (ecc.ECPublicKeyable, error) {
	if len(b) != 33 || b[0] != ecc.DjbType {
		return nil, fmt.Errorf("%w: public key of %d bytes", ErrCorrupt, len(b))
	}
	var k [32]byte
	copy(k[:], b[1:])
	return ecc.NewDjbECPublicKey(k), nil
}
