package relay

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Registration ids are 14-bit and never 0.
const maxRegistrationID = 0x3fff

// maxDeviceNameLen bounds the decoded DeviceName blob (Signal: 225 bytes).
const maxDeviceNameLen = 225

// requiredCapabilities must be present (true) when a device joins.
var requiredCapabilities = []string{"spqr"}

type accountAttributesJSON struct {
	FetchesMessages   bool            `json:"fetchesMessages"`
	RegistrationID    int             `json:"registrationId"`
	PNIRegistrationID int             `json:"pniRegistrationId"`
	Name              string          `json:"name"`
	Capabilities      map[string]bool `json:"capabilities"`
}

// newDevice validates account attributes and the password into a device
// record (without its id). hasPNI says whether a PNI registration id is
// required.
func (s *Server) newDevice(attrs *accountAttributesJSON, password string, hasPNI bool) (*device, error) {
	if attrs == nil {
		return nil, fail(http.StatusUnprocessableEntity, "accountAttributes missing")
	}
	if len(password) < minPasswordLen {
		return nil, fail(http.StatusUnprocessableEntity, "password shorter than %d characters", minPasswordLen)
	}
	if !attrs.FetchesMessages {
		return nil, fail(http.StatusUnprocessableEntity, "fetchesMessages must be true: this relay has no push delivery")
	}
	if attrs.RegistrationID < 1 || attrs.RegistrationID > maxRegistrationID {
		return nil, fail(http.StatusUnprocessableEntity, "registrationId out of range")
	}
	if hasPNI && (attrs.PNIRegistrationID < 1 || attrs.PNIRegistrationID > maxRegistrationID) {
		return nil, fail(http.StatusUnprocessableEntity, "pniRegistrationId missing or out of range")
	}
	var name []byte
	if attrs.Name != "" {
		n, err := decodeB64(attrs.Name)
		if err != nil || len(n) > maxDeviceNameLen {
			return nil, fail(http.StatusUnprocessableEntity, "name is not base64 or too long")
		}
		name = n
	}
	if attrs.Capabilities == nil {
		return nil, fail(http.StatusUnprocessableEntity, "capabilities missing")
	}
	for _, c := range requiredCapabilities {
		if !attrs.Capabilities[c] {
			return nil, fail(http.StatusConflict, "capability %q required", c)
		}
	}
	caps := map[string]bool{}
	for k, v := range attrs.Capabilities {
		if len(caps) < 32 && len(k) <= 64 {
			caps[k] = v
		}
	}
	salt := newSalt()
	now := s.now().UnixMilli()
	d := &device{
		Name: name, Salt: salt, PasswordHash: hashPassword(salt, password),
		RegistrationID: attrs.RegistrationID, Capabilities: caps, FetchesMessages: true,
		Created: now, LastSeen: now,
	}
	if hasPNI {
		d.PNIRegistrationID = attrs.PNIRegistrationID
	}
	return d, nil
}

// newPassword reads the password of a new device from "Basic user:password"
// (the user part is not used, as on Signal's server, but must be sane).
func newPassword(r *http.Request) (string, error) {
	user, password, err := basicAuth(r.Header)
	if err != nil {
		return "", fail(http.StatusUnauthorized, "credentials for the new device required")
	}
	if _, dev, ok := strings.Cut(user, "."); ok {
		if _, err := strconv.ParseUint(dev, 10, 8); err != nil {
			return "", fail(http.StatusUnauthorized, "bad device id in the user name")
		}
	}
	return password, nil
}

// registerBody creates an account with no phone number: its identity keys
// and the primary's signed keys. The PNI part is optional.
type registerBody struct {
	RegistrationToken     string                 `json:"registrationToken"`
	AccountAttributes     *accountAttributesJSON `json:"accountAttributes"`
	ACIIdentityKey        string                 `json:"aciIdentityKey"`
	PNIIdentityKey        string                 `json:"pniIdentityKey"`
	ACISignedPreKey       *preKeyJSON            `json:"aciSignedPreKey"`
	PNISignedPreKey       *preKeyJSON            `json:"pniSignedPreKey"`
	ACIPqLastResortPreKey *preKeyJSON            `json:"aciPqLastResortPreKey"`
	PNIPqLastResortPreKey *preKeyJSON            `json:"pniPqLastResortPreKey"`
}

