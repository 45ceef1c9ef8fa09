package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// linkPreKeys is how many one-time prekeys (EC and Kyber) a console uploads
// per identity when it links.
const linkPreKeys = 5

// mockAccount is an account on the mock whose phone the harness plays.
type mockAccount struct {
	Name, ACI, PNI, Number string
}

func (m *mockServer) createAccount(name string) mockAccount {
	m.t.Helper()
	r := m.must("create", map[string]any{"name": name})
	a := mockAccount{Name: name}
	a.ACI, _ = r["aci"].(string)
	a.PNI, _ = r["pni"].(string)
	a.Number, _ = r["number"].(string)
	if a.ACI == "" || r["deviceId"] != float64(1) {
		m.t.Fatalf("create %s answered %v", name, r)
	}
	return a
}

// linkedConsole is a console store linked to a mock account.
type linkedConsole struct {
	Account mockAccount
	Path    string
	Acct    *store.Account
	Steps   []string
	URL     string
	// Seen is what the mock reported when its provisioning completed.
	Seen map[string]any
}

// link runs the real provisioning flow (device.Link) against the mock, the
// account's simulated phone completing it with the link URL the console
// showed. The store is closed on return.
func (m *mockServer) link(a mockAccount) *linkedConsole {
	t := m.t
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	// The phone waits first (server.waitForProvision pending), then the
	// console dials.
	m.must("provision", map[string]any{"name": a.Name})
	l := &linkedConsole{Account: a, Path: filepath.Join(t.TempDir(), a.Name+".db")}
	st, err := store.Open(ctx, l.Path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	type answer struct {
		r   map[string]any
		err error
	}
	completed := make(chan answer, 1)
	var once sync.Once
	var stepMu sync.Mutex
	l.Acct, err = device.Link(ctx, device.LinkConfig{
		Dialer: m.Dialer, Store: st, Name: a.Name, PreKeys: linkPreKeys,
		OnURL: func(url string, _ time.Time) {
			once.Do(func() {
				l.URL = url
				go func() {
					r, err := m.call(ctx, "provision", map[string]any{"name": a.Name, "url": url})
					completed <- answer{r, err}
				}()
			})
		},
		OnStep: func(s string) { stepMu.Lock(); l.Steps = append(l.Steps, s); stepMu.Unlock() },
	})
	if err != nil {
		t.Fatalf("link %s: %v", a.Name, err)
	}
	select {
	case ans := <-completed:
		if ans.err != nil {
			t.Fatalf("the mock's phone did not complete the link of %s: %v", a.Name, ans.err)
		}
		l.Seen = ans.r
	case <-ctx.Done():
		t.Fatalf("the mock's phone never reported the link of %s as complete", a.Name)
	}
	return l
}

// inbox collects the MPC messages a device delivers.
type inbox struct {
	mu   sync.Mutex
	msgs []delivered
	ch   chan struct{}
}

type delivered struct {
	From device.Address
	Body string
}

func newInbox() *inbox { return &inbox{ch: make(chan struct{}, 1)} }

func (b *inbox) deliver(_ context.Context, from device.Address, body []byte) error {
	b.mu.Lock()
	b.msgs = append(b.msgs, delivered{from, string(body)})
	b.mu.Unlock()
	select {
	case b.ch <- struct{}{}:
	default:
	}
	return nil
}

func (b *inbox) all() []delivered {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]delivered(nil), b.msgs...)
}

// wait returns the messages once there are at least n.
func (b *inbox) wait(t *testing.T, n int) []delivered {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if got := b.all(); len(got) >= n {
			return got
		}
		select {
		case <-b.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("got %d MPC messages, want %d: %v", len(b.all()), n, b.all())
		}
	}
}

// runningDevice is a linked console's device.Device, connected to the mock.
type runningDevice struct {
	*linkedConsole
	Dev    *device.Device
	In     *inbox
	st     *store.Store
	cancel context.CancelFunc
	done   chan error
}

// run opens the console's store and keeps its device connected until stop
// or the end of the test.
func (l *linkedConsole) run(t *testing.T, d *transport.Dialer) *runningDevice {
	t.Helper()
	return l.runWith(t, d, nil, device.KeyConfig{})
}

// runWith is run with the device logging to log and keeping its prekeys
// as keys says.
func (l *linkedConsole) runWith(t *testing.T, d *transport.Dialer, log *slog.Logger, keys device.KeyConfig) *runningDevice {
	t.Helper()
	r := &runningDevice{linkedConsole: l, In: newInbox(), done: make(chan error, 1)}
	var err error
	if r.st, err = store.Open(t.Context(), l.Path, store.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	if r.Dev, err = device.New(t.Context(), device.Config{Dialer: d, Store: r.st, Deliver: r.In.deliver, Logger: log, Keys: keys}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.Dev.Run(ctx) }()
	t.Cleanup(r.stop)
	waitConnected(t, r.Dev)
	return r
}

func (r *runningDevice) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
	r.st.Close()
}

func waitConnected(t *testing.T, d *device.Device) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for d.Status().State != transport.StateConnected {
		if time.Now().After(deadline) {
			t.Fatalf("device %s never connected to the mock: %+v", d.Address(), d.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// untagged is a PNI as the mock prints it ("PNI:<uuid>") without its prefix.
func untagged(pni string) string { return strings.TrimPrefix(pni, "PNI:") }

func addr(a device.Address) string { return fmt.Sprintf("%s.%d", a.Account, a.Device) }

// waitStats waits until the device's counters satisfy ok (they move just
// after a delivery is handed over).
func waitStats(t *testing.T, r *runningDevice, ok func(device.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok(r.Dev.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", r.Account.Name, r.Dev.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
