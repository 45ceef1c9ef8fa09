package relay

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"time"
)

// Key encodings (signal-wire.md section 4.1).
const (
	ecKeyType    = 0x05 // Curve25519
	kyberKeyType = 0x08 // Kyber1024 round 3
	ecKeyLen     = 33
	kyberKeyLen  = 1 + 1568
	signatureLen = 64
	maxKeyID     = 1<<31 - 1
)

// preKeyJSON is a key as it appears in request and response bodies.
type preKeyJSON struct {
	KeyID     *int64 `json:"keyId"`
	PublicKey string `json:"publicKey"`
	Signature string `json:"signature,omitempty"`
}

func toJSON(k *signedKey) *preKeyJSON {
	if k == nil {
		return nil
	}
	id := int64(k.KeyID)
	j := &preKeyJSON{KeyID: &id, PublicKey: base64.StdEncoding.EncodeToString(k.PublicKey)}
	if len(k.Signature) > 0 {
		// Signal emits signatures without padding.
		j.Signature = base64.RawStdEncoding.EncodeToString(k.Signature)
	}
	return j
}

// validIdentityKey checks an identity key's encoding (33 bytes, type 0x05).
func validIdentityKey(b []byte) bool { return len(b) == ecKeyLen && b[0] == ecKeyType }

// parseKey decodes and checks one key. kind names it in errors. identity is
// the identity key that must have signed it, or nil for an unsigned EC
// one-time key. Every failure is 422, as Signal's validation answers.
func parseKey(j *preKeyJSON, kind string, kyber bool, identity []byte) (*signedKey, error) {
	if j == nil {
		return nil, fail(http.StatusUnprocessableEntity, "%s missing", kind)
	}
	if j.KeyID == nil || *j.KeyID < 0 || *j.KeyID > maxKeyID {
		return nil, fail(http.StatusUnprocessableEntity, "%s: key id missing or out of range", kind)
	}
	pub, err := decodeB64(j.PublicKey)
	if err != nil {
		return nil, fail(http.StatusUnprocessableEntity, "%s: public key is not base64", kind)
	}
	wantLen, wantType := ecKeyLen, byte(ecKeyType)
	if kyber {
		wantLen, wantType = kyberKeyLen, kyberKeyType
	}
	if len(pub) != wantLen || pub[0] != wantType {
		return nil, fail(http.StatusUnprocessableEntity, "%s: want a %d-byte key of type 0x%02x", kind, wantLen, wantType)
	}
	k := &signedKey{KeyID: uint32(*j.KeyID), PublicKey: pub}
	if identity == nil {
		return k, nil
	}
	sig, err := decodeB64(j.Signature)
	if err != nil || len(sig) != signatureLen {
		return nil, fail(http.StatusUnprocessableEntity, "%s: signature missing or not 64 bytes", kind)
	}
	if !verifyXEdDSA(identity, pub, sig) {
		return nil, fail(http.StatusUnprocessableEntity, "%s: signature does not verify", kind)
	}
	k.Signature = sig
	return k, nil
}

// keysBody is the body of PUT /v2/keys.
type keysBody struct {
	PreKeys            []*preKeyJSON `json:"preKeys"`
	SignedPreKey       *preKeyJSON   `json:"signedPreKey"`
	PqPreKeys          []*preKeyJSON `json:"pqPreKeys"`
	PqLastResortPreKey *preKeyJSON   `json:"pqLastResortPreKey"`
}

// identityParam reads ?identity=aci|pni (default aci).
func identityParam(r *http.Request) (pni bool, err error) {
	switch r.URL.Query().Get("identity") {
	case "", "aci", "ACI":
		return false, nil
	case "pni", "PNI":
		return true, nil
	default:
		return false, fail(http.StatusBadRequest, "identity must be aci or pni")
	}
}

// ownIdentity resolves the caller's service id and identity key for
// ?identity=; 400 when the account has no PNI.
func (s *Server) ownIdentity(r *http.Request, p *principal) (serviceID, []byte, error) {
	pni, err := identityParam(r)
	if err != nil {
		return serviceID{}, nil, err
	}
	acc, err := s.callerAccount(p)
	if err != nil {
		return serviceID{}, nil, err
	}
	if !pni {
		return serviceID{uuid: acc.ACI}, acc.ACIIdentityKey, nil
	}
	if acc.PNI == nil {
		return serviceID{}, nil, fail(http.StatusBadRequest, "the account has no PNI")
	}
	return serviceID{pni: true, uuid: *acc.PNI}, acc.PNIIdentityKey, nil
}

