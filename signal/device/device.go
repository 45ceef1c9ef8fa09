// Package device is this console as a Signal device: linking by QR
// (Link), the primary's role on a self-hosted relay (Primary), and, once
// linked, the authenticated connection that receives and sends MPC
// messages over Signal sessions (Device).
//
// Every MPC message goes only to the signer's console device, encrypted
// with a libsignal session and prefixed with MPCTag outside the
// encryption; the account's other devices get an unencrypted filler the
// Signal apps discard, since the server insists on an entry per device.
// Incoming envelopes without the tag are acknowledged, counted and dropped
// unread.
package device

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"google.golang.org/protobuf/proto"

	"github.com/signal-mpc/cosigner/signal/prekey"
	signalpb "github.com/signal-mpc/cosigner/signal/proto"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

// Address is a Signal device.
type Address struct {
	Account string // ACI
	Device  uint32
}

func (a Address) String() string { return fmt.Sprintf("%s.%d", a.Account, a.Device) }

// DeliverFunc hands a decrypted MPC message to the application. It returns
// nil once the message is stored, or an error: a context error or one
// wrapping ErrNotHandled means "not handled" (the envelope is not
// acknowledged and comes again); any other error means "rejected"
// (acknowledged and dropped).
type DeliverFunc func(ctx context.Context, from Address, body []byte) error

// Config configures a Device.
type Config struct {
	Dialer   *transport.Dialer
	Store    *store.Store
	Deliver  DeliverFunc
	OnStatus func(transport.Status)
	// OnDrop, if set, hears about every MPC envelope dropped because it
	// could not be opened (a changed identity key, a broken session); it
	// must not block.
	OnDrop func(from Address, err error)
	Logger *slog.Logger
	// Keys tunes the upkeep of the prekeys on the server (prekeys.go).
	Keys KeyConfig
	// MaxElsewhere, if positive, stops Run (an error wrapping
	// transport.ErrConnectedElsewhere) after that many consecutive closes
	// because this device connected elsewhere too; 0: keep reconnecting,
	// with a growing wait.
	MaxElsewhere int
}

// Stats counts traffic, for the console's status bar.
type Stats struct {
	Received  uint64 // MPC messages delivered
	Untagged  uint64 // other Signal traffic, dropped unread
	Undecrypt uint64 // MPC messages that failed to decrypt
	Sent      uint64
}

// Device is a linked console's connection. New starts nothing; Run keeps it
// connected until its context ends.
type Device struct {
	cfg    Config
	log    *slog.Logger
	acct   *store.Account
	proto  *store.Protocol
	client *transport.Client

	// Every libsignal session operation runs inside a store operation
	// (Store.Atomic or Submit): the store runs them one at a time, in
	// commit order, which is what libsignal (no locking, records mutated in
	// place) needs, and its group commit lets concurrent sends and receives
	// share their fsyncs.
	// devices remembers each peer account's device ids and registration
	// ids, learned from key fetches and 409/410 answers.
	devMu   sync.Mutex
	devices map[string]map[uint32]uint32
	fails   map[Address]int

	received, untagged, undecrypt, sent atomic.Uint64
}

