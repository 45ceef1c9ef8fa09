package provision

import (
	"os"
	"testing"

	"github.com/signal-mpc/cosigner/signal/liblog"
)

func TestMain(m *testing.M) {
	liblog.Silence() // keygen in the tests calls libsignal
	os.Exit(m.Run())
}
