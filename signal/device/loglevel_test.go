package device

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// levelRecorder keeps each log record's level by message.
type levelRecorder struct {
	mu     sync.Mutex
	levels map[string]slog.Level
}

func (l *levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *levelRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *levelRecorder) WithGroup(string) slog.Handler            { return l }
func (l *levelRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.levels[r.Message] = r.Level
	return nil
}

func (l *levelRecorder) level(msg string) (slog.Level, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lv, ok := l.levels[msg]
	return lv, ok
}

// The details of the prekey upkeep are debug lines: a console logging at
// info (the default) does not show them.
func TestPrekeyUploadsAreLoggedAtDebug(t *testing.T) {
	t.Parallel()
	d := startRelay(t)
	c, _ := linkedStore(t, d)
	rec := &levelRecorder{levels: map[string]slog.Level{}}
	// Linked with 5 one-time keys, below the mark: the first check uploads.
	c.runWithKeys(t, d, KeyConfig{Interval: 10 * time.Millisecond, LowWater: 8, Batch: 8}, slog.New(rec))
	eventually(t, "an upload", func() bool { _, ok := rec.level("prekeys uploaded"); return ok })
	if lv, _ := rec.level("prekeys uploaded"); lv != slog.LevelDebug {
		t.Fatalf("prekeys uploaded logged at %v, want debug", lv)
	}
}
