package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signal-mpc/cosigner/core/event"
)

// Node is a running co-signer's metrics. Most come from core's event bus
// (Run follows a subscription); the store's commit time comes from
// CommitObserved, and the device's untagged count and the bus's own drops
// are read at each scrape.
type Node struct {
	messages     *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	ceremonies   *prometheus.CounterVec
	pending      prometheus.Gauge
	signLatency  prometheus.Histogram
	roundLatency *prometheus.HistogramVec
	conn         *prometheus.GaugeVec
	reconnects   *prometheus.CounterVec
	commit       prometheus.Histogram

	// Owned by Run's goroutine.
	approvals map[string]struct{}  // open approval ids
	started   map[string]time.Time // ceremony short id -> first progress seen
	rounds    map[string]roundMark // ceremony short id -> its current round
	state     map[string]string    // server -> last connection state ("": the console's)
	wasUp     map[string]bool      // server -> connected at least once
	now       func() time.Time
}

type roundMark struct {
	kind string
	step int
	at   time.Time
}

// connStates are the connection's states (transport.State's names); one
// gauge each, 1 for the current one.
var connStates = []string{"connecting", "connected", "reconnecting", "stopped"}

// NodeSources are the numbers a Node reads at each scrape; a nil one is
// left out.
type NodeSources struct {
	// Untagged counts Signal traffic without the MPC tag the device
	// dropped unread.
	Untagged func() uint64
	// EventsDropped counts the bus events the metrics' subscription lost
	// to a full queue (the event-derived counters are then short).
	EventsDropped func() uint64
}

// NewNode registers a co-signer's metrics in reg.
func NewNode(reg prometheus.Registerer, src NodeSources) *Node {
	const sub = "node"
	m := &Node{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "mpc_messages_total",
			Help: "MPC messages in and out, by direction, wire kind and the server (canonical URL) an incoming one came through."}, []string{"direction", "kind", "server"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "mpc_messages_dropped_total",
			Help: "MPC messages dropped (duplicates, copies through a second server, replays, late or invalid), by direction, wire kind and server."}, []string{"direction", "kind", "server"}),
		ceremonies: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "ceremonies_total",
			Help: "Ceremonies ended, by kind (keygen, sign) and outcome (ok, failed)."}, []string{"kind", "outcome"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: sub, Name: "approvals_pending",
			Help: "Approvals waiting for a decision on this signer."}),
		signLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: "sign_seconds",
			Help: "Time from a signing request (first seen by this signer) to its signature.", Buckets: humanBuckets}),
		roundLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: "round_seconds",
			Help: "Time a ceremony spent in one round, by kind.", Buckets: humanBuckets}, []string{"kind"}),
		conn: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: sub, Name: "connection_state",
			Help: "1 for the server connection's current state, 0 for the others; by server (its local name; empty: the console as a whole, connected while any server is)."}, []string{"server", "state"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "reconnects_total",
			Help: "Times the connection to a server was lost after being up, by server (empty: the console as a whole)."}, []string{"server"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: "store_commit_seconds",
			Help: "Duration of one commit of the encrypted store.", Buckets: commitBuckets}),
		approvals: map[string]struct{}{},
		started:   map[string]time.Time{},
		rounds:    map[string]roundMark{},
		state:     map[string]string{},
		wasUp:     map[string]bool{},
		now:       time.Now,
	}
	reg.MustRegister(m.messages, m.dropped, m.ceremonies, m.pending, m.signLatency, m.roundLatency, m.conn, m.reconnects, m.commit)
	if src.Untagged != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "untagged_dropped_total",
			Help: "Signal messages without the MPC tag, dropped unread."}, func() float64 { return float64(src.Untagged()) }))
	}
	if src.EventsDropped != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "metrics_events_lost_total",
			Help: "Droppable events (messages, progress, connection) the metrics missed under load: their counters are short by as many."},
			func() float64 { return float64(src.EventsDropped()) }))
	}
	for _, s := range connStates {
		m.conn.WithLabelValues("", s)
	}
	m.reconnects.WithLabelValues("")
	m.setState("", "connecting")
	return m
}

