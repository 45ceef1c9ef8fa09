package relay

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

// relayPages returns the page size and the used pages from the first meta
// page of a bbolt file (16-byte page header; page size at 24, high water
// mark at 56).
func relayPages(b []byte) (ps, pages int) {
	return int(binary.NativeEndian.Uint32(b[24:])), int(binary.NativeEndian.Uint64(b[56:]))
}

func relayScribble(b []byte, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

func TestADamagedRelayStoreIsReportedAndLeftAsItIs(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	st, err := openStore(src)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 40 {
		if err := st.db.Update(func(tx *bolt.Tx) error {
			v := make([]byte, 200+rng.IntN(5000))
			return tx.Bucket(bucketQueue).Put(fmt.Appendf(nil, "q%04d", i), v)
		}); err != nil {
			t.Fatal(err)
		}
	}
	st.close()
	good, err := os.ReadFile(filepath.Join(src, "relay.db"))
	if err != nil {
		t.Fatal(err)
	}
	damages := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"empty file", func(b []byte) []byte { return b[:0] }},
		{"truncated to 4 pages", func(b []byte) []byte { ps, _ := relayPages(b); return b[:4*ps] }},
		{"truncated to half", func(b []byte) []byte { ps, _ := relayPages(b); return b[:len(b)/2/ps*ps] }},
		{"zeroed meta page 0", func(b []byte) []byte { ps, _ := relayPages(b); clear(b[:ps]); return b }},
		{"zeroed meta page 1", func(b []byte) []byte { ps, _ := relayPages(b); clear(b[ps : 2*ps]); return b }},
		{"zeroed data pages", func(b []byte) []byte { ps, n := relayPages(b); clear(b[2*ps : n*ps]); return b }},
		{"garbage data pages", func(b []byte) []byte { ps, n := relayPages(b); relayScribble(b[2*ps:n*ps], 2); return b }},
		{"garbage file", func(b []byte) []byte { relayScribble(b, 3); return b }},
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "relay.db")
			bad := d.damage(bytes.Clone(good))
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := openStore(dir)
			if err == nil {
				st.close()
			}
			if !errors.Is(err, ErrDamaged) || !errors.Is(err, ErrStore) {
				t.Fatalf("openStore: %v, want ErrStore and ErrDamaged", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, bad) {
				t.Errorf("relay.db changed: %d bytes, was %d", len(after), len(bad))
			}
		})
	}
}
