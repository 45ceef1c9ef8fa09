package storetest

import (
	"os"
	"testing"
)

func TestSyncLatencyLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	SyncLatency(t, dir, 3)
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Fatalf("left %d entries (%v)", len(entries), err)
	}
}

func TestLoadDiskWritesOnlyWhileTheBenchmarkRunsAndOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		env     string
		writers int
	}{{"2", 2}, {"", 0}, {"0", 0}} {
		t.Run("COSIGNER_BENCH_DISK_LOAD="+tc.env, func(t *testing.T) {
			t.Setenv(LoadEnv, tc.env)
			dir := t.TempDir()
			seen := -1
			testing.Benchmark(func(b *testing.B) {
				LoadDisk(b, dir)
				for b.Loop() {
					entries, err := os.ReadDir(dir)
					if err != nil {
						b.Fatal(err)
					}
					seen = max(seen, len(entries))
				}
			})
			if seen != tc.writers {
				t.Errorf("saw %d load files while the benchmark ran, want %d", seen, tc.writers)
			}
			if n := loadWriters(); n != tc.writers {
				t.Errorf("loadWriters() = %d, want %d", n, tc.writers)
			}
			entries, err := os.ReadDir(dir)
			if err != nil || len(entries) != 0 {
				t.Fatalf("left %d entries (%v)", len(entries), err)
			}
		})
	}
}
