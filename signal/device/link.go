package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/signal-mpc/cosigner/signal/prekey"
	signalpb "github.com/signal-mpc/cosigner/signal/proto"
	"github.com/signal-mpc/cosigner/signal/provision"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

// ProvisioningLifetime is how long a Signal server keeps a provisioning
// socket open; the link URL (and its QR code) is shown for that long, then
// replaced by a fresh one.
const ProvisioningLifetime = 90 * time.Second

// Link steps, reported through LinkConfig.OnStep.
const (
	StepWaiting    = "waiting for the phone to scan the code"
	StepReceived   = "keys received from the phone"
	StepRegistered = "device registered"
	StepUploaded   = "prekeys uploaded"
)

// LinkConfig configures Link.
type LinkConfig struct {
	Dialer *transport.Dialer
	Store  *store.Store
	Name   string // the device name shown in the account's device list
	// OnURL receives each link URL and when it stops working; a new URL
	// replaces the old one when the server closes the provisioning socket.
	OnURL func(url string, expires time.Time)
	// OnStep receives each linking step as it happens.
	OnStep func(step string)
	// PreKeys is how many one-time EC and Kyber prekeys to upload per
	// identity (default 50).
	PreKeys int
	Rand    io.Reader
}

// Link makes this console a linked device of the account whose phone (or
// primary) scans the URL: the provisioning socket and cipher, the link
// request with signed EC and Kyber last-resort prekeys for ACI and PNI, and
// the upload of one-time prekeys. The account is saved in the store. The
// provisioning secrets never leave this function.
func Link(ctx context.Context, cfg LinkConfig) (*store.Account, error) {
	if cfg.Dialer == nil || cfg.Store == nil {
		return nil, errors.New("device: link needs a dialer and a store")
	}
	if cfg.PreKeys <= 0 {
		cfg.PreKeys = 50
	}
	step := func(s string) {
		if cfg.OnStep != nil {
			cfg.OnStep(s)
		}
	}
	var p *provision.Provision
	for p == nil {
		var err error
		p, err = awaitProvision(ctx, cfg, step)
		if err != nil {
			return nil, err
		}
	}
	step(StepReceived)
	return register(ctx, cfg, p, step)
}

// awaitProvision shows one link URL and waits for the provisioning message
// for the socket's lifetime. It returns nil, nil when the socket ended
// without one (a fresh URL is due).
func awaitProvision(ctx context.Context, cfg LinkConfig, step func(string)) (*provision.Provision, error) {
	key, err := provision.NewLinkKey(cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("device: link key: %w", err)
	}
	ws, err := cfg.Dialer.Dial(ctx, "/v1/websocket/provisioning/", nil)
	if err != nil {
		return nil, fmt.Errorf("device: provisioning socket: %w", err)
	}
	pushed := make(chan *wsr.Request, 4)
	conn := wsr.New(ws, wsr.Options{Handler: func(_ context.Context, req *wsr.Request) *wsr.Response {
		select {
		case pushed <- req:
		default: // a peer flooding the socket gets nothing more
		}
		return &wsr.Response{Status: http.StatusOK}
	}})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go conn.Run(runCtx)
	defer func() {
		conn.Close(websocket.CloseNormalClosure, "")
		<-conn.Done()
	}()
	// Keepalives keep the socket's idle timer from ending it early.
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(runCtx, 10*time.Second)
				conn.Request(rctx, &wsr.Request{Verb: http.MethodGet, Path: "/v1/keepalive/provisioning"})
				cancel()
			}
		}
	}()
	timeout := time.NewTimer(ProvisioningLifetime + 10*time.Second)
	defer timeout.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-conn.Done():
			return nil, nil // the server ended the socket: show a new URL
		case <-timeout.C:
			return nil, nil
		case req := <-pushed:
			switch req.Path {
			case "/v1/address":
				var addr signalpb.ProvisioningAddress
				if err := proto.Unmarshal(req.Body, &addr); err != nil || addr.GetAddress() == "" {
					return nil, fmt.Errorf("%w: provisioning address", ErrEnvelope)
				}
				if cfg.OnURL != nil {
					cfg.OnURL(provision.LinkURL(addr.GetAddress(), key.PublicKey()), time.Now().Add(ProvisioningLifetime))
				}
				step(StepWaiting)
			case "/v1/message":
				p, err := key.Open(req.Body)
				if err != nil {
					return nil, fmt.Errorf("device: provisioning message: %w", err)
				}
				return p, nil
			}
		}
	}
}

