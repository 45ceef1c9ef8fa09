package boltfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// openCounting opens path and says whether it checked every page.
func openCounting(t *testing.T, path string) (*bolt.DB, bool, error) {
	t.Helper()
	before := fullChecks.Load()
	db, err := Open(path, 0o600, testOptions)
	return db, fullChecks.Load() != before, err
}

func putOne(t *testing.T, db *bolt.DB, k string) {
	t.Helper()
	if err := Update(db, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("t"))
		if err != nil {
			return err
		}
		return b.Put([]byte(k), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
}

// A clean close lets the next open skip the walk, once: the marker is
// taken at that open, so a console killed after it is checked in full.
func TestACleanCloseLetsTheNextOpenSkipTheWalkOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	writeFile(t, path, 1<<20, testOptions)
	db, full, err := openCounting(t, path)
	if err != nil || !full {
		t.Fatalf("first open: full check %v, %v", full, err)
	}
	putOne(t, db, "a")
	if err := CloseClean(db); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + markerSuffix); err != nil {
		t.Fatalf("no marker after a clean close: %v", err)
	}
	db, full, err = openCounting(t, path)
	if err != nil || full {
		t.Fatalf("open after a clean close: full check %v, %v", full, err)
	}
	if _, err := os.Stat(path + markerSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the marker outlived the open: %v", err)
	}
	if err := View(db, func(tx *bolt.Tx) error {
		if string(tx.Bucket([]byte("t")).Get([]byte("a"))) != "v" {
			return errors.New("the value written before the clean close is gone")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	putOne(t, db, "b")
	db.Close() // as a kill would leave it: no marker
	db, full, err = openCounting(t, path)
	if err != nil || !full {
		t.Fatalf("open after an unclean close: full check %v, %v", full, err)
	}
	db.Close()
}

// A file that changed after its clean close is checked in full, and a
// damaged one is refused whatever its marker says.
func TestAFileChangedAfterACleanCloseIsCheckedInFull(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(t *testing.T, path string)
		damaged bool
	}{
		{"written by another opener", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, &testOptions)
			if err != nil {
				t.Fatal(err)
			}
			putOne(t, db, "c")
			db.Close()
		}, false},
		{"grown by a page", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(make([]byte, os.Getpagesize()))
			f.Close()
		}, false},
		{"truncated", func(t *testing.T, path string) {
			fi, _ := os.Stat(path)
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"replaced by another file", func(t *testing.T, path string) {
			other := path + ".other"
			writeFile(t, other, 256<<10, testOptions)
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.db")
			writeFile(t, path, 1<<20, testOptions)
			db, err := Open(path, 0o600, testOptions)
			if err != nil {
				t.Fatal(err)
			}
			if err := CloseClean(db); err != nil {
				t.Fatal(err)
			}
			tc.change(t, path)
			db, full, err := openCounting(t, path)
			if tc.damaged {
				if !errors.Is(err, ErrDamaged) {
					t.Fatalf("a damaged file opened: %v", err)
				}
				return
			}
			if err != nil || !full {
				t.Fatalf("full check %v, %v", full, err)
			}
			db.Close()
		})
	}
}

// The clean close writes the freelist into the file, so that bbolt reads it
// instead of rebuilding it from every page; the next commit drops it again.
func TestACleanCloseKeepsTheFreelistInTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	writeFile(t, path, 256<<10, testOptions)
	db, err := Open(path, 0o600, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := CloseClean(db); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	m0, err := readMeta(f, fi.Size(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	m1, err := readMeta(f, fi.Size(), int64(m0.pageSize), 1)
	if err != nil {
		t.Fatal(err)
	}
	newest := m0
	if m1.txid > m0.txid {
		newest = m1
	}
	if newest.freelist == noFreelist {
		t.Fatal("the clean close left no freelist in the file")
	}
}