// humanBuckets span what waits for people and networks: a second to an
// hour.
var humanBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// CommitObserved records one store commit (signal/store.ObserveCommits).
func (m *Node) CommitObserved(d time.Duration) { m.commit.Observe(d.Seconds()) }

// Run follows sub until ctx ends. Subscribe before the engine runs, so
// that no approval or result is missed.
func (m *Node) Run(ctx context.Context, sub *event.Subscription) {
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			return
		}
		m.observe(ev)
	}
}

// observe counts one event.
func (m *Node) observe(ev event.Event) {
	switch e := ev.(type) {
	case event.Message:
		if e.Note != "" {
			m.dropped.WithLabelValues(e.Direction.String(), kindLabel(e.Kind), e.Server).Inc()
			return
		}
		m.messages.WithLabelValues(e.Direction.String(), kindLabel(e.Kind), e.Server).Inc()
	case event.Progress:
		m.progress(e)
	case event.ApprovalRequested:
		m.approvals[e.ID] = struct{}{}
		m.pending.Set(float64(len(m.approvals)))
	case event.ApprovalResolved:
		delete(m.approvals, e.ID)
		m.pending.Set(float64(len(m.approvals)))
	case event.KeygenDone:
		m.ceremonies.WithLabelValues("keygen", "ok").Inc()
		m.forget(e.Ceremony)
	case event.KeygenFailed:
		m.ceremonies.WithLabelValues("keygen", "failed").Inc()
		m.forget(e.Ceremony)
	case event.SignDone:
		if e.Restored {
			return // history replayed at start, counted in its own run
		}
		outcome := "ok"
		if e.Signature == "" {
			outcome = "failed"
		}
		m.ceremonies.WithLabelValues("sign", outcome).Inc()
		short := m.shortOf(e.ID)
		if t, ok := m.started[short]; ok && outcome == "ok" {
			m.signLatency.Observe(m.now().Sub(t).Seconds())
		}
		m.forget(short)
	case event.Connection:
		m.setState(e.Server, e.State)
	}
}

// maxTracked bounds the ceremonies timed at once.
const maxTracked = 4096

// progress times the rounds of a ceremony from the progress it reports.
func (m *Node) progress(e event.Progress) {
	now := m.now()
	if len(m.started) >= maxTracked {
		// Ceremonies whose end this signer never saw: start afresh
		// rather than grow for ever (a few timings are lost).
		clear(m.started)
		clear(m.rounds)
	}
	if _, ok := m.started[e.Ceremony]; !ok {
		m.started[e.Ceremony] = now
	}
	last, ok := m.rounds[e.Ceremony]
	if ok && last.step == e.Step {
		return
	}
	if ok && e.Step > last.step {
		m.roundLatency.WithLabelValues(kindLabel(last.kind)).Observe(now.Sub(last.at).Seconds())
	}
	m.rounds[e.Ceremony] = roundMark{kind: e.Kind, step: e.Step, at: now}
}

// shortOf is a ceremony's short id (ceremony.ShortID: the first 4 bytes
// of its id in hex), under which its progress is reported.
func (m *Node) shortOf(full string) string {
	return full[:min(len(full), 8)]
}

func (m *Node) forget(short string) {
	delete(m.started, short)
	delete(m.rounds, short)
}

func (m *Node) setState(server, state string) {
	if state == "" {
		return
	}
	if m.wasUp[server] && m.state[server] == "connected" && state != "connected" {
		m.reconnects.WithLabelValues(server).Inc()
	}
	if state == "connected" {
		m.wasUp[server] = true
	}
	m.state[server] = state
	for _, s := range connStates {
		v := 0.0
		if s == state {
			v = 1
		}
		m.conn.WithLabelValues(server, s).Set(v)
	}
}

// kindLabel bounds a kind label to the names the code uses: a kind is a
// short lower-case word; anything else is "other".
func kindLabel(kind string) string {
	if kind == "" || len(kind) > 32 {
		return "other"
	}
	for _, r := range kind {
		if (r < 'a' || r > 'z') && r != '_' && r != '-' && (r < '0' || r > '9') {
			return "other"
		}
	}
	return kind
}
