package relay

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

// benchDevice is a connected device for the benchmarks: it acknowledges
// every envelope and records the delivery latency carried in the content
// (the send time in nanoseconds).
type benchDevice struct {
	d         *testDevice
	conn      *wsr.Conn
	delivered atomic.Int64
	mu        sync.Mutex
	latencies []time.Duration
}

func startBenchRelay(b *testing.B) *testRelay {
	b.Helper()
	srv, err := New(Config{Listen: "127.0.0.1:0", DataDir: b.TempDir(), MessageRate: 1e6, MessageBurst: 1e6})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &testRelay{srv: srv, cancel: cancel, done: make(chan error, 1), client: &http.Client{Timeout: 30 * time.Second}}
	go func() { tr.done <- srv.Run(ctx) }()
	<-srv.Ready()
	tr.base = srv.URL()
	b.Cleanup(func() { cancel(); <-tr.done })
	return tr
}

func connectBench(b *testing.B, tr *testRelay, d *testDevice) *benchDevice {
	b.Helper()
	bd := &benchDevice{d: d}
	h := http.Header{"Authorization": {d.auth()}}
	ws, _, err := websocket.DefaultDialer.Dial(tr.wsURL("/v1/websocket/"), h)
	if err != nil {
		b.Fatal(err)
	}
	bd.conn = wsr.New(ws, wsr.Options{Handler: func(_ context.Context, r *wsr.Request) *wsr.Response {
		if r.Path == "/api/v1/message" {
			var env signalpb.Envelope
			if proto.Unmarshal(r.Body, &env) == nil && len(env.GetContent()) >= 8 {
				sent := int64(binary.BigEndian.Uint64(env.GetContent()))
				bd.mu.Lock()
				bd.latencies = append(bd.latencies, time.Duration(time.Now().UnixNano()-sent))
				bd.mu.Unlock()
			}
			bd.delivered.Add(1)
		}
		return &wsr.Response{Status: 200}
	}})
	go bd.conn.Run(context.Background())
	b.Cleanup(func() { bd.conn.Close(websocket.CloseNormalClosure, ""); <-bd.conn.Done() })
	return bd
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// BenchmarkSendDeliverAck: 100 connected devices (one account each) send to
// random others over their sockets; one op is one message sent, stored,
// delivered and acknowledged. "saturated" keeps 8 requests in flight per
// device; "paced-2500" offers 2,500 messages per second in total and
// measures the delivery latency at that rate.
func BenchmarkSendDeliverAck(b *testing.B) {
	b.Run("saturated", func(b *testing.B) { benchSendDeliverAck(b, 0) })
	b.Run("paced-2500", func(b *testing.B) { benchSendDeliverAck(b, 2500) })
}

func benchSendDeliverAck(b *testing.B, rate int) {
	const devices, inFlight = 100, 8
	tr := startBenchRelay(b)
	var all []*benchDevice
	for range devices {
		all = append(all, connectBench(b, tr, tr.register(b, "")))
	}
	// tokens paces the senders when rate > 0: one token per message.
	var tokens chan struct{}
	stop := make(chan struct{})
	defer close(stop)
	if rate > 0 {
		tokens = make(chan struct{}, rate)
		go func() {
			const tick = 5 * time.Millisecond
			t := time.NewTicker(tick)
			defer t.Stop()
			per := rate * int(tick) / int(time.Second)
			for {
				select {
				case <-t.C:
					for range per {
						select {
						case tokens <- struct{}{}:
						default:
						}
					}
				case <-stop:
					return
				}
			}
		}()
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, from := range all {
		for range inFlight {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(rand.Uint64(), 1))
				for next.Add(1) <= int64(b.N) {
					if tokens != nil {
						<-tokens
					}
					to := all[r.IntN(devices)]
					if to == from { // a message to oneself would be a sync message
						to = all[(slices.Index(all, to)+1)%devices]
					}
					content := binary.BigEndian.AppendUint64(make([]byte, 0, 64), uint64(time.Now().UnixNano()))
					content = append(content, make([]byte, 56)...)
					body, _ := json.Marshal(sendBodyOf(message(1, to.d.regID, content)))
					resp, err := from.conn.Request(context.Background(), &wsr.Request{Verb: "PUT", Path: "/v1/messages/" + to.d.aci,
						Body: body, Headers: []string{"Content-Type:application/json"}})
					if err != nil || resp.Status != 200 {
						b.Errorf("send: %v %+v", err, resp)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	total := func() int64 {
		var n int64
		for _, d := range all {
			n += d.delivered.Load()
		}
		return n
	}
	for deadline := time.Now().Add(60 * time.Second); total() < int64(b.N) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	var lat []time.Duration
	for _, d := range all {
		lat = append(lat, d.latencies...)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(total())/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
}

// BenchmarkBacklogDrain: 100,000 envelopes queued for one offline device are
// drained when it connects; one op is one whole drain.
func BenchmarkBacklogDrain(b *testing.B) {
	const backlog = 100_000
	tr := startBenchRelay(b)
	alice := tr.register(b, "")
	bob := tr.register(b, "")
	aci, _ := parseUUID(bob.aci)
	env, _ := proto.Marshal(&signalpb.Envelope{Type: signalpb.Envelope_CIPHERTEXT.Enum(), Content: make([]byte, 200),
		SourceServiceId: []byte(alice.aci[:16]), ServerGuid: make([]byte, 16)})
	for b.Loop() {
		b.StopTimer()
		for i := 0; i < backlog; i += 10_000 {
			items := make([]queued, 10_000)
			for j := range items {
				items[j] = queued{aci: aci, dev: 1, envelope: env}
			}
			if err := tr.srv.store.enqueue(context.Background(), items, nil); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB-queued")
		b.StartTimer()
		bd := connectBench(b, tr, bob)
		for bd.delivered.Load() < backlog {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		// Resident set of the whole test process (relay and client) at the
		// end of the drain, the bbolt file mapping included.
		b.ReportMetric(float64(peakRSS())/(1<<20), "peak-rss-MB")
		bd.conn.Close(websocket.CloseNormalClosure, "")
		<-bd.conn.Done()
		for {
			n, _ := tr.srv.store.queueLen(aci, 1)
			if n == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(backlog)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// peakRSS reads the process's peak resident set size (VmHWM) in bytes, or
// 0 where /proc is missing.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
