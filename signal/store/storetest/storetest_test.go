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

func TestLoadDiskWritesOnlyWhileTheBenchmarkRuns(t *testing.T) {
	t.Setenv(LoadEnv, "2")
	dir := t.TempDir()
	var seen int
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
	if seen != 2 {
		t.Errorf("saw %d load files while the benchmark ran, want 2", seen)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Fatalf("left %d entries (%v)", len(entries), err)
	}
}

func TestLoadDiskDoesNothingUnlessAsked(t *testing.T) {
	t.Setenv(LoadEnv, "")
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
	if seen != 0 {
		t.Errorf("saw %d load files without a load, want 0", seen)
	}
	if n := loadWriters(); n != 0 {
		t.Errorf("loadWriters() = %d without a load", n)
	}
}
