package core

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
)

// testNet is an in-memory store-and-forward network: every console has a
// mailbox that keeps messages while the console is down, like a Signal
// server's queue. A message leaves the mailbox only once Deliver returned
// (accepted or rejected): ack after accept.
type testNet struct {
	mu    sync.Mutex
	nodes map[Address]*node
}

type node struct {
	net          *testNet
	addr         Address
	name         string
	card         roster.Card
	key          ed25519.PrivateKey
	store        Store
	bus          *event.Bus
	mu           sync.Mutex
	mailbox      []mail
	wake         chan struct{}
	app          *App
	cancel       context.CancelFunc
	done         chan struct{}
	deliver      func(Address, []byte) bool // test hook: false drops the message
	sentPartials atomic.Int64               // partial signatures this node's App sent
	messenger    func(Messenger) Messenger  // test hook: wraps the node's Messenger
	onBus        func(*event.Bus)           // test hook: sees the bus before the App runs
	resendEvery  time.Duration              // the App's ResendEvery (default an hour)
	now          func() time.Time           // the App's clock (default time.Now)
	configure    func(*Config)              // test hook: changes the App's configuration
}

type mail struct {
	from Address
	env  []byte
}

func (n *testNet) Send(from Address) Messenger {
	return messengerFunc(func(ctx context.Context, to Address, env []byte) error {
		n.mu.Lock()
		dst, ok := n.nodes[to]
		if src := n.nodes[from]; src != nil {
			if e, err := wire.Decode(env); err == nil && e.Kind == wire.KindPartial {
				src.sentPartials.Add(1)
			}
		}
		n.mu.Unlock()
		if !ok {
			return fmt.Errorf("no such device %s", to)
		}
		dst.mu.Lock()
		dst.mailbox = append(dst.mailbox, mail{from, bytes.Clone(env)})
		dst.mu.Unlock()
		select {
		case dst.wake <- struct{}{}:
		default:
		}
		return nil
	})
}

type messengerFunc func(ctx context.Context, to Address, env []byte) error

func (f messengerFunc) Send(ctx context.Context, to Address, env []byte) error {
	return f(ctx, to, env)
}

func newTestNet(t *testing.T, names ...string) (*testNet, []*node) {
	t.Helper()
	n := &testNet{nodes: map[Address]*node{}}
	var nodes []*node
	for i, name := range names {
		seed := sha256.Sum256([]byte(t.Name() + name))
		k := ed25519.NewKeyFromSeed(seed[:])
		c := roster.Card{Name: name, Account: fmt.Sprintf("%08d-aaaa-4aaa-8aaa-%012d", i+1, i+1), Device: 2,
			IdentityKey: append([]byte{5}, seed[:]...), ConsoleKey: k.Public().(ed25519.PublicKey)}
		nd := &node{net: n, addr: Address{Account: c.Account, Device: c.Device}, name: name, card: c, key: k, store: NewVaultStore(newMemVault()), wake: make(chan struct{}, 1)}
		n.nodes[nd.addr] = nd
		nodes = append(nodes, nd)
	}
	return n, nodes
}

// start runs the node's App (again, after a stop) with its stored state.
func (nd *node) start(t *testing.T, auto bool) {
	t.Helper()
	var r roster.Roster
	for _, other := range nd.net.nodes {
		if err := r.Add(other.card, true); err != nil {
			t.Fatal(err)
		}
	}
	nd.bus = &event.Bus{}
	if nd.onBus != nil {
		nd.onBus(nd.bus)
	}
	m := nd.net.Send(nd.addr)
	if nd.messenger != nil {
		m = nd.messenger(m)
	}
	resend := nd.resendEvery
	if resend == 0 {
		resend = time.Hour
	}
	cfg := Config{
		Me: nd.card, ConsoleKey: nd.key, Roster: &r, Messenger: m, Store: nd.store, Bus: nd.bus,
		RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: resend, AutoApprove: auto, Now: nd.now,
	}
	if nd.configure != nil {
		nd.configure(&cfg)
	}
	app, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.app, nd.cancel, nd.done = app, cancel, make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); app.Run(ctx) }()
	go func() { defer wg.Done(); nd.pump(ctx) }()
	go func() { wg.Wait(); close(nd.done) }()
	t.Cleanup(nd.stop)
}

func (nd *node) stop() {
	if nd.cancel != nil {
		nd.cancel()
		<-nd.done
		nd.cancel = nil
	}
}

