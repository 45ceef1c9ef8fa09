package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signal-mpc/cosigner/signal/relay"
)

// Relay is the relay's metrics: a relay.Observer, and gauges read from
// the relay's Stats at each scrape.
type Relay struct {
	requests   *prometheus.CounterVec
	stored     prometheus.Counter
	delivered  prometheus.Counter
	commit     prometheus.Histogram
	challenges prometheus.Counter
}

var _ relay.Observer = (*Relay)(nil)

// NewRelay registers the relay's metrics in reg. stats is read at each
// scrape (connected devices, queued envelopes); nil leaves those out.
func NewRelay(reg prometheus.Registerer, stats func() (relay.Stats, error)) *Relay {
	const sub = "relay"
	r := &Relay{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "requests_total",
			Help: "Requests answered, by route (the pattern, never the path) and status class (2xx, 4xx, 5xx, ...)."},
			[]string{"route", "code"}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "messages_stored_total",
			Help: "Envelopes queued durably for a device."}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "messages_delivered_total",
			Help: "Envelopes a device acknowledged."}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: "store_commit_seconds",
			Help: "Duration of one group commit of the relay's store.", Buckets: commitBuckets}),
		challenges: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: "challenges_issued_total",
			Help: "Challenges demanded of accounts that kept sending while refused."}),
	}
	reg.MustRegister(r.requests, r.stored, r.delivered, r.commit, r.challenges)
	if stats != nil {
		reg.MustRegister(&relayStats{stats: stats,
			devices: prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, "connected_devices"),
				"Devices holding their message socket.", nil, nil),
			queued: prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, "queued_messages"),
				"Envelopes waiting for their device, all devices together.", nil, nil),
		})
	}
	return r
}

// commitBuckets spans a commit: from a fraction of a millisecond (fdatasync
// on a fast disk) to seconds (a disk in trouble).
var commitBuckets = []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func (r *Relay) Request(route string, status int) {
	r.requests.WithLabelValues(route, statusClass(status)).Inc()
}
func (r *Relay) MessagesStored(n int)    { r.stored.Add(float64(n)) }
func (r *Relay) MessagesDelivered(n int) { r.delivered.Add(float64(n)) }
func (r *Relay) Commit(d time.Duration)  { r.commit.Observe(d.Seconds()) }
func (r *Relay) ChallengeIssued()        { r.challenges.Inc() }

// relayStats reads the relay's gauges at scrape time.
type relayStats struct {
	stats           func() (relay.Stats, error)
	devices, queued *prometheus.Desc
}

func (c *relayStats) Describe(ch chan<- *prometheus.Desc) { ch <- c.devices; ch <- c.queued }

func (c *relayStats) Collect(ch chan<- prometheus.Metric) {
	st, err := c.stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.devices, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.devices, prometheus.GaugeValue, float64(st.Devices))
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(st.Queued))
}

// RelayReady is the relay's readiness: its store is open and it serves.
func RelayReady(stats func() (relay.Stats, error)) func() error {
	return func() error {
		st, err := stats()
		if err != nil {
			return err
		}
		if !st.Serving {
			return errNotServing
		}
		return nil
	}
}