// register sends the link request, saves the account and uploads prekeys.
func register(ctx context.Context, cfg LinkConfig, p *provision.Provision, step func(string)) (*store.Account, error) {
	aciKeys, err := prekey.NewKeys(p.ACIIdentity, prekey.Options{PreKeys: cfg.PreKeys, KyberPreKeys: cfg.PreKeys})
	if err != nil {
		return nil, fmt.Errorf("device: ACI keys: %w", err)
	}
	var pniKeys *prekey.Keys
	if p.PNIIdentity != nil {
		if pniKeys, err = prekey.NewKeys(p.PNIIdentity, prekey.Options{PreKeys: cfg.PreKeys, KyberPreKeys: cfg.PreKeys}); err != nil {
			return nil, fmt.Errorf("device: PNI keys: %w", err)
		}
	}
	name, err := prekey.EncryptDeviceName(cfg.Rand, cfg.Name, p.ACIIdentity.PublicKey().Serialize())
	if err != nil {
		return nil, fmt.Errorf("device: device name: %w", err)
	}
	password, err := prekey.NewPassword(cfg.Rand)
	if err != nil {
		return nil, err
	}
	body, err := prekey.NewLinkRequest(p.ProvisioningCode, name, prekey.DefaultCapabilities(), aciKeys, pniKeys)
	if err != nil {
		return nil, fmt.Errorf("device: link request: %w", err)
	}
	// The link goes over an unauthenticated chat socket: the only path
	// Signal's mock serves, and one every server accepts. The username is
	// the ACI (the mock insists; the real server ignores it).
	var resp prekey.LinkResponse
	err = withSocket(ctx, cfg.Dialer, nil, func(r requester) error {
		_, err := call(ctx, r, "link device", http.MethodPut, "/v1/devices/link", basicAuth(p.ACI, password), body, &resp)
		return err
	})
	if err != nil {
		return nil, err
	}
	if resp.DeviceID == 0 || resp.DeviceID > 127 || (resp.ACI != "" && resp.ACI != p.ACI) {
		return nil, fmt.Errorf("%w: link answer names device %d of %q", ErrEnvelope, resp.DeviceID, resp.ACI)
	}
	acct := &store.Account{ACI: p.ACI, PNI: p.PNI, Number: p.Number, DeviceID: resp.DeviceID, Password: password,
		ACIIdentity: p.ACIIdentity, PNIIdentity: p.PNIIdentity, ACIRegistrationID: aciKeys.RegistrationID}
	if pniKeys != nil {
		acct.PNIRegistrationID = pniKeys.RegistrationID
	}
	if err := saveAccount(ctx, cfg.Store, acct, aciKeys, pniKeys); err != nil {
		return nil, err
	}
	step(StepRegistered)
	if err := uploadKeys(ctx, cfg.Dialer, acct, aciKeys, pniKeys); err != nil {
		return nil, err
	}
	step(StepUploaded)
	return acct, nil
}

func saveAccount(ctx context.Context, st *store.Store, acct *store.Account, aciKeys, pniKeys *prekey.Keys) error {
	if err := st.SaveAccount(ctx, acct); err != nil {
		return fmt.Errorf("device: save account: %w", err)
	}
	aci, err := st.Protocol(ctx, prekey.ACI)
	if err != nil {
		return err
	}
	if err := saveLinkedKeys(ctx, aci, aciKeys); err != nil {
		return fmt.Errorf("device: save ACI keys: %w", err)
	}
	if pniKeys != nil {
		pni, err := st.Protocol(ctx, prekey.PNI)
		if err != nil {
			return err
		}
		if err := saveLinkedKeys(ctx, pni, pniKeys); err != nil {
			return fmt.Errorf("device: save PNI keys: %w", err)
		}
	}
	return nil
}

// saveLinkedKeys stores an identity's keys and records that the server
// holds its signed and last-resort keys (the link request carried them),
// so the upkeep does not upload them again.
func saveLinkedKeys(ctx context.Context, p *store.Protocol, k *prekey.Keys) error {
	if err := p.SaveKeys(ctx, k); err != nil {
		return err
	}
	return p.SetServerKeys(ctx, k.SignedPreKey.ID(), k.LastResort.ID)
}

// uploadKeys puts the one-time prekeys of both identities on the server.
func uploadKeys(ctx context.Context, d *transport.Dialer, acct *store.Account, aciKeys, pniKeys *prekey.Keys) error {
	return withSocket(ctx, d, authHeader(acct), func(r requester) error {
		for _, k := range []struct {
			id   prekey.Identity
			keys *prekey.Keys
		}{{prekey.ACI, aciKeys}, {prekey.PNI, pniKeys}} {
			if k.keys == nil {
				continue
			}
			up, err := k.keys.UploadRequest()
			if err != nil {
				return err
			}
			if _, err := call(ctx, r, "upload prekeys", http.MethodPut, prekey.UploadPath(k.id), "", up, nil, http.StatusOK, http.StatusNoContent); err != nil {
				return err
			}
		}
		return nil
	})
}

// authHeader is the Basic credential of a linked device.
func authHeader(a *store.Account) http.Header {
	return http.Header{"Authorization": {basicAuth(fmt.Sprintf("%s.%d", a.ACI, a.DeviceID), a.Password)}}
}

// withSocket runs fn with requests on a short-lived chat socket.
func withSocket(ctx context.Context, d *transport.Dialer, header http.Header, fn func(requester) error) error {
	ws, err := d.Dial(ctx, "/v1/websocket/", header)
	if err != nil {
		return fmt.Errorf("device: open chat socket: %w", err)
	}
	conn := wsr.New(ws, wsr.Options{Handler: func(context.Context, *wsr.Request) *wsr.Response {
		// A short-lived socket takes no deliveries: answering 503 leaves
		// them queued for the device's real connection.
		return &wsr.Response{Status: http.StatusServiceUnavailable}
	}})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { conn.Run(runCtx); close(done) }()
	err = fn(conn)
	conn.Close(websocket.CloseNormalClosure, "")
	stop()
	<-done
	return err
}