// registrationAllowed checks the operator token: required when configured;
// without one, registration is open on loopback only.
func (s *Server) registrationAllowed(token string) bool {
	if s.cfg.RegistrationToken == "" {
		return s.loopback
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) error {
	password, err := newPassword(r)
	if err != nil {
		return err
	}
	var body registerBody
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if !s.registrationAllowed(body.RegistrationToken) {
		return fail(http.StatusForbidden, "registration refused: missing or wrong registration token")
	}
	aciKey, err := decodeB64(body.ACIIdentityKey)
	if err != nil || !validIdentityKey(aciKey) {
		return fail(http.StatusUnprocessableEntity, "aciIdentityKey: want a 33-byte key of type 0x05")
	}
	hasPNI := body.PNIIdentityKey != ""
	var pniKey []byte
	if hasPNI {
		if pniKey, err = decodeB64(body.PNIIdentityKey); err != nil || !validIdentityKey(pniKey) {
			return fail(http.StatusUnprocessableEntity, "pniIdentityKey: want a 33-byte key of type 0x05")
		}
	}
	d, err := s.newDevice(body.AccountAttributes, password, hasPNI)
	if err != nil {
		return err
	}
	aciKeys, pniKeys, err := parseDeviceKeys(aciKey, pniKey, body.ACISignedPreKey, body.ACIPqLastResortPreKey,
		body.PNISignedPreKey, body.PNIPqLastResortPreKey)
	if err != nil {
		return err
	}
	d.ID = primaryDevice
	acc := &account{ACI: newUUID(), ACIIdentityKey: aciKey, NextDeviceID: primaryDevice + 1, Created: s.now().UnixMilli()}
	if hasPNI {
		pni := newUUID()
		acc.PNI, acc.PNIIdentityKey = &pni, pniKey
	}
	// The write runs to its end even if the client leaves meanwhile (the
	// writer's context, not the request's): an account is either
	// answered with, or removed again.
	if err := s.store.createAccount(s.writerCtx, newAccount{acc: acc, primary: d, aciKeys: aciKeys, pniKeys: pniKeys}); err != nil {
		// A commit reported failed may still have reached the file (a
		// sync that fails after the write): remove what it may have
		// left, so that no account exists that nobody holds.
		if derr := s.store.dropAccount(s.writerCtx, acc); derr != nil {
			s.log.Error("remove a failed registration", "aci", acc.ACI.String(), "err", derr)
		}
		return fmt.Errorf("create account: %w", err)
	}
	s.log.Info("account registered", "aci", acc.ACI.String())
	writeJSON(w, http.StatusOK, accountJSON(acc, primaryDevice))
	return nil
}

func accountJSON(acc *account, dev uint8) map[string]any {
	out := map[string]any{"uuid": acc.ACI.String(), "deviceId": dev, "storageCapable": false}
	if acc.PNI != nil {
		out["pni"] = acc.PNI.String()
	}
	return out
}

// parseDeviceKeys checks the signed EC and Kyber last-resort keys of both
// identities; the PNI pair is required iff pniIdentity is set, and refused
// otherwise.
func parseDeviceKeys(aciIdentity, pniIdentity []byte, aciSigned, aciLR, pniSigned, pniLR *preKeyJSON) (aci, pni identityKeys, err error) {
	if aci.Signed, err = parseKey(aciSigned, "aciSignedPreKey", false, aciIdentity); err != nil {
		return aci, pni, err
	}
	if aci.LastResort, err = parseKey(aciLR, "aciPqLastResortPreKey", true, aciIdentity); err != nil {
		return aci, pni, err
	}
	if pniIdentity == nil {
		if pniSigned != nil || pniLR != nil {
			return aci, pni, fail(http.StatusUnprocessableEntity, "PNI keys given for an account without a PNI")
		}
		return aci, pni, nil
	}
	if pni.Signed, err = parseKey(pniSigned, "pniSignedPreKey", false, pniIdentity); err != nil {
		return aci, pni, err
	}
	if pni.LastResort, err = parseKey(pniLR, "pniPqLastResortPreKey", true, pniIdentity); err != nil {
		return aci, pni, err
	}
	return aci, pni, nil
}

func (s *Server) handleLinkCode(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if p.dev != primaryDevice {
		return fail(http.StatusForbidden, "only the primary device may link devices")
	}
	devs, err := s.store.devices(p.aci)
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	if len(devs) >= maxDevices {
		return fail(http.StatusLengthRequired, "the account has %d devices already", len(devs))
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	token := base64.RawURLEncoding.EncodeToString(raw)
	hash := sha256.Sum256([]byte(token))
	if err := s.store.putLinkToken(hash[:], linkToken{ACI: p.aci, Expires: s.now().Add(linkTokenLifetime).UnixMilli()}, s.now()); err != nil {
		return fmt.Errorf("store link token: %w", err)
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"verificationCode": token,
		"tokenIdentifier":  base64.RawURLEncoding.EncodeToString(hash[:]),
	})
	return nil
}

type linkBody struct {
	VerificationCode      string                 `json:"verificationCode"`
	AccountAttributes     *accountAttributesJSON `json:"accountAttributes"`
	ACISignedPreKey       *preKeyJSON            `json:"aciSignedPreKey"`
	PNISignedPreKey       *preKeyJSON            `json:"pniSignedPreKey"`
	ACIPqLastResortPreKey *preKeyJSON            `json:"aciPqLastResortPreKey"`
	PNIPqLastResortPreKey *preKeyJSON            `json:"pniPqLastResortPreKey"`
}

func (s *Server) handleLink(w http.ResponseWriter, r *http.Request) error {
	password, err := newPassword(r)
	if err != nil {
		return err
	}
	var body linkBody
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.VerificationCode == "" || len(body.VerificationCode) > 512 {
		return fail(http.StatusForbidden, "bad verification code")
	}
	hash := sha256.Sum256([]byte(body.VerificationCode))
	tok, err := s.store.linkToken(hash[:], s.now())
	if err != nil {
		return fmt.Errorf("read link token: %w", err)
	}
	if tok == nil {
		return fail(http.StatusForbidden, "verification code unknown, used or expired")
	}
	acc, err := s.store.account(tok.ACI)
	if err != nil {
		return fmt.Errorf("read account: %w", err)
	}
	if acc == nil {
		return fail(http.StatusForbidden, "verification code unknown, used or expired")
	}
	d, err := s.newDevice(body.AccountAttributes, password, acc.PNI != nil)
	if err != nil {
		return err
	}
	aciKeys, pniKeys, err := parseDeviceKeys(acc.ACIIdentityKey, acc.PNIIdentityKey, body.ACISignedPreKey,
		body.ACIPqLastResortPreKey, body.PNISignedPreKey, body.PNIPqLastResortPreKey)
	if err != nil {
		return err
	}
	acc, err = s.store.linkDevice(hash[:], s.now(), d, aciKeys, pniKeys)
	switch {
	case errors.Is(err, errLinkToken):
		return fail(http.StatusForbidden, "verification code unknown, used or expired")
	case errors.Is(err, errTooManyDevices):
		return fail(http.StatusLengthRequired, "too many devices")
	case err != nil:
		return fmt.Errorf("link device: %w", err)
	}
	s.closeChat(acc.ACI, d.ID, 4401, "Reauthentication required") // a stale socket of a former device
	s.linked.done(hash, acc.ACI, deviceInfo(d), s.now())
	s.log.Info("device linked", "aci", acc.ACI.String(), "device", d.ID)
	writeJSON(w, http.StatusOK, accountJSON(acc, d.ID))
	return nil
}

// deviceJSON is a device as GET /v1/devices and wait_for_linked_device show it.
type deviceJSON struct {
	ID             int    `json:"id"`
	Name           string `json:"name,omitempty"`
	LastSeen       int64  `json:"lastSeen"`
	Created        int64  `json:"created"`
	RegistrationID int    `json:"registrationId"`
}

func deviceInfo(d *device) deviceJSON {
	j := deviceJSON{ID: int(d.ID), LastSeen: d.LastSeen, Created: d.Created, RegistrationID: d.RegistrationID}
	if len(d.Name) > 0 {
		j.Name = base64.StdEncoding.EncodeToString(d.Name)
	}
	return j
}

// handleSetAttributes is PUT /v1/accounts/attributes: the authenticated
// device replaces its attributes. A new registration id means a new
// installation behind the same device id: senders holding sessions with the
// old one get 410 and start new sessions.
func (s *Server) handleSetAttributes(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	var attrs accountAttributesJSON
	if err := decodeJSON(r, &attrs); err != nil {
		return err
	}
	acc, err := s.callerAccount(p)
	if err != nil {
		return err
	}
	// The checks of a new device, without its password (a dummy one of
	// the minimum length stands in).
	d, err := s.newDevice(&attrs, strings.Repeat("x", minPasswordLen), acc.PNI != nil)
	if err != nil {
		return err
	}
	found, err := s.store.setAttributes(p.aci, p.dev, d)
	if err != nil {
		return fmt.Errorf("store attributes: %w", err)
	}
	if !found {
		return fail(http.StatusUnauthorized, "unauthorized")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleListDevices(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	devs, err := s.store.devices(p.aci)
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	out := struct {
		Devices []deviceJSON `json:"devices"`
	}{Devices: []deviceJSON{}}
	for _, d := range devs {
		out.Devices = append(out.Devices, deviceInfo(d))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleDeleteDevice(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	dev, err := parseDeviceID(r.PathValue("id"))
	if err != nil {
		return fail(http.StatusUnprocessableEntity, "bad device id")
	}
	switch {
	case dev == primaryDevice:
		return fail(http.StatusForbidden, "the primary device cannot be removed")
	case p.dev != primaryDevice && p.dev != dev:
		return fail(http.StatusUnauthorized, "a linked device may only remove itself")
	}
	found, err := s.store.deleteDevice(p.aci, dev)
	if err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	if !found {
		return fail(http.StatusNotFound, "no such device")
	}
	s.closeChat(p.aci, dev, 4401, "Reauthentication required")
	s.log.Info("device removed", "aci", p.aci.String(), "device", dev)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) handleWhoami(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	acc, err := s.callerAccount(p)
	if err != nil {
		return err
	}
	out := accountJSON(acc, p.dev)
	out["entitlements"] = map[string]any{"badges": []any{}}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// callerAccount is the authenticated caller's account; 401 when it is gone
// (deleted since the credentials were checked).
func (s *Server) callerAccount(p *principal) (*account, error) {
	acc, err := s.store.account(p.aci)
	if err != nil {
		return nil, fmt.Errorf("read account: %w", err)
	}
	if acc == nil {
		return nil, fail(http.StatusUnauthorized, "unauthorized")
	}
	return acc, nil
}
