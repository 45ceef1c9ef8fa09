package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/state/record"
	libstore "go.mau.fi/libsignal/state/store"
	libtests "go.mau.fi/libsignal/tests"

	"github.com/signal-mpc/cosigner/signal/prekey"
)

// Simultaneous session initiation: alice and bob each fetch the other's
// bundle and send a PreKeySignalMessage before receiving the other's.

// rawSessions is a reference session store that keeps nothing live: each
// StoreSession serializes the record, each LoadSession decodes it again (a
// fresh record when none), keyed by addr.String(). It is what a plain
// persistent store does, without this package's cache.
type rawSessions struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (r *rawSessions) LoadSession(_ context.Context, addr *protocol.SignalAddress) (*record.Session, error) {
	r.mu.Lock()
	b := r.m[addr.String()]
	r.mu.Unlock()
	ser := prekey.Serializer()
	if b == nil {
		return record.NewSession(ser.Session, ser.State), nil
	}
	return record.NewSessionFromBytes(b, ser.Session, ser.State)
}

func (r *rawSessions) GetSubDeviceSessions(context.Context, string) ([]uint32, error) {
	return nil, nil
}

func (r *rawSessions) StoreSession(_ context.Context, addr *protocol.SignalAddress, rec *record.Session) error {
	r.mu.Lock()
	r.m[addr.String()] = rec.Serialize()
	r.mu.Unlock()
	return nil
}

func (r *rawSessions) ContainsSession(_ context.Context, addr *protocol.SignalAddress) (bool, error) {
	r.mu.Lock()
	_, ok := r.m[addr.String()]
	r.mu.Unlock()
	return ok, nil
}

func (r *rawSessions) DeleteSession(_ context.Context, addr *protocol.SignalAddress) error {
	r.mu.Lock()
	delete(r.m, addr.String())
	r.mu.Unlock()
	return nil
}

func (r *rawSessions) DeleteAllSessions(context.Context) error {
	r.mu.Lock()
	clear(r.m)
	r.mu.Unlock()
	return nil
}

// party is a device with a chosen session store; prekeys and identities
// always come from the device's Protocol.
type party struct {
	*device
	sessions libstore.Session
}

type sessionKind string

const (
	kindProtocol sessionKind = "Protocol"      // this package
	kindRaw      sessionKind = "serializing"   // rawSessions
	kindLibTests sessionKind = "libsignal-mem" // go.mau.fi/libsignal/tests.InMemorySession
)

func newParty(t *testing.T, name string, kind sessionKind) *party {
	t.Helper()
	d := newDevice(t, name)
	p := &party{device: d, sessions: d.proto}
	switch kind {
	case kindRaw:
		p.sessions = &rawSessions{m: map[string][]byte{}}
	case kindLibTests:
		// Keyed by *SignalAddress: every call below passes the same pointer.
		p.sessions = libtests.NewInMemorySession(prekey.Serializer())
	}
	return p
}

func (p *party) builderFor(peer *protocol.SignalAddress) *session.Builder {
	return session.NewBuilder(p.sessions, p.proto, p.proto, p.proto, peer, prekey.Serializer())
}

func (p *party) connectTo(t *testing.T, to *party) {
	t.Helper()
	p.connectWith(t, to, true)
}

