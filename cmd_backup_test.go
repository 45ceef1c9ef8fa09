package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/signal-mpc/cosigner/signal/store"
)

// consoleDir makes a configuration and a data folder holding a store with
// one record, as the commands find them; it returns the flags naming them.
func consoleDir(t *testing.T) (flags []string, data string) {
	t.Helper()
	dir := t.TempDir()
	data = filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("[server]\nurl = \"http://127.0.0.1:9\"\n[device]\nname = \"alice\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), filepath.Join(data, "device.db"), store.Options{KeyFile: filepath.Join(data, "store.key")})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AppUpdate(t.Context(), func(tx *store.AppTx) error {
		return tx.Put("test", []byte("share"), bytes.Repeat([]byte("s"), 20000))
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return []string{"--config", cfg, "--data", data}, data
}

// The commands on a damaged store: exit 1 with what to do, never a panic
// (exit 2, a stack trace) nor a new empty store.
func TestEveryCommandRefusesADamagedStoreWithExitOne(t *testing.T) {
	t.Parallel()
	damages := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"truncated", func(b []byte) []byte { return b[:16384] }},
		{"garbage after the meta pages", func(b []byte) []byte {
			rng := rand.New(rand.NewPCG(1, 1))
			for i := 8192; i < len(b); i++ {
				b[i] = byte(rng.Uint32())
			}
			return b
		}},
	}
	commands := [][]string{{"me"}, {"group", "list"}, {"keygen", "-t", "2"}, {"backup", "copy.db"}, {"--headless"}}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			flags, data := consoleDir(t)
			path := filepath.Join(data, "device.db")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			bad := d.damage(b)
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range commands {
				if args[0] == "backup" {
					args = []string{"backup", filepath.Join(t.TempDir(), "copy.db")}
				}
				r := runArgs(t, append(args, flags...)...)
				r.check(t, exitFailure, nil, []string{"the store is damaged: restore it from a backup"})
				if strings.Contains(r.stderr, "goroutine") {
					t.Errorf("%v: a stack trace: %s", args, r.stderr)
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(after, bad) {
					t.Fatalf("%v changed the damaged store", args)
				}
			}
		})
	}
}

func TestTheRelayRefusesADamagedStoreWithExitOne(t *testing.T) {
	t.Parallel()
	for _, size := range []int64{0, 16384} {
		dir := t.TempDir()
		path := filepath.Join(dir, "relay.db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("queue"))
			if err != nil {
				return err
			}
			return b.Put([]byte("k"), bytes.Repeat([]byte("v"), 30000))
		}); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if err := os.Truncate(path, size); err != nil {
			t.Fatal(err)
		}
		r := runArgs(t, "relay", "--data", dir, "--listen", "127.0.0.1:0")
		r.check(t, exitFailure, nil, []string{"the store is damaged: restore it from a backup"})
		if fi, _ := os.Stat(path); fi.Size() != size {
			t.Errorf("relay.db of %d bytes is now %d", size, fi.Size())
		}
	}
}

func TestBackupWritesACopyThatARestoredConsoleOpens(t *testing.T) {
	t.Parallel()
	flags, data := consoleDir(t)
	copyPath := filepath.Join(t.TempDir(), "backup.db")
	key, err := os.ReadFile(filepath.Join(data, "store.key"))
	if err != nil {
		t.Fatal(err)
	}
	r := runArgs(t, append([]string{"backup", copyPath}, flags...)...)
	r.check(t, exitOK, []string{""}, []string{"the key is not in it", "store.key"})
	b, err := os.ReadFile(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, key) || bytes.Contains(b, bytes.Repeat([]byte("s"), 100)) {
		t.Fatal("the copy holds the key or a record in the clear")
	}
	if fi, _ := os.Stat(copyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("the copy has mode %v", fi.Mode().Perm())
	}
	runArgs(t, append([]string{"backup", copyPath}, flags...)...).check(t, exitFailure, []string{""}, []string{"exists (--force replaces it)"})
	runArgs(t, append([]string{"backup", "--force", copyPath}, flags...)...).check(t, exitOK, []string{""}, []string{"wrote"})
	for _, own := range []string{"device.db", "store.key"} {
		runArgs(t, append([]string{"backup", "--force", filepath.Join(data, own)}, flags...)...).
			check(t, exitFailure, []string{""}, []string{"this console's own " + own})
	}
	runArgs(t, "backup").check(t, exitUsage, []string{""}, []string{"name the FILE"})

	// Restored: the console says what it reset, once, and has its records.
	b, err = os.ReadFile(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "device.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runArgs(t, append([]string{"me"}, flags...)...)
	r.check(t, exitFailure, nil, []string{"restored from a backup", "0 ceremonies begun before the backup were abandoned", "not linked yet"})
	r = runArgs(t, append([]string{"me"}, flags...)...)
	if strings.Contains(r.stderr, "restored") {
		t.Errorf("the second open says it again: %s", r.stderr)
	}
	st, err := store.Open(t.Context(), filepath.Join(data, "device.db"), store.Options{KeyFile: filepath.Join(data, "store.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AppView(t.Context(), func(tx *store.AppTx) error {
		v, err := tx.Get("test", []byte("share"))
		if err == nil && len(v) != 20000 {
			t.Errorf("the restored record has %d bytes", len(v))
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
