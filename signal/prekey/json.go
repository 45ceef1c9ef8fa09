package prekey

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/state/record"
)

// Identity names which of the account's identities keys belong to.
type Identity int

const (
	// ACI is the account identity.
	ACI Identity = iota + 1
	// PNI is the phone-number identity.
	PNI
)

// String returns "aci" or "pni", the value of the identity query parameter.
func (i Identity) String() string {
	switch i {
	case ACI:
		return "aci"
	case PNI:
		return "pni"
	}
	return fmt.Sprintf("Identity(%d)", int(i))
}

// UploadPath is the path of PUT /v2/keys for the identity.
func UploadPath(i Identity) string { return "/v2/keys?identity=" + i.String() }

// PreKeyJSON is an unsigned one-time EC prekey on the wire.
type PreKeyJSON struct {
	KeyID     uint32 `json:"keyId"`
	PublicKey string `json:"publicKey"` // b64 of 0x05 || 32 bytes
}

// SignedPreKeyJSON is a signed EC or Kyber prekey on the wire.
type SignedPreKeyJSON struct {
	KeyID     uint32 `json:"keyId"`
	PublicKey string `json:"publicKey"` // b64 of the serialized key (33 or 1569 bytes)
	Signature string `json:"signature"` // b64 of the 64-byte XEdDSA signature
}

// UploadRequest is the body of PUT /v2/keys?identity=aci|pni. A non-empty
// list replaces the server's one-time keys of its kind; an empty one leaves
// them, as an absent signed or last-resort key leaves the stored one.
// Signal-Server takes an absent list as empty, but its mock server answers
// 500 to a body without preKeys, so both lists are always sent, [] when
// empty (never null).
type UploadRequest struct {
	PreKeys            []PreKeyJSON       `json:"preKeys"`
	SignedPreKey       *SignedPreKeyJSON  `json:"signedPreKey,omitempty"`
	PQPreKeys          []SignedPreKeyJSON `json:"pqPreKeys"`
	PQLastResortPreKey *SignedPreKeyJSON  `json:"pqLastResortPreKey,omitempty"`
}

// MaxUploadKeys is the most keys of one kind the server takes per request.
const MaxUploadKeys = 100

// AccountAttributes is accountAttributes in PUT /v1/devices/link.
type AccountAttributes struct {
	FetchesMessages   bool            `json:"fetchesMessages"`
	RegistrationID    uint32          `json:"registrationId"`
	PNIRegistrationID uint32          `json:"pniRegistrationId,omitempty"`
	Name              string          `json:"name"` // EncryptDeviceName's output
	Capabilities      map[string]bool `json:"capabilities"`
}

// DefaultCapabilities are the capabilities a linked device declares: spqr
// is required of every new device, usernameChangeSyncMessage is a
// no-downgrade capability that accounts may already have (signal-wire.md
// 2.1). Both only promise to tolerate messages this device ignores.
func DefaultCapabilities() map[string]bool {
	return map[string]bool{"spqr": true, "usernameChangeSyncMessage": true}
}

// LinkRequest is the body of PUT /v1/devices/link.
type LinkRequest struct {
	VerificationCode      string            `json:"verificationCode"`
	AccountAttributes     AccountAttributes `json:"accountAttributes"`
	ACISignedPreKey       SignedPreKeyJSON  `json:"aciSignedPreKey"`
	PNISignedPreKey       *SignedPreKeyJSON `json:"pniSignedPreKey,omitempty"`
	ACIPQLastResortPreKey SignedPreKeyJSON  `json:"aciPqLastResortPreKey"`
	PNIPQLastResortPreKey *SignedPreKeyJSON `json:"pniPqLastResortPreKey,omitempty"`
}

// LinkResponse is the answer to PUT /v1/devices/link.
type LinkResponse struct {
	ACI      string `json:"uuid"`
	PNI      string `json:"pni,omitempty"` // untagged; absent without a phone number
	DeviceID uint32 `json:"deviceId"`
}

