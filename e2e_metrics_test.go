package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/metrics"
	"github.com/signal-mpc/cosigner/signal/liblog"
	"github.com/signal-mpc/cosigner/signal/relay"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
)

// scrape fetches url and returns the status and body.
func scrape(t *testing.T, ctx context.Context, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// sample sums the samples of the metric name whose labels contain every
// one of labels (`kind="sign"`), in Prometheus's text format.
func sample(body, name string, labels ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ') // label values may hold spaces
		if i < 0 {
			continue
		}
		series, value := line[:i], line[i+1:]
		metric, lab, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(lab, l)
		}
		if !all {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			sum += v
		}
	}
	return sum
}

// waitMetrics scrapes url until ok accepts the body (the counters derived
// from events move shortly after the events).
func waitMetrics(t *testing.T, ctx context.Context, url string, what string, ok func(body string) bool) string {
	t.Helper()
	for {
		code, body := scrape(t, ctx, url)
		if code == http.StatusOK && ok(body) {
			return body
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: never seen at %s; last scrape (%d):\n%s", what, url, code, body)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Three consoles serving metrics, and a relay with its metrics, run a
// keygen and a signing: the consoles count MPC messages both ways, the
// ceremonies' outcomes and store commits, and answer /healthz and /readyz;
// the relay counts the envelopes it stored and delivered, its connected
// devices and its requests by route.
func TestMetricsMoveWhenMessagesFlow(t *testing.T) {
	t.Parallel()
	liblog.Silence()
	reg := metrics.NewRegistry()
	var srv *relay.Server
	stats := func() (relay.Stats, error) { return srv.Stats() }
	obs := metrics.NewRelay(reg, metrics.RelaySources{Stats: stats, QueueDepths: func(fn func(int)) { srv.QueueDepths(fn) }})
	dir := t.TempDir()
	rr := relaytest.StartConfig(t, relay.Config{DataDir: dir, Observer: obs})
	srv = rr.Server
	relayMetrics := httptest.NewServer(metrics.Handler(reg, metrics.RelayReady(stats)))
	t.Cleanup(relayMetrics.Close)
	r := &testRelay{Relay: rr, srv: rr.Server, dialer: dialerTo(t, rr.URL()), dir: dir}

	var signers []*signer
	for _, n := range []string{"alice", "bob", "carol"} {
		s := newSigner(t, r, n)
		s.tune = func(c *consoleConfig) { c.MetricsListen = "127.0.0.1:0" }
		s.start(t, r, true)
		signers = append(signers, s)
	}
	introduce(t, signers...)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID)
	}
	if _, err := signers[1].con.App.RequestSignature(ctx, kr.KeyID, []byte("metrics"), "a test"); err != nil {
		t.Fatal(err)
	}

	for _, s := range signers {
		var addr string
		for addr == "" {
			if addr = s.con.MetricsAddr(); addr == "" {
				select {
				case <-ctx.Done():
					t.Fatalf("%s never served metrics", s.name)
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
		base := "http://" + addr
		body := waitMetrics(t, ctx, base+"/metrics", s.name+": messages both ways, a keygen done", func(b string) bool {
			return sample(b, "cosigner_node_mpc_messages_total", `direction="in"`) > 0 &&
				sample(b, "cosigner_node_mpc_messages_total", `direction="out"`) > 0 &&
				sample(b, "cosigner_node_ceremonies_total", `kind="keygen"`, `outcome="ok"`) == 1 &&
				sample(b, "cosigner_node_connection_state", `state="connected"`) == 1
		})
		if n := sample(body, "cosigner_node_store_commit_seconds_count"); n == 0 {
			t.Errorf("%s: no store commit timed", s.name)
		}
		if code, _ := scrape(t, ctx, base+"/healthz"); code != http.StatusOK {
			t.Errorf("%s: /healthz %d", s.name, code)
		}
		if code, body := scrape(t, ctx, base+"/readyz"); code != http.StatusOK {
			t.Errorf("%s: /readyz %d %q, want ready (engine running, connected)", s.name, code, body)
		}
		for _, secret := range []string{s.con.Card.Account, s.name, "metrics"} {
			if strings.Contains(body, `"`+secret+`"`) {
				t.Errorf("%s: a label holds %q", s.name, secret)
			}
		}
	}
	// The requester saw its signature.
	waitMetrics(t, ctx, "http://"+signers[1].con.MetricsAddr()+"/metrics", "bob: a signing done", func(b string) bool {
		return sample(b, "cosigner_node_ceremonies_total", `kind="sign"`, `outcome="ok"`) == 1 &&
			sample(b, "cosigner_node_sign_seconds_count") == 1
	})

	body := waitMetrics(t, ctx, relayMetrics.URL+"/metrics", "relay: stored, delivered, devices", func(b string) bool {
		return sample(b, "cosigner_relay_messages_stored_total") > 0 &&
			sample(b, "cosigner_relay_messages_delivered_total") > 0 &&
			sample(b, "cosigner_relay_connected_devices") >= 3
	})
	if n := sample(body, "cosigner_relay_requests_total", `route="PUT /v1/messages/{serviceId}"`, `code="2xx"`); n == 0 {
		t.Errorf("relay: no send counted on its route:\n%s", body)
	}
	if !strings.Contains(body, "cosigner_relay_device_queue_depth_count") {
		t.Error("relay: no queue depth histogram")
	}
	if n := sample(body, "cosigner_relay_store_commit_seconds_count"); n == 0 {
		t.Error("relay: no commit timed")
	}
	if code, _ := scrape(t, ctx, relayMetrics.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("relay: /healthz %d", code)
	}
	if code, body := scrape(t, ctx, relayMetrics.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("relay: /readyz %d %q", code, body)
	}
	rr.Stop()
	if code, _ := scrape(t, ctx, relayMetrics.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("relay stopped: /readyz %d, want 503", code)
	}
}