// connectWith starts a session from to's bundle, with or without its
// first one-time prekey.
func (p *party) connectWith(t *testing.T, to *party, withPreKey bool) {
	t.Helper()
	bundles, err := prekey.ParseBundles(to.bundleJSON(t, withPreKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.builderFor(to.addr).ProcessBundle(t.Context(), bundles.Devices[0].Bundle); err != nil {
		t.Fatalf("ProcessBundle: %v", err)
	}
}

// wireMsg is one message in flight.
type wireMsg struct {
	from, to *party
	body     string
	wire     []byte
	typ      uint32
}

func (p *party) send(t *testing.T, to *party, body string) wireMsg {
	t.Helper()
	ct, err := session.NewCipher(p.builderFor(to.addr), to.addr).Encrypt(t.Context(), []byte(body))
	if err != nil {
		t.Fatalf("%s encrypting %q: %v", p.addr.Name(), body, err)
	}
	return wireMsg{from: p, to: to, body: body, wire: ct.Serialize(), typ: ct.Type()}
}

// receive decrypts m at its recipient and reports any failure.
func (m wireMsg) receive(ctx context.Context) error {
	to, from := m.to, m.from
	ser := prekey.Serializer()
	c := session.NewCipher(to.builderFor(from.addr), from.addr)
	var got []byte
	var err error
	if m.typ == protocol.PREKEY_TYPE {
		var pm *protocol.PreKeySignalMessage
		if pm, err = protocol.NewPreKeySignalMessageFromBytes(m.wire, ser.PreKeySignalMessage, ser.SignalMessage); err == nil {
			got, err = c.DecryptMessage(ctx, pm)
		}
	} else {
		var sm *protocol.SignalMessage
		if sm, err = protocol.NewSignalMessageFromBytes(m.wire, ser.SignalMessage); err == nil {
			got, err = c.Decrypt(ctx, sm)
		}
	}
	if err != nil {
		return fmt.Errorf("%s decrypting %q (type %d) from %s: %w", to.addr.Name(), m.body, m.typ, from.addr.Name(), err)
	}
	if string(got) != m.body {
		return fmt.Errorf("%s got %q, want %q", to.addr.Name(), got, m.body)
	}
	return nil
}

// A scenario is a script over alice and bob after both processed the
// other's bundle. Steps:
//
//	"a>N"  alice encrypts N messages to bob (kept in flight, in order)
//	"b>N"  bob encrypts N messages to alice
//	"a<"   alice receives bob's oldest message in flight
//	"b<"   bob receives alice's oldest message in flight
//	"a<$"  alice receives bob's newest message in flight
//	"a<*"  alice receives all of bob's messages in flight
//	"R"    both restart (stores closed and reopened; Protocol only)
type scenario struct {
	name  string
	steps []string
}

// Each scenario ends with the two sides talking in turns, then sending to
// each other at the same moment (crossing messages).
var tail = []string{
	"a>1", "b<", "b>1", "a<", "a>1", "b<", "b>1", "a<", "a>1", "b<", "b>1", "a<",
	"a>1", "b>1", "a<", "b<", "a>1", "b>1", "b<", "a<", "a>1", "b<", "b>1", "a<",
}

var scenarios = []scenario{
	// Both send m1, each reads the other's, then they take turns.
	{"alternating", append([]string{"a>1", "b>1", "a<", "b<"}, tail...)},
	// Alice sends two prekey messages before reading anything.
	{"two-prekey-messages", append([]string{"a>2", "b>1", "a<", "b<*"}, tail...)},
	// After m1, both send at the same moment, several times.
	{"crossing", append([]string{"a>1", "b>1", "a<", "b<", "a>1", "b>1", "a<", "b<", "a>1", "b>1", "b<", "a<", "a>1", "b>1", "a<", "b<"}, tail...)},
	// Bob reads alice's second prekey message only after a normal message
	// of hers moved him to the other session.
	{"late-second-prekey-message", append([]string{"a>2", "b>1", "b<", "a<", "a>1", "b<$", "b<"}, tail...)},
	// Crossing, with restarts in between.
	{"crossing-with-restarts", append([]string{"a>1", "b>1", "a<", "b<", "R", "a>1", "b>1", "a<", "R", "b<", "a>1", "b>1", "b<", "a<", "R"}, tail...)},
}

// run plays sc and returns every decryption failure, and the step of the
// last one (-1 when none). check, when set, runs after each step.
func (sc scenario) run(t *testing.T, kind sessionKind, check func(t *testing.T, alice, bob *party)) (errs []error, lastStep int) {
	t.Helper()
	ctx := t.Context()
	alice, bob := newParty(t, "alice", kind), newParty(t, "bob", kind)
	alice.connectTo(t, bob)
	bob.connectTo(t, alice)
	inFlight := map[*party][]wireMsg{} // by recipient
	n, step := 0, 0
	lastStep = -1
	receive := func(to *party, newest bool) {
		q := inFlight[to]
		if len(q) == 0 {
			t.Fatalf("%s: nothing in flight to %s", sc.name, to.addr.Name())
		}
		m := q[0]
		if newest {
			m = q[len(q)-1]
			inFlight[to] = q[:len(q)-1]
		} else {
			inFlight[to] = q[1:]
		}
		if err := m.receive(ctx); err != nil {
			errs = append(errs, err)
			lastStep = step
		}
	}
	for i, st := range sc.steps {
		step = i
		me, peer := alice, bob
		if st[0] == 'b' {
			me, peer = bob, alice
		}
		switch {
		case st == "R":
			if kind != kindProtocol {
				continue
			}
			alice.reopen(t)
			bob.reopen(t)
			alice.sessions, bob.sessions = alice.proto, bob.proto
		case st[1:] == "<*":
			for len(inFlight[me]) > 0 {
				receive(me, false)
			}
		case st[1:] == "<$":
			receive(me, true)
		case st[1:] == "<":
			receive(me, false)
		case st[1] == '>':
			for range int(st[2] - '0') {
				n++
				inFlight[peer] = append(inFlight[peer], me.send(t, peer, fmt.Sprintf("%s #%d (step %d)", me.addr.Name(), n, i)))
			}
		default:
			t.Fatalf("bad step %q", st)
		}
		if check != nil {
			check(t, alice, bob)
		}
	}
	return errs, lastStep
}

// checkRecords asserts what a record must look like after each step: the
// live record encodes to the bytes in the file (a restart sees the same
// record), and no state appears twice (as current and archived, or twice
// archived).
func checkRecords(t *testing.T, alice, bob *party) {
	t.Helper()
	ctx := t.Context()
	for _, pair := range [][2]*party{{alice, bob}, {bob, alice}} {
		me, peer := pair[0], pair[1]
		file, err := me.store.get(ctx, me.proto.path(bucketSessions), []byte(peer.addr.String()))
		if err != nil || file == nil {
			t.Fatalf("%s's session with %s in the file: %v", me.addr.Name(), peer.addr.Name(), err)
		}
		me.store.mu.Lock()
		c := me.store.sessions[me.proto.cacheKey(peer.addr)]
		me.store.mu.Unlock()
		if c != nil && !c.out && string(c.rec.Serialize()) != string(file) {
			t.Fatalf("%s: the live record differs from the file", me.addr.Name())
		}
		st, err := protocolSerializer().Session.Deserialize(file)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, s := range append([]*record.StateStructure{st.SessionState}, st.PreviousStates...) {
			if id := stateID(s); seen[id] {
				t.Fatalf("%s: state stored twice in the record", me.addr.Name())
			} else {
				seen[id] = true
			}
		}
	}
}

// Simultaneous session initiation through Protocol: every message
// decrypts, whatever the order. Before StoreSession restored archived
// states, "crossing" failed with "failed to get or create message keys:
// received message with old counter (index: 1, count: 0)" then "no valid
// sessions", and "late-second-prekey-message" with "no valid sessions",
// for good.
func TestSimultaneousInitiationRecovers(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			errs, _ := sc.run(t, kindProtocol, checkRecords)
			for _, err := range errs {
				t.Error(err)
			}
		})
	}
}

