package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/wsr"
)

func qi(seq byte) queueItem { return queueItem{key: []byte{0, seq}, envelope: []byte{seq}} }

func seqs(items []queueItem) string {
	var b bytes.Buffer
	for _, it := range items {
		fmt.Fprintf(&b, "%d ", it.key[1])
	}
	return b.String()
}

func TestMergeQueueKeepsKeyOrderOnceEach(t *testing.T) {
	for _, c := range []struct {
		queued, fresh []queueItem
		n             int
		want          string
	}{
		{[]queueItem{qi(1), qi(3)}, nil, 8, "1 3 "},
		{nil, []queueItem{qi(2)}, 8, "2 "},
		{[]queueItem{qi(1), qi(3)}, []queueItem{qi(2), qi(3), qi(4)}, 8, "1 2 3 4 "},
		{[]queueItem{qi(1), qi(3)}, []queueItem{qi(2), qi(4)}, 3, "1 2 3 "},
	} {
		if got := seqs(mergeQueue(c.queued, c.fresh, c.n)); got != c.want {
			t.Errorf("merge(%s| %s, %d) = %s, want %s", seqs(c.queued), seqs(c.fresh), c.n, got, c.want)
		}
	}
}

func TestFreshEnvelopesAreForgottenOnceDeliveredOrWithdrawn(t *testing.T) {
	s := &chatSession{notify: make(chan struct{}, 1)}
	s.offer(1, qi(1))
	s.offer(1, qi(2))
	s.offer(2, qi(3))
	if got := seqs(s.freshAfter(nil)); got != "1 2 3 " {
		t.Fatalf("fresh %s", got)
	}
	if got := seqs(s.freshAfter(qi(1).key)); got != "2 3 " {
		t.Fatalf("after 1: %s", got)
	}
	s.withdraw([][]byte{qi(3).key})
	if got := seqs(s.freshAfter(qi(1).key)); got != "2 " {
		t.Fatalf("after withdrawing 3: %s", got)
	}
}

// Once an envelope of a group does not fit, the rest of its group must not
// be offered either: a later one delivered from memory while the refused
// one is not yet readable from the queue would be skipped for good.
func TestARefusedOfferRefusesTheRestOfItsGroup(t *testing.T) {
	s := &chatSession{notify: make(chan struct{}, 1)}
	for i := range maxFresh {
		s.offer(1, queueItem{key: []byte{1, byte(i >> 8), byte(i)}})
	}
	s.offer(2, qi(1)) // full: refused
	s.freshAfter([]byte{2})
	if n := len(s.freshAfter(nil)); n != 0 {
		t.Fatalf("%d fresh after delivering all", n)
	}
	s.offer(2, qi(2)) // room again, but the same group as the refused one
	if got := seqs(s.freshAfter(nil)); got != "" {
		t.Fatalf("offered after a refusal in its group: %s", got)
	}
	s.offer(3, qi(3)) // a later group: its predecessors are committed
	if got := seqs(s.freshAfter(nil)); got != "3 " {
		t.Fatalf("a later group: %s", got)
	}
	// The byte bound refuses the same way.
	s.freshAfter(qi(3).key)
	s.offer(4, queueItem{key: []byte{0, 4}, envelope: make([]byte, maxFreshBytes)})
	s.offer(5, queueItem{key: []byte{0, 5}, envelope: []byte{1}})
	if got := seqs(s.freshAfter(nil)); got != "4 " {
		t.Fatalf("at the byte bound: %s", got)
	}
	if s.freshAfter([]byte{0, 4}); s.freshBytes != 0 {
		t.Fatalf("%d bytes counted after delivering everything", s.freshBytes)
	}
}

// commitGate holds the relay's commits while held is set, until release.
type commitGate struct {
	held    atomic.Bool
	release chan struct{}
}

func newCommitGate() *commitGate { return &commitGate{release: make(chan struct{})} }

func (g *commitGate) beforeCommit() error {
	if g.held.Load() {
		<-g.release
	}
	return nil
}

