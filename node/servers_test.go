package node

import (
	"fmt"
	"testing"
	"time"
)

// A server is named lagging for a peer when another server delivered from
// the peer more than the lag interval after it last did (or, never having
// delivered, after the peer's first message), and recovers when it
// delivers again; a server the peer is not on never lags for it.
func TestALaggingServerIsNamedForItsPeerAndRecovers(t *testing.T) {
	t.Parallel()
	const a, b, c = "https://a.example", "https://b.example", "https://c.example"
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tr := &lagTracker{after: 10 * time.Second, last: map[string]map[string]time.Time{}, first: map[string]time.Time{},
		named: map[string]bool{}, urls: []string{a, b, c},
		share: func(peer, server string) bool { return server != c }} // no peer is on c
	type step struct {
		saw       [][2]string // peer, server delivered at now
		now       int
		lagging   string
		recovered string
	}
	for i, s := range []step{
		{saw: [][2]string{{"bob", a}}, now: 0},
		{saw: [][2]string{{"bob", b}}, now: 1},                                        // b's copy of bob's first message
		{saw: [][2]string{{"bob", a}}, now: 5},                                        // a few seconds ahead: not yet
		{saw: [][2]string{{"bob", a}}, now: 12, lagging: "[[https://b.example bob]]"}, // b silent 11 s while a delivered
		{now: 13}, // named once
		{saw: [][2]string{{"bob", b}}, now: 14, recovered: "[[https://b.example bob]]"},
		{saw: [][2]string{{"carol", a}}, now: 20}, // carol never through b: counted from her first
		{saw: [][2]string{{"carol", a}}, now: 31, lagging: "[[https://b.example carol]]"},
	} {
		for _, p := range s.saw {
			tr.saw(p[0], p[1], at(s.now))
		}
		lag, rec := tr.check(at(s.now))
		want := s.lagging
		if want == "" {
			want = "[]"
		}
		if got := fmt.Sprint(lag); got != want {
			t.Fatalf("step %d: lagging %s, want %s", i, got, want)
		}
		wantRec := s.recovered
		if wantRec == "" {
			wantRec = "[]"
		}
		if got := fmt.Sprint(rec); got != wantRec {
			t.Fatalf("step %d: recovered %s, want %s", i, got, wantRec)
		}
	}
	if got := fmt.Sprint(tr.lagging(b)); got != "[carol]" {
		t.Fatalf("b lags for %s, want [carol]", got)
	}
	if got := tr.lagging(a); len(got) != 0 {
		t.Fatalf("a lags for %v", got)
	}
}