// pump delivers the mailbox in order; a message stays until Deliver
// returned something other than a context error.
func (nd *node) pump(ctx context.Context) {
	for {
		nd.mu.Lock()
		var m *mail
		if len(nd.mailbox) > 0 {
			m = &nd.mailbox[0]
		}
		nd.mu.Unlock()
		if m == nil {
			select {
			case <-ctx.Done():
				return
			case <-nd.wake:
				continue
			}
		}
		nd.mu.Lock()
		hook := nd.deliver
		nd.mu.Unlock()
		if hook == nil || hook(m.from, m.env) {
			err := nd.app.Deliver(ctx, m.from, m.env)
			if ctx.Err() != nil || (err != nil && !errors.Is(err, ErrRejected)) {
				return // not acknowledged: stays in the mailbox
			}
		}
		nd.mu.Lock()
		nd.mailbox = nd.mailbox[1:]
		nd.mu.Unlock()
	}
}

func TestKeygenAndSigningBetweenThreeConsoles(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr, err := nodes[0].app.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if kr.T != 2 || kr.N != 3 {
		t.Fatalf("key %d-of-%d", kr.T, kr.N)
	}
	// Every console ends with the same key.
	for _, nd := range nodes {
		waitKeys(t, ctx, nd, kr.KeyID)
	}
	msg := []byte("rotate the treasury signer")
	sr, err := nodes[1].app.RequestSignature(ctx, [32]byte{}, msg, "quarterly rotation")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatalf("signature does not verify under the group key: %v", err)
	}
	if len(sr.Signers) != 2 {
		t.Fatalf("signers %v", sr.Signers)
	}
}

// keygenAll runs a 2-of-n keygen from the first node and waits until every
// node holds the key.
func keygenAll(t *testing.T, ctx context.Context, nodes []*node) *KeygenResult {
	t.Helper()
	kr, err := nodes[0].app.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitKeys(t, ctx, nd, kr.KeyID)
	}
	return kr
}

