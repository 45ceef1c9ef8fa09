package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/prekey"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

// testClock is an injectable clock that moves only when told.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// linkedStore links a console to a fresh account (5 one-time keys of each
// kind per identity) without starting it.
func linkedStore(t *testing.T, d *transport.Dialer) (*console, *store.Account) {
	t.Helper()
	ctx := t.Context()
	p, err := RegisterPrimary(ctx, d, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &console{primary: p, path: filepath.Join(t.TempDir(), "device.db"), in: newInbox()}
	if c.st, err = store.Open(ctx, c.path, store.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.st != nil {
			c.st.Close()
		}
	})
	scanned := make(chan error, 1)
	acct, err := Link(ctx, LinkConfig{Dialer: d, Store: c.st, Name: "cosigner", PreKeys: 5,
		OnURL: func(url string, _ time.Time) { go func() { scanned <- p.ApproveLink(ctx, d, url, nil) }() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-scanned; err != nil {
		t.Fatal(err)
	}
	return c, acct
}

// runWithKeys starts the linked console with the given key upkeep.
func (c *console) runWithKeys(t *testing.T, d *transport.Dialer, kc KeyConfig, log *slog.Logger) {
	t.Helper()
	var err error
	if c.dev, err = New(t.Context(), Config{Dialer: d, Store: c.st, Deliver: c.in.deliver, Logger: log, Keys: kc}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan error, 1)
	go func() { c.done <- c.dev.Run(ctx) }()
	t.Cleanup(c.stop)
}

// primarySocket runs fn with requests on a socket of the account's primary
// (device 1): the peer that fetches the console's keys.
func primarySocket(t *testing.T, d *transport.Dialer, p *Primary, fn func(requester)) {
	t.Helper()
	err := withSocket(t.Context(), d, authHeader(&store.Account{ACI: p.ACI, DeviceID: 1, Password: p.Password}), func(r requester) error {
		fn(r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// serviceID names an identity of the account in key fetches.
func serviceID(acct *store.Account, id prekey.Identity) string {
	if id == prekey.PNI {
		return "PNI:" + acct.PNI
	}
	return acct.ACI
}

// fetchBundle fetches (and so consumes) one set of keys of the console.
func fetchBundle(t *testing.T, r requester, acct *store.Account, id prekey.Identity) prekey.Bundle {
	t.Helper()
	resp, err := callRaw(t.Context(), r, "fetch keys", http.MethodGet, fmt.Sprintf("/v2/keys/%s/%d", serviceID(acct, id), acct.DeviceID), nil)
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("fetch keys: %v %+v", err, resp)
	}
	b, err := prekey.ParseBundles(resp.Body)
	if err != nil || len(b.Devices) != 1 {
		t.Fatalf("bundle: %v", err)
	}
	return b.Devices[0]
}

// serverCounts asks the relay, as the console, for its one-time key counts.
func serverCounts(t *testing.T, r requester, id prekey.Identity) (ec, pq int) {
	t.Helper()
	var c struct{ Count, PQCount int }
	if _, err := call(t.Context(), r, "counts", http.MethodGet, "/v2/keys?identity="+id.String(), "", nil, &c); err != nil {
		t.Fatal(err)
	}
	return c.Count, c.PQCount
}

// eventually polls cond for up to 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func protocolOf(t *testing.T, st *store.Store, id prekey.Identity) *store.Protocol {
	t.Helper()
	p, err := st.Protocol(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func signedIDs(t *testing.T, p *store.Protocol) []uint32 {
	t.Helper()
	ks, err := p.LoadSignedPreKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for _, k := range ks {
		ids = append(ids, k.ID())
	}
	slices.Sort(ids)
	return ids
}

func lastResortIDs(t *testing.T, p *store.Protocol) []uint32 {
	t.Helper()
	ks, err := p.LastResortKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint32
	for _, k := range ks {
		ids = append(ids, k.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestOneTimePrekeysAreReplenishedBelowTheMarkWithIdsThatNeverRepeat(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	c, acct := linkedStore(t, d)
	kc := KeyConfig{Interval: 10 * time.Millisecond, LowWater: 4, Batch: 8}
	c.runWithKeys(t, d, kc, testLogger())
	ctx := t.Context()
	for _, id := range []prekey.Identity{prekey.ACI, prekey.PNI} {
		p := protocolOf(t, c.st, id)
		seenEC, seenPQ := map[uint32]bool{}, map[uint32]bool{}
		primarySocket(t, d, c.primary, func(peer requester) {
			// 30 fetches drain the 5 linked keys and several batches of 8.
			for range 30 {
				eventually(t, "the relay holds enough one-time keys", func() bool {
					ec, pq := serverCounts(t, c.dev.client, id)
					return ec >= kc.LowWater && pq >= kc.LowWater
				})
				b := fetchBundle(t, peer, acct, id)
				pre := b.Bundle.PreKeyID()
				if pre == nil || pre.IsEmpty || !b.HasKyber {
					t.Fatalf("%s: a bundle without one-time keys", id)
				}
				if seenEC[pre.Value] || seenPQ[b.KyberPreKeyID] {
					t.Fatalf("%s: a one-time key id handed out twice (EC %d, Kyber %d)", id, pre.Value, b.KyberPreKeyID)
				}
				seenEC[pre.Value], seenPQ[b.KyberPreKeyID] = true, true
				// Stored before uploaded: every key the relay hands out is here.
				if _, err := p.LoadPreKey(ctx, pre.Value); err != nil {
					t.Fatalf("%s: the relay handed out EC key %d the device does not hold: %v", id, pre.Value, err)
				}
				k, err := p.LoadKyberPreKey(ctx, b.KyberPreKeyID)
				if err != nil || k.LastResort {
					t.Fatalf("%s: Kyber key %d: %v (last resort: %v)", id, b.KyberPreKeyID, err, k != nil && k.LastResort)
				}
			}
		})
		eventually(t, "the count is back above the mark", func() bool {
			ec, pq := serverCounts(t, c.dev.client, id)
			return ec >= kc.LowWater && pq >= kc.LowWater
		})
	}
}

func TestSignedPrekeyRotatesAndTheOldOneDecryptsUntilTheGraceEnds(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	ctx := t.Context()
	alice := linkConsole(t, d)
	bob, acct := linkedStore(t, d)
	clock := newTestClock()
	bob.runWithKeys(t, d, KeyConfig{Interval: 10 * time.Millisecond, Now: clock.Now}, testLogger())
	p := protocolOf(t, bob.st, prekey.ACI)
	first := signedIDs(t, p)
	firstLR := lastResortIDs(t, p)
	pni := protocolOf(t, bob.st, prekey.PNI)
	pniFirst := signedIDs(t, pni)
	if len(first) != 1 || len(firstLR) != 1 {
		t.Fatalf("after linking: signed %v, last resort %v", first, firstLR)
	}
	// Alice starts her session from bob's keys before the rotation and
	// sends only after it: her message is encrypted to the old signed key.
	if err := alice.dev.ensureSession(ctx, bob.dev.Address()); err != nil {
		t.Fatal(err)
	}

	clock.Advance(DefaultKeyRotateAfter + time.Hour)
	var second []uint32
	eventually(t, "a second signed prekey is stored", func() bool {
		second = signedIDs(t, p)
		return len(second) == 2
	})
	if second[0] != first[0] || second[1] == first[0] {
		t.Fatalf("signed prekeys after the rotation %v, want %d and a new one", second, first[0])
	}
	newID := second[1]
	eventually(t, "the relay hands out the new signed prekey", func() bool {
		var got uint32
		primarySocket(t, d, bob.primary, func(r requester) { got = fetchBundle(t, r, acct, prekey.ACI).Bundle.SignedPreKeyID() })
		return got == newID
	})
	if lr := lastResortIDs(t, p); len(lr) != 2 || lr[0] != firstLR[0] {
		t.Fatalf("last-resort keys after the rotation %v, want %d and a new one", lr, firstLR[0])
	}
	if err := alice.dev.Send(ctx, bob.dev.Address(), []byte("to the old signed key")); err != nil {
		t.Fatal(err)
	}
	if got := bob.in.wait(t, 1); got[0] != "to the old signed key" {
		t.Fatalf("bob got %q", got)
	}

	// Past the grace after the rotation: the first keys go, the ones they
	// rotated to stay (their successors are only just made).
	clock.Advance(DefaultKeyGrace + time.Hour)
	eventually(t, "the first signed prekey is deleted", func() bool {
		_, err := p.LoadSignedPreKey(ctx, first[0])
		return errors.Is(err, store.ErrNotFound)
	})
	if ids := signedIDs(t, p); len(ids) != 2 || ids[0] != newID {
		t.Fatalf("signed prekeys after the grace %v, want %d and a newer one", ids, newID)
	}
	eventually(t, "the first last-resort key is deleted", func() bool {
		lr := lastResortIDs(t, p)
		return len(lr) == 2 && !slices.Contains(lr, firstLR[0])
	})
	// The PNI identity rotates on the same schedule.
	eventually(t, "the PNI's first signed prekey is deleted too", func() bool {
		ids := signedIDs(t, pni)
		return len(ids) == 2 && !slices.Contains(ids, pniFirst[0])
	})
}

func TestReplacedKeysExpireAGraceAfterTheirSuccessorWasMade(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_700_000_000, 0)
	day := 24 * time.Hour
	cases := []struct {
		name string
		keys []keyAge
		next uint32
		now  time.Time
		want []uint32 // oldest first after sorting, then the expired ids
		gone []uint32
	}{
		{"a lone key is current, however old", []keyAge{{1, t0}}, 2, t0.Add(100 * day), []uint32{1}, nil},
		{"a key replaced within the grace stays", []keyAge{{2, t0.Add(2 * day)}, {1, t0}}, 3, t0.Add(31 * day), []uint32{1, 2}, nil},
		{"a key replaced longer ago goes", []keyAge{{3, t0.Add(4 * day)}, {1, t0}, {2, t0.Add(2 * day)}}, 4, t0.Add(33 * day), []uint32{1, 2, 3}, []uint32{1}},
		{"equal times order by id, across the wrap", []keyAge{{1, t0}, {prekey.MaxKeyID, t0}}, 2, t0.Add(31 * day), []uint32{prekey.MaxKeyID, 1}, []uint32{prekey.MaxKeyID}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keys := slices.Clone(tc.keys)
			sortByAge(keys, tc.next)
			var order []uint32
			for _, k := range keys {
				order = append(order, k.id)
			}
			if !slices.Equal(order, tc.want) {
				t.Fatalf("order %v, want %v", order, tc.want)
			}
			if got := expired(keys, tc.now, 30*day); !slices.Equal(got, tc.gone) {
				t.Fatalf("expired %v, want %v", got, tc.gone)
			}
		})
	}
}

// faultyAPI passes requests on, or fails them as fail says.
type faultyAPI struct {
	next requester
	mu   sync.Mutex
	fail func(*wsr.Request) (*wsr.Response, error)
}

func (f *faultyAPI) set(fail func(*wsr.Request) (*wsr.Response, error)) {
	f.mu.Lock()
	f.fail = fail
	f.mu.Unlock()
}

func (f *faultyAPI) Request(ctx context.Context, req *wsr.Request) (*wsr.Response, error) {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		if resp, err := fail(req); resp != nil || err != nil {
			return resp, err
		}
	}
	return f.next.Request(ctx, req)
}

func onUpload(resp *wsr.Response, err error) func(*wsr.Request) (*wsr.Response, error) {
	return func(req *wsr.Request) (*wsr.Response, error) {
		if req.Verb == http.MethodPut {
			return resp, err
		}
		return nil, nil
	}
}

func always(resp *wsr.Response, err error) func(*wsr.Request) (*wsr.Response, error) {
	return func(*wsr.Request) (*wsr.Response, error) { return resp, err }
}

// logRecorder keeps every log line, to check what the upkeep reports.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.lines = append(l.lines, b.String())
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestAFailingServerLeavesTheStoredKeysAndTheNextCheckUploadsThem(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		fail func(*wsr.Request) (*wsr.Response, error)
		// stored: the failure came after the new batch was stored, so the
		// retry uploads that batch instead of making another.
		stored bool
	}{
		{"the connection is down", always(nil, errors.New("no connection")), false},
		{"the counts answer 500", always(&wsr.Response{Status: http.StatusInternalServerError}, nil), false},
		{"the upload answers 503", onUpload(&wsr.Response{Status: http.StatusServiceUnavailable}, nil), true},
		{"the upload is rate limited", onUpload(&wsr.Response{Status: http.StatusTooManyRequests}, nil), true},
		{"the upload's connection drops", onUpload(nil, fmt.Errorf("upload: %w", wsr.ErrClosed)), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			d := startRelay(t)
			c, acct := linkedStore(t, d)
			logs := &logRecorder{}
			dev, err := New(ctx, Config{Dialer: d, Store: c.st, Deliver: c.in.deliver, Logger: slog.New(logs),
				Keys: KeyConfig{LowWater: 4, Batch: 8}})
			if err != nil {
				t.Fatal(err)
			}
			p := protocolOf(t, c.st, prekey.ACI)
			// Two fetches leave 3 of the 5 linked keys: below the mark.
			primarySocket(t, d, c.primary, func(r requester) {
				fetchBundle(t, r, acct, prekey.ACI)
				fetchBundle(t, r, acct, prekey.ACI)
			})
			err = withSocket(ctx, d, authHeader(acct), func(r requester) error {
				api := &faultyAPI{next: r, fail: tc.fail}
				u := newKeyUpkeep(dev, api)
				before, err := p.NextKeyOptions(ctx)
				if err != nil {
					return err
				}
				signedBefore, lrBefore := signedIDs(t, p), lastResortIDs(t, p)
				if err := u.check(ctx); err == nil || errors.Is(err, transport.ErrUnauthorized) {
					t.Fatalf("check against a failing server: %v", err)
				}
				if ec, pq := serverCounts(t, r, prekey.ACI); ec != 3 || pq != 3 {
					t.Fatalf("the relay's counts changed to %d, %d", ec, pq)
				}
				for id := uint32(1); id <= 5; id++ {
					if _, err := p.LoadPreKey(ctx, id); err != nil {
						t.Fatalf("linked prekey %d gone after a failed check: %v", id, err)
					}
				}
				if s, lr := signedIDs(t, p), lastResortIDs(t, p); !slices.Equal(s, signedBefore) || !slices.Equal(lr, lrBefore) {
					t.Fatalf("signed %v and last resort %v after a failed check, were %v and %v", s, lr, signedBefore, lrBefore)
				}
				failed, err := p.NextKeyOptions(ctx)
				if err != nil {
					return err
				}
				if stored := failed.PreKeyStart != before.PreKeyStart; stored != tc.stored {
					t.Fatalf("new keys stored before the failure: %v, want %v", stored, tc.stored)
				}
				// The server recovers: the next check uploads.
				api.set(nil)
				if err := u.check(ctx); err != nil {
					t.Fatalf("check after the server recovered: %v", err)
				}
				if ec, pq := serverCounts(t, r, prekey.ACI); ec != 8 || pq != 8 {
					t.Fatalf("counts after the retry %d, %d, want 8, 8", ec, pq)
				}
				after, err := p.NextKeyOptions(ctx)
				if err != nil {
					return err
				}
				if after.PreKeyStart != prekey.NextID(before.PreKeyStart+7) {
					t.Fatalf("after the retry the next prekey id is %d, want %d: one batch, made once", after.PreKeyStart, before.PreKeyStart+8)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if text := logs.text(); strings.Contains(text, acct.Password) {
				t.Fatalf("the log shows the password:\n%s", text)
			}
		})
	}
}

func TestRefusedCredentialsStopTheUpkeep(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	c, acct := linkedStore(t, d)
	for _, status := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			ctx := t.Context()
			dev, err := New(ctx, Config{Dialer: d, Store: c.st, Deliver: c.in.deliver, Keys: KeyConfig{Interval: time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			err = withSocket(ctx, d, authHeader(acct), func(r requester) error {
				api := &faultyAPI{next: r, fail: always(&wsr.Response{Status: status}, nil)}
				return newKeyUpkeep(dev, api).run(ctx)
			})
			if !errors.Is(err, transport.ErrUnauthorized) {
				t.Fatalf("the upkeep ended with %v, want ErrUnauthorized", err)
			}
		})
	}
}

// The relay goes away while the console runs: the checks fail and are
// logged, the stored keys stay, and once the relay is back the console
// replenishes what a peer consumed.
func TestUpkeepRetriesUntilTheRelayIsBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := relaytest.Start(t, dir)
	proxy := relaytest.NewProxy(t, r.Server.Addr().String())
	d, err := transport.NewDialer(transport.Config{URL: proxy.URL()})
	if err != nil {
		t.Fatal(err)
	}
	c, acct := linkedStore(t, d)
	logs := &logRecorder{}
	kc := KeyConfig{Interval: 20 * time.Millisecond, LowWater: 4, Batch: 8, RequestTimeout: 100 * time.Millisecond}
	c.runWithKeys(t, d, kc, slog.New(logs))
	p := protocolOf(t, c.st, prekey.ACI)
	signedBefore, lrBefore := signedIDs(t, p), lastResortIDs(t, p)

	r.Stop()
	proxy.To("")
	eventually(t, "a failed check is logged", func() bool { return strings.Contains(logs.text(), "prekey upkeep failed") })
	if s, lr := signedIDs(t, p), lastResortIDs(t, p); !slices.Equal(s, signedBefore) || !slices.Equal(lr, lrBefore) {
		t.Fatalf("signed %v and last resort %v while the relay is down, were %v and %v", s, lr, signedBefore, lrBefore)
	}
	for id := uint32(1); id <= 5; id++ {
		if _, err := p.LoadPreKey(t.Context(), id); err != nil {
			t.Fatalf("prekey %d gone while the relay is down: %v", id, err)
		}
	}

	// The same relay (same data, behind the same address) comes back.
	proxy.To(relaytest.Start(t, dir).Server.Addr().String())
	primarySocket(t, d, c.primary, func(r requester) {
		for range 2 {
			fetchBundle(t, r, acct, prekey.ACI)
		}
	})
	eventually(t, "the consumed keys are replenished", func() bool {
		resp, err := callRaw(t.Context(), c.dev.client, "counts", http.MethodGet, "/v2/keys?identity=aci", nil)
		return err == nil && resp.Status == http.StatusOK && strings.Contains(string(resp.Body), `"count":8`)
	})
}

// An upload of new one-time keys replaces the server's set; the keys it
// replaced are kept for the grace period (a PreKey message made from one
// may still be on its way) and then removed.
func TestReplacedOneTimeKeysAreRemovedAGraceAfterTheReplacement(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	c, acct := linkedStore(t, d)
	clock := newTestClock()
	kc := KeyConfig{Interval: 10 * time.Millisecond, LowWater: 4, Batch: 8, Now: clock.Now}
	c.runWithKeys(t, d, kc, testLogger())
	ctx := t.Context()
	p := protocolOf(t, c.st, prekey.ACI)
	linkedEC, linkedPQ, err := p.OneTimeKeyIDs(ctx)
	if err != nil || len(linkedEC) != 5 || len(linkedPQ) != 5 {
		t.Fatalf("after linking: %d EC and %d Kyber one-time keys (%v), want 5 and 5", len(linkedEC), len(linkedPQ), err)
	}
	// Two fetches leave 3 on the relay, below the mark: a batch of 8
	// replaces them.
	primarySocket(t, d, c.primary, func(r requester) {
		fetchBundle(t, r, acct, prekey.ACI)
		fetchBundle(t, r, acct, prekey.ACI)
	})
	eventually(t, "a new batch replaces the relay's keys", func() bool {
		ec, pq := serverCounts(t, c.dev.client, prekey.ACI)
		return ec == kc.Batch && pq == kc.Batch
	})
	var replaced []store.ReplacedKey
	eventually(t, "the linked keys are marked as replaced", func() bool {
		replaced, err = p.Replaced(ctx)
		return err == nil && len(replaced) == 10
	})
	for _, k := range replaced {
		if k.Kyber && !slices.Contains(linkedPQ, k.ID) || !k.Kyber && !slices.Contains(linkedEC, k.ID) {
			t.Fatalf("marked %+v, which is not one of the linked keys", k)
		}
	}
	if pni, _ := protocolOf(t, c.st, prekey.PNI).Replaced(ctx); len(pni) != 0 {
		t.Fatalf("PNI keys marked %v: nothing replaced them", pni)
	}

	// Within the grace they stay.
	clock.Advance(DefaultKeyGrace - time.Hour)
	time.Sleep(10 * kc.Interval)
	if ec, pq, _ := p.OneTimeKeyIDs(ctx); len(ec) != 5+kc.Batch || len(pq) != 5+kc.Batch {
		t.Fatalf("within the grace: %d EC and %d Kyber one-time keys, want %d", len(ec), len(pq), 5+kc.Batch)
	}
	// After it they go, with their marks; the new batch stays.
	clock.Advance(2 * time.Hour)
	eventually(t, "the replaced keys are removed", func() bool {
		left, err := p.Replaced(ctx)
		return err == nil && len(left) == 0
	})
	ec, pq, err := p.OneTimeKeyIDs(ctx)
	if err != nil || len(ec) != kc.Batch || len(pq) != kc.Batch {
		t.Fatalf("after the grace: %d EC and %d Kyber one-time keys (%v), want the batch of %d", len(ec), len(pq), err, kc.Batch)
	}
	for _, id := range linkedEC {
		if _, err := p.LoadPreKey(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("replaced EC key %d still loads: %v", id, err)
		}
	}
}

// keyServer stands between the upkeep and the relay as Signal's mock
// server would: it records every PUT /v2/keys body and answers 500 to one
// without a preKeys list (the mock's schema requires it), and it can
// answer the count requests itself.
type keyServer struct {
	next requester
	mu   sync.Mutex
	puts []keyPut
	// counts, when set, answers GET /v2/keys for every identity.
	counts *[2]int
}

type keyPut struct {
	identity string
	body     map[string]json.RawMessage
}

func (k *keyServer) Request(ctx context.Context, req *wsr.Request) (*wsr.Response, error) {
	path, query, _ := strings.Cut(req.Path, "?")
	if path != "/v2/keys" {
		return k.next.Request(ctx, req)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	switch req.Verb {
	case http.MethodGet:
		if k.counts != nil {
			body, _ := json.Marshal(map[string]int{"count": k.counts[0], "pqCount": k.counts[1]})
			return &wsr.Response{Status: http.StatusOK, Body: body}, nil
		}
	case http.MethodPut:
		var body map[string]json.RawMessage
		if err := json.Unmarshal(req.Body, &body); err != nil {
			return &wsr.Response{Status: http.StatusBadRequest}, nil
		}
		k.puts = append(k.puts, keyPut{identity: strings.TrimPrefix(query, "identity="), body: body})
		if pre := body["preKeys"]; len(pre) == 0 || pre[0] != '[' {
			return &wsr.Response{Status: http.StatusInternalServerError, Body: []byte(`{"error":"preKeys: Required"}`)}, nil
		}
	}
	return k.next.Request(ctx, req)
}

func (k *keyServer) takePuts() []keyPut {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := k.puts
	k.puts = nil
	return p
}

func (k *keyServer) setCounts(ec, pq int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.counts = &[2]int{ec, pq}
}

// summary names what a PUT carried: the lengths of its lists and which of
// the signed and last-resort keys.
func (p keyPut) summary(t *testing.T) string {
	t.Helper()
	var pre, pq []json.RawMessage
	if err := json.Unmarshal(p.body["preKeys"], &pre); err != nil {
		t.Fatalf("preKeys: %v", err)
	}
	if err := json.Unmarshal(p.body["pqPreKeys"], &pq); err != nil || p.body["pqPreKeys"] == nil || string(p.body["pqPreKeys"]) == "null" {
		t.Fatalf("pqPreKeys %s: %v", p.body["pqPreKeys"], err)
	}
	out := fmt.Sprintf("%s: preKeys %d, pqPreKeys %d", p.identity, len(pre), len(pq))
	if _, ok := p.body["signedPreKey"]; ok {
		out += ", signedPreKey"
	}
	if _, ok := p.body["pqLastResortPreKey"]; ok {
		out += ", pqLastResortPreKey"
	}
	return out
}

// A console restarted with nothing to replace uploads nothing: no body
// without a preKeys list for Signal's mock to answer 500, at every start.
func TestAStartWithFullCountsUploadsNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := startRelay(t)
	c, acct := linkedStore(t, d) // 5 of each kind per identity, above the mark
	logs := &logRecorder{}
	err := withSocket(ctx, d, authHeader(acct), func(r requester) error {
		srv := &keyServer{next: r}
		for start := range 2 {
			dev, err := New(ctx, Config{Dialer: d, Store: c.st, Deliver: c.in.deliver, Logger: slog.New(logs), Keys: KeyConfig{LowWater: 4, Batch: 8}})
			if err != nil {
				return err
			}
			if err := newKeyUpkeep(dev, srv).check(ctx); err != nil {
				t.Fatalf("start %d: check: %v", start+1, err)
			}
			if puts := srv.takePuts(); len(puts) != 0 {
				t.Fatalf("start %d uploaded %d times: %s", start+1, len(puts), puts[0].summary(t))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if text := logs.text(); strings.Contains(text, "WARN") || strings.Contains(text, "ERROR") {
		t.Fatalf("the upkeep complained:\n%s", text)
	}
}

// Each check uploads only what the server lacks, per identity: the
// one-time keys of a kind its counts show below the mark, a signed or
// last-resort key it does not hold yet; both lists always present, as
// Signal-Server and its mock expect. Routine uploads log at debug level.
func TestUploadsCarryOnlyWhatTheServerLacks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		counts [2]int
		rotate bool
		want   string // per identity
	}{
		{"EC keys below the mark", [2]int{3, 5}, false, "preKeys 8, pqPreKeys 0"},
		{"Kyber keys below the mark", [2]int{5, 3}, false, "preKeys 0, pqPreKeys 8"},
		{"both kinds below the mark", [2]int{0, 3}, false, "preKeys 8, pqPreKeys 8"},
		{"signed and last-resort keys due", [2]int{5, 5}, true, "preKeys 0, pqPreKeys 0, signedPreKey, pqLastResortPreKey"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			d := startRelay(t)
			c, acct := linkedStore(t, d)
			clock := newTestClock()
			logs := &logRecorder{}
			dev, err := New(ctx, Config{Dialer: d, Store: c.st, Deliver: c.in.deliver, Logger: slog.New(logs),
				Keys: KeyConfig{LowWater: 4, Batch: 8, Now: clock.Now}})
			if err != nil {
				t.Fatal(err)
			}
			if tc.rotate {
				clock.Advance(DefaultKeyRotateAfter + time.Hour)
			}
			err = withSocket(ctx, d, authHeader(acct), func(r requester) error {
				srv := &keyServer{next: r}
				srv.setCounts(tc.counts[0], tc.counts[1])
				u := newKeyUpkeep(dev, srv)
				if err := u.check(ctx); err != nil {
					t.Fatalf("check: %v", err)
				}
				var got []string
				for _, p := range srv.takePuts() {
					got = append(got, p.summary(t))
				}
				if want := []string{"aci: " + tc.want, "pni: " + tc.want}; !slices.Equal(got, want) {
					t.Fatalf("uploads %q, want %q", got, want)
				}
				// Once the server holds it all, the next check sends nothing.
				srv.setCounts(8, 8)
				if err := u.check(ctx); err != nil {
					t.Fatalf("second check: %v", err)
				}
				if puts := srv.takePuts(); len(puts) != 0 {
					t.Fatalf("the second check uploaded %s", puts[0].summary(t))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(logs.text(), "\n") {
				if line != "" && !strings.HasPrefix(line, "DEBUG ") {
					t.Fatalf("a routine upload logged above debug level: %s", line)
				}
			}
			if !strings.Contains(logs.text(), "prekeys uploaded") {
				t.Fatal("the uploads left no debug line")
			}
		})
	}
}

// A rotation stored by a run whose upload failed reaches the server after
// a restart, though nothing is due for rotation any more.
func TestARotationTheServerNeverGotIsUploadedAfterARestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := startRelay(t)
	c, acct := linkedStore(t, d)
	clock := newTestClock()
	clock.Advance(DefaultKeyRotateAfter + time.Hour)
	kc := KeyConfig{LowWater: 4, Batch: 8, Now: clock.Now}
	p := protocolOf(t, c.st, prekey.ACI)
	first := signedIDs(t, p)
	err := withSocket(ctx, d, authHeader(acct), func(r requester) error {
		dev, err := New(ctx, Config{Dialer: d, Store: c.st, Deliver: c.in.deliver, Keys: kc})
		if err != nil {
			return err
		}
		api := &faultyAPI{next: r, fail: onUpload(&wsr.Response{Status: http.StatusServiceUnavailable}, nil)}
		if err := newKeyUpkeep(dev, api).check(ctx); err == nil {
			t.Fatal("check with a failing upload succeeded")
		}
		rotated := signedIDs(t, p)
		if len(rotated) != 2 {
			t.Fatalf("signed prekeys after the failed rotation %v, want the new one stored", rotated)
		}
		// A restart with a server that works again.
		if dev, err = New(ctx, Config{Dialer: d, Store: c.st, Deliver: c.in.deliver, Keys: kc}); err != nil {
			return err
		}
		srv := &keyServer{next: r}
		if err := newKeyUpkeep(dev, srv).check(ctx); err != nil {
			t.Fatalf("check after the restart: %v", err)
		}
		var got []string
		for _, put := range srv.takePuts() {
			got = append(got, put.summary(t))
		}
		want := []string{"aci: preKeys 0, pqPreKeys 0, signedPreKey, pqLastResortPreKey", "pni: preKeys 0, pqPreKeys 0, signedPreKey, pqLastResortPreKey"}
		if !slices.Equal(got, want) {
			t.Fatalf("uploads after the restart %q, want %q", got, want)
		}
		if s := signedIDs(t, p); !slices.Equal(s, rotated) {
			t.Fatalf("signed prekeys %v after the restart, want %v (no second rotation)", s, rotated)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var handed uint32
	primarySocket(t, d, c.primary, func(r requester) { handed = fetchBundle(t, r, acct, prekey.ACI).Bundle.SignedPreKeyID() })
	if handed == first[0] {
		t.Fatalf("the relay still hands out signed prekey %d", handed)
	}
}

// A store restored from a backup may face a server holding keys the lost
// store made after the copy: its first upkeep sends its signed and
// last-resort keys again and replaces every one-time key; the next sends
// nothing.
func TestARestoredStoreReplacesItsKeysOnTheServer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := startRelay(t)
	c, acct := linkedStore(t, d)
	copyPath := filepath.Join(filepath.Dir(c.path), "copy.db")
	if err := c.st.Backup(ctx, copyPath, false); err != nil {
		t.Fatal(err)
	}
	c.st.Close()
	c.st = nil
	if err := os.Rename(copyPath, c.path); err != nil {
		t.Fatal(err)
	}
	restored, err := store.Open(ctx, c.path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	c.st = restored
	err = withSocket(ctx, d, authHeader(acct), func(r requester) error {
		srv := &keyServer{next: r}
		dev, err := New(ctx, Config{Dialer: d, Store: restored, Deliver: c.in.deliver, Keys: KeyConfig{LowWater: 4, Batch: 8}})
		if err != nil {
			return err
		}
		if err := newKeyUpkeep(dev, srv).check(ctx); err != nil {
			t.Fatalf("first check: %v", err)
		}
		puts := srv.takePuts()
		if len(puts) == 0 {
			t.Fatal("the restored store uploaded nothing")
		}
		got := map[string]bool{}
		for _, p := range puts {
			got[p.summary(t)] = true
		}
		for _, id := range []string{"aci", "pni"} {
			for _, want := range []string{"preKeys 0, pqPreKeys 0, signedPreKey, pqLastResortPreKey", "preKeys 8, pqPreKeys 8"} {
				if !got[id+": "+want] {
					t.Fatalf("uploads %v, want one carrying %q for %s", got, want, id)
				}
			}
		}
		if err := newKeyUpkeep(dev, srv).check(ctx); err != nil {
			t.Fatalf("second check: %v", err)
		}
		if puts := srv.takePuts(); len(puts) != 0 {
			t.Fatalf("the second check uploaded again: %s", puts[0].summary(t))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
