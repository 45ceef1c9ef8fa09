package relay

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingObserver keeps what the relay told it.
type recordingObserver struct {
	mu         sync.Mutex
	requests   map[string]map[int]int // route -> status -> count
	stored     int
	delivered  int
	commits    int
	challenges int
}

func newRecordingObserver() *recordingObserver {
	return &recordingObserver{requests: map[string]map[int]int{}}
}

func (o *recordingObserver) Request(route string, status int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.requests[route] == nil {
		o.requests[route] = map[int]int{}
	}
	o.requests[route][status]++
}
func (o *recordingObserver) MessagesStored(n int)    { o.mu.Lock(); o.stored += n; o.mu.Unlock() }
func (o *recordingObserver) MessagesDelivered(n int) { o.mu.Lock(); o.delivered += n; o.mu.Unlock() }
func (o *recordingObserver) Commit(time.Duration)    { o.mu.Lock(); o.commits++; o.mu.Unlock() }
func (o *recordingObserver) ChallengeIssued()        { o.mu.Lock(); o.challenges++; o.mu.Unlock() }

func (o *recordingObserver) count(route string, status int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.requests[route][status]
}

func TestObserverSeesRoutesMessagesAndCommits(t *testing.T) {
	t.Parallel()
	obs := newRecordingObserver()
	tr := startRelay(t, Config{Observer: obs})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	sock := tr.mustDial(t, bob, nil)
	if r := sock.next(t); r.Path != "/api/v1/queue/empty" {
		t.Fatalf("first push on an empty queue: %s, want queue/empty", r.Path)
	}
	st, err := tr.srv.Stats()
	if err != nil || !st.Serving || st.Devices != 1 {
		t.Errorf("stats with one device connected: %+v, %v", st, err)
	}
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("hello"))))
	tr.mustDo(t, 404, "GET", "/v1/no/such/"+bob.aci, alice.auth(), nil)
	sock.nextEnvelope(t) // acknowledged by the test socket
	waitQueueLen(t, tr, bob, 0)

	if n := obs.count("PUT /v1/messages/{serviceId}", 200); n != 1 {
		t.Errorf("sends answered 200 on their route: %d, want 1", n)
	}
	if n := obs.count("/", 404); n != 1 {
		t.Errorf("unknown path counted under the catch-all route: %d, want 1", n)
	}
	obs.mu.Lock()
	for route := range obs.requests {
		if containsAny(route, bob.aci, alice.aci) {
			t.Errorf("a route label holds an account: %q", route)
		}
	}
	stored, delivered, commits := obs.stored, obs.delivered, obs.commits
	obs.mu.Unlock()
	if stored != 1 || delivered != 1 || commits == 0 {
		t.Errorf("stored %d, delivered %d, commits %d; want 1, 1, some", stored, delivered, commits)
	}
	if st, err := tr.srv.Stats(); err != nil || st.Queued != 0 {
		t.Errorf("stats after delivery: %+v, %v; want nothing queued", st, err)
	}
	tr.stop(t)
	if st, err := tr.srv.Stats(); err != nil || st.Serving {
		t.Errorf("stats of a stopped relay: %+v, %v; want not serving", st, err)
	}
}

func TestQueuedCountsEnvelopesWaitingForTheirDevice(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	carol := tr.register(t, "")
	for range 3 {
		tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("hi"))))
	}
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+carol.aci, alice.auth(), sendBodyOf(message(1, carol.regID, []byte("hi"))))
	if st, err := tr.srv.Stats(); err != nil || st.Queued != 4 || st.Devices != 0 {
		t.Errorf("stats: %+v, %v; want 4 queued, no device connected", st, err)
	}
	var depths []int
	tr.srv.QueueDepths(func(d int) { depths = append(depths, d) })
	slices.Sort(depths)
	if fmt.Sprint(depths) != "[1 3]" {
		t.Errorf("queue depths %v, want [1 3] (carol's and bob's)", depths)
	}
	tr.stop(t)
	depths = nil
	tr.srv.QueueDepths(func(d int) { depths = append(depths, d) })
	if depths != nil {
		t.Errorf("a stopped relay reported queue depths %v", depths)
	}
}

func TestChallengeIssuedIsToldOncePerChallenge(t *testing.T) {
	t.Parallel()
	c := newChallenges(1, newFakeClock().now)
	n := 0
	c.issued = func() { n++ }
	var tokens []string
	for range 3 {
		tok, err := c.refused("acct")
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	// The first refusal is tolerated, the second demands a challenge, the
	// third finds it open.
	if n != 1 || tokens[0] != "" || tokens[1] == "" || tokens[2] != tokens[1] {
		t.Errorf("issued %d times, tokens %q; want once, then the same token", n, tokens)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if sub != "" && strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
