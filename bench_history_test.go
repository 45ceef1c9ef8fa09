package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/signal/store"
)

// liveHeapMB is the live heap after a full collection, in MB.
func liveHeapMB() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc) / (1 << 20)
}

// BenchmarkMemoryOverSignings runs 2-of-3 signings through the relay (the
// three consoles take turns asking, 16 requests in flight, no fsync: memory
// does not depend on it) and reports the process's live heap after a
// collection at 0, 1,000 and 10,000 signings, once every console has
// finished them and the late partials have come in. One op is one signing:
// run it with -benchtime 10000x.
func BenchmarkMemoryOverSignings(b *testing.B) {
	signers := benchGroup(b, 3, false)
	ctx := context.Background()
	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		b.Fatal(err)
	}
	waitKeyB(b, signers[1], kr.KeyID)
	waitKeyB(b, signers[2], kr.KeyID)
	var ended [3]atomic.Int64
	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	for i, s := range signers {
		sub := s.con.Bus.Subscribe(0)
		defer sub.Close()
		go func() {
			for {
				e, err := sub.Next(subCtx)
				if err != nil {
					return
				}
				if _, ok := e.(event.SignDone); ok {
					ended[i].Add(1)
				}
			}
		}()
	}
	// settle waits until every console is done with the n signings: the
	// requesters have their results (RequestSignature returned), and the
	// others' counts of ended signings stop moving (a console whose partial
	// was not needed may miss a signing whose request it never got: a
	// signed request is not sent again), then a little more for the late
	// partials and their answers.
	settle := func(n int) {
		deadline := time.Now().Add(2 * time.Minute)
		var last [3]int64
		for still := 0; still < 30; time.Sleep(100 * time.Millisecond) {
			moved := false
			for i := range ended {
				if c := ended[i].Load(); c != last[i] {
					last[i], moved = c, true
				}
			}
			if moved {
				still = 0
			} else {
				still++
			}
			if time.Now().After(deadline) {
				b.Fatalf("the consoles never settled: %v ended of %d", last, n)
			}
		}
		var missed int64
		for i := range last {
			missed += int64(n) - last[i]
		}
		if n > 0 {
			b.ReportMetric(float64(missed), fmt.Sprintf("unseen@%d", n))
		}
	}
	settle(0)
	start := liveHeapMB()
	b.ReportMetric(start, "heap-MB@0")
	msg := []byte("benchmark message")
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := signers[i%3].con.App.RequestSignature(ctx, kr.KeyID, msg, ""); err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		}()
		if n := i + 1; n == 100 || n == 1000 || n == 10000 {
			wg.Wait()
			b.StopTimer()
			settle(n)
			h := liveHeapMB()
			if dir := os.Getenv("COSIGNER_HEAP_PROFILES"); dir != "" {
				// What is live now, for pprof -base between two of them.
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%d.pprof", n)))
				if err == nil {
					pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
			b.ReportMetric(h, fmt.Sprintf("heap-MB@%d", n))
			b.ReportMetric(h-start, fmt.Sprintf("growth-MB@%d", n))
			b.StartTimer()
		}
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

// fillHistory adds n ended signings to a stopped console's store: copies
// of its newest ended signing (a real one) with fresh ids and times,
// written through the same path as a live ending (sealed, chained,
// indexed).
func fillHistory(b *testing.B, path string, n int) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, path, store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	v := coreVault{Store: st}
	key, err := core.ConsoleKey(ctx, v)
	if err != nil {
		b.Fatal(err)
	}
	vs := core.NewVaultStore(v)
	last, err := vs.History(ctx, 1)
	if err != nil || len(last) != 1 {
		b.Fatalf("no ended signing to copy: %v", err)
	}
	tmpl := *last[0]
	for i := range n {
		e := tmpl
		rand.Read(e.ID[:])
		e.Created = tmpl.Created.Add(time.Duration(i+1) * time.Millisecond)
		e.EndedAt = e.Created.Add(5 * time.Millisecond)
		if err := vs.FinishCeremony(ctx, e.ID, &e, key); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			if err := vs.Durable()(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := vs.Durable()(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkStartup is a console's start, from opening its store (with
// fsync, as a console does) to its App restored and running (its first
// call answered), with 0, 1,000 and 100,000 ended signings in its store.
// The history beyond the first real signing is filled by fillHistory.
func BenchmarkStartup(b *testing.B) {
	// start: every start of the co-signer (console, daemon, cosigner sign)
	// publishes no past results; the screen asks for them once it runs.
	// history500: a start that reads the newest 500 first (the core's
	// default, how the console's screen started before), for comparison.
	for _, mode := range []string{"start", "history500"} {
		for _, past := range []int{0, 1000, 100000} {
			benchStartup(b, mode, past)
		}
	}
}

func benchStartup(b *testing.B, mode string, past int) {
	b.Run(fmt.Sprintf("%s/past=%d", mode, past), func(b *testing.B) {
		r, signers := benchGroupRelay(b, 3, false)
		ctx := context.Background()
		kr, err := signers[0].con.App.StartKeygen(ctx, 2)
		if err != nil {
			b.Fatal(err)
		}
		waitKeyB(b, signers[1], kr.KeyID)
		waitKeyB(b, signers[2], kr.KeyID)
		s := signers[0]
		if past > 0 {
			if _, err := s.con.App.RequestSignature(ctx, kr.KeyID, []byte("a real one"), ""); err != nil {
				b.Fatal(err)
			}
		}
		s.stop()
		if past > 1 {
			fillHistory(b, s.path, past-1)
		}
		var took, opened []time.Duration
		for b.Loop() {
			start := time.Now()
			st, err := store.Open(ctx, s.path, store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			opened = append(opened, time.Since(start))
			con, err := openConsole(ctx, consoleConfig{Name: s.name, Dialer: r.dialer, Store: st, AutoApprove: true,
				RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: time.Hour, NoHistoryAtStart: mode == "start"})
			if err != nil {
				b.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- con.Run(runCtx) }()
			if _, err := con.App.Keys(ctx); err != nil {
				b.Fatal(err)
			}
			took = append(took, time.Since(start))
			b.StopTimer()
			cancel()
			<-done
			st.Close()
			b.StartTimer()
		}
		reportMedian(b, took)
		// The store's open (its damage check reads every page) and the
		// rest (core's restore, the device's start) apart.
		var app []time.Duration
		for i := range took {
			app = append(app, took[i]-opened[i])
		}
		slices.Sort(opened)
		slices.Sort(app)
		b.ReportMetric(float64(opened[len(opened)/2].Microseconds())/1000, "open-ms")
		b.ReportMetric(float64(app[len(app)/2].Microseconds())/1000, "app-ms")
		if fi, err := os.Stat(s.path); err == nil {
			b.ReportMetric(float64(fi.Size())/(1<<20), "file-MB")
		}
	})
}

// BenchmarkIdleDaemonRSS builds the cosigner binary, runs `cosigner daemon`
// on a linked data folder holding 0 or 10,000 ended signings (a real one,
// then fillHistory's copies), and reports its resident memory (VmRSS, and
// RssAnon: the part that is not the store's mapped file) once it has been
// up and idle for 5 seconds. One op is one daemon start.
func BenchmarkIdleDaemonRSS(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "cosigner")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for _, past := range []int{0, 10000} {
		b.Run(fmt.Sprintf("past=%d", past), func(b *testing.B) {
			r, signers := benchGroupRelay(b, 3, false)
			ctx := context.Background()
			kr, err := signers[0].con.App.StartKeygen(ctx, 2)
			if err != nil {
				b.Fatal(err)
			}
			waitKeyB(b, signers[1], kr.KeyID)
			waitKeyB(b, signers[2], kr.KeyID)
			s := signers[0]
			if past > 0 {
				if _, err := s.con.App.RequestSignature(ctx, kr.KeyID, []byte("a real one"), ""); err != nil {
					b.Fatal(err)
				}
			}
			s.stop()
			if past > 1 {
				fillHistory(b, s.path, past-1)
			}
			dir, err := os.MkdirTemp("", "rss")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(dir)
			data := filepath.Join(dir, "d")
			if err := os.Mkdir(data, 0o700); err != nil {
				b.Fatal(err)
			}
			for from, to := range map[string]string{s.path: "device.db", s.path + ".key": "store.key"} {
				if err := os.Rename(from, filepath.Join(data, to)); err != nil {
					b.Fatal(err)
				}
			}
			cfg := filepath.Join(dir, "config.toml")
			if err := os.WriteFile(cfg, fmt.Appendf(nil, "[server]\nurl = %q\n[device]\nname = %q\n", r.srv.URL(), s.name), 0o600); err != nil {
				b.Fatal(err)
			}
			var rss, anon []float64
			for b.Loop() {
				cmd := exec.Command(bin, "daemon", "--config", cfg, "--data", data)
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
					if _, err := os.Stat(filepath.Join(data, "cosigner.sock")); err == nil {
						break
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						b.Fatal("the daemon never served its socket")
					}
				}
				time.Sleep(5 * time.Second)
				status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
				if err != nil {
					b.Fatal(err)
				}
				rss = append(rss, statusMB(status, "VmRSS:"))
				anon = append(anon, statusMB(status, "RssAnon:"))
				cmd.Process.Signal(syscall.SIGTERM)
				if err := cmd.Wait(); err != nil {
					b.Fatalf("daemon: %v", err)
				}
			}
			slices.Sort(rss)
			slices.Sort(anon)
			b.ReportMetric(rss[len(rss)/2], "rss-MB")
			b.ReportMetric(anon[len(anon)/2], "anon-MB")
		})
	}
}

// statusMB reads a "Field:  N kB" line of /proc/PID/status, in MB.
func statusMB(status []byte, field string) float64 {
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}
