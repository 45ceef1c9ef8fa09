//go:build unix

package boltfile

import (
	"errors"
	"os"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// lockShared takes a shared lock on f, as bbolt's read-only open does, so
// that the check never reads a file another process is writing. It waits
// up to timeout (forever when zero) for a writer's lock to go.
func lockShared(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if timeout > 0 && time.Now().After(deadline) {
			return bolt.ErrTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}
