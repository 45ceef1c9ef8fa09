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

// RelaySources are what a Relay reads at each scrape (relay.Server's
// Stats and QueueDepths); a nil one is left out. They are functions so
// that the observer can be made before the server it observes.
type RelaySources struct {
	// Stats gives the connected devices and the envelopes queued.
	Stats func() (relay.Stats, error)
	// QueueDepths gives each device's queue length, for a histogram.
	QueueDepths func(fn func(depth int))
}

// NewRelay registers the relay's metrics in reg.
func NewRelay(reg prometheus.Registerer, src RelaySources) *Relay {
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
	if src.Stats != nil {
		reg.MustRegister(&relayStats{stats: src.Stats,
			devices: prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, "connected_devices"),
				"Devices holding their message socket.", nil, nil),
			queued: prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, "queued_messages"),
				"Envelopes waiting for their device, all devices together.", nil, nil),
		})
	}
	if src.QueueDepths != nil {
		reg.MustRegister(&queueDepths{depths: src.QueueDepths,
			desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, "device_queue_depth"),
				"Envelopes queued per device, over the devices that have any (read at each scrape).", nil, nil)})
	}
	return r
}

// queueBuckets span a device's queue: a few envelopes in flight up to the
// default cap (relay.max_queue, 10,000), where sends to it are refused.
var queueBuckets = []float64{1, 10, 100, 1000, 5000, 10000}

// queueDepths makes a histogram of the devices' queue lengths at scrape
// time.
type queueDepths struct {
	depths func(fn func(depth int))
	desc   *prometheus.Desc
}

func (c *queueDepths) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *queueDepths) Collect(ch chan<- prometheus.Metric) {
	counts := make(map[float64]uint64, len(queueBuckets))
	var n uint64
	var sum float64
	c.depths(func(d int) {
		n++
		sum += float64(d)
		for _, le := range queueBuckets {
			if float64(d) <= le {
				counts[le]++
			}
		}
	})
	ch <- prometheus.MustNewConstHistogram(c.desc, n, sum, counts)
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