func (s *Server) handlePutKeys(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	svc, identity, err := s.ownIdentity(r, p)
	if err != nil {
		return err
	}
	var body keysBody
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if len(body.PreKeys) > maxKeysPerList || len(body.PqPreKeys) > maxKeysPerList {
		return fail(http.StatusUnprocessableEntity, "at most %d keys per list", maxKeysPerList)
	}
	var u keyUpdate
	for i, j := range body.PreKeys {
		k, err := parseKey(j, fmt.Sprintf("preKeys[%d]", i), false, nil)
		if err != nil {
			return err
		}
		u.ecOneTime = append(u.ecOneTime, *k)
	}
	for i, j := range body.PqPreKeys {
		k, err := parseKey(j, fmt.Sprintf("pqPreKeys[%d]", i), true, identity)
		if err != nil {
			return err
		}
		u.kemOneTime = append(u.kemOneTime, *k)
	}
	if body.SignedPreKey != nil {
		if u.signed, err = parseKey(body.SignedPreKey, "signedPreKey", false, identity); err != nil {
			return err
		}
	}
	if body.PqLastResortPreKey != nil {
		if u.lastResort, err = parseKey(body.PqLastResortPreKey, "pqLastResortPreKey", true, identity); err != nil {
			return err
		}
	}
	if err := s.store.putKeys(svc, p.dev, u); err != nil {
		return fmt.Errorf("store keys: %w", err)
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

func (s *Server) handleKeyCounts(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	svc, _, err := s.ownIdentity(r, p)
	if err != nil {
		return err
	}
	ec, kem, err := s.store.keyCounts(svc, p.dev)
	if err != nil {
		return fmt.Errorf("count keys: %w", err)
	}
	writeJSON(w, http.StatusOK, map[string]int{"count": ec, "pqCount": kem})
	return nil
}

type bundleDeviceJSON struct {
	DeviceID       int         `json:"deviceId"`
	RegistrationID int         `json:"registrationId"`
	SignedPreKey   *preKeyJSON `json:"signedPreKey"`
	PreKey         *preKeyJSON `json:"preKey,omitempty"`
	PqPreKey       *preKeyJSON `json:"pqPreKey"`
}

// Key fetches hand out one-time keys, which run out: without a bound any
// account could drain another's (its sessions would then start from the
// last-resort keys only). As Signal's server does, fetches are limited per
// requesting account and per (requester, target) pair, never per target
// alone: a limit per target would let one account block every session to
// its target. Over either, 429 with Retry-After.
const (
	keyFetchAccountBurst = 100        // fetches an account may make at once ...
	keyFetchAccountRate  = 100.0 / 60 // ... and a second after that
	keyFetchPairBurst    = 20         // fetches of one target's keys by one account ...
	keyFetchPairRate     = 1.0 / 60   // ... and a second after that
)

// keyFetchLimits are the limiters of key fetches.
type keyFetchLimits struct {
	account *limiter // requester's ACI
	pair    *limiter // requester's ACI and the target's service id
}

func newKeyFetchLimits(now func() time.Time) keyFetchLimits {
	return keyFetchLimits{
		account: newLimiter(keyFetchAccountRate, keyFetchAccountBurst, now),
		pair:    newLimiter(keyFetchPairRate, keyFetchPairBurst, now),
	}
}

// allowKeyFetch takes a fetch of target's keys from p's budgets. Fetches
// of the account's own keys (its other devices') take only from the
// account's budget: they drain nobody else's keys.
func (s *Server) allowKeyFetch(p *principal, target serviceID) error {
	if ok, wait := s.keyFetches.account.allow(string(p.aci[:])); !ok {
		return tooManyRequests(wait)
	}
	own := !target.pni && target.uuid == p.aci
	if target.pni {
		acc, err := s.store.account(p.aci)
		if err != nil {
			return fmt.Errorf("read account: %w", err)
		}
		own = acc != nil && acc.PNI != nil && *acc.PNI == target.uuid
	}
	if own {
		return nil
	}
	if ok, wait := s.keyFetches.pair.allow(string(p.aci[:]) + string(target.key())); !ok {
		return tooManyRequests(wait)
	}
	return nil
}

func (s *Server) handleFetchKeys(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	svc, err := parseServiceID(r.PathValue("serviceId"))
	if err != nil {
		return fail(http.StatusBadRequest, "bad service id")
	}
	if err := s.allowKeyFetch(p, svc); err != nil {
		return err
	}
	var dev uint8
	if d := r.PathValue("deviceId"); d != "*" {
		n, err := parseDeviceID(d)
		if err != nil {
			return fail(http.StatusUnprocessableEntity, "bad device id")
		}
		dev = n
	}
	acc, bundles, err := s.store.fetchBundles(svc, dev)
	if err != nil {
		return fmt.Errorf("fetch keys: %w", err)
	}
	if acc == nil || len(bundles) == 0 {
		return fail(http.StatusNotFound, "no such account or device")
	}
	identity := acc.ACIIdentityKey
	if svc.pni {
		identity = acc.PNIIdentityKey
	}
	out := struct {
		IdentityKey string             `json:"identityKey"`
		Devices     []bundleDeviceJSON `json:"devices"`
	}{IdentityKey: base64.StdEncoding.EncodeToString(identity)}
	for _, b := range bundles {
		out.Devices = append(out.Devices, bundleDeviceJSON{
			DeviceID: int(b.device.ID), RegistrationID: b.registrationID,
			SignedPreKey: toJSON(b.signed), PreKey: toJSON(b.ecOneTime), PqPreKey: toJSON(b.kem),
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
