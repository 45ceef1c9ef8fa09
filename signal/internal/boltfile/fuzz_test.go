package boltfile

import (
	"bytes"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzCheckHeader: any bytes give an answer, never a panic.
func FuzzCheckHeader(f *testing.F) {
	good := writeFile(f, filepath.Join(f.TempDir(), "x.db"), 64<<10, bolt.Options{PageSize: 1024})
	f.Add(good)
	f.Add(good[:2048])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = CheckHeader(bytes.NewReader(b), int64(len(b)))
	})
}
