package liblog

import (
	"testing"

	"go.mau.fi/libsignal/logger"
)

func TestSilenceInstallsADiscardingLoggerOnce(t *testing.T) {
	t.Parallel()
	Silence()
	first := logger.Logger
	Silence()
	if _, ok := first.(discard); !ok || logger.Logger != first {
		t.Fatalf("logger is %T, want the discarding logger", logger.Logger)
	}
	logger.Debug("not printed")
}
