package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// fillStore writes an account and about n bytes of application records, so
// that the file spans many pages.
func fillStore(t *testing.T, s *Store, n int) {
	t.Helper()
	ctx := t.Context()
	if err := s.SaveAccount(ctx, testAccount(t)); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; n > 0; i++ {
		v := make([]byte, 100+rng.IntN(3000))
		n -= len(v)
		if err := s.AppUpdate(ctx, func(tx *AppTx) error {
			return tx.Put("test.records", fmt.Appendf(nil, "r%06d", i), v)
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// pageOf returns page size and used pages from the file's first meta page
// (bbolt's layout: a 16-byte page header, then magic, version, page size,
// flags as u32, root bucket (16 bytes), freelist and high water mark).
func pageOf(b []byte) (ps, pages int) {
	return int(binary.NativeEndian.Uint32(b[24:])), int(binary.NativeEndian.Uint64(b[56:]))
}

func scribble(b []byte, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// storeDamages are what happens to store files: a full disk, a bad copy, a
// disk that loses writes.
var storeDamages = []struct {
	name   string
	damage func(b []byte) []byte
}{
	{"empty file", func(b []byte) []byte { return b[:0] }},
	{"truncated to half", func(b []byte) []byte { ps, _ := pageOf(b); return b[:len(b)/2/ps*ps] }},
	{"truncated to 4 pages", func(b []byte) []byte { ps, _ := pageOf(b); return b[:4*ps] }},
	{"zeroed meta page 0", func(b []byte) []byte { ps, _ := pageOf(b); clear(b[:ps]); return b }},
	{"zeroed meta page 1", func(b []byte) []byte { ps, _ := pageOf(b); clear(b[ps : 2*ps]); return b }},
	{"zeroed data pages", func(b []byte) []byte {
		ps, n := pageOf(b)
		clear(b[2*ps : n*ps])
		return b
	}},
	{"a few zeroed pages", func(b []byte) []byte {
		ps, n := pageOf(b)
		clear(b[n/2*ps : (n/2+4)*ps])
		return b
	}},
	{"garbage data pages", func(b []byte) []byte {
		ps, n := pageOf(b)
		scribble(b[2*ps:n*ps], 5)
		return b
	}},
	{"garbage file", func(b []byte) []byte { scribble(b, 6); return b }},
}

func TestADamagedStoreIsReportedAndLeftAsItIs(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "state.db")
	s := openStore(t, src, Options{})
	fillStore(t, s, 256<<10)
	s.Close()
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(src + ".key")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range storeDamages {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "state.db")
			bad := d.damage(bytes.Clone(good))
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+".key", key, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(t.Context(), path, Options{})
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open: %v, want ErrDamaged", err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, bad) {
				t.Errorf("the store file changed: %d bytes, was %d", len(after), len(bad))
			}
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, []string{"state.db", "state.db.key"}) {
				t.Errorf("the folder holds %v", names)
			}
		})
	}
}

func TestAMissingStoreIsCreated(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s := openStore(t, path, Options{})
	fillStore(t, s, 1000)
	s.Close()
	s = openStore(t, path, Options{})
	if _, err := s.Account(t.Context()); err != nil {
		t.Fatalf("reopened store: %v", err)
	}
}

func TestRecordsWithoutAHeaderAreDamageNotANewStore(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	s := openStore(t, path, Options{})
	fillStore(t, s, 1000)
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketHeader) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	before, _ := os.ReadFile(path)
	if _, err := Open(t.Context(), path, Options{}); !errors.Is(err, ErrDamaged) {
		t.Fatalf("Open: %v, want ErrDamaged", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Error("the store file changed")
	}
}
