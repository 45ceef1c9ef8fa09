package device

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"

	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/util/keyhelper"

	"github.com/signal-mpc/cosigner/signal/prekey"
	"github.com/signal-mpc/cosigner/signal/provision"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// Primary plays an account's primary device (the phone's role) on a
// self-hosted relay: it creates the account and approves link requests by
// sending the provisioning message to the link URL a console shows.
type Primary struct {
	ACI, PNI    string
	Password    string
	ACIIdentity *identity.KeyPair
	PNIIdentity *identity.KeyPair
}

// String never prints secrets.
func (p *Primary) String() string { return "Primary(" + p.ACI + ")" }

// RegisterPrimary creates an account on a relay that allows it (an operator
// token, or open registration on loopback) with this process as device 1,
// keeping nothing but what approving links needs (the demo's phones).
func RegisterPrimary(ctx context.Context, d *transport.Dialer, token string, rnd io.Reader) (*Primary, error) {
	p, _, _, err := registerAccount(ctx, d, token, "primary", rnd)
	return p, err
}

// Register creates an account whose first device is this console (no phone
// needed, on a self-hosted relay): the account and its keys are saved in st
// and one-time prekeys uploaded. The console is then its own primary: it
// can approve link requests (PrimaryFromStore).
func Register(ctx context.Context, d *transport.Dialer, st *store.Store, token, name string, rnd io.Reader) (*store.Account, error) {
	p, aci, pni, err := registerAccount(ctx, d, token, name, rnd)
	if err != nil {
		return nil, err
	}
	acct := &store.Account{ACI: p.ACI, PNI: p.PNI, DeviceID: 1, Password: p.Password,
		ACIIdentity: p.ACIIdentity, PNIIdentity: p.PNIIdentity,
		ACIRegistrationID: aci.RegistrationID, PNIRegistrationID: pni.RegistrationID}
	if p.PNI == "" {
		acct.PNIIdentity, acct.PNIRegistrationID, pni = nil, 0, nil
	}
	if err := saveAccount(ctx, st, acct, aci, pni); err != nil {
		return nil, err
	}
	if err := uploadKeys(ctx, d, acct, aci, pni); err != nil {
		return nil, err
	}
	return acct, nil
}

// PrimaryFromStore is the primary role of a console registered with
// Register (device 1 of its account).
func PrimaryFromStore(ctx context.Context, st *store.Store) (*Primary, error) {
	a, err := st.Account(ctx)
	if err != nil {
		return nil, err
	}
	if a.DeviceID != 1 {
		return nil, fmt.Errorf("device: this console is device %d of its account; only the primary (device 1) approves links", a.DeviceID)
	}
	return &Primary{ACI: a.ACI, PNI: a.PNI, Password: a.Password, ACIIdentity: a.ACIIdentity, PNIIdentity: a.PNIIdentity}, nil
}

func registerAccount(ctx context.Context, d *transport.Dialer, token, deviceName string, rnd io.Reader) (*Primary, *prekey.Keys, *prekey.Keys, error) {
	aciID, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		return nil, nil, nil, err
	}
	pniID, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		return nil, nil, nil, err
	}
	password, err := prekey.NewPassword(rnd)
	if err != nil {
		return nil, nil, nil, err
	}
	aci, err := prekey.NewKeys(aciID, prekey.Options{PreKeys: 20, KyberPreKeys: 20})
	if err != nil {
		return nil, nil, nil, err
	}
	pni, err := prekey.NewKeys(pniID, prekey.Options{PreKeys: 20, KyberPreKeys: 20})
	if err != nil {
		return nil, nil, nil, err
	}
	name, err := prekey.EncryptDeviceName(rnd, deviceName, aciID.PublicKey().Serialize())
	if err != nil {
		return nil, nil, nil, err
	}
	// The registration body is the link body (attributes and signed keys)
	// plus the identity keys; the link request builder makes the shared
	// part, and its verification code is not sent.
	link, err := prekey.NewLinkRequest("registration", name, prekey.DefaultCapabilities(), aci, pni)
	if err != nil {
		return nil, nil, nil, err
	}
	body := map[string]any{
		"registrationToken":     token,
		"accountAttributes":     link.AccountAttributes,
		"aciIdentityKey":        base64.StdEncoding.EncodeToString(aciID.PublicKey().Serialize()),
		"pniIdentityKey":        base64.StdEncoding.EncodeToString(pniID.PublicKey().Serialize()),
		"aciSignedPreKey":       link.ACISignedPreKey,
		"pniSignedPreKey":       link.PNISignedPreKey,
		"aciPqLastResortPreKey": link.ACIPQLastResortPreKey,
		"pniPqLastResortPreKey": link.PNIPQLastResortPreKey,
	}
	var resp struct {
		UUID string `json:"uuid"`
		PNI  string `json:"pni"`
	}
	err = withSocket(ctx, d, nil, func(r requester) error {
		_, err := call(ctx, r, "register", http.MethodPost, "/v1/registration", basicAuth("new", password), body, &resp)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if resp.UUID == "" {
		return nil, nil, nil, fmt.Errorf("%w: registration answer has no account id", ErrEnvelope)
	}
	return &Primary{ACI: resp.UUID, PNI: resp.PNI, Password: password, ACIIdentity: aciID, PNIIdentity: pniID}, aci, pni, nil
}

func (p *Primary) auth() http.Header {
	return http.Header{"Authorization": {basicAuth(p.ACI+".1", p.Password)}}
}

// ApproveLink links the console showing linkURL to this account: it gets a
// link token and sends the provisioning message, encrypted to the URL's key.
func (p *Primary) ApproveLink(ctx context.Context, d *transport.Dialer, linkURL string, rnd io.Reader) error {
	return withSocket(ctx, d, p.auth(), func(r requester) error {
		var code struct {
			VerificationCode string `json:"verificationCode"`
		}
		if _, err := call(ctx, r, "link code", http.MethodGet, "/v1/devices/provisioning/code", "", nil, &code); err != nil {
			return err
		}
		msg, err := (&provision.Provision{ACI: p.ACI, PNI: p.PNI, ProvisioningCode: code.VerificationCode,
			ACIIdentity: p.ACIIdentity, PNIIdentity: p.PNIIdentity, Version: 1}).Message()
		if err != nil {
			return err
		}
		to, env, err := provision.SealToURL(rnd, linkURL, msg)
		if err != nil {
			return fmt.Errorf("device: link URL: %w", err)
		}
		body := map[string]string{"body": base64.StdEncoding.EncodeToString(env)}
		_, err = call(ctx, r, "send provisioning message", http.MethodPut, "/v1/provisioning/"+to, "", body, nil, http.StatusOK, http.StatusNoContent)
		return err
	})
}
