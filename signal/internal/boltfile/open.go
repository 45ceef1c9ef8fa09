// Package boltfile opens bbolt files that may be damaged without letting
// bbolt panic or fault on them: bbolt trusts the file, and a truncated or
// overwritten one crashes the process (a panic, or a memory fault no
// recover catches) on open or on the first read.
package boltfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Open opens the bbolt file at path. A missing file is created (bbolt
// writes its first pages); an existing one, even an empty one, never is:
// it is checked first, under a shared lock and without writing to it
// (CheckHeader, then a read-only pass over every page in use and bbolt's
// own Tx.Check), and a damaged file gives an error wrapping ErrDamaged and
// is left as it was. A lock held by another process past o.Timeout gives
// bolt.ErrTimeout.
//
// The check reads every page in use once: bbolt reads them all on each
// open anyway when the freelist is not kept in the file
// (Options.NoFreelistSync), as both stores of this module do.
func Open(path string, mode os.FileMode, o bolt.Options) (*bolt.DB, error) {
	for range 2 {
		db, err := openNew(path, mode, o)
		if !errors.Is(err, fs.ErrExist) {
			return db, err
		}
		// It exists (or appeared since): check it, then open it. A file
		// left by CloseClean and unchanged since needs only its header
		// checked (clean.go).
		clean, err := takeMarker(path)
		if err == nil {
			err = check(path, o.Timeout, !clean)
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // removed since: create it after all
		case err != nil:
			return nil, err
		}
		return openExisting(path, mode, o)
	}
	return nil, fmt.Errorf("%s keeps appearing and disappearing", path)
}

// openNew creates the file, failing with fs.ErrExist when there is one.
func openNew(path string, mode os.FileMode, o bolt.Options) (*bolt.DB, error) {
	return openGuarded(path, mode, o, os.O_CREATE|os.O_EXCL)
}

// openExisting opens a file that was checked, never creating one.
func openExisting(path string, mode os.FileMode, o bolt.Options) (*bolt.DB, error) {
	return openGuarded(path, mode, o, 0)
}

// openGuarded opens the file read-write with bbolt, with O_CREATE replaced
// by create. The file was checked or is new, so bbolt should neither panic
// nor fault; if it does (the file changed in between), it is reported as
// damage rather than a crash.
func openGuarded(path string, mode os.FileMode, o bolt.Options, create int) (db *bolt.DB, err error) {
	o.ReadOnly = false
	var f *os.File
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		var err error
		f, err = os.OpenFile(name, flag&^os.O_CREATE|create, perm)
		return f, err
	}
	err = Guard(func() error {
		var err error
		db, err = bolt.Open(path, mode, &o)
		return err
	})
	if errors.Is(err, ErrDamaged) && db == nil && f != nil {
		f.Close() // bbolt panicked holding it: release the lock
	}
	return db, err
}

// fullChecks counts the full checks made (for tests).
var fullChecks atomic.Int64

// check checks the existing file at path (see Open) under a shared lock:
// its header, and unless it is known clean (full false), every page.
func check(path string, timeout time.Duration, full bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := lockShared(f, timeout); err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := CheckHeader(f, fi.Size()); err != nil {
		return err
	}
	if !full {
		return nil
	}
	fullChecks.Add(1)
	// A second shared lock from this process: bbolt's read-only open.
	db, err := bolt.Open(path, 0, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	defer db.Close()
	return Guard(func() error { return db.View(checkTx) })
}

// checkTx reads every page in use, then runs bbolt's consistency check.
// The walk goes first, on the caller's goroutine (which Guard protects):
// bbolt's check and its read-write open walk the same pages on goroutines
// of their own, where a fault or a panic could not be caught.
func checkTx(tx *bolt.Tx) error {
	var sink byte
	if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		return walk(b, &sink)
	}); err != nil {
		return err
	}
	var first error
	for err := range tx.Check() {
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("%w: %w", ErrDamaged, first)
	}
	return nil
}

// walk touches the first and last byte of every key and value of b and
// its nested buckets: a key or value that reaches past the mapped file
// faults here.
func walk(b *bolt.Bucket, sink *byte) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		touch(k, sink)
		if v != nil {
			touch(v, sink)
			continue
		}
		child := b.Bucket(k)
		if child == nil {
			return fmt.Errorf("%w: nested bucket %x does not open", ErrDamaged, k)
		}
		if err := walk(child, sink); err != nil {
			return err
		}
	}
	return nil
}

func touch(b []byte, sink *byte) {
	if len(b) > 0 {
		*sink ^= b[0] ^ b[len(b)-1]
	}
}

// Guard runs fn, which reads a bbolt file, and turns a panic or a memory
// fault (a page past the end of a truncated file) into an error wrapping
// ErrDamaged: bbolt panics on pages that are not what it expects.
func Guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrDamaged, r)
		}
	}()
	return fn()
}

// Update is db.Update under Guard.
func Update(db *bolt.DB, fn func(*bolt.Tx) error) error {
	return Guard(func() error { return db.Update(fn) })
}

// View is db.View under Guard.
func View(db *bolt.DB, fn func(*bolt.Tx) error) error {
	return Guard(func() error { return db.View(fn) })
}
