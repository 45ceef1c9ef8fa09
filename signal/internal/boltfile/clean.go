package boltfile

// A clean close lets the next open skip the walk over every page. The walk
// and bbolt's own rebuild of its freelist (the stores keep none in the file
// while they run: a page write per commit saved) cost time in proportion to
// the file, which grows with a console's history: about 360 ms for 100,000
// past signings. CloseClean writes the freelist into the file with one last
// commit and leaves a marker naming the file as it then is (size,
// modification time, inode and both meta pages); Open takes the marker away
// before anything else and skips the walk only when the file still matches
// it. Any commit since changes a meta page, so a console killed after it
// opened again, a file replaced, truncated or written to by anything else,
// all get the full check; what is not caught is damage that keeps the size,
// the time and both meta pages (a flipped bit on the disk), which bbolt then
// meets when it reads the page: every transaction runs under Guard, and the
// next start, without a marker, checks the whole file.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/signal-mpc/cosigner/signal/internal/atomicfile"
	bolt "go.etcd.io/bbolt"
)

// markerSuffix names the marker beside its file.
const markerSuffix = ".clean"

// CloseClean closes db after writing its freelist into the file, and
// leaves the marker that lets the next Open skip the page walk. A failure
// to write the marker only costs the next open its speed; a failure to
// commit or close is returned.
func CloseClean(db *bolt.DB) error {
	path := db.Path()
	if !db.IsReadOnly() {
		db.NoFreelistSync = false // read at commit: this one writes the freelist
		if err := Update(db, func(*bolt.Tx) error { return nil }); err != nil {
			db.Close()
			return err
		}
	}
	if err := db.Close(); err != nil {
		return err
	}
	if db.IsReadOnly() {
		return nil
	}
	id, err := fileID(path)
	if err != nil {
		return nil
	}
	return atomicfile.Write(path+markerSuffix, []byte(id)) // a torn marker never matches
}

// fileID is what the marker records of the file at path.
func fileID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	m0, err := readMeta(f, fi.Size(), 0, 0)
	if err != nil {
		return "", err
	}
	m1, err := readMeta(f, fi.Size(), int64(m0.pageSize), 1)
	if err != nil {
		return "", err
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = uint64(st.Ino)
	}
	return fmt.Sprintf("boltfile-clean-v1 %d %d %d %d:%d:%d:%d %d:%d:%d:%d\n", fi.Size(), fi.ModTime().UnixNano(), ino,
		m0.txid, m0.root, m0.freelist, m0.pgid, m1.txid, m1.root, m1.freelist, m1.pgid), nil
}

// takeMarker removes the marker of the file at path, durably, and reports
// whether the file still matches it. It is gone before bbolt opens the
// file for writing, so that only a clean close makes the next one again.
func takeMarker(path string) (bool, error) {
	b, err := os.ReadFile(path + markerSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if rerr := atomicfile.Remove(path + markerSuffix); rerr != nil {
		return false, fmt.Errorf("remove %s: %w", path+markerSuffix, rerr)
	}
	if err != nil {
		return false, nil // unreadable: check the file
	}
	id, err := fileID(path)
	return err == nil && id == string(b), nil
}
