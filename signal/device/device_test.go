package device

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/liblog"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

func TestMain(m *testing.M) {
	liblog.Silence()
	m.Run()
}

func startRelay(t *testing.T) *transport.Dialer { return startRelayTB(t) }

func startRelayTB(t testing.TB) *transport.Dialer {
	t.Helper()
	d, err := transport.NewDialer(transport.Config{URL: relaytest.Start(t, "").URL()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type inbox struct {
	mu   sync.Mutex
	msgs []string
	from []Address
	ch   chan struct{}
}

func newInbox() *inbox { return &inbox{ch: make(chan struct{}, 100)} }

func (b *inbox) deliver(_ context.Context, from Address, body []byte) error {
	b.mu.Lock()
	b.msgs = append(b.msgs, string(body))
	b.from = append(b.from, from)
	b.mu.Unlock()
	b.ch <- struct{}{}
	return nil
}

func (b *inbox) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		b.mu.Lock()
		if len(b.msgs) >= n {
			out := append([]string(nil), b.msgs...)
			b.mu.Unlock()
			return out
		}
		b.mu.Unlock()
		select {
		case <-b.ch:
		case <-deadline:
			t.Fatalf("got %d messages, want %d", len(b.msgs), n)
		}
	}
}

type console struct {
	primary *Primary
	path    string
	st      *store.Store
	dev     *Device
	in      *inbox
	cancel  context.CancelFunc
	done    chan error
}

// linkConsole registers an account and links a console to it through the
// real provisioning flow, the primary scanning the URL when it appears.
func linkConsole(t *testing.T, d *transport.Dialer) *console {
	t.Helper()
	p, err := RegisterPrimary(t.Context(), d, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return linkConsoleWith(t, d, p)
}

func linkConsoleWith(t *testing.T, d *transport.Dialer, p *Primary) *console {
	t.Helper()
	ctx := t.Context()
	var err error
	c := &console{primary: p, path: filepath.Join(t.TempDir(), "device.db"), in: newInbox()}
	c.st, err = store.Open(ctx, c.path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	scanned := make(chan error, 1)
	acct, err := Link(ctx, LinkConfig{
		Dialer: d, Store: c.st, Name: "cosigner", PreKeys: 5,
		OnURL: func(url string, _ time.Time) {
			go func() { scanned <- p.ApproveLink(ctx, d, url, nil) }()
		},
		OnStep: func(s string) { steps = append(steps, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-scanned; err != nil {
		t.Fatal(err)
	}
	if acct.ACI != p.ACI || acct.DeviceID < 2 {
		t.Fatalf("linked as %s.%d, want %s.2", acct.ACI, acct.DeviceID, p.ACI)
	}
	want := []string{StepWaiting, StepReceived, StepRegistered, StepUploaded}
	if fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Fatalf("steps %q, want %q", steps, want)
	}
	c.start(t, d)
	return c
}

func (c *console) start(t *testing.T, d *transport.Dialer) {
	t.Helper()
	var err error
	if c.st == nil {
		if c.st, err = store.Open(t.Context(), c.path, store.Options{NoSync: true}); err != nil {
			t.Fatal(err)
		}
	}
	c.dev, err = New(t.Context(), Config{Dialer: d, Store: c.st, Deliver: c.in.deliver, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan error, 1)
	go func() { c.done <- c.dev.Run(ctx) }()
	t.Cleanup(c.stop)
}

func (c *console) stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.cancel = nil
	c.st.Close()
	c.st = nil
}

func TestLinkedConsolesExchangeMessagesBothWays(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("deal from alice")); err != nil {
		t.Fatal(err)
	}
	got := bob.in.wait(t, 1)
	if got[0] != "deal from alice" || bob.in.from[0] != alice.dev.Address() {
		t.Fatalf("bob got %q from %v", got[0], bob.in.from[0])
	}
	if err := bob.dev.Send(ctx, alice.dev.Address(), []byte("echo from bob")); err != nil {
		t.Fatal(err)
	}
	if got := alice.in.wait(t, 1); got[0] != "echo from bob" {
		t.Fatalf("alice got %q", got[0])
	}
	// Many in a row, both ways, including one near the size limit.
	big := bytes.Repeat([]byte("x"), 60<<10)
	for i := range 20 {
		if err := alice.dev.Send(ctx, bob.dev.Address(), []byte(fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.dev.Send(ctx, bob.dev.Address(), big); err != nil {
		t.Fatal(err)
	}
	got = bob.in.wait(t, 22)
	if got[21] != string(big) {
		t.Fatalf("big message came back as %d bytes", len(got[21]))
	}
	if s := alice.dev.Stats(); s.Sent != 22 {
		t.Fatalf("alice sent %d", s.Sent)
	}
}

func TestMessagesQueuedWhileOfflineArriveAfterRestart(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	bob.in.wait(t, 1)
	bob.stop()
	for i := range 3 {
		if err := alice.dev.Send(ctx, bob.dev.Address(), []byte(fmt.Sprint("while away ", i))); err != nil {
			t.Fatal(err)
		}
	}
	bob.start(t, d) // a new Device over the reopened store: sessions persist
	// Deliveries are handled concurrently, so the order may differ.
	got := bob.in.wait(t, 4)
	slices.Sort(got[1:])
	if fmt.Sprint(got) != "[hello while away 0 while away 1 while away 2]" {
		t.Fatalf("after restart: %q", got)
	}
}

func TestUndeliverableMessagesAreNotAcknowledged(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	// Bob's application is not able to take messages (it is shutting down):
	// the envelope must stay queued and arrive again.
	var mu sync.Mutex
	refuse := true
	bob.in = newInbox()
	bob.stop()
	var firstTries int
	bob.st = nil
	c := bob
	c.dev = nil
	var err error
	if c.st, err = store.Open(ctx, c.path, store.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	c.dev, err = New(ctx, Config{Dialer: d, Store: c.st, Deliver: func(ctx context.Context, from Address, body []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			firstTries++
			return context.Canceled
		}
		return c.in.deliver(ctx, from, body)
	}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.dev.Run(runCtx) }()
	if err := alice.dev.Send(ctx, c.dev.Address(), []byte("keep me")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := firstTries
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("message never offered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	c.st.Close()
	c.st = nil
	mu.Lock()
	refuse = false
	mu.Unlock()
	c.start(t, d)
	if got := c.in.wait(t, 1); got[0] != "keep me" {
		t.Fatalf("got %q", got)
	}
}

func TestPaddingRoundTripsAndRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 158, 159, 160, 161, 1000} {
		b := bytes.Repeat([]byte{7}, n)
		p := pad(b)
		if len(p)%padBlock != 0 || len(p) < n+1 {
			t.Fatalf("pad(%d) = %d bytes", n, len(p))
		}
		got, err := unpad(p)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("unpad(pad(%d)): %v", n, err)
		}
	}
	if got, err := unpad([]byte{1, 2, 0x80}); err != nil || !bytes.Equal(got, []byte{1, 2}) {
		t.Fatalf("marker only (the mock's padding): %v", err)
	}
	for _, bad := range [][]byte{nil, {0, 0}, {1, 2, 3}, {0x80 + 1, 0}} {
		if _, err := unpad(bad); !errors.Is(err, ErrPadding) {
			t.Errorf("unpad(%x): %v", bad, err)
		}
	}
}

func TestServiceIDs(t *testing.T) {
	t.Parallel()
	raw := []byte{0x0d, 0x5c, 0x2d, 0x1e, 0x11, 0x11, 0x40, 0x00, 0x80, 0x00, 0, 0, 0, 0, 0, 1}
	want := "0d5c2d1e-1111-4000-8000-000000000001"
	for _, b := range [][]byte{raw, append([]byte{0}, raw...)} {
		if got, err := serviceIDString(b); err != nil || got != want {
			t.Fatalf("%x: %q %v", b, got, err)
		}
	}
	for _, b := range [][]byte{nil, raw[:15], append([]byte{1}, raw...)} {
		if _, err := serviceIDString(b); !errors.Is(err, ErrEnvelope) {
			t.Errorf("%x accepted", b)
		}
	}
}

// Both sides open a session at the same moment (each sends a prekey
// message before seeing the other's): every message must still arrive, and
// so must the ones after.
func TestSimultaneousFirstContact(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(2)
		go func() { defer wg.Done(); alice.dev.Send(ctx, bob.dev.Address(), []byte(fmt.Sprint("a", i))) }()
		go func() { defer wg.Done(); bob.dev.Send(ctx, alice.dev.Address(), []byte(fmt.Sprint("b", i))) }()
		wg.Wait()
	}
	alice.in.wait(t, 5)
	bob.in.wait(t, 5)
	for i := range 5 {
		if err := alice.dev.Send(ctx, bob.dev.Address(), []byte(fmt.Sprint("later a", i))); err != nil {
			t.Fatal(err)
		}
		if err := bob.dev.Send(ctx, alice.dev.Address(), []byte(fmt.Sprint("later b", i))); err != nil {
			t.Fatal(err)
		}
	}
	alice.in.wait(t, 10)
	bob.in.wait(t, 10)
	if s := alice.dev.Stats(); s.Undecrypt != 0 {
		t.Fatalf("alice could not decrypt %d messages", s.Undecrypt)
	}
	if s := bob.dev.Stats(); s.Undecrypt != 0 {
		t.Fatalf("bob could not decrypt %d messages", s.Undecrypt)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("DEVICE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// A console registered as its account's first device links a second
// console as its primary (the self-hosted setup with no phone), and the
// two talk.
func TestRegisteredConsoleApprovesALink(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	ctx := t.Context()
	st1, err := store.Open(ctx, filepath.Join(t.TempDir(), "first.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st1.Close()
	acct, err := Register(ctx, d, st1, "", "first", nil)
	if err != nil {
		t.Fatal(err)
	}
	if acct.DeviceID != 1 {
		t.Fatalf("registered as device %d", acct.DeviceID)
	}
	primary, err := PrimaryFromStore(ctx, st1)
	if err != nil {
		t.Fatal(err)
	}
	other := linkConsoleWith(t, d, primary)
	first := &console{st: st1, in: newInbox()}
	var errRun error
	first.dev, errRun = New(ctx, Config{Dialer: d, Store: st1, Deliver: first.in.deliver})
	if errRun != nil {
		t.Fatal(errRun)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go first.dev.Run(runCtx)
	if err := other.dev.Send(ctx, first.dev.Address(), []byte("to my own primary")); err != nil {
		t.Fatal(err)
	}
	if got := first.in.wait(t, 1); got[0] != "to my own primary" {
		t.Fatalf("got %q", got)
	}
	if _, err := PrimaryFromStore(ctx, other.st); err == nil {
		t.Fatal("a linked device (device 2) claimed the primary role")
	}
}

// Signal traffic without the MPC tag (a message from an official app, say)
// is acknowledged, counted and dropped without being decrypted or handed
// to the application.
func TestUntaggedTrafficIsCountedAndDropped(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("tagged")); err != nil {
		t.Fatal(err)
	}
	bob.in.wait(t, 1)
	// An untagged ciphertext to bob's console, a filler to his primary.
	to := bob.dev.Address()
	var msgs []outMessage
	for _, id := range alice.dev.knownDevices(to.Account) {
		reg, _ := alice.dev.registration(to.Account, id)
		m := outMessage{Type: typePlaintext, DestinationDeviceID: id, DestinationRegistrationID: reg, Content: base64.StdEncoding.EncodeToString(fillerContent)}
		if id == to.Device {
			m.Type, m.Content = typeCiphertext, base64.StdEncoding.EncodeToString([]byte("\x33not an MPC message"))
		}
		msgs = append(msgs, m)
	}
	resp, err := callRaw(ctx, alice.dev.client, "send", "PUT", "/v1/messages/"+to.Account, sendBody{Messages: msgs, Timestamp: time.Now().UnixMilli()})
	if err != nil || resp.Status != 200 {
		t.Fatalf("raw send: %v %+v", err, resp)
	}
	deadline := time.Now().Add(10 * time.Second)
	for bob.dev.Stats().Untagged == 0 {
		if time.Now().After(deadline) {
			t.Fatal("untagged message never counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := bob.dev.Stats(); s.Received != 1 || s.Undecrypt != 0 {
		t.Fatalf("stats %+v: the untagged message reached the application or a decryption", s)
	}
}

// A peer whose Signal identity key changed is blocked: its messages are
// dropped, not delivered, until a human trusts the new key.
func TestChangedIdentityKeyIsBlocked(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	if err := bob.dev.Send(ctx, alice.dev.Address(), []byte("first")); err != nil {
		t.Fatal(err)
	}
	alice.in.wait(t, 1)
	// Alice's pin for bob now names another key, as if bob's account had
	// been re-registered with a new identity.
	other := append([]byte{5}, bytes.Repeat([]byte{9}, 32)...)
	addr := protocolAddress(bob.dev.Address())
	if err := alice.st.TrustIdentity(ctx, addr, other); err != nil {
		t.Fatal(err)
	}
	// A fresh session from bob (a prekey message carrying his real key).
	bob.dev.resetSession(ctx, alice.dev.Address())
	if err := bob.dev.Send(ctx, alice.dev.Address(), []byte("after the change")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alice.dev.Stats().Undecrypt == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the message under a changed identity was not refused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	alice.in.mu.Lock()
	n := len(alice.in.msgs)
	alice.in.mu.Unlock()
	if n != 1 {
		t.Fatalf("alice received %d messages; the one under the changed identity must not be delivered", n)
	}
}

func protocolAddress(a Address) string { return fmt.Sprintf("%s:%d", a.Account, a.Device) }

func TestSendAfterWaitsForTheCallersRecordsBeforeAnythingLeaves(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	notDurable := errors.New("the caller's record did not reach the disk")
	called := 0
	err := alice.dev.SendAfter(ctx, bob.dev.Address(), []byte("must not leave"), func(context.Context) error {
		called++
		return notDurable
	})
	if !errors.Is(err, notDurable) || called != 1 {
		t.Fatalf("SendAfter = %v after %d calls, want the caller's failure", err, called)
	}
	if s := alice.dev.Stats(); s.Sent != 0 {
		t.Fatalf("a message left although its cause failed: %d sent", s.Sent)
	}
	// The session is intact: the next message goes through and is the
	// only one bob gets.
	if err := alice.dev.SendAfter(ctx, bob.dev.Address(), []byte("fine"), func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := bob.in.wait(t, 1); len(got) != 1 || got[0] != "fine" {
		t.Fatalf("bob got %q", got)
	}
}

func TestPreparedSendsArriveAndNeedAKnownSession(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	if p := alice.dev.Prepare(ctx, bob.dev.Address(), []byte("too early")); p != nil {
		t.Fatal("prepared a message without a session (it would need the network)")
	}
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("first")); err != nil {
		t.Fatal(err)
	}
	var ps []*Prepared
	for i := range 5 {
		p := alice.dev.Prepare(ctx, bob.dev.Address(), []byte(fmt.Sprint("prepared ", i)))
		if p == nil {
			t.Fatal("nothing prepared although the session exists")
		}
		ps = append(ps, p)
	}
	// Sent out of the order they were prepared in: each still decrypts.
	for _, i := range []int{3, 0, 4, 1, 2} {
		if err := alice.dev.SendPrepared(ctx, ps[i], func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	got := bob.in.wait(t, 6)
	slices.Sort(got)
	want := []string{"first", "prepared 0", "prepared 1", "prepared 2", "prepared 3", "prepared 4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("bob got %q, want %q", got, want)
	}
}

func TestStaleRegistrationIsRepairedAfterA410(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("before")); err != nil {
		t.Fatal(err)
	}
	bob.in.wait(t, 1)
	old, _ := alice.dev.registration(bob.dev.acct.ACI, bob.dev.acct.DeviceID)
	// Bob's device comes back as a new installation under the same device
	// id: a new registration id, as a reinstalled Signal client reports it.
	fresh := old%0x3fff + 1
	resp, err := callRaw(ctx, bob.dev.client, "attributes", http.MethodPut, "/v1/accounts/attributes", map[string]any{
		"fetchesMessages": true, "registrationId": fresh, "pniRegistrationId": bob.dev.acct.PNIRegistrationID,
		"capabilities": map[string]bool{"spqr": true},
	})
	if err != nil || resp.Status != http.StatusNoContent {
		t.Fatalf("set attributes: %v %v", resp, err)
	}
	// Alice still holds the old registration id: the relay answers 410,
	// she drops the session, fetches the keys again and sends.
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("after")); err != nil {
		t.Fatal(err)
	}
	if got := bob.in.wait(t, 2); got[1] != "after" {
		t.Fatalf("bob got %q", got)
	}
	if now, _ := alice.dev.registration(bob.dev.acct.ACI, bob.dev.acct.DeviceID); now != fresh {
		t.Fatalf("alice holds registration id %d for bob, want the new %d", now, fresh)
	}
}

func TestDeviceSetChangesAreRepairedAfterA409(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	alice, bob := linkConsole(t, d), linkConsole(t, d)
	ctx := t.Context()
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("one")); err != nil {
		t.Fatal(err)
	}
	bob.in.wait(t, 1)
	devicesOfBob := func() []uint32 { return alice.dev.knownDevices(bob.dev.acct.ACI) }
	if got := devicesOfBob(); !slices.Equal(got, []uint32{1, bob.dev.acct.DeviceID}) {
		t.Fatalf("alice knows bob's devices %v", got)
	}
	// Bob links another device: alice's next send lacks an entry for it, the
	// relay answers 409 (missing), and she adds a filler for it.
	other := linkConsoleWith(t, d, bob.primary)
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got := bob.in.wait(t, 2); got[1] != "two" {
		t.Fatalf("bob got %q", got)
	}
	if got := devicesOfBob(); !slices.Equal(got, []uint32{1, bob.dev.acct.DeviceID, other.dev.acct.DeviceID}) {
		t.Fatalf("after the 409 alice knows bob's devices %v", got)
	}
	// The new device is removed again: the next send has an entry too many,
	// 409 (extra), and she drops it.
	other.stop()
	primarySocket(t, d, bob.primary, func(r requester) {
		resp, err := callRaw(ctx, r, "remove device", http.MethodDelete, fmt.Sprintf("/v1/devices/%d", other.dev.acct.DeviceID), nil)
		if err != nil || resp.Status/100 != 2 {
			t.Fatalf("remove the device: %v %+v", err, resp)
		}
	})
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("three")); err != nil {
		t.Fatal(err)
	}
	if got := bob.in.wait(t, 3); got[2] != "three" {
		t.Fatalf("bob got %q", got)
	}
	if got := devicesOfBob(); !slices.Equal(got, []uint32{1, bob.dev.acct.DeviceID}) {
		t.Fatalf("after the second 409 alice knows bob's devices %v", got)
	}
	if got := other.in.wait(t, 0); len(got) != 0 {
		t.Fatalf("the other device got MPC messages: %q", got)
	}
}
