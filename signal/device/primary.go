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
// token, or open registration on loopback) with this process as device 1.
func RegisterPrimary(ctx context.Context, d *transport.Dialer, token string, rnd io.Reader) (*Primary, error) {
	aciID, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		return nil, err
	}
	pniID, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		return nil, err
	}
	password, err := prekey.NewPassword(rnd)
	if err != nil {
		return nil, err
	}
	aci, err := prekey.NewKeys(aciID, prekey.Options{})
	if err != nil {
		return nil, err
	}
	pni, err := prekey.NewKeys(pniID, prekey.Options{})
	if err != nil {
		return nil, err
	}
	name, err := prekey.EncryptDeviceName(rnd, "primary", aciID.PublicKey().Serialize())
	if err != nil {
		return nil, err
	}
	// The registration body is the link body (attributes and signed keys)
	// plus the identity keys; the link request builder makes the shared
	// part, and its verification code is not sent.
	link, err := prekey.NewLinkRequest("registration", name, prekey.DefaultCapabilities(), aci, pni)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	if resp.UUID == "" {
		return nil, fmt.Errorf("%w: registration answer has no account id", ErrEnvelope)
	}
	return &Primary{ACI: resp.UUID, PNI: resp.PNI, Password: password, ACIIdentity: aciID, PNIIdentity: pniID}, nil
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