// The same scenarios with stores that are not Protocol show that the fault
// is in libsignal v0.2.1 itself: with a store that serializes every record
// (as any persistent store does), crossing messages break the pair for
// good; libsignal's own test store keeps records "fresh" forever, so it
// never archives a state and fails from the first normal message. If this
// test fails after a libsignal upgrade, the library may have been fixed:
// see whether Protocol.restoreArchived is still needed.
func TestSimultaneousInitiationFailsInLibsignalAlone(t *testing.T) {
	t.Parallel()
	want := map[sessionKind]map[string]bool{ // scenario -> fails
		kindRaw: {"alternating": false, "two-prekey-messages": false, "crossing": true,
			"late-second-prekey-message": true, "crossing-with-restarts": true},
		kindLibTests: {"alternating": true, "two-prekey-messages": true, "crossing": true,
			"late-second-prekey-message": true, "crossing-with-restarts": true},
	}
	for _, kind := range []sessionKind{kindRaw, kindLibTests} {
		for _, sc := range scenarios {
			t.Run(string(kind)+"/"+sc.name, func(t *testing.T) {
				t.Parallel()
				errs, last := sc.run(t, kind, nil)
				for _, err := range errs {
					t.Log(err)
				}
				if got := len(errs) > 0; got != want[kind][sc.name] {
					t.Fatalf("fails = %t, want %t", got, want[kind][sc.name])
				}
				if len(errs) > 0 {
					// Broken for good: the last message failed too.
					if last != len(sc.steps)-1 || !strings.Contains(errs[len(errs)-1].Error(), "no valid sessions") {
						t.Fatalf("last failure at step %d of %d: %v", last, len(sc.steps), errs[len(errs)-1])
					}
				}
			})
		}
	}
}