// Keys is the key material of one identity (ACI or PNI) of this device.
type Keys struct {
	Identity       *identity.KeyPair
	RegistrationID uint32
	SignedPreKey   *record.SignedPreKey
	LastResort     *KyberPreKey
	PreKeys        []*record.PreKey
	KyberPreKeys   []*KyberPreKey
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func signedEC(k *record.SignedPreKey) *SignedPreKeyJSON {
	sig := k.Signature()
	return &SignedPreKeyJSON{KeyID: k.ID(), PublicKey: b64(k.KeyPair().PublicKey().Serialize()), Signature: b64(sig[:])}
}

func signedKyber(k *KyberPreKey) *SignedPreKeyJSON {
	return &SignedPreKeyJSON{KeyID: k.ID, PublicKey: b64(k.Public), Signature: b64(k.Signature[:])}
}

// UploadRequest returns the PUT /v2/keys body carrying every key present in
// k (the one-time lists and whichever of the signed and last-resort keys are
// set).
func (k *Keys) UploadRequest() (*UploadRequest, error) {
	if len(k.PreKeys) > MaxUploadKeys || len(k.KyberPreKeys) > MaxUploadKeys {
		return nil, fmt.Errorf("%w: more than %d one-time keys", ErrInvalidArgument, MaxUploadKeys)
	}
	req := &UploadRequest{PreKeys: []PreKeyJSON{}, PQPreKeys: []SignedPreKeyJSON{}}
	for _, p := range k.PreKeys {
		req.PreKeys = append(req.PreKeys, PreKeyJSON{KeyID: p.ID().Value, PublicKey: b64(p.KeyPair().PublicKey().Serialize())})
	}
	for _, p := range k.KyberPreKeys {
		req.PQPreKeys = append(req.PQPreKeys, *signedKyber(p))
	}
	if k.SignedPreKey != nil {
		req.SignedPreKey = signedEC(k.SignedPreKey)
	}
	if k.LastResort != nil {
		req.PQLastResortPreKey = signedKyber(k.LastResort)
	}
	return req, nil
}

// NewLinkRequest builds the PUT /v1/devices/link body. aci must carry its
// registration id, signed prekey and last-resort Kyber key; pni may be nil
// (a phone-number-less account) and otherwise must carry the same.
// encryptedName is EncryptDeviceName's output; capabilities defaults to
// DefaultCapabilities.
func NewLinkRequest(code, encryptedName string, capabilities map[string]bool, aci, pni *Keys) (*LinkRequest, error) {
	check := func(what string, k *Keys) error {
		if k == nil || k.SignedPreKey == nil || k.LastResort == nil || k.RegistrationID == 0 || k.RegistrationID > MaxRegistrationID {
			return fmt.Errorf("%w: %s keys need a registration id, a signed prekey and a last-resort key", ErrInvalidArgument, what)
		}
		return nil
	}
	if code == "" || encryptedName == "" {
		return nil, fmt.Errorf("%w: link needs the verification code and a device name", ErrInvalidArgument)
	}
	if err := check("ACI", aci); err != nil {
		return nil, err
	}
	if capabilities == nil {
		capabilities = DefaultCapabilities()
	}
	req := &LinkRequest{
		VerificationCode: code,
		AccountAttributes: AccountAttributes{
			FetchesMessages: true,
			RegistrationID:  aci.RegistrationID,
			Name:            encryptedName,
			Capabilities:    capabilities,
		},
		ACISignedPreKey:       *signedEC(aci.SignedPreKey),
		ACIPQLastResortPreKey: *signedKyber(aci.LastResort),
	}
	if pni != nil {
		if err := check("PNI", pni); err != nil {
			return nil, err
		}
		req.AccountAttributes.PNIRegistrationID = pni.RegistrationID
		req.PNISignedPreKey = signedEC(pni.SignedPreKey)
		req.PNIPQLastResortPreKey = signedKyber(pni.LastResort)
	}
	return req, nil
}

// maxResponseSize bounds the JSON responses parsed here.
const maxResponseSize = 1 << 20

// ParseLinkResponse decodes and checks the answer to PUT /v1/devices/link:
// a UUID ACI, an optional UUID PNI (a PNI: prefix is stripped) and a device
// id in 2..127 (1 is the primary).
func ParseLinkResponse(body []byte) (*LinkResponse, error) {
	if len(body) > maxResponseSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformedResponse, len(body))
	}
	var r LinkResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedResponse, err)
	}
	var err error
	if r.ACI, err = canonicalUUID(r.ACI); err != nil {
		return nil, fmt.Errorf("%w: uuid: %v", ErrMalformedResponse, err)
	}
	if r.PNI != "" {
		if r.PNI, err = canonicalUUID(strings.TrimPrefix(r.PNI, "PNI:")); err != nil {
			return nil, fmt.Errorf("%w: pni: %v", ErrMalformedResponse, err)
		}
	}
	if r.DeviceID < 2 || r.DeviceID > 127 {
		return nil, fmt.Errorf("%w: device id %d outside 2..127", ErrMalformedResponse, r.DeviceID)
	}
	return &r, nil
}

// canonicalUUID checks the 8-4-4-4-12 hex form and lowercases it.
func canonicalUUID(s string) (string, error) {
	if len(s) != 36 {
		return "", fmt.Errorf("not a UUID")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return "", fmt.Errorf("not a UUID")
			}
		} else if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", fmt.Errorf("not a UUID")
		}
	}
	return strings.ToLower(s), nil
}

// String never shows private keys.
func (k *Keys) String() string {
	return fmt.Sprintf("prekey.Keys{RegistrationID:%d PreKeys:%d KyberPreKeys:%d private:redacted}",
		k.RegistrationID, len(k.PreKeys), len(k.KyberPreKeys))
}

// GoString keeps %#v from printing private keys.
func (k *Keys) GoString() string { return k.String() }
