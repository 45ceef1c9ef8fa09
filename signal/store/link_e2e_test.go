package store_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/util/keyhelper"
	"google.golang.org/protobuf/proto"

	"github.com/signal-mpc/cosigner/signal/prekey"
	signalpb "github.com/signal-mpc/cosigner/signal/proto"
	"github.com/signal-mpc/cosigner/signal/provision"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

// This test runs the link flow of signal-wire.md sections 1 and 2 against
// the in-process relay with this module's provisioning cipher, key bodies
// and store, then sets up a session between two linked devices from the
// bundle the relay serves. (Messages travel in memory: sending is the
// messaging layer's job.)

type e2eRelay struct {
	t    *testing.T
	base string
}

func startE2ERelay(t *testing.T) *e2eRelay {
	t.Helper()
	return &e2eRelay{t: t, base: relaytest.Start(t, "").URL()}
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// do sends a JSON request and fails the test unless the status is want.
func (r *e2eRelay) do(want int, method, path, auth string, body any) []byte {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.t.Context(), method, r.base+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		r.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, out, want)
	}
	return out
}

// primary is an account's primary device, played by the test.
type primary struct {
	aci, pni, password string
	aciID, pniID       *identity.KeyPair
}

func (p *primary) auth() string { return basic(p.aci+".1", p.password) }

