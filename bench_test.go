package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"github.com/signal-mpc/cosigner/signal/store/storetest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/liblog"
	"github.com/signal-mpc/cosigner/signal/relay"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// benchGroup links n consoles to n accounts on an in-process relay and runs
// them with auto-approval. durable selects fsync on every store commit (the
// default of a real console) or not.
func benchGroup(b *testing.B, n int, durable bool) []*signer {
	b.Helper()
	_, signers := benchGroupRelay(b, n, durable)
	return signers
}

// benchGroupRelay is benchGroup, also returning the relay.
func benchGroupRelay(b *testing.B, n int, durable bool) (*testRelay, []*signer) {
	b.Helper()
	r := startBenchRelay(b)
	if durable {
		storetest.LoadDisk(b, b.TempDir())
	}
	var out []*signer
	for i := range n {
		s := newBenchSigner(b, r, fmt.Sprintf("s%02d", i), durable)
		out = append(out, s)
	}
	for _, a := range out {
		for _, c := range out {
			if a != c {
				if err := a.con.App.AddCard(context.Background(), c.con.Card, true); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return r, out
}

// commits sums the store commits of the signers.
func commits(signers []*signer) (ops, commits uint64) {
	for _, s := range signers {
		st := s.st.Stats()
		ops, commits = ops+st.Operations, commits+st.Commits
	}
	return ops, commits
}

// reportCommits reports the store commits per op (all consoles together)
// and the operations per commit (the group size).
func reportCommits(b *testing.B, signers []*signer, opsBefore, commitsBefore uint64) {
	ops, c := commits(signers)
	ops, c = ops-opsBefore, c-commitsBefore
	b.ReportMetric(float64(c)/float64(b.N), "commits/op")
	if c > 0 {
		b.ReportMetric(float64(ops)/float64(c), "ops/commit")
	}
}

// startBenchRelay starts a relay whose per-account send limit is out of the
// way (a requester sends six messages per signing: at 100 signings a second
// that is above the relay's default of 500 a second), and whose queue cap
// is too: the benchmarks measure the consoles, not the limiter.
func startBenchRelay(b *testing.B) *testRelay {
	b.Helper()
	liblog.Silence()
	// The simulated phones never fetch: the queue cap would refuse the
	// consoles' fillers for them after 10,000 messages.
	r := relaytest.StartConfig(b, relay.Config{MessageRate: 1e6, MessageBurst: 1e6, MaxQueue: 1 << 24})
	d, err := transport.NewDialer(transport.Config{URL: r.URL()})
	if err != nil {
		b.Fatal(err)
	}
	return &testRelay{Relay: r, srv: r.Server, dialer: d}
}

func newBenchSigner(b *testing.B, r *testRelay, name string, durable bool) *signer {
	b.Helper()
	ctx := context.Background()
	p, err := device.RegisterPrimary(ctx, r.dialer, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	s := &signer{name: name, path: filepath.Join(b.TempDir(), name+".db"), primary: p}
	st, err := store.Open(ctx, s.path, store.Options{NoSync: !durable})
	if err != nil {
		b.Fatal(err)
	}
	scanned := make(chan error, 1)
	if _, err := device.Link(ctx, device.LinkConfig{Dialer: r.dialer, Store: st, Name: name, PreKeys: 20, // above the upkeep's low-water mark: no top-up while measuring
		OnURL: func(url string, _ time.Time) { go func() { scanned <- p.ApproveLink(ctx, r.dialer, url, nil) }() },
	}); err != nil {
		b.Fatal(err)
	}
	if err := <-scanned; err != nil {
		b.Fatal(err)
	}
	s.st = st
	s.con, err = openConsole(ctx, consoleConfig{Name: name, Dialer: r.dialer, Store: st, AutoApprove: true,
		RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	s.cancel, s.done = cancel, make(chan error, 1)
	go func() { s.done <- s.con.Run(runCtx) }()
	b.Cleanup(s.stop)
	return s
}

// BenchmarkKeygenOverRelay is a whole t-of-n key generation through the
// relay with every message Signal-encrypted (X3DH sessions, then Double
// Ratchet), auto-approval, from the proposal to every console holding the
// confirmed key. One op is one ceremony.
func BenchmarkKeygenOverRelay(b *testing.B) {
	for _, tc := range []struct{ t, n int }{{2, 3}, {3, 5}, {7, 10}, {10, 15}} {
		for _, durable := range []bool{true, false} {
			b.Run(fmt.Sprintf("n=%d,t=%d,fsync=%v", tc.n, tc.t, durable), func(b *testing.B) {
				signers := benchGroup(b, tc.n, durable)
				ctx := context.Background()
				// Sessions are set up by a first ceremony outside the timer.
				if _, err := signers[0].con.App.StartKeygen(ctx, tc.t); err != nil {
					b.Fatal(err)
				}
				// The others' keys are awaited on their event streams (a
				// must-deliver KeygenDone each), not by polling their loops.
				var subs []*event.Subscription
				for _, s := range signers[1:] {
					sub := s.con.Bus.Subscribe(0)
					defer sub.Close()
					subs = append(subs, sub)
				}
				var took []time.Duration
				for b.Loop() {
					start := time.Now()
					kr, err := signers[0].con.App.StartKeygen(ctx, tc.t)
					if err != nil {
						b.Fatal(err)
					}
					for _, sub := range subs {
						waitKeygenDone(b, sub, ceremony.ShortID(kr.KeyID))
					}
					took = append(took, time.Since(start))
				}
				reportMedian(b, took)
				if durable {
					storetest.Report(b)
				}
			})
		}
	}
}

// waitKeygenDone waits for the KeygenDone event of a key on a stream.
func waitKeygenDone(b *testing.B, sub *event.Subscription, keyID string) {
	b.Helper()
	waitEvent(b, sub, "KeygenDone for "+keyID, func(e event.Event) bool {
		d, ok := e.(event.KeygenDone)
		return ok && d.KeyID == keyID
	})
}

// waitSignDone waits for the SignDone event of a request on a stream.
func waitSignDone(b *testing.B, sub *event.Subscription, id string) {
	b.Helper()
	waitEvent(b, sub, "SignDone for "+id, func(e event.Event) bool {
		d, ok := e.(event.SignDone)
		return ok && d.ID == id
	})
}

func waitEvent(b *testing.B, sub *event.Subscription, what string, match func(event.Event) bool) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			b.Fatalf("no %s: %v", what, err)
		}
		if match(e) {
			return
		}
	}
}

// reportMedian reports the median of the measured durations (the targets
// are medians; ns/op is the mean).
func reportMedian(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
}

func waitKeyB(b *testing.B, s *signer, id [32]byte) {
	for {
		keys, _ := s.con.App.Keys(context.Background())
		for _, k := range keys {
			if k.KeyID == id {
				return
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkSignOverRelay is one 2-of-3 signing through the relay, from the
// request to the verified signature at the requester, with auto-approval.
// Each signing starts once the other two consoles have finished the one
// before (checked the result and published it): one signing on a group at
// rest, not the tail of the previous one (BenchmarkSignPipelined measures
// signings that overlap).
func BenchmarkSignOverRelay(b *testing.B) {
	for _, durable := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", durable), func(b *testing.B) {
			signers := benchGroup(b, 3, durable)
			ctx := context.Background()
			kr, err := signers[0].con.App.StartKeygen(ctx, 2)
			if err != nil {
				b.Fatal(err)
			}
			waitKeyB(b, signers[1], kr.KeyID)
			waitKeyB(b, signers[2], kr.KeyID)
			others := []*event.Subscription{signers[0].con.Bus.Subscribe(0), signers[2].con.Bus.Subscribe(0)}
			for _, sub := range others {
				defer sub.Close()
			}
			msg := []byte("benchmark message")
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				sr, err := signers[1].con.App.RequestSignature(ctx, kr.KeyID, msg, "")
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				if len(sr.Signature) != bls.G2Size {
					b.Fatal("no signature")
				}
				for _, sub := range others {
					waitSignDone(b, sub, hex.EncodeToString(sr.ID[:]))
				}
			}
			reportMedian(b, took)
			if durable {
				storetest.Report(b)
			}
		})
	}
}

// BenchmarkSignPipelined keeps 32 signing requests in flight and reports
// signatures per second.
func BenchmarkSignPipelined(b *testing.B) {
	for _, durable := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", durable), func(b *testing.B) {
			signers := benchGroup(b, 3, durable)
			ctx := context.Background()
			kr, err := signers[0].con.App.StartKeygen(ctx, 2)
			if err != nil {
				b.Fatal(err)
			}
			waitKeyB(b, signers[1], kr.KeyID)
			waitKeyB(b, signers[2], kr.KeyID)
			opsBefore, commitsBefore := commits(signers)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			sem := make(chan struct{}, 32)
			for i := 0; i < b.N; i++ {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if _, err := signers[i%3].con.App.RequestSignature(ctx, kr.KeyID, fmt.Appendf(nil, "request %d", i), ""); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "signatures/s")
			b.StopTimer()
			if durable {
				storetest.Report(b)
			}
			reportCommits(b, signers, opsBefore, commitsBefore)
		})
	}
}
