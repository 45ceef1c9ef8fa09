package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/signal/relay"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestHealthAndReadinessAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		ready      error
		wantReadyz int
	}{
		{"ready", nil, http.StatusOK},
		{"not ready", errors.New("the engine is not running"), http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := Handler(NewRegistry(), func() error { return tt.ready })
			if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
				t.Errorf("/healthz: %d, want 200 (the process is up)", code)
			}
			code, body := get(t, h, "/readyz")
			if code != tt.wantReadyz {
				t.Errorf("/readyz: %d %q, want %d", code, body, tt.wantReadyz)
			}
			if tt.ready != nil && !strings.Contains(body, tt.ready.Error()) {
				t.Errorf("/readyz body %q does not say why", body)
			}
			if code, body := get(t, h, "/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
				t.Errorf("/metrics: %d, runtime metrics missing", code)
			}
		})
	}
}

func TestNodeCountsWhatTheBusReports(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewNode(reg, NodeSources{Untagged: func() uint64 { return 7 }})
	clock := time.Unix(1000, 0)
	m.now = func() time.Time { return clock }
	events := []event.Event{
		event.Connection{State: "connected"},
		event.Message{Direction: event.Out, Kind: "deal", Ceremony: "aabbccdd"},
		event.Message{Direction: event.In, Kind: "deal", Ceremony: "aabbccdd"},
		event.Message{Direction: event.In, Kind: "deal", Ceremony: "aabbccdd", Note: "duplicate"},
		event.Message{Direction: event.In, Kind: "Bad Kind!"},
		event.ApprovalRequested{ID: "aabbccdd00", Kind: "sign"},
		event.ApprovalRequested{ID: "eeff001100", Kind: "sign"},
		event.ApprovalResolved{ID: "aabbccdd00", Decision: "approved"},
		event.Progress{Ceremony: "aabbccdd", Kind: "sign", Step: 1, Total: 2},
	}
	for _, e := range events {
		m.observe(e)
	}
	clock = clock.Add(3 * time.Second)
	m.observe(event.Progress{Ceremony: "aabbccdd", Kind: "sign", Step: 2, Total: 2})
	clock = clock.Add(2 * time.Second)
	m.observe(event.SignDone{ID: "aabbccdd" + strings.Repeat("0", 56), Signature: "ab"})
	m.observe(event.SignDone{ID: "11223344", Failure: "declined"})
	m.observe(event.SignDone{ID: "55667788", Signature: "ab", Restored: true})
	m.observe(event.KeygenFailed{Ceremony: "99887766", Reason: "timeout"})
	m.observe(event.KeygenDone{Ceremony: "12121212"})
	m.observe(event.Connection{State: "reconnecting"})
	m.observe(event.Connection{State: "connected"})
	// A console on several servers: each one's state and reconnects on
	// their own, and the server a message came through.
	m.observe(event.Connection{State: "connected", Server: "home"})
	m.observe(event.Connection{State: "reconnecting", Server: "home"})
	m.observe(event.Connection{State: "connected", Server: "backup"})
	m.observe(event.Message{Direction: event.In, Kind: "partial", Server: "https://relay.example"})
	m.observe(event.Message{Direction: event.In, Kind: "partial", Server: "https://relay.example", Note: "copy through a second server: dropped"})

	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"messages out", testutil.ToFloat64(m.messages.WithLabelValues("out", "deal", "")), 1},
		{"messages in", testutil.ToFloat64(m.messages.WithLabelValues("in", "deal", "")), 1},
		{"dropped in", testutil.ToFloat64(m.dropped.WithLabelValues("in", "deal", "")), 1},
		{"odd kind bounded", testutil.ToFloat64(m.messages.WithLabelValues("in", "other", "")), 1},
		{"in through a server", testutil.ToFloat64(m.messages.WithLabelValues("in", "partial", "https://relay.example")), 1},
		{"copy dropped, by server", testutil.ToFloat64(m.dropped.WithLabelValues("in", "partial", "https://relay.example")), 1},
		{"approvals pending", testutil.ToFloat64(m.pending), 1},
		{"sign ok", testutil.ToFloat64(m.ceremonies.WithLabelValues("sign", "ok")), 1},
		{"sign failed", testutil.ToFloat64(m.ceremonies.WithLabelValues("sign", "failed")), 1},
		{"keygen ok", testutil.ToFloat64(m.ceremonies.WithLabelValues("keygen", "ok")), 1},
		{"keygen failed", testutil.ToFloat64(m.ceremonies.WithLabelValues("keygen", "failed")), 1},
		{"reconnects", testutil.ToFloat64(m.reconnects.WithLabelValues("")), 1},
		{"connected", testutil.ToFloat64(m.conn.WithLabelValues("", "connected")), 1},
		{"not reconnecting", testutil.ToFloat64(m.conn.WithLabelValues("", "reconnecting")), 0},
		{"one server's reconnects", testutil.ToFloat64(m.reconnects.WithLabelValues("home")), 1},
		{"one server reconnecting", testutil.ToFloat64(m.conn.WithLabelValues("home", "reconnecting")), 1},
		{"the other connected", testutil.ToFloat64(m.conn.WithLabelValues("backup", "connected")), 1},
		{"the other never reconnected", testutil.ToFloat64(m.reconnects.WithLabelValues("backup")), 0},
		{"sign latencies", float64(testutil.CollectAndCount(m.signLatency)), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.name, c.got, c.want)
		}
	}
	// One signing timed: 5 s from its first progress to its signature;
	// one round timed: 3 s.
	want := `
# HELP cosigner_node_sign_seconds Time from a signing request (first seen by this signer) to its signature.
# TYPE cosigner_node_sign_seconds histogram
`
	if err := testutil.CollectAndCompare(m.signLatency, strings.NewReader(want+histLines("cosigner_node_sign_seconds", "", 5)), "cosigner_node_sign_seconds"); err != nil {
		t.Error(err)
	}
	wantRound := `
# HELP cosigner_node_round_seconds Time a ceremony spent in one round, by kind.
# TYPE cosigner_node_round_seconds histogram
`
	if err := testutil.CollectAndCompare(m.roundLatency, strings.NewReader(wantRound+histLines("cosigner_node_round_seconds", `kind="sign",`, 3)), "cosigner_node_round_seconds"); err != nil {
		t.Error(err)
	}
	if n := len(m.started); n != 0 {
		t.Errorf("%d ceremonies still timed after they ended", n)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP cosigner_node_untagged_dropped_total Signal messages without the MPC tag, dropped unread.
# TYPE cosigner_node_untagged_dropped_total counter
cosigner_node_untagged_dropped_total 7
`), "cosigner_node_untagged_dropped_total"); err != nil {
		t.Error(err)
	}
}

// histLines is the text form of a histogram over humanBuckets holding one
// observation v.
func histLines(name, labels string, v float64) string {
	var b strings.Builder
	for _, le := range humanBuckets {
		n := 0
		if v <= le {
			n = 1
		}
		b.WriteString(name + "_bucket{" + labels + `le="` + formatFloat(le) + `"} ` + formatFloat(float64(n)) + "\n")
	}
	b.WriteString(name + "_bucket{" + labels + `le="+Inf"} 1` + "\n")
	lab := strings.TrimSuffix(labels, ",")
	if lab != "" {
		lab = "{" + lab + "}"
	}
	b.WriteString(name + "_sum" + lab + " " + formatFloat(v) + "\n")
	b.WriteString(name + "_count" + lab + " 1\n")
	return b.String()
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func TestApprovalResolvedWithoutRequestKeepsTheGaugeAtZero(t *testing.T) {
	t.Parallel()
	m := NewNode(prometheus.NewRegistry(), NodeSources{})
	m.observe(event.ApprovalResolved{ID: "x", Decision: "expired"})
	if got := testutil.ToFloat64(m.pending); got != 0 {
		t.Errorf("approvals pending %v after a resolution seen without its request, want 0", got)
	}
}

func TestRelayCountsByRouteAndStatusClass(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	r := NewRelay(reg, RelaySources{
		Stats: func() (relay.Stats, error) { return relay.Stats{Serving: true, Devices: 2, Queued: 5}, nil },
		QueueDepths: func(fn func(int)) {
			fn(1)
			fn(4)
		},
	})
	r.Request("PUT /v1/messages/{serviceId}", 200)
	r.Request("PUT /v1/messages/{serviceId}", 428)
	r.Request("PUT /v1/messages/{serviceId}", 429)
	r.Request("GET /v2/keys", 503)
	r.MessagesStored(3)
	r.MessagesDelivered(2)
	r.ChallengeIssued()
	r.Commit(3 * time.Millisecond)
	want := `
