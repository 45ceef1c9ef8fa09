// Package storetest helps benchmarks of durable code say how fast the disk
// was when they ran: on a VM the latency of a sync varies by a factor of two
// over a day, and durable figures follow it.
package storetest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// SyncLatency returns the median time of n 4 KiB overwrites of one file,
// each followed by its sync (fdatasync on Linux, what bbolt issues), in
// dir. The file is removed.
func SyncLatency(tb testing.TB, dir string, n int) time.Duration {
	tb.Helper()
	path := filepath.Join(dir, "sync-latency")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, 4096)
	const span = 16 // pages cycled through: overwrites, as in a store at rest
	for i := range span {
		if _, err := f.WriteAt(buf, int64(i*len(buf))); err != nil {
			tb.Fatal(err)
		}
	}
	if err := datasync(f); err != nil {
		tb.Fatal(err)
	}
	took := make([]time.Duration, n)
	for i := range took {
		if _, err := f.WriteAt(buf, int64(i%span*len(buf))); err != nil {
			tb.Fatal(err)
		}
		start := time.Now()
		if err := datasync(f); err != nil {
			tb.Fatal(err)
		}
		took[i] = time.Since(start)
	}
	slices.Sort(took)
	return took[n/2]
}

// Report adds the disk's sync latency (median of 50) to a benchmark's
// results as fsync-µs, and the writers LoadDisk runs, if any, as
// disk-writers.
func Report(b *testing.B) {
	b.Helper()
	b.ReportMetric(float64(SyncLatency(b, b.TempDir(), 50).Microseconds()), "fsync-µs")
	if n := loadWriters(); n > 0 {
		b.ReportMetric(float64(n), "disk-writers")
	}
}

// LoadEnv names the environment variable that makes LoadDisk start that
// many background writers.
const LoadEnv = "COSIGNER_BENCH_DISK_LOAD"

// LoadDisk reproduces a slow phase of the disk on demand: when
// COSIGNER_BENCH_DISK_LOAD is a positive number n, it starts n goroutines
// that each overwrite 4 KiB of a file of their own in dir and fdatasync it,
// in a loop, until the benchmark ends (so the fsync-µs that Report adds at
// the end is measured under the same load). A VM's disk slows down when
// its neighbours write; figures taken on a quiet disk say nothing of those
// hours, and waiting for them is not a method. Without the variable it
// does nothing. Report names the load (disk-writers).
func LoadDisk(b *testing.B, dir string) {
	b.Helper()
	v := os.Getenv(LoadEnv)
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 64 {
		b.Fatalf("%s=%q: want a number of writers from 0 to 64", LoadEnv, v)
	}
	if n == 0 {
		return
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		path := filepath.Join(dir, fmt.Sprintf("disk-load-%d", i))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer os.Remove(path)
			defer f.Close()
			buf := make([]byte, 4096)
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				// Sixteen pages cycled through, as SyncLatency does: the
				// file's size settles, so each sync is a data sync only.
				if _, err := f.WriteAt(buf, int64(j%16*len(buf))); err != nil {
					b.Error(err)
					return
				}
				if err := datasync(f); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
}

// loadWriters is the number of writers LoadDisk starts (0 when unset or
// invalid: LoadDisk itself reports a bad value).
func loadWriters() int {
	n, err := strconv.Atoi(os.Getenv(LoadEnv))
	if err != nil || n < 0 || n > 64 {
		return 0
	}
	return n
}
