package relay

import (
	"os"
	"testing"

	"go.mau.fi/libsignal/logger"
)

// quietLogger silences go.mau.fi/libsignal, whose package-global logger is
// set lazily without synchronisation: the tests sign with libsignal from
// many goroutines, so the logger must be in place before any of them runs.
type quietLogger struct{}

func (quietLogger) Debug(string, string)   {}
func (quietLogger) Info(string, string)    {}
func (quietLogger) Warning(string, string) {}
func (quietLogger) Error(string, string)   {}
func (quietLogger) Configure(string)       {}

func TestMain(m *testing.M) {
	var l logger.Loggable = quietLogger{}
	logger.Setup(&l)
	os.Exit(m.Run())
}