func waitKeys(t *testing.T, ctx context.Context, nd *node, id [32]byte) {
	t.Helper()
	for {
		keys, err := nd.app.Keys(ctx)
		if err != nil {
			t.Fatalf("%s: %v", nd.name, err)
		}
		for _, k := range keys {
			if k.KeyID == id {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never got key %x", nd.name, id[:4])
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// approvals answers every approval request on a node's bus with decide.
func approvals(ctx context.Context, nd *node, decide func(event.ApprovalRequested) (bool, string)) {
	answerSome(ctx, nd, func(ar event.ApprovalRequested) (bool, bool, string) {
		yes, why := decide(ar)
		return true, yes, why
	})
}

// answerSome answers the approval requests on a node's bus that decide
// chooses to answer; the others stay unanswered, as with a human away.
func answerSome(ctx context.Context, nd *node, decide func(event.ApprovalRequested) (answer, yes bool, why string)) {
	sub := nd.bus.Subscribe(0)
	go func() {
		defer sub.Close()
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if ar, ok := e.(event.ApprovalRequested); ok {
				var id [32]byte
				b, _ := hex.DecodeString(ar.ID)
				copy(id[:], b)
				answer, yes, why := decide(ar)
				switch {
				case !answer:
				case yes:
					nd.app.Approve(ctx, id)
				default:
					nd.app.Decline(ctx, id, why)
				}
			}
		}
	}()
}

func TestHumansApproveAndDecline(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var seen []event.ApprovalRequested
	for _, nd := range nodes {
		nd.start(t, false)
		approvals(ctx, nd, func(ar event.ApprovalRequested) (bool, string) {
			mu.Lock()
			seen = append(seen, ar)
			mu.Unlock()
			if ar.Kind == "sign" && nd.name == "carol" {
				return false, "not on my watch"
			}
			return true, ""
		})
	}
	kr := keygenAll(t, ctx, nodes)
	msg := []byte("pay invoice 42")
	sr, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, msg, "invoice")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sr.Signers) != "[alice bob]" {
		t.Fatalf("signers %v, want alice and bob (carol declined)", sr.Signers)
	}
	// Carol may see the request after alice already combined: wait for her.
	count := func(kind string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, ar := range seen {
			if ar.Kind == kind {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); count("sign") < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var keygenAsks, signAsks int
	for _, ar := range seen {
		switch ar.Kind {
		case "keygen":
			keygenAsks++
		case "sign":
			signAsks++
			if ar.Text != "pay invoice 42" || ar.Requester != "alice" || ar.Description != "invoice" {
				t.Errorf("approval shows %+v", ar)
			}
		}
	}
	if keygenAsks != 2 || signAsks != 2 {
		t.Fatalf("asked %d keygen and %d sign approvals, want 2 and 2 (the initiator's own are implied)", keygenAsks, signAsks)
	}
}

func TestConsoleRestartedMidKeygenCompletesIt(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	carol := nodes[2]
	// Carol handles a few messages, then her console dies: the messages it
	// did not acknowledge stay queued, and the ones it did are in her store.
	var handled int
	var mu sync.Mutex
	crash := make(chan struct{})
	carol.deliver = func(Address, []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		handled++
		if handled == 4 {
			close(crash)
		}
		return true
	}
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res := make(chan error, 1)
	var kr *KeygenResult
	go func() {
		var err error
		kr, err = nodes[0].app.StartKeygen(ctx, 2)
		res <- err
	}()
	select {
	case <-crash:
	case <-ctx.Done():
		t.Fatal("carol never got 4 messages")
	}
	carol.stop()
	carol.mu.Lock()
	carol.deliver = nil
	carol.mu.Unlock()
	carol.start(t, true)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	waitKeys(t, ctx, carol, kr.KeyID)
	// And the restored key signs.
	msg := []byte("after the crash")
	sr, err := carol.app.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
}

func TestOneConsoleOfflineForTheWholeSigning(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	nodes[2].stop()
	msg := []byte("carol is on a plane")
	sr, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
}

func TestForgedSenderIsRejected(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr, err := nodes[0].app.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	waitKeys(t, ctx, nodes[1], kr.KeyID)
	// A request signed by alice but arriving from carol's Signal device.
	var captured []byte
	var capMu sync.Mutex
	nodes[1].mu.Lock()
	nodes[1].deliver = func(from Address, env []byte) bool {
		capMu.Lock()
		defer capMu.Unlock()
		if captured == nil && from == nodes[0].addr {
			captured = env
		}
		return true
	}
	nodes[1].mu.Unlock()
	if _, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("x"), ""); err != nil {
		t.Fatal(err)
	}
	// The signature may be complete (alice and carol) before alice's
	// request reaches bob: wait for it.
	var got []byte
	for got == nil {
		capMu.Lock()
		got = captured
		capMu.Unlock()
		if got != nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("nothing captured")
		case <-time.After(5 * time.Millisecond):
		}
	}
	err = nodes[1].app.Deliver(ctx, nodes[2].addr, got)
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("relayed under another sender: %v", err)
	}
}

func TestNothingLeavesBeforeItsCauseIsDurable(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	held := newMemVault()
	nodes[1].store = NewVaultStore(held)
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	held.hold() // bob's writes stop reaching his disk
	sentBefore := nodes[1].sentPartials.Load()
	// The request in bob's mailbox (other mail, such as a late keygen
	// message that writes nothing, may come and go).
	queuedAtBob := func() int {
		nodes[1].mu.Lock()
		defer nodes[1].mu.Unlock()
		n := 0
		for _, m := range nodes[1].mailbox {
			if e, err := wire.Decode(m.env); err == nil && e.Kind == wire.KindSignRequest {
				n++
			}
		}
		return n
	}
	signed := make(chan error, 1)
	go func() {
		_, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("m"), "")
		signed <- err
	}()
	for queuedAtBob() == 0 {
		if ctx.Err() != nil {
			t.Fatal("the request never reached bob")
		}
		time.Sleep(time.Millisecond)
	}
	// Bob has the request in hand and approves it (auto-approval), but
	// while his records are not durable he neither acknowledges the
	// request nor sends his partial signature.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := nodes[1].sentPartials.Load() - sentBefore; n > 0 {
			t.Fatalf("bob sent %d partials before his records were durable", n)
		}
		if queuedAtBob() == 0 {
			t.Fatal("bob acknowledged the request before recording it durably")
		}
		time.Sleep(10 * time.Millisecond)
	}
	held.release()
	if err := <-signed; err != nil {
		t.Fatal(err)
	}
	for nodes[1].sentPartials.Load() == sentBefore {
		if ctx.Err() != nil {
			t.Fatal("bob never sent his partial after his records became durable")
		}
		time.Sleep(time.Millisecond)
	}
}