// New opens the linked account from the store.
func New(ctx context.Context, cfg Config) (*Device, error) {
	if cfg.Dialer == nil || cfg.Store == nil || cfg.Deliver == nil {
		return nil, errors.New("device: dialer, store and deliver function are required")
	}
	acct, err := cfg.Store.Account(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotLinked
	}
	if err != nil {
		return nil, fmt.Errorf("device: load account: %w", err)
	}
	p, err := cfg.Store.Protocol(ctx, prekey.ACI)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{cfg: cfg, log: log, acct: acct, proto: p, devices: map[string]map[uint32]uint32{}}
	d.client, err = transport.NewClient(transport.ClientConfig{
		Dialer:   cfg.Dialer,
		Path:     "/v1/websocket/",
		Header:   func() http.Header { return authHeader(acct) },
		Handler:  d.serve,
		OnStatus: cfg.OnStatus,
		Logger:   log,
		// Two consoles on copies of one data folder displace each other.
		MaxElsewhere: cfg.MaxElsewhere,
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Address is this device's own address.
func (d *Device) Address() Address { return Address{d.acct.ACI, d.acct.DeviceID} }

// IdentityKey is this account's Signal identity public key (33 bytes).
func (d *Device) IdentityKey() []byte { return d.acct.ACIIdentity.PublicKey().Serialize() }

// Status is the connection state.
func (d *Device) Status() transport.Status { return d.client.Status() }

// Stats returns the traffic counters.
func (d *Device) Stats() Stats {
	return Stats{Received: d.received.Load(), Untagged: d.untagged.Load(), Undecrypt: d.undecrypt.Load(), Sent: d.sent.Load()}
}

// Run keeps the device connected until ctx ends. It returns an error only
// when the server refuses the credentials (the device was unlinked).
func (d *Device) Run(ctx context.Context) error {
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() { stop(); <-done }()
	go func() {
		defer close(done)
		d.pruneInbound(pctx)
	}()
	// Prekey upkeep (prekeys.go), stopped and joined the same way.
	keysDone := make(chan struct{})
	defer func() { stop(); <-keysDone }()
	go func() {
		defer close(keysDone)
		d.maintainKeys(pctx)
	}()
	return d.client.Run(ctx)
}

// pruneInbound drops kept messages past their retention, hourly.
func (d *Device) pruneInbound(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := d.cfg.Store.PruneInbound(ctx, time.Now().Add(-InboundRetention)); err != nil && ctx.Err() == nil {
			d.log.Warn("prune inbound", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// serve answers the server's requests: message deliveries and the
// end-of-backlog marker.
func (d *Device) serve(ctx context.Context, req *wsr.Request) *wsr.Response {
	switch {
	case req.Verb == http.MethodPut && req.Path == "/api/v1/message":
		return &wsr.Response{Status: d.receive(ctx, req.Body)}
	case req.Verb == http.MethodPut && req.Path == "/api/v1/queue/empty":
		return &wsr.Response{Status: http.StatusOK}
	}
	return &wsr.Response{Status: http.StatusNotFound}
}

// receive handles one envelope and returns the status to answer: 200
// acknowledges (the server deletes the message), anything else leaves it
// queued for redelivery. Only "not handled yet" (a context ending) is left
// queued; everything the console will never be able to use is acknowledged
// and dropped, or the server would redeliver it forever.
//
// Decryption advances the session, so an envelope cannot be decrypted
// twice: the session update and the decrypted message are stored in one
// transaction, and a redelivered envelope is served from the store.
func (d *Device) receive(ctx context.Context, body []byte) int {
	env, err := parseEnvelope(body)
	if errors.Is(err, ErrUntagged) {
		d.untagged.Add(1)
		return http.StatusOK
	}
	if err != nil {
		d.undecrypt.Add(1)
		d.log.Warn("dropped an envelope", "err", err)
		return http.StatusOK
	}
	key := env.key()
	var in store.Inbound
	var storeErr error
	op := d.cfg.Store.Submit(ctx, func(ctx context.Context) error {
		// Looked up inside the operation: a redelivery that overtakes the
		// commit of the first copy still finds it here.
		got, found, err := d.cfg.Store.GetInbound(ctx, key)
		if err != nil {
			storeErr = err
			return err
		}
		if found {
			in = got
			return nil
		}
		plain, err := d.decrypt(ctx, env)
		if err != nil {
			return err
		}
		in = store.Inbound{Account: env.from.Account, Device: env.from.Device, Body: plain, Received: time.Now()}
		if err := d.cfg.Store.PutInbound(ctx, key, in); err != nil {
			storeErr = err
			return err
		}
		return nil
	})
	// The message is handed over as soon as it is decrypted, before its
	// commit is durable: the application's own record of it is ordered
	// after that commit in the same store, and the acknowledgement below
	// waits for both. A crash in between loses neither: the envelope comes
	// again and decrypts from the session state on disk.
	if err := op.Ran(ctx); err != nil {
		if ctx.Err() != nil || storeErr != nil || errors.Is(err, store.ErrClosed) {
			return http.StatusServiceUnavailable
		}
		d.undecrypt.Add(1)
		d.log.Warn("dropped an envelope", "from", env.from.String(), "err", err)
		if d.cfg.OnDrop != nil {
			d.cfg.OnDrop(env.from, err)
		}
		if errors.Is(err, errSession) && d.failures(env.from, true) >= resetAfter {
			d.resetSession(ctx, env.from)
		}
		return http.StatusOK
	}
	from := Address{in.Account, in.Device}
	if err := d.cfg.Deliver(ctx, from, in.Body); err != nil {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotHandled) {
			return http.StatusServiceUnavailable
		}
		d.log.Info("message rejected", "from", from.String(), "err", err)
	}
	if err := op.Wait(ctx); err != nil {
		// Not durable: the envelope stays queued and comes again.
		d.log.Warn("store decrypted message", "from", from.String(), "err", err)
		return http.StatusServiceUnavailable
	}
	// The kept copy stays for a while (pruned after InboundRetention): if
	// the acknowledgement is lost, the server delivers the envelope again,
	// and it is served from the store (the application drops the duplicate)
	// instead of failing to decrypt a second time.
	d.failures(from, false)
	d.received.Add(1)
	return http.StatusOK
}

// incoming is a parsed, tagged envelope.
type incoming struct {
	typ  signalpb.Envelope_Type
	from Address
	ct   []byte // the ciphertext, tag removed
	guid []byte
	raw  []byte
}

// key names the envelope in the inbound store: the server's guid, or a hash
// of the envelope when the server sent none.
func (e *incoming) key() []byte {
	if len(e.guid) == 16 {
		return e.guid
	}
	h := sha256.Sum256(e.raw)
	return h[:]
}

// parseEnvelope checks an envelope's shape and its MPC tag.
func parseEnvelope(body []byte) (*incoming, error) {
	var env signalpb.Envelope
	if err := proto.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEnvelope, err)
	}
	typ := env.GetType()
	content := env.GetContent()
	if (typ != signalpb.Envelope_CIPHERTEXT && typ != signalpb.Envelope_PREKEY_BUNDLE) || len(content) <= len(MPCTag) || string(content[:len(MPCTag)]) != string(MPCTag) {
		return nil, ErrUntagged
	}
	sender, err := serviceIDString(env.GetSourceServiceId())
	if err != nil || env.GetSourceDevice() == 0 || env.GetSourceDevice() > 127 {
		return nil, fmt.Errorf("%w: sender", ErrEnvelope)
	}
	return &incoming{typ: typ, from: Address{sender, env.GetSourceDevice()}, ct: content[len(MPCTag):], guid: env.GetServerGuid(), raw: body}, nil
}

// decrypt opens the ciphertext with the session (creating it from a prekey
// message) and removes the padding. ctx carries a store operation.
func (d *Device) decrypt(ctx context.Context, e *incoming) ([]byte, error) {
	addr := protocol.NewSignalAddress(e.from.Account, e.from.Device)
	ser := prekey.Serializer()
	cipher := session.NewCipher(d.builder(addr), addr)
	var plain []byte
	if e.typ == signalpb.Envelope_PREKEY_BUNDLE {
		m, err := protocol.NewPreKeySignalMessageFromBytes(e.ct, ser.PreKeySignalMessage, ser.SignalMessage)
		if err != nil {
			return nil, fmt.Errorf("%w: prekey message: %v", ErrEnvelope, err)
		}
		if plain, err = cipher.DecryptMessage(ctx, m); err != nil {
			return nil, d.decryptError(err)
		}
	} else {
		m, err := protocol.NewSignalMessageFromBytes(e.ct, ser.SignalMessage)
		if err != nil {
			return nil, fmt.Errorf("%w: message: %v", ErrEnvelope, err)
		}
		if plain, err = cipher.Decrypt(ctx, m); err != nil {
			return nil, d.decryptError(err)
		}
	}
	return unpad(plain)
}

// errSession marks a decryption that failed in the session itself (not
// the envelope's shape or the peer's identity).
var errSession = errors.New("session cannot decrypt")

func (d *Device) decryptError(err error) error {
	if errors.Is(err, store.ErrIdentityChanged) {
		return fmt.Errorf("%w: %v", ErrIdentityChanged, err)
	}
	return fmt.Errorf("device: decrypt: %w: %w", errSession, err)
}

// resetAfter is how many decryption failures in a row from one peer make
// the device start a fresh session with it. One failure is usually a
// message decrypted before (a redelivery whose kept copy is gone), which
// says nothing about the session.
const resetAfter = 3

// InboundRetention is how long a decrypted message is kept to answer a
// redelivery of its envelope.
const InboundRetention = 24 * time.Hour

// failures counts consecutive decryption failures per peer: failed adds one,
// a success clears it. It returns the count.
func (d *Device) failures(from Address, failed bool) int {
	d.devMu.Lock()
	defer d.devMu.Unlock()
	if d.fails == nil {
		d.fails = map[Address]int{}
	}
	if !failed {
		delete(d.fails, from)
		return 0
	}
	d.fails[from]++
	return d.fails[from]
}

// resetSession forgets the session with a peer whose message it could not
// decrypt, so that this console's next message starts a fresh session from
// the peer's prekeys; the peer adopts it on receipt. This is how Signal
// clients recover a broken session (there with a retry receipt); here the
// MPC layer re-sends the lost message itself.
func (d *Device) resetSession(ctx context.Context, from Address) {
	if err := d.proto.DeleteSession(ctx, protocol.NewSignalAddress(from.Account, from.Device)); err != nil {
		d.log.Warn("reset session", "peer", from.String(), "err", err)
	}
	d.devMu.Lock()
	delete(d.devices[from.Account], from.Device)
	d.devMu.Unlock()
}

func (d *Device) builder(addr *protocol.SignalAddress) *session.Builder {
	return session.NewBuilder(d.proto, d.proto, d.proto, d.proto, addr, prekey.Serializer())
}

// serviceIDString turns the binary service id of an envelope into the ACI
// string libsignal addresses use: 16 raw bytes, or 17 with a 0x00 prefix.
func serviceIDString(b []byte) (string, error) {
	switch {
	case len(b) == 17 && b[0] == 0x00:
		b = b[1:]
	case len(b) != 16:
		return "", fmt.Errorf("%w: service id of %d bytes", ErrEnvelope, len(b))
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}
