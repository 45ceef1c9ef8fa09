//go:build !unix

package boltfile

import (
	"os"
	"time"
)

// lockShared is a no-op where flock is missing: bbolt's read-only open,
// which follows, takes the lock.
func lockShared(*os.File, time.Duration) error { return nil }
