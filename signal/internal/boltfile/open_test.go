package boltfile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

var testOptions = bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType}

// writeFile makes a bbolt file of about size bytes of values (nested
// buckets, small values and values that overflow a page) and returns its
// bytes.
func writeFile(t testing.TB, path string, size int, o bolt.Options) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &o)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for written := 0; written < size; {
		err := db.Update(func(tx *bolt.Tx) error {
			for i := 0; i < 50 && written < size; i++ {
				b, err := tx.CreateBucketIfNotExists(fmt.Appendf(nil, "bucket%d", rng.IntN(4)))
				if err != nil {
					return err
				}
				if rng.IntN(3) == 0 {
					if b, err = b.CreateBucketIfNotExists([]byte("nested")); err != nil {
						return err
					}
				}
				v := make([]byte, 16+rng.IntN(6000))
				for j := range v {
					v[j] = byte(rng.Uint32())
				}
				if err := b.Put(fmt.Appendf(nil, "key%08d", rng.IntN(1<<20)), v); err != nil {
					return err
				}
				written += len(v)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pageSizeOf(b []byte) int { return int(binary.NativeEndian.Uint32(b[pageHeaderSize+8:])) }

func pgidOf(b []byte) int { return int(binary.NativeEndian.Uint64(b[pageHeaderSize+40:])) }

// damages are the ways a file gets hurt: each turns good file bytes into
// damaged ones.
var damages = []struct {
	name   string
	damage func(b []byte) []byte
}{
	{"empty file", func(b []byte) []byte { return nil }},
	{"a few bytes", func(b []byte) []byte { return b[:100] }},
	{"truncated to 4 pages", func(b []byte) []byte { return b[:4*pageSizeOf(b)] }},
	{"truncated to 256 KiB", func(b []byte) []byte { return b[:256<<10] }},
	{"truncated by one byte", func(b []byte) []byte { return b[:len(b)-1] }},
	{"zeroed meta page 0", func(b []byte) []byte { clear(b[:pageSizeOf(b)]); return b }},
	{"zeroed meta page 1", func(b []byte) []byte { ps := pageSizeOf(b); clear(b[ps : 2*ps]); return b }},
	{"meta checksum off by one bit", func(b []byte) []byte { b[pageHeaderSize+60] ^= 1; return b }},
	{"zeroed data pages", func(b []byte) []byte {
		ps, n := pageSizeOf(b), pgidOf(b)
		clear(b[n/3*ps : (n/3+8)*ps])
		return b
	}},
	{"zeroed every data page", func(b []byte) []byte {
		ps, n := pageSizeOf(b), pgidOf(b)
		clear(b[2*ps : n*ps])
		return b
	}},
	{"garbage data pages", func(b []byte) []byte {
		ps, n := pageSizeOf(b), pgidOf(b)
		garbage(b[n/2*ps:(n/2+16)*ps], 7)
		return b
	}},
	{"garbage after the meta pages", func(b []byte) []byte {
		garbage(b[2*pageSizeOf(b):], 8)
		return b
	}},
	{"garbage file", func(b []byte) []byte { garbage(b, 9); return b }},
	// Every page reads, but leaves' keys are out of order: bbolt's own
	// check finds it. Every leaf of keys is changed: one alone may be a
	// free page, which nothing reads.
	{"keys out of order", func(b []byte) []byte {
		ps, n := pageSizeOf(b), pgidOf(b)
		changed := false
		for id := 2; id < n; id++ {
			p := b[id*ps:]
			if binary.NativeEndian.Uint16(p[8:]) != 0x02 || binary.NativeEndian.Uint16(p[10:]) < 2 {
				continue
			}
			elem := p[pageHeaderSize:] // flags, pos, ksize, vsize (u32 each); pos counts from the element
			pos, ksize := binary.NativeEndian.Uint32(elem[4:]), binary.NativeEndian.Uint32(elem[8:])
			if key := elem[pos : pos+ksize]; bytes.HasPrefix(key, []byte("key")) {
				key[0] = 0xff
				changed = true
			}
		}
		if !changed {
			panic("no leaf of keys")
		}
		return b
	}},
	// bbolt maps the page and faults: only a recover with panic-on-fault
	// catches it.
	{"bucket root far past the file", func(b []byte) []byte {
		ps := pageSizeOf(b)
		root := b[int(binary.NativeEndian.Uint64(b[pageHeaderSize+16:]))*ps:]
		// The root page is a leaf of bucket entries: flags, pos, ksize,
		// vsize (u32 each) per element; pos counts from the element; the
		// value (after the key) starts with the bucket's root page id.
		elem := root[pageHeaderSize:]
		pos, ksize := binary.NativeEndian.Uint32(elem[4:]), binary.NativeEndian.Uint32(elem[8:])
		binary.NativeEndian.PutUint64(elem[pos+ksize:], 1<<30)
		return b
	}},
}

func garbage(b []byte, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

func TestOpenReportsDamageAndLeavesTheFileAsItWas(t *testing.T) {
	t.Parallel()
	good := writeFile(t, filepath.Join(t.TempDir(), "good.db"), 3<<20, testOptions)
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "x.db")
			bad := d.damage(bytes.Clone(good))
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(path, 0o600, testOptions)
			if err == nil {
				db.Close()
			}
			t.Log(err)
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open: %v, want ErrDamaged", err)
			}
			after, rerr := os.ReadFile(path)
			if rerr != nil || !bytes.Equal(after, bad) {
				t.Fatalf("the file changed (%d bytes before, %d after, %v)", len(bad), len(after), rerr)
			}
		})
	}
}

func TestOpenCreatesOnlyAMissingFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "new.db")
	db, err := Open(path, 0o600, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Opened again, the same file with its content.
	db, err = Open(path, 0o600, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte("b")).Get([]byte("k")); string(v) != "v" {
			return fmt.Errorf("got %q", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestOpenAcceptsWholeFiles(t *testing.T) {
	t.Parallel()
	for _, o := range []bolt.Options{testOptions, {}, {PageSize: 16384}} {
		t.Run(fmt.Sprintf("%+v", o.PageSize), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "x.db")
			writeFile(t, path, 1<<20, o)
			db, err := Open(path, 0o600, o)
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
		})
	}
}

func TestOpenWaitsForTheWritersLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := Open(path, 0o600, testOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	o := testOptions
	o.Timeout = 100e6
	if _, err := Open(path, 0o600, o); !errors.Is(err, bolt.ErrTimeout) {
		t.Fatalf("second Open: %v, want bolt.ErrTimeout", err)
	}
}

func TestCheckHeaderPassesWhatBboltWrote(t *testing.T) {
	t.Parallel()
	b := writeFile(t, filepath.Join(t.TempDir(), "x.db"), 256<<10, bolt.Options{})
	if err := CheckHeader(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCheck measures what the check adds to an open, on a store of a
// few MB.
func BenchmarkCheck(b *testing.B) {
	path := filepath.Join(b.TempDir(), "x.db")
	writeFile(b, path, 4<<20, testOptions)
	for b.Loop() {
		if err := check(path, 0, true); err != nil {
			b.Fatal(err)
		}
	}
}

// Tx.WriteTo writes both meta pages with the same txid.
func TestOpenAcceptsACopyMadeByWriteTo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	writeFile(t, src, 256<<10, testOptions)
	db, err := bolt.Open(src, 0o600, &testOptions)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "copy.db")
	if err := db.View(func(tx *bolt.Tx) error { return tx.CopyFile(dst, 0o600) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if db, err = Open(dst, 0o600, testOptions); err != nil {
		t.Fatal(err)
	}
	db.Close()
}