# HELP cosigner_relay_requests_total Requests answered, by route (the pattern, never the path) and status class (2xx, 4xx, 5xx, ...).
# TYPE cosigner_relay_requests_total counter
cosigner_relay_requests_total{code="2xx",route="PUT /v1/messages/{serviceId}"} 1
cosigner_relay_requests_total{code="4xx",route="PUT /v1/messages/{serviceId}"} 2
cosigner_relay_requests_total{code="5xx",route="GET /v2/keys"} 1
# HELP cosigner_relay_messages_stored_total Envelopes queued durably for a device.
# TYPE cosigner_relay_messages_stored_total counter
cosigner_relay_messages_stored_total 3
# HELP cosigner_relay_messages_delivered_total Envelopes a device acknowledged.
# TYPE cosigner_relay_messages_delivered_total counter
cosigner_relay_messages_delivered_total 2
# HELP cosigner_relay_challenges_issued_total Challenges demanded of accounts that kept sending while refused.
# TYPE cosigner_relay_challenges_issued_total counter
cosigner_relay_challenges_issued_total 1
# HELP cosigner_relay_connected_devices Devices holding their message socket.
# TYPE cosigner_relay_connected_devices gauge
cosigner_relay_connected_devices 2
# HELP cosigner_relay_queued_messages Envelopes waiting for their device, all devices together.
# TYPE cosigner_relay_queued_messages gauge
cosigner_relay_queued_messages 5
# HELP cosigner_relay_device_queue_depth Envelopes queued per device, over the devices that have any (read at each scrape).
# TYPE cosigner_relay_device_queue_depth histogram
cosigner_relay_device_queue_depth_bucket{le="1"} 1
cosigner_relay_device_queue_depth_bucket{le="10"} 2
cosigner_relay_device_queue_depth_bucket{le="100"} 2
cosigner_relay_device_queue_depth_bucket{le="1000"} 2
cosigner_relay_device_queue_depth_bucket{le="5000"} 2
cosigner_relay_device_queue_depth_bucket{le="10000"} 2
cosigner_relay_device_queue_depth_bucket{le="+Inf"} 2
cosigner_relay_device_queue_depth_sum 5
cosigner_relay_device_queue_depth_count 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cosigner_relay_requests_total", "cosigner_relay_messages_stored_total",
		"cosigner_relay_messages_delivered_total", "cosigner_relay_challenges_issued_total", "cosigner_relay_connected_devices",
		"cosigner_relay_queued_messages", "cosigner_relay_device_queue_depth"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(r.commit); n != 1 {
		t.Errorf("commit histogram has %d series, want 1", n)
	}
}

func TestRelayReadinessFollowsServing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		stats relay.Stats
		err   error
		ready bool
	}{
		{"serving", relay.Stats{Serving: true}, nil, true},
		{"stopped", relay.Stats{}, nil, false},
		{"stats failed", relay.Stats{}, errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := RelayReady(func() (relay.Stats, error) { return tt.stats, tt.err })()
			if (err == nil) != tt.ready {
				t.Errorf("ready err = %v, want ready %v", err, tt.ready)
			}
		})
	}
}

func TestStatusClassIsBounded(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]string{200: "2xx", 101: "1xx", 404: "4xx", 507: "5xx", 0: "other", 999: "other", -1: "other"} {
		if got := statusClass(status); got != want {
			t.Errorf("statusClass(%d) = %q, want %q", status, got, want)
		}
	}
}
