package device

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"

	"github.com/signal-mpc/cosigner/signal/prekey"
	"github.com/signal-mpc/cosigner/signal/store"
)

// Envelope types on the wire (signal-wire.md section 5).
const (
	typeCiphertext = 1 // SignalMessage (libsignal calls it WHISPER, 2)
	typePreKey     = 3 // PreKeySignalMessage
	typePlaintext  = 8 // PLAINTEXT_CONTENT: the filler
)

// MaxContent is the server's limit for one entry's content.
const MaxContent = 96 << 10

// sendAttempts bounds the retries after 409 and 410 answers.
const sendAttempts = 4

type outMessage struct {
	Type                      int    `json:"type"`
	DestinationDeviceID       uint32 `json:"destinationDeviceId"`
	DestinationRegistrationID uint32 `json:"destinationRegistrationId"`
	Content                   string `json:"content"`
}

type sendBody struct {
	Messages  []outMessage `json:"messages"`
	Timestamp int64        `json:"timestamp"`
	Online    bool         `json:"online"`
	Urgent    bool         `json:"urgent"`
}

// Send delivers an MPC message to one console device: encrypted with the
// session to that device and tagged, with a filler entry for each other
// device of the account. Device-set mismatches (409) and re-linked devices
// (410) are repaired and retried a bounded number of times.
func (d *Device) Send(ctx context.Context, to Address, body []byte) error {
	return d.SendAfter(ctx, to, body, nil)
}

// SendAfter is Send that calls before (when not nil) once the message is
// encrypted and its session update durable, just before it leaves; an
// error from before stops the send. The application uses it to wait for
// its own records written before the send: in the same store they are
// ordered before the session update, so this wait costs no second commit.
func (d *Device) SendAfter(ctx context.Context, to Address, body []byte, before func(context.Context) error) error {
	return d.send(ctx, to, body, before, nil)
}

// Prepared is a message whose encryption Prepare has started.
type Prepared struct {
	to   Address
	body []byte
	op   store.Pending
	typ  int
	ct   []byte
}

// Prepare starts encrypting body for to at once, in the order of the
// calls, when this device already has what it needs (a session and the
// account's devices: no network); nil otherwise. The encryption is a
// store operation submitted now, so it shares a commit with the writes
// the caller made just before (the record of what made it send), instead
// of waiting for the next one. SendPrepared sends it.
func (d *Device) Prepare(ctx context.Context, to Address, body []byte) *Prepared {
	if to.Device == 0 || to.Device > 127 {
		return nil
	}
	if _, ok := d.registration(to.Account, to.Device); !ok {
		return nil
	}
	p := &Prepared{to: to, body: body}
	p.op = d.cfg.Store.Submit(ctx, d.encryptInto(p, to, pad(body)))
	return p
}

// encryptInto is the store operation that encrypts plain for to into p.
func (d *Device) encryptInto(p *Prepared, to Address, plain []byte) func(context.Context) error {
	addr := protocol.NewSignalAddress(to.Account, to.Device)
	return func(ctx context.Context) error {
		ct, err := session.NewCipher(d.builder(addr), addr).Encrypt(ctx, plain)
		if err != nil {
			return err
		}
		p.typ, p.ct, err = wireForm(ct)
		return err
	}
}

// SendPrepared sends a prepared message like SendAfter (before is called
// once its encryption is durable); a retry after a device-set mismatch
// encrypts again.
func (d *Device) SendPrepared(ctx context.Context, p *Prepared, before func(context.Context) error) error {
	if p == nil {
		return fmt.Errorf("%w: nothing prepared", ErrSend)
	}
	return d.send(ctx, p.to, p.body, before, p)
}

