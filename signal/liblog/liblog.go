// Package liblog installs the logger of go.mau.fi/libsignal. The library's
// default logger prints to stdout (which would corrupt a full-screen UI) and
// is set up lazily without synchronisation (a data race between the first
// concurrent calls). Call Silence once at start, before any libsignal use;
// there is deliberately no init().
package liblog

import (
	"sync"

	"go.mau.fi/libsignal/logger"
)

var once sync.Once

// Silence installs a logger that discards everything libsignal logs. Its
// messages can contain key material, so they are never worth keeping. Safe
// to call more than once and from several goroutines.
func Silence() {
	once.Do(func() {
		var l logger.Loggable = discard{}
		logger.Setup(&l)
	})
}

type discard struct{}

func (discard) Debug(string, string)   {}
func (discard) Info(string, string)    {}
func (discard) Warning(string, string) {}
func (discard) Error(string, string)   {}
func (discard) Configure(string)       {}
