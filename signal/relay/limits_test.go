package relay

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// doHeader is do that also returns the response's header.
func (tr *testRelay) doHeader(t *testing.T, method, path, auth string, body any) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = jsonBody(t, body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, tr.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := tr.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, out
}

// One account cannot drain another's one-time keys: fetches are limited
// per (requester, target) and per requester, never per target alone, so
// other accounts still reach the target; the budgets refill with time.
func TestKeyFetchesAreLimitedPerRequesterAndPair(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	tr := startRelayWith(t, Config{Now: clock.now}, func(s *Server) {
		s.keyFetches = keyFetchLimits{account: newLimiter(1.0/60, 4, clock.now), pair: newLimiter(1.0/60, 2, clock.now)}
	})
	alice, bob, carol, dave, erin := tr.register(t, ""), tr.register(t, ""), tr.register(t, ""), tr.register(t, ""), tr.register(t, "")
	steps := []struct {
		name    string
		from    *testDevice
		to      *testDevice
		want    int
		advance time.Duration
	}{
		{"a first fetch", alice, bob, 200, 0},
		{"a second fetch of the same target", alice, bob, 200, 0},
		{"a third one is over the pair's budget", alice, bob, 429, 0},
		{"another account still reaches the target", carol, bob, 200, 0},
		{"the requester still reaches another target", alice, dave, 200, 0},
		{"but not beyond its own budget", alice, erin, 429, 0},
		{"the budgets refill with time", alice, bob, 200, 2 * time.Minute},
		{"an account's own keys take only from its own budget", carol, carol, 200, 0},
		{"as often as that allows", carol, carol, 200, 0},
		{"beyond the pair's budget", carol, carol, 200, 0},
	}
	for _, st := range steps {
		clock.advance(st.advance)
		status, h, out := tr.doHeader(t, "GET", "/v2/keys/"+st.to.aci+"/*", st.from.auth(), nil)
		if status != st.want {
			t.Fatalf("%s: %d %s, want %d", st.name, status, out, st.want)
		}
		if status == 429 && h.Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", st.name)
		}
	}
}