// What one step sends one peer travels as one bundle; a receiver handles
// its envelopes one by one, so a bad entry is reported and the others
// still count.
func TestBundledEnvelopesAreHandledOneByOne(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	var mu sync.Mutex
	var held []byte
	nodes[1].deliver = func(from Address, msg []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if held == nil && from == nodes[0].addr {
			if envs, err := wire.Unbundle(msg); err == nil && len(envs) > 1 {
				held = msg // the proposal, alice's acceptance, deal and share
				return false
			}
		}
		return true
	}
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	var kr *KeygenResult
	go func() {
		var err error
		kr, err = nodes[0].app.StartKeygen(ctx, 2)
		done <- err
	}()
	var envs [][]byte
	for envs == nil {
		mu.Lock()
		if held != nil {
			var err error
			if envs, err = wire.Unbundle(held); err != nil {
				t.Fatal(err)
			}
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatal("alice sent bob no bundle")
		case <-time.After(5 * time.Millisecond):
		}
	}
	junk := []byte{0x7f, 0x01}
	if err := nodes[1].app.Deliver(ctx, nodes[0].addr, append([]byte{0x0a, 2}, junk...)); !errors.Is(err, ErrRejected) {
		t.Fatalf("a malformed bundle: %v, want ErrRejected", err)
	}
	tampered := wire.Pack(append([][]byte{envs[0], junk}, envs[1:]...))
	if len(tampered) != 1 {
		t.Fatalf("packed into %d messages", len(tampered))
	}
	if err := nodes[1].app.Deliver(ctx, nodes[0].addr, tampered[0]); !errors.Is(err, ErrRejected) {
		t.Fatalf("a bundle with a malformed entry: %v, want ErrRejected", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("keygen after the other entries were handled: %v", err)
	}
	for _, nd := range nodes {
		waitKeys(t, ctx, nd, kr.KeyID)
	}
}

func TestARequestSignedWithoutThisConsoleLeavesItsQueue(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, nd := range nodes {
		nd.start(t, false)
	}
	// Everyone accepts the keygen; bob approves signing requests; carol's
	// human does not answer them.
	approvals(ctx, nodes[1], func(event.ApprovalRequested) (bool, string) { return true, "" })
	answerSome(ctx, nodes[2], func(ar event.ApprovalRequested) (bool, bool, string) { return ar.Kind == "keygen", true, "" })
	kr := keygenAll(t, ctx, nodes)
	sub := nodes[2].bus.Subscribe(0)
	defer sub.Close()
	if _, err := nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("payroll"), ""); err != nil {
		t.Fatal(err)
	}
	var asked string
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("carol's prompt was never resolved (asked %q): %v", asked, err)
		}
		if ar, ok := e.(event.ApprovalRequested); ok && ar.Kind == "sign" {
			asked = ar.ID
		}
		if r, ok := e.(event.ApprovalResolved); ok && r.ID == asked {
			if r.Decision != "signed without this console" {
				t.Fatalf("carol's prompt resolved as %q", r.Decision)
			}
			break
		}
	}
	var id [32]byte
	b, _ := hex.DecodeString(asked)
	copy(id[:], b)
	if err := nodes[2].app.Approve(ctx, id); !errors.Is(err, ErrEnded) {
		t.Fatalf("carol approving a signed request: %v, want ErrEnded", err)
	}
	if n := nodes[2].sentPartials.Load(); n != 0 {
		t.Fatalf("carol sent %d partials after the request was signed", n)
	}

	// Restarted, carol's console does not ask about it again.
	nodes[2].stop()
	var after *event.Subscription
	nodes[2].onBus = func(b *event.Bus) { after = b.Subscribe(0) }
	nodes[2].start(t, false)
	defer after.Close()
	if err := nodes[2].app.Approve(ctx, id); !errors.Is(err, ErrEnded) {
		t.Fatalf("carol approving the signed request after a restart: %v, want ErrEnded", err)
	}
	quiet, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	defer stop()
	var history []event.SignDone
	for {
		e, err := after.Next(quiet)
		if err != nil {
			break
		}
		if ar, ok := e.(event.ApprovalRequested); ok && ar.ID == asked {
			t.Fatal("the restarted console asks about the signed request again")
		}
		if d, ok := e.(event.SignDone); ok {
			history = append(history, d)
		}
	}
	// It lists it among the results from before the restart.
	if len(history) != 1 || history[0].ID != asked || !history[0].Restored || history[0].Signature == "" || history[0].Time.IsZero() {
		t.Fatalf("history after the restart %+v, want the signed request, restored, with its signature", history)
	}
}

