package prekey

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/util/optional"
)

// Limits on GET /v2/keys responses.
const (
	maxDevices   = 127
	maxWireKeyID = 1<<31 - 1 // the server's range for key ids
)

// Bundle is one device's keys from GET /v2/keys/{serviceId}/{deviceId|*},
// checked and converted for libsignal.
type Bundle struct {
	DeviceID       uint32
	RegistrationID uint32
	// Bundle is what session.Builder.ProcessBundle takes. Its one-time prekey
	// is absent when the server had none left, or when the server sent key
	// id 0 (libsignal would treat that id as "none" on the other side).
	Bundle *prekey.Bundle
	// The Kyber prekey (one-time or last resort), signature checked. libsignal
	// (v0.2.2) speaks X3DH and does not use it; PQXDH would.
	KyberPreKeyID  uint32
	KyberPreKey    []byte // 0x08 || 1568 bytes
	KyberSignature [SignatureSize]byte
	HasKyber       bool
}

// Bundles is a parsed GET /v2/keys response.
type Bundles struct {
	IdentityKey *identity.Key
	Devices     []Bundle
}

type bundleResponseJSON struct {
	IdentityKey string `json:"identityKey"`
	Devices     []struct {
		DeviceID       uint32            `json:"deviceId"`
		RegistrationID uint32            `json:"registrationId"`
		SignedPreKey   *SignedPreKeyJSON `json:"signedPreKey"`
		PreKey         *PreKeyJSON       `json:"preKey"`
		PQPreKey       *SignedPreKeyJSON `json:"pqPreKey"`
	} `json:"devices"`
}

// ParseBundles decodes a GET /v2/keys/{serviceId}/{deviceId|*} response.
// Every length, type byte, id and signature is checked before any libsignal
// call, so hostile input gives ErrMalformedBundle or ErrBadSignature, never
// a panic.
func ParseBundles(body []byte) (*Bundles, error) {
	if len(body) > maxResponseSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformedBundle, len(body))
	}
	var r bundleResponseJSON
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedBundle, err)
	}
	ikBytes, err := decodeKey(r.IdentityKey, ECPublicKeySize, KeyTypeDJB)
	if err != nil {
		return nil, fmt.Errorf("%w: identityKey: %v", ErrMalformedBundle, err)
	}
	ik := identity.NewKey(djb(ikBytes))
	if len(r.Devices) == 0 || len(r.Devices) > maxDevices {
		return nil, fmt.Errorf("%w: %d devices", ErrMalformedBundle, len(r.Devices))
	}
	out := &Bundles{IdentityKey: ik, Devices: make([]Bundle, 0, len(r.Devices))}
	seen := map[uint32]bool{}
	for _, d := range r.Devices {
		if d.DeviceID == 0 || d.DeviceID > maxDevices || seen[d.DeviceID] {
			return nil, fmt.Errorf("%w: device id %d invalid or repeated", ErrMalformedBundle, d.DeviceID)
		}
		seen[d.DeviceID] = true
		if d.RegistrationID == 0 || d.RegistrationID > MaxRegistrationID {
			return nil, fmt.Errorf("%w: device %d: registration id %d", ErrMalformedBundle, d.DeviceID, d.RegistrationID)
		}
		if d.SignedPreKey == nil {
			return nil, fmt.Errorf("%w: device %d: no signed prekey", ErrMalformedBundle, d.DeviceID)
		}
		spk, spkSig, err := decodeSigned(d.SignedPreKey, ECPublicKeySize, KeyTypeDJB)
		if err != nil {
			return nil, fmt.Errorf("%w: device %d: signedPreKey: %v", ErrMalformedBundle, d.DeviceID, err)
		}
		if !ecc.VerifySignature(ik.PublicKey(), spk, spkSig) {
			return nil, fmt.Errorf("%w: device %d: signedPreKey", ErrBadSignature, d.DeviceID)
		}
		b := Bundle{DeviceID: d.DeviceID, RegistrationID: d.RegistrationID}
		preKeyID := optional.NewEmptyUint32()
		var preKey ecc.ECPublicKeyable
		if d.PreKey != nil {
			if d.PreKey.KeyID > maxWireKeyID {
				return nil, fmt.Errorf("%w: device %d: preKey id %d", ErrMalformedBundle, d.DeviceID, d.PreKey.KeyID)
			}
			pk, err := decodeKey(d.PreKey.PublicKey, ECPublicKeySize, KeyTypeDJB)
			if err != nil {
				return nil, fmt.Errorf("%w: device %d: preKey: %v", ErrMalformedBundle, d.DeviceID, err)
			}
			if d.PreKey.KeyID != 0 {
				preKeyID, preKey = optional.NewOptionalUint32(d.PreKey.KeyID), djb(pk)
			}
		}
		if d.PQPreKey != nil {
			kk, kSig, err := decodeSigned(d.PQPreKey, KyberPublicKeySize, KeyTypeKyber1024)
			if err != nil {
				return nil, fmt.Errorf("%w: device %d: pqPreKey: %v", ErrMalformedBundle, d.DeviceID, err)
			}
			if !ecc.VerifySignature(ik.PublicKey(), kk, kSig) {
				return nil, fmt.Errorf("%w: device %d: pqPreKey", ErrBadSignature, d.DeviceID)
			}
			b.KyberPreKeyID, b.KyberPreKey, b.KyberSignature, b.HasKyber = d.PQPreKey.KeyID, kk, kSig, true
		}
		b.Bundle = prekey.NewBundle(d.RegistrationID, d.DeviceID, preKeyID, d.SignedPreKey.KeyID,
			preKey, djb(spk), spkSig, ik)
		out.Devices = append(out.Devices, b)
	}
	return out, nil
}

// djb builds a libsignal public key from checked 0x05 || 32 bytes, without
// ecc.DecodePoint (which panics on short input and ignores trailing bytes).
func djb(b []byte) ecc.ECPublicKeyable {
	var k [32]byte
	copy(k[:], b[1:])
	return ecc.NewDjbECPublicKey(k)
}

// decodeKey decodes b64 (padded or not) and checks the size and type byte.
func decodeKey(s string, size int, typ byte) ([]byte, error) {
	b, err := decodeB64(s)
	if err != nil {
		return nil, err
	}
	if len(b) != size || b[0] != typ {
		return nil, fmt.Errorf("want %d bytes of type %#x, got %d", size, typ, len(b))
	}
	return b, nil
}

func decodeSigned(k *SignedPreKeyJSON, size int, typ byte) ([]byte, [SignatureSize]byte, error) {
	var sig [SignatureSize]byte
	if k.KeyID > maxWireKeyID {
		return nil, sig, fmt.Errorf("key id %d", k.KeyID)
	}
	key, err := decodeKey(k.PublicKey, size, typ)
	if err != nil {
		return nil, sig, err
	}
	s, err := decodeB64(k.Signature)
	if err != nil {
		return nil, sig, fmt.Errorf("signature: %v", err)
	}
	if len(s) != SignatureSize {
		return nil, sig, fmt.Errorf("signature of %d bytes", len(s))
	}
	copy(sig[:], s)
	return key, sig, nil
}

// decodeB64 accepts standard base64 with or without padding (the server
// emits signatures unpadded).
func decodeB64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}