func (d *Device) send(ctx context.Context, to Address, body []byte, before func(context.Context) error, prepared *Prepared) error {
	if to.Device == 0 || to.Device > 127 {
		return fmt.Errorf("%w: device id %d", ErrSend, to.Device)
	}
	var last error
	for range sendAttempts {
		msgs, err := d.buildMessages(ctx, to, body, prepared)
		prepared = nil // a retry encrypts again
		if err != nil {
			return err
		}
		if before != nil {
			if err := before(ctx); err != nil {
				return err
			}
		}
		resp, err := callRaw(ctx, d.client, "send", http.MethodPut, "/v1/messages/"+to.Account,
			sendBody{Messages: msgs, Timestamp: time.Now().UnixMilli(), Urgent: true})
		if err != nil {
			return err
		}
		switch resp.Status {
		case http.StatusOK:
			d.sent.Add(1)
			return nil
		case http.StatusConflict:
			var m struct {
				Missing []uint32 `json:"missingDevices"`
				Extra   []uint32 `json:"extraDevices"`
			}
			if err := json.Unmarshal(resp.Body, &m); err != nil {
				return fmt.Errorf("%w: 409 answer: %v", ErrEnvelope, err)
			}
			for _, id := range m.Extra {
				d.forgetDevice(ctx, to.Account, id)
			}
			for _, id := range m.Missing {
				if err := d.fetchKeys(ctx, to.Account, id, id == to.Device); err != nil {
					return err
				}
			}
			last = &StatusError{Op: "send", Status: resp.Status, Body: quote(resp.Body)}
		case http.StatusGone:
			var m struct {
				Stale []uint32 `json:"staleDevices"`
			}
			if err := json.Unmarshal(resp.Body, &m); err != nil {
				return fmt.Errorf("%w: 410 answer: %v", ErrEnvelope, err)
			}
			for _, id := range m.Stale {
				d.forgetDevice(ctx, to.Account, id)
				if err := d.fetchKeys(ctx, to.Account, id, id == to.Device); err != nil {
					return err
				}
			}
			last = &StatusError{Op: "send", Status: resp.Status, Body: quote(resp.Body)}
		case http.StatusTooManyRequests:
			return fmt.Errorf("%w: %w", ErrSend, &RateLimitError{Wait: retryAfter(resp.Header("Retry-After"))})
		case http.StatusPreconditionRequired:
			return fmt.Errorf("%w: %w", ErrSend, parseChallenge(resp.Body))
		default:
			return fmt.Errorf("%w: %w", ErrSend, &StatusError{Op: "send", Status: resp.Status, Body: quote(resp.Body)})
		}
	}
	return fmt.Errorf("%w: device set still wrong after %d attempts: %w", ErrSend, sendAttempts, last)
}

// buildMessages makes one entry per known device of the account: the MPC
// message for the console, fillers for the others.
func (d *Device) buildMessages(ctx context.Context, to Address, body []byte, prepared *Prepared) ([]outMessage, error) {
	if _, ok := d.registration(to.Account, to.Device); !ok && prepared == nil {
		if err := d.ensureSession(ctx, to); err != nil {
			return nil, err
		}
	}
	var out []outMessage
	for _, id := range d.knownDevices(to.Account) {
		reg, _ := d.registration(to.Account, id)
		if id != to.Device {
			out = append(out, outMessage{Type: typePlaintext, DestinationDeviceID: id, DestinationRegistrationID: reg,
				Content: base64.StdEncoding.EncodeToString(fillerContent)})
			continue
		}
		var typ int
		var ct []byte
		var err error
		if prepared != nil {
			if err = prepared.op.Wait(ctx); err != nil {
				return nil, encryptError(to, err)
			}
			typ, ct = prepared.typ, prepared.ct
		} else if typ, ct, err = d.encrypt(ctx, to, pad(body)); err != nil {
			return nil, err
		}
		content := append(append(make([]byte, 0, len(MPCTag)+len(ct)), MPCTag...), ct...)
		if len(content) > MaxContent {
			return nil, fmt.Errorf("%w: message of %d bytes is over the server's %d", ErrSend, len(content), MaxContent)
		}
		out = append(out, outMessage{Type: typ, DestinationDeviceID: id, DestinationRegistrationID: reg,
			Content: base64.StdEncoding.EncodeToString(content)})
	}
	return out, nil
}

func (d *Device) encrypt(ctx context.Context, to Address, plain []byte) (int, []byte, error) {
	// The session update is durable before the ciphertext can leave: a
	// crash must never make this console reuse a message key.
	var p Prepared
	if err := d.cfg.Store.Atomic(ctx, d.encryptInto(&p, to, plain)); err != nil {
		return 0, nil, encryptError(to, err)
	}
	return p.typ, p.ct, nil
}

