package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/node"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/store"
)

// benchServersGroup runs three consoles, each linked to an account of its
// own on every one of k relays (no fsync: the servers' cost, not the
// disk's), with auto-approval, and makes a 2-of-3 key.
func benchServersGroup(b *testing.B, k int) ([]*signer, [32]byte) {
	b.Helper()
	ctx := context.Background()
	var relays []*testRelay
	for range k {
		relays = append(relays, startBenchRelay(b))
	}
	var out []*signer
	for i := range 3 {
		name := fmt.Sprintf("s%02d", i)
		s := &signer{name: name, path: filepath.Join(b.TempDir(), name+".db")}
		st, err := store.Open(ctx, s.path, store.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		cfg := consoleConfig{Name: name, Store: st, AutoApprove: true,
			RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: time.Hour}
		for j, r := range relays {
			p, err := device.RegisterPrimary(ctx, r.dialer, "", nil)
			if err != nil {
				b.Fatal(err)
			}
			sub, err := st.Server(serverName(j))
			if err != nil {
				b.Fatal(err)
			}
			scanned := make(chan error, 1)
			if _, err := device.Link(ctx, device.LinkConfig{Dialer: r.dialer, Store: sub, Name: name, PreKeys: 20,
				OnURL: func(url string, _ time.Time) { go func() { scanned <- p.ApproveLink(ctx, r.dialer, url, nil) }() },
			}); err != nil {
				b.Fatal(err)
			}
			if err := <-scanned; err != nil {
				b.Fatal(err)
			}
			cfg.Servers = append(cfg.Servers, node.Server{Name: serverName(j), Dialer: r.dialer})
		}
		s.st = st
		if s.con, err = openConsole(ctx, cfg); err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		s.cancel, s.done = cancel, make(chan error, 1)
		go func() { s.done <- s.con.Run(runCtx) }()
		b.Cleanup(s.stop)
		out = append(out, s)
	}
	for _, a := range out {
		for _, c := range out {
			if a != c {
				if err := a.con.App.AddCard(ctx, c.con.Card, true); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	kr, err := out[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range out {
		waitKeyB(b, s, kr.KeyID)
	}
	return out, kr.KeyID
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSignServers is 2-of-3 signing with every console on one relay
// and on two (each message then goes through both, and each console drops
// the second copy): one signing at a time (median-ms), and 32 in flight
// (signatures/s), with the CPU time of the whole process (three consoles
// and the relays) per signature.
func BenchmarkSignServers(b *testing.B) {
	for _, k := range []int{1, 2} {
		b.Run(fmt.Sprintf("servers=%d/one", k), func(b *testing.B) {
			signers, keyID := benchServersGroup(b, k)
			ctx := context.Background()
			msg := []byte("benchmark message")
			var took []time.Duration
			cpu := cpuTime(b)
			for b.Loop() {
				start := time.Now()
				sr, err := signers[1].con.App.RequestSignature(ctx, keyID, msg, "")
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				if len(sr.Signature) != bls.G2Size {
					b.Fatal("no signature")
				}
			}
			b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			reportMedian(b, took)
		})
		b.Run(fmt.Sprintf("servers=%d/pipelined", k), func(b *testing.B) {
			signers, keyID := benchServersGroup(b, k)
			ctx := context.Background()
			b.ResetTimer()
			cpu := cpuTime(b)
			start := time.Now()
			var wg sync.WaitGroup
			sem := make(chan struct{}, 32)
			for i := 0; i < b.N; i++ {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if _, err := signers[i%3].con.App.RequestSignature(ctx, keyID, fmt.Appendf(nil, "request %d", i), ""); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "signatures/s")
			b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}
