// Package storetest helps benchmarks of durable code say how fast the disk
// was when they ran: on a VM the latency of a sync varies by a factor of two
// over a day, and durable figures follow it.
package storetest

import (
	"os"
	"path/filepath"
	"slices"
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
// results as fsync-µs.
func Report(b *testing.B) {
	b.Helper()
	b.ReportMetric(float64(SyncLatency(b, b.TempDir(), 50).Microseconds()), "fsync-µs")
}