func encryptError(to Address, err error) error {
	if errors.Is(err, store.ErrIdentityChanged) {
		return fmt.Errorf("%w: %s", ErrIdentityChanged, to)
	}
	return fmt.Errorf("device: encrypt for %s: %w", to, err)
}

// wireForm is a ciphertext's envelope type and bytes.
func wireForm(ct protocol.CiphertextMessage) (int, []byte, error) {
	switch ct.Type() {
	case protocol.PREKEY_TYPE:
		return typePreKey, ct.Serialize(), nil
	case protocol.WHISPER_TYPE:
		// libsignal's WHISPER (2) is Signal's CIPHERTEXT (1) on the wire.
		return typeCiphertext, ct.Serialize(), nil
	}
	return 0, nil, fmt.Errorf("device: unexpected ciphertext type %d", ct.Type())
}

// ensureSession makes sure a session with the console device exists and
// its registration id is known: from a stored session if there is one,
// else from the device's prekey bundle.
func (d *Device) ensureSession(ctx context.Context, to Address) error {
	addr := protocol.NewSignalAddress(to.Account, to.Device)
	var reg uint32
	err := d.cfg.Store.Atomic(ctx, func(ctx context.Context) error {
		rec, err := d.proto.LoadSession(ctx, addr)
		if err == nil && rec != nil && !rec.IsFresh() {
			reg = rec.SessionState().RemoteRegistrationID()
		}
		return err
	})
	if err == nil && reg != 0 {
		d.remember(to.Account, to.Device, reg)
		return nil
	}
	return d.fetchKeys(ctx, to.Account, to.Device, true)
}

// fetchKeys gets a device's prekey bundle: its registration id always, and
// a new session when withSession (the console device; fillers need none).
func (d *Device) fetchKeys(ctx context.Context, account string, id uint32, withSession bool) error {
	resp, err := callRaw(ctx, d.client, "fetch keys", http.MethodGet, "/v2/keys/"+account+"/"+strconv.Itoa(int(id)), nil)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return fmt.Errorf("%w: keys of %s.%d: %w", ErrSend, account, id, &StatusError{Op: "fetch keys", Status: resp.Status, Body: quote(resp.Body)})
	}
	bundles, err := prekey.ParseBundles(resp.Body)
	if err != nil {
		return fmt.Errorf("device: keys of %s.%d: %w", account, id, err)
	}
	for _, b := range bundles.Devices {
		if b.DeviceID != id {
			continue
		}
		if withSession {
			addr := protocol.NewSignalAddress(account, id)
			err := d.cfg.Store.Atomic(ctx, func(ctx context.Context) error { return d.builder(addr).ProcessBundle(ctx, b.Bundle) })
			if err != nil {
				if errors.Is(err, store.ErrIdentityChanged) {
					return fmt.Errorf("%w: %s.%d", ErrIdentityChanged, account, id)
				}
				return fmt.Errorf("device: session with %s.%d: %w", account, id, err)
			}
		}
		d.remember(account, id, b.RegistrationID)
		return nil
	}
	return fmt.Errorf("%w: no keys for device %d of %s", ErrSend, id, account)
}

func (d *Device) forgetDevice(ctx context.Context, account string, id uint32) {
	d.devMu.Lock()
	delete(d.devices[account], id)
	d.devMu.Unlock()
	if err := d.proto.DeleteSession(ctx, protocol.NewSignalAddress(account, id)); err != nil {
		d.log.Warn("delete session", "device", fmt.Sprintf("%s.%d", account, id), "err", err)
	}
}

func (d *Device) remember(account string, id, reg uint32) {
	d.devMu.Lock()
	defer d.devMu.Unlock()
	if d.devices[account] == nil {
		d.devices[account] = map[uint32]uint32{}
	}
	d.devices[account][id] = reg
}

func (d *Device) registration(account string, id uint32) (uint32, bool) {
	d.devMu.Lock()
	defer d.devMu.Unlock()
	reg, ok := d.devices[account][id]
	return reg, ok
}

func (d *Device) knownDevices(account string) []uint32 {
	d.devMu.Lock()
	defer d.devMu.Unlock()
	var ids []uint32
	for id := range d.devices[account] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
