package main

import (
	"os"
	"runtime/debug"
)

// The garbage collector's pace. A console's live heap is a few megabytes,
// while each Signal message allocates tens of kilobytes (libsignal builds
// JSON records and debug strings), so at Go's default (collect when the
// heap doubles) a console under load collects every dozen messages, and
// collections cost it a third of its throughput (BENCHMARKS.md: 1,650
// against 3,200 messages a second between two consoles). Letting the heap
// grow to five times the live data keeps a console at tens of megabytes;
// the soft limit makes the collector work harder long before memory
// becomes a problem. GOGC and GOMEMLIMIT in the environment win.
const (
	gcPercent   = 400
	memoryLimit = 1 << 30
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
}
