package device

import (
	"context"
	"fmt"
	"github.com/signal-mpc/cosigner/signal/store/storetest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/relay"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// benchConsole links a console for benchmarks; durable selects fsync on
// every store commit (the default of a real console).
func benchConsole(b *testing.B, d *transport.Dialer, durable bool, deliver DeliverFunc) *Device {
	b.Helper()
	ctx := context.Background()
	p, err := RegisterPrimary(ctx, d, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "d.db"), store.Options{NoSync: !durable})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	scanned := make(chan error, 1)
	if _, err := Link(ctx, LinkConfig{Dialer: d, Store: st, Name: "bench", PreKeys: 20, // above the upkeep's low-water mark: no top-up while measuring
		OnURL: func(url string, _ time.Time) { go func() { scanned <- p.ApproveLink(ctx, d, url, nil) }() },
	}); err != nil {
		b.Fatal(err)
	}
	if err := <-scanned; err != nil {
		b.Fatal(err)
	}
	dev, err := New(ctx, Config{Dialer: d, Store: st, Deliver: deliver})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { dev.Run(runCtx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return dev
}

// BenchmarkMessageThroughRelay is one MPC message from one console to
// another through the relay over loopback: pad, encrypt, tag, the filler
// for the primary, send, relay, deliver, decrypt, store, hand over, ack.
// With inflight > 1 several messages travel at once; msgs/s is reported.
func BenchmarkMessageThroughRelay(b *testing.B) {
	for _, durable := range []bool{true, false} {
		for _, inflight := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("fsync=%v,inflight=%d", durable, inflight), func(b *testing.B) {
				d := startRelayB(b)
				// Counted, not a WaitGroup: the relay hands a message over
				// before its sender's answer, so a send may still be under
				// way (or fail at shutdown) after its delivery.
				var got atomic.Int64
				recv := func(context.Context, Address, []byte) error { got.Add(1); return nil }
				waitGot := func(n int64) { waitFor(b, func() bool { return got.Load() >= n || b.Failed() }) }
				alice := benchConsole(b, d, durable, func(context.Context, Address, []byte) error { return nil })
				bob := benchConsole(b, d, durable, recv)
				ctx := context.Background()
				body := make([]byte, 700) // about a DKG deal for a small group
				// Session setup.
				if err := alice.Send(ctx, bob.Address(), body); err != nil {
					b.Fatal(err)
				}
				waitGot(1)
				// Bob's reply acknowledges the session, as MPC traffic (which
				// goes both ways in every round) does: alice's later messages
				// are ordinary Signal messages, not PreKey messages.
				if err := bob.Send(ctx, alice.Address(), body); err != nil {
					b.Fatal(err)
				}
				waitFor(b, func() bool { return alice.Stats().Received == 1 })
				if durable {
					storetest.LoadDisk(b, b.TempDir())
				}
				sem := make(chan struct{}, inflight)
				var sending sync.WaitGroup
				start := time.Now()
				b.ResetTimer()
				for range b.N {
					sem <- struct{}{}
					sending.Go(func() {
						defer func() { <-sem }()
						if err := alice.Send(ctx, bob.Address(), body); err != nil {
							b.Error(err)
						}
					})
				}
				waitGot(int64(1 + b.N))
				elapsed := time.Since(start)
				sending.Wait()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
				b.StopTimer()
				if durable {
					storetest.Report(b)
				}
				for who, d := range map[string]*Device{"sender": alice, "recipient": bob} {
					if st := d.cfg.Store.Stats(); st.Commits > 0 {
						b.ReportMetric(float64(st.Operations)/float64(st.Commits), who+"-ops/commit")
					}
				}
			})
		}
	}
}

func waitFor(b *testing.B, ok func() bool) {
	b.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
	}
}

// startRelayB starts a relay whose per-account rate limit is out of the
// way: the benchmark measures throughput, not the limiter.
func startRelayB(b *testing.B) *transport.Dialer {
	b.Helper()
	r := relaytest.StartConfig(b, relay.Config{MessageRate: 1e6, MessageBurst: 1e6})
	d, err := transport.NewDialer(transport.Config{URL: r.URL()})
	if err != nil {
		b.Fatal(err)
	}
	return d
}