func newIdentityKey(t *testing.T) *identity.KeyPair {
	k, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (r *e2eRelay) register(t *testing.T) *primary {
	t.Helper()
	p := &primary{password: "primary-password-16+", aciID: newIdentityKey(t), pniID: newIdentityKey(t)}
	aci, err := prekey.NewKeys(p.aciID, prekey.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pni, err := prekey.NewKeys(p.pniID, prekey.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The registration body is the link body plus the identity keys.
	link, err := prekey.NewLinkRequest("unused", "bmFtZQ==", nil, aci, pni)
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]any{
		"accountAttributes":     link.AccountAttributes,
		"aciIdentityKey":        base64.StdEncoding.EncodeToString(p.aciID.PublicKey().Serialize()),
		"pniIdentityKey":        base64.StdEncoding.EncodeToString(p.pniID.PublicKey().Serialize()),
		"aciSignedPreKey":       link.ACISignedPreKey,
		"pniSignedPreKey":       link.PNISignedPreKey,
		"aciPqLastResortPreKey": link.ACIPQLastResortPreKey,
		"pniPqLastResortPreKey": link.PNIPQLastResortPreKey,
	}
	var resp struct{ UUID, PNI string }
	if err := json.Unmarshal(r.do(200, "POST", "/v1/registration", basic("new", p.password), body), &resp); err != nil {
		t.Fatal(err)
	}
	p.aci, p.pni = resp.UUID, resp.PNI
	return p
}

// linked is a device linked through the provisioning flow.
type linked struct {
	acct  *store.Account
	st    *store.Store
	proto *store.Protocol
}

func (d *linked) addr() *protocol.SignalAddress {
	return protocol.NewSignalAddress(d.acct.ACI, d.acct.DeviceID)
}

func (d *linked) auth() string {
	return basic(fmt.Sprintf("%s.%d", d.acct.ACI, d.acct.DeviceID), d.acct.Password)
}

// link runs the new device's side and the primary's side of provisioning,
// then links and uploads one-time keys.
func (r *e2eRelay) link(t *testing.T, p *primary) *linked {
	t.Helper()
	ctx := t.Context()
	key, err := provision.NewLinkKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws"+strings.TrimPrefix(r.base, "http")+"/v1/websocket/provisioning/", nil)
	if err != nil {
		t.Fatal(err)
	}
	pushed := make(chan *wsr.Request, 4)
	conn := wsr.New(ws, wsr.Options{Handler: func(_ context.Context, req *wsr.Request) *wsr.Response {
		pushed <- req
		return &wsr.Response{Status: 200}
	}})
	go conn.Run(context.Background())
	defer func() { conn.Close(websocket.CloseNormalClosure, ""); <-conn.Done() }()

	first := <-pushed
	var address signalpb.ProvisioningAddress
	if first.Path != "/v1/address" || proto.Unmarshal(first.Body, &address) != nil {
		t.Fatalf("first push %s", first.Path)
	}
	url := provision.LinkURL(address.GetAddress(), key.PublicKey())

	// The primary scans the URL.
	var code struct{ VerificationCode string }
	if err := json.Unmarshal(r.do(200, "GET", "/v1/devices/provisioning/code", p.auth(), nil), &code); err != nil {
		t.Fatal(err)
	}
	msg, err := (&provision.Provision{ACI: p.aci, PNI: p.pni, ProvisioningCode: code.VerificationCode,
		ACIIdentity: p.aciID, PNIIdentity: p.pniID, Version: 1}).Message()
	if err != nil {
		t.Fatal(err)
	}
	to, env, err := provision.SealToURL(nil, url, msg)
	if err != nil {
		t.Fatal(err)
	}
	r.do(204, "PUT", "/v1/provisioning/"+to, p.auth(), map[string]string{"body": base64.StdEncoding.EncodeToString(env)})

	var got *provision.Provision
	select {
	case m := <-pushed:
		if m.Path != "/v1/message" {
			t.Fatalf("second push %s", m.Path)
		}
		if got, err = key.Open(m.Body); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no provisioning message")
	}

	// The new device links.
	aciKeys, err := prekey.NewKeys(got.ACIIdentity, prekey.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pniKeys, err := prekey.NewKeys(got.PNIIdentity, prekey.Options{})
	if err != nil {
		t.Fatal(err)
	}
	name, err := prekey.EncryptDeviceName(nil, "cosigner", got.ACIIdentity.PublicKey().Serialize())
	if err != nil {
		t.Fatal(err)
	}
	body, err := prekey.NewLinkRequest(got.ProvisioningCode, name, nil, aciKeys, pniKeys)
	if err != nil {
		t.Fatal(err)
	}
	password, err := prekey.NewPassword(nil)
	if err != nil {
		t.Fatal(err)
	}
	acct := &store.Account{ACI: got.ACI, PNI: got.PNI, Password: password,
		ACIIdentity: got.ACIIdentity, PNIIdentity: got.PNIIdentity,
		ACIRegistrationID: aciKeys.RegistrationID, PNIRegistrationID: pniKeys.RegistrationID}
	resp, err := prekey.ParseLinkResponse(r.do(200, "PUT", "/v1/devices/link", basic(got.ACI, acct.Password), body))
	if err != nil {
		t.Fatal(err)
	}
	if resp.ACI != p.aci {
		t.Fatalf("linked to %s, want %s", resp.ACI, p.aci)
	}
	acct.DeviceID = resp.DeviceID

	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.SaveAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	d := &linked{acct: acct, st: st}
	for _, id := range []struct {
		kind prekey.Identity
		keys *prekey.Keys
	}{{prekey.ACI, aciKeys}, {prekey.PNI, pniKeys}} {
		pr, err := st.Protocol(ctx, id.kind)
		if err != nil {
			t.Fatal(err)
		}
		if err := pr.SaveKeys(ctx, id.keys); err != nil {
			t.Fatal(err)
		}
		o, err := pr.NextKeyOptions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		o.PreKeys, o.KyberPreKeys = 5, 5
		batch, err := prekey.NewKeys(id.keys.Identity, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := pr.SaveKeys(ctx, batch); err != nil {
			t.Fatal(err)
		}
		up := &prekey.Keys{PreKeys: batch.PreKeys, KyberPreKeys: batch.KyberPreKeys}
		req, err := up.UploadRequest()
		if err != nil {
			t.Fatal(err)
		}
		r.do(200, "PUT", prekey.UploadPath(id.kind), d.auth(), req)
		if id.kind == prekey.ACI {
			d.proto = pr
		}
	}
	return d
}

func TestLinkedDevicesSetUpASessionThroughTheRelay(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := startE2ERelay(t)
	alice, bob := r.link(t, r.register(t)), r.link(t, r.register(t))

	var count struct{ Count, PqCount int }
	if err := json.Unmarshal(r.do(200, "GET", "/v2/keys?identity=aci", bob.auth(), nil), &count); err != nil {
		t.Fatal(err)
	}
	if count.Count != 5 || count.PqCount != 5 {
		t.Fatalf("bob's key counts %+v, want 5 and 5", count)
	}
	raw := r.do(200, "GET", fmt.Sprintf("/v2/keys/%s/%d", bob.acct.ACI, bob.acct.DeviceID), alice.auth(), nil)
	bundles, err := prekey.ParseBundles(raw)
	if err != nil {
		t.Fatal(err)
	}
	b := bundles.Devices[0]
	if b.RegistrationID != bob.acct.ACIRegistrationID || b.Bundle.PreKeyID().IsEmpty || !b.HasKyber {
		t.Fatalf("bundle: registration id %d, one-time key present %t, kyber %t", b.RegistrationID, !b.Bundle.PreKeyID().IsEmpty, b.HasKyber)
	}
	ser := prekey.Serializer()
	builder := func(d *linked, peer *protocol.SignalAddress) *session.Builder {
		return session.NewBuilder(d.proto, d.proto, d.proto, d.proto, peer, ser)
	}
	if err := builder(alice, bob.addr()).ProcessBundle(ctx, b.Bundle); err != nil {
		t.Fatal(err)
	}
	ct, err := session.NewCipher(builder(alice, bob.addr()), bob.addr()).Encrypt(ctx, []byte("over the relay's keys"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := protocol.NewPreKeySignalMessageFromBytes(ct.Serialize(), ser.PreKeySignalMessage, ser.SignalMessage)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := session.NewCipher(builder(bob, alice.addr()), alice.addr()).DecryptMessage(ctx, m)
	if err != nil || string(plain) != "over the relay's keys" {
		t.Fatalf("bob decrypts %q, %v", plain, err)
	}
}
