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