func TestAKeygenThatStopsBeforeThisConsoleAnsweredLeavesItsQueue(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, nd := range nodes {
		nd.start(t, false)
	}
	// carol declines; bob's human never answers.
	approvals(ctx, nodes[2], func(event.ApprovalRequested) (bool, string) { return false, "not today" })
	sub := nodes[1].bus.Subscribe(0)
	defer sub.Close()
	if _, err := nodes[0].app.StartKeygen(ctx, 2); !errors.Is(err, ErrDeclined) {
		t.Fatalf("keygen with a decline: %v, want ErrDeclined", err)
	}
	var asked string
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("bob's prompt was never resolved (asked %q): %v", asked, err)
		}
		if ar, ok := e.(event.ApprovalRequested); ok {
			asked = ar.ID
		}
		if r, ok := e.(event.ApprovalResolved); ok && r.ID == asked {
			if !strings.HasPrefix(r.Decision, "ended") {
				t.Fatalf("bob's prompt resolved as %q", r.Decision)
			}
			return
		}
	}
}

func TestADeclinedKeygenIsReportedAsFailedOnEveryConsole(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var subs []*event.Subscription
	for _, nd := range nodes {
		nd.start(t, false)
		sub := nd.bus.Subscribe(0)
		defer sub.Close()
		subs = append(subs, sub)
	}
	approvals(ctx, nodes[1], func(event.ApprovalRequested) (bool, string) { return true, "" })
	approvals(ctx, nodes[2], func(event.ApprovalRequested) (bool, string) { return false, "not today" })
	if _, err := nodes[0].app.StartKeygen(ctx, 2); !errors.Is(err, ErrDeclined) {
		t.Fatalf("keygen with a decline: %v, want ErrDeclined", err)
	}
	for i, sub := range subs {
		var failed *event.KeygenFailed
		for failed == nil {
			e, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("%s: no KeygenFailed event: %v", nodes[i].name, err)
			}
			if _, ok := e.(event.KeygenDone); ok {
				t.Fatalf("%s: the keygen is reported done", nodes[i].name)
			}
			if f, ok := e.(event.KeygenFailed); ok {
				failed = &f
			}
		}
		if failed.Ceremony == "" || !slices.Equal(failed.Blamed, []string{"carol"}) || failed.By != "carol" ||
			!strings.Contains(failed.Text, "declined") {
			t.Errorf("%s: %+v, want carol's decline", nodes[i].name, *failed)
		}
		if failed.Reason != "declined" && failed.Reason != "aborted by another party" {
			t.Errorf("%s: reason %q", nodes[i].name, failed.Reason)
		}
	}
}

func TestAConsoleThatDidNotAskShowsDeclinesAndNeverWaitsForTheRequester(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, nd := range nodes {
		nd.start(t, false)
	}
	// Everyone accepts the keygen; bob's human does not answer the signing
	// request, carol declines it.
	answerSome(ctx, nodes[1], func(ar event.ApprovalRequested) (bool, bool, string) { return ar.Kind == "keygen", true, "" })
	approvals(ctx, nodes[2], func(ar event.ApprovalRequested) (bool, string) { return ar.Kind == "keygen", "no" })
	kr := keygenAll(t, ctx, nodes)
	sub := nodes[1].bus.Subscribe(0)
	defer sub.Close()
	go nodes[0].app.RequestSignature(ctx, kr.KeyID, []byte("payroll"), "")
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("bob never saw carol's decline: %v", err)
		}
		p, ok := e.(event.Progress)
		if !ok || p.Kind != "sign" {
			continue
		}
		if slices.Contains(p.Waiting, "alice") {
			t.Fatalf("bob's console waits for the requester: %+v", p)
		}
		if len(p.Declined) == 0 {
			continue
		}
		if !slices.Equal(p.Declined, []string{"carol"}) || !slices.Equal(p.Waiting, []string{"bob"}) || p.Requester != "alice" ||
			!slices.Equal(p.Unseen, []string{"alice"}) {
			t.Fatalf("bob's progress after carol declined: %+v", p)
		}
		return
	}
}