// The libsignal flaw itself: a failed try of a state (here a message from
// another session) changes that state, so trying it is not free.
func TestLibsignalAFailedTryChangesTheState(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	alice, bob, carol := newParty(t, "alice", kindRaw), newParty(t, "bob", kindRaw), newParty(t, "carol", kindRaw)
	alice.connectTo(t, bob)
	if err := alice.send(t, bob, "hi").receive(ctx); err != nil {
		t.Fatal(err)
	}
	carol.connectTo(t, bob)
	pm := carol.send(t, bob, "not for this session")
	ser := prekey.Serializer()
	m, err := protocol.NewPreKeySignalMessageFromBytes(pm.wire, ser.PreKeySignalMessage, ser.SignalMessage)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := bob.sessions.LoadSession(ctx, alice.addr)
	if err != nil {
		t.Fatal(err)
	}
	before := rec.SessionState().Serialize()
	c := session.NewCipher(bob.builderFor(alice.addr), alice.addr)
	if _, _, err := c.DecryptWithState(ctx, rec.SessionState(), m.WhisperMessage()); err == nil {
		t.Fatal("a message of another session decrypted")
	}
	if string(rec.SessionState().Serialize()) == string(before) {
		t.Fatal("the failed try left the state alone: libsignal changed, see Protocol.restoreArchived")
	}
}

// The caller's last resort when a session cannot decrypt: delete it, so
// that its next message starts a fresh session from the peer's bundle; the
// peer archives its state on that prekey message and answers in the new
// session. Shown with the serializing store (libsignal unaided), where
// crossing messages break the pair: it recovers when one side resets
// (here the one whose address sorts first; the other drops the message and
// waits), but when both reset at once that is a new simultaneous
// initiation, and the next crossing messages break the pair again.
func TestResetAfterAFailedDecrypt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		kind      sessionKind
		bothReset bool
		wantOK    bool
	}{
		{"serializing/one-side-resets", kindRaw, false, true},
		{"serializing/both-reset", kindRaw, true, false},
		{"Protocol/both-reset", kindProtocol, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			alice, bob := newParty(t, "alice", tc.kind), newParty(t, "bob", tc.kind)
			alice.connectTo(t, bob)
			bob.connectTo(t, alice)
			mustReceive(t, bob.send(t, alice, "b m1"), alice.send(t, bob, "a m1"))
			resets := 0
			for i := range 4 { // crossing
				var resend []wireMsg
				for _, m := range []wireMsg{alice.send(t, bob, fmt.Sprint("a", i)), bob.send(t, alice, fmt.Sprint("b", i))} {
					err := m.receive(ctx)
					if err == nil || !tc.bothReset && m.to.addr.String() > m.from.addr.String() {
						continue
					}
					t.Logf("%v: resetting", err)
					resets++
					if err := m.to.sessions.DeleteSession(ctx, m.from.addr); err != nil {
						t.Fatal(err)
					}
					m.to.connectWith(t, m.from, false) // its one-time prekey is used up
					resend = append(resend, m.to.send(t, m.from, "re-send please"))
				}
				mustReceive(t, resend...)
			}
			var errs []error
			for i := range 5 { // in turns
				for _, m := range []wireMsg{alice.send(t, bob, fmt.Sprint("a'", i)), bob.send(t, alice, fmt.Sprint("b'", i))} {
					if err := m.receive(ctx); err != nil {
						errs = append(errs, err)
					}
				}
			}
			if ok := len(errs) == 0; ok != tc.wantOK {
				t.Fatalf("recovered = %t (errors %v), want %t", ok, errs, tc.wantOK)
			}
			if tc.kind == kindRaw && resets == 0 {
				t.Fatal("nothing failed: libsignal changed?")
			}
			if tc.kind == kindProtocol && resets != 0 {
				t.Fatalf("%d resets through Protocol", resets)
			}
		})
	}
}

func mustReceive(t *testing.T, ms ...wireMsg) {
	t.Helper()
	for _, m := range ms {
		if err := m.receive(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
