package boltfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzCheckHeader: any bytes give an answer, never a panic.
func FuzzCheckHeader(f *testing.F) {
	// A new file as bbolt writes it: two meta pages, a freelist page and
	// an empty root, 2 KiB in all (small inputs keep the fuzzer fast).
	path := filepath.Join(f.TempDir(), "x.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 512, NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	db.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	if err := CheckHeader(bytes.NewReader(good), int64(len(good))); err != nil {
		f.Fatalf("a new file: %v", err)
	}
	f.Add(good)
	f.Add(good[:1024])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = CheckHeader(bytes.NewReader(b), int64(len(b)))
	})
}