// open lets the held commits and all later ones go.
func (g *commitGate) open() {
	g.held.Store(false)
	close(g.release)
}

// connected dials d's socket and waits for the relay's queue-empty.
func (tr *testRelay) connected(t *testing.T, d *testDevice) *socket {
	t.Helper()
	sock := tr.mustDial(t, d, nil)
	if r := sock.next(t); r.Path != "/api/v1/queue/empty" {
		t.Fatalf("first push: %s", r.Path)
	}
	return sock
}

// A connected device gets a message while the relay's commit of it is
// still under way; its sender gets 200 only after the commit.
func TestAConnectedDeviceGetsAMessageBeforeItsCommitEnds(t *testing.T) {
	t.Parallel()
	gate := newCommitGate()
	tr := startRelayWith(t, Config{}, func(s *Server) { s.beforeCommit = gate.beforeCommit })
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	sock := tr.connected(t, bob)
	gate.held.Store(true)
	sent := make(chan int, 1)
	go func() {
		status, _ := tr.do(t, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("early"))))
		sent <- status
	}()
	if env := sock.nextEnvelope(t); string(env.GetContent()) != "early" {
		t.Fatalf("got %v", env)
	}
	select {
	case s := <-sent:
		t.Fatalf("the sender got %d before the commit", s)
	case <-time.After(50 * time.Millisecond):
	}
	gate.open()
	if s := <-sent; s != http.StatusOK {
		t.Fatalf("send: %d", s)
	}
	waitQueueLen(t, tr, bob, 0)
}

// A send whose commit fails is refused to its sender and leaves nothing
// queued; what follows is delivered as usual.
func TestAFailedCommitQueuesNothing(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	tr := startRelayWith(t, Config{}, func(s *Server) {
		s.beforeCommit = func() error {
			if fail.Load() {
				return errors.New("disk full")
			}
			return nil
		}
	})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	sock := tr.connected(t, bob)
	fail.Store(true)
	if status, _ := tr.do(t, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("lost")))); status < 500 {
		t.Fatalf("send with a failing commit: %d, want 5xx", status)
	}
	waitQueueLen(t, tr, bob, 0)
	fail.Store(false)
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("kept"))))
	// The refused message may have reached bob from memory before its
	// commit failed (its sender will send it again: a duplicate, never a
	// loss); the accepted one must arrive.
	for {
		env := sock.nextEnvelope(t)
		if string(env.GetContent()) == "kept" {
			break
		}
		if string(env.GetContent()) != "lost" {
			t.Fatalf("unexpected %q", env.GetContent())
		}
	}
	waitQueueLen(t, tr, bob, 0)
}

// errorLog records the messages logged at error level.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *errorLog) WithGroup(string) slog.Handler                 { return l }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

// A sender that gives up while its message is being committed is no
// failure of the relay: nothing is logged as an error, and the message,
// committed all the same, is delivered (its sender will send it again: a
// duplicate, never a loss).
func TestASenderGivingUpDuringTheCommitIsNoError(t *testing.T) {
	t.Parallel()
	gate := newCommitGate()
	errs := &errorLog{}
	tr := startRelayWith(t, Config{Logger: slog.New(errs)}, func(s *Server) { s.beforeCommit = gate.beforeCommit })
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	sock := tr.connected(t, alice)
	gate.held.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b, _ := json.Marshal(sendBodyOf(message(1, bob.regID, []byte("given up"))))
		sock.conn.Request(ctx, &wsr.Request{Verb: "PUT", Path: "/v1/messages/" + bob.aci,
			Headers: []string{"Content-Type:application/json"}, Body: b})
	}()
	time.Sleep(50 * time.Millisecond) // the send waits for its commit
	sock.closedWS.UnderlyingConn().Close()
	cancel()
	<-done
	time.Sleep(50 * time.Millisecond) // the relay notices the socket is gone
	gate.open()
	waitQueueLen(t, tr, bob, 1)
	errs.mu.Lock()
	defer errs.mu.Unlock()
	if len(errs.msgs) != 0 {
		t.Fatalf("logged as errors: %v", errs.msgs)
	}
}
