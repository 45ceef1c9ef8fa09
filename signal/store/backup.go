package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/signal-mpc/cosigner/signal/prekey"

	"github.com/signal-mpc/cosigner/signal/internal/atomicfile"
	"github.com/signal-mpc/cosigner/signal/internal/boltfile"
	bolt "go.etcd.io/bbolt"
)

// keyRestored, in the header of a backup copy, says the file is one: the
// time of the backup (unix nanoseconds). Open resets such a store and
// deletes the mark (restoreReset), leaving keyRestoredAt: the time of the
// reset, kept for good (RestoredAt).
var (
	keyRestored   = []byte("restored")
	keyRestoredAt = []byte("restoredat")
)

// Backup writes a consistent copy of the store, as of its last commit, to
// path: still encrypted under the store's key (the key file or the
// passphrase is not in it, and must be kept apart), mode 0600, written
// whole or not at all. An existing path is left alone (an error wrapping
// fs.ErrExist) unless replace. The copy is marked as a backup, so that the
// store opened from it after a restore starts its Signal sessions afresh
// and lets the application abandon what it had begun before the backup
// (Options.AfterRestore): a restored ratchet or ceremony state would be
// one the others have already seen.
func (s *Store) Backup(ctx context.Context, path string, replace bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := atomicfile.Create(path, replace, func(tmp string) error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		// One read transaction: bbolt writes the file as of its start,
		// while the group commit goes on.
		err = s.db.View(func(tx *bolt.Tx) error {
			_, err := tx.WriteTo(f)
			return err
		})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return markBackup(tmp, time.Now())
	})
	switch {
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("store: backup: %s exists: %w", path, err)
	case err != nil:
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	return nil
}

// markBackup sets the backup mark in the copy at path.
func markBackup(path string, at time.Time) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second,
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketHeader)
		if h == nil {
			return fmt.Errorf("%w: no header", ErrCorrupt)
		}
		return h.Put(keyRestored, binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Restored says what Open did with a store restored from a backup.
type Restored struct {
	BackupTime time.Time // when the backup was made
	Sessions   int       // Signal sessions deleted
}

// Restored returns what Open reset because the store came from a backup,
// and false when it did not.
func (s *Store) Restored() (Restored, bool) {
	return s.restored, !s.restored.BackupTime.IsZero()
}

// restoreReset resets a store opened from a backup copy, in one
// transaction, before it is used: it deletes every Signal session (the
// peers' ratchets have moved on since the copy, and reusing old chain
// keys would encrypt twice under the same keys; the next message to each
// peer starts a new session from its prekeys, as after any lost session),
// lets the application retire its own records (Options.AfterRestore),
// then deletes the backup mark. Identity keys and prekeys stay; the
// server's copies of them are replaced at the next upkeep.
func (s *Store) restoreReset(ctx context.Context, path string, o Options) error {
	var marked bool
	err := boltfile.View(s.db, func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketHeader)
		if v := h.Get(keyRestoredAt); len(v) == 8 {
			s.restoredAt = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		}
		marked = h.Get(keyRestored) != nil
		return nil
	})
	if !marked || err != nil {
		if errors.Is(err, boltfile.ErrDamaged) {
			return damaged(path, err)
		}
		return err
	}
	var at time.Time
	var sessions int
	now := time.Now()
	err = boltfile.Update(s.db, func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketHeader)
		v := h.Get(keyRestored)
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("%w: backup mark of %d bytes", ErrCorrupt, len(v))
		}
		at = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		t := &txn{tx: tx}
		// Every server's device: the sessions of each identity go, and
		// the server may hold keys the lost store made after the copy:
		// the signed and last-resort keys are sent again (the record of
		// what the server holds goes), and every one-time key is
		// replaced.
		for _, ns := range namespaces(tx) {
			for _, kind := range []prekey.Identity{prekey.ACI, prekey.PNI} {
				kb, err := bucketPath(tx, false, append(slices.Clone(ns), []byte(kind.String())))
				if err != nil {
					return err
				}
				if kb == nil {
					continue
				}
				if sb := kb.Bucket(bucketSessions); sb != nil {
					sessions += sb.Stats().KeyN
					if err := kb.DeleteBucket(bucketSessions); err != nil {
						return err
					}
				}
				path := append(slices.Clone(ns), []byte(kind.String()), bucketServerKeys)
				if err := t.delete(path, keyServerKeys); err != nil {
					return err
				}
				if err := s.putTx(t, path, keyOneTimeStale, []byte{1}); err != nil {
					return err
				}
			}
		}
		if o.AfterRestore != nil {
			if err := o.AfterRestore(ctx, &AppTx{s: s, tx: tx, w: t}, at); err != nil {
				return fmt.Errorf("after restore: %w", err)
			}
		}
		if err := h.Put(keyRestoredAt, binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))); err != nil {
			return err
		}
		return h.Delete(keyRestored)
	})
	if errors.Is(err, boltfile.ErrDamaged) {
		return damaged(path, err)
	}
	if err != nil {
		return fmt.Errorf("store: reset after restore: %w", err)
	}
	if !at.IsZero() {
		s.restored, s.restoredAt = Restored{BackupTime: at, Sessions: sessions}, now
	}
	return nil
}

// namespaces lists the bucket paths of every server's device in the file:
// the default one's (the top level, nil) first.
func namespaces(tx *bolt.Tx) [][][]byte {
	out := [][][]byte{nil}
	if b := tx.Bucket(bucketServers); b != nil {
		_ = b.ForEachBucket(func(name []byte) error {
			out = append(out, [][]byte{bucketServers, bytes.Clone(name)})
			return nil
		})
	}
	return out
}

// RestoredAt returns when this store was last opened from a backup copy,
// or zero if never. What others began before then, this console may have
// answered from the state it lost.
func (s *Store) RestoredAt() time.Time { return s.restoredAt }
