package store

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bucketApp holds the application's own buckets (core's ceremony records,
// keys, roster), sealed like everything else, so that all of a console's
// secrets live in one file under one key.
var bucketApp = []byte("app")

// AppTx is a transaction over the application's buckets. Values are
// encrypted and bound to their bucket and key; keys are not secret.
type AppTx struct {
	s  *Store
	tx *bolt.Tx
	w  *txn // nil in a read transaction
}

func appPath(bucket string) [][]byte { return [][]byte{bucketApp, []byte(bucket)} }

// Get returns the value under key, or nil when absent.
func (t *AppTx) Get(bucket string, key []byte) ([]byte, error) {
	return t.s.getTx(t.tx, appPath(bucket), key)
}

// Put stores value under key.
func (t *AppTx) Put(bucket string, key, value []byte) error {
	if t.w == nil {
		return fmt.Errorf("%w: write in a read transaction", ErrInvalidArgument)
	}
	return t.s.putTx(t.w, appPath(bucket), key, value)
}

// Delete removes key; absent keys are fine.
func (t *AppTx) Delete(bucket string, key []byte) error {
	if t.w == nil {
		return fmt.Errorf("%w: write in a read transaction", ErrInvalidArgument)
	}
	return t.w.delete(appPath(bucket), key)
}

// Scan calls fn for every key with the prefix, in key order, with the
// decrypted value.
func (t *AppTx) Scan(bucket string, prefix []byte, fn func(key, value []byte) error) error {
	b, err := bucketPath(t.tx, false, appPath(bucket))
	if err != nil || b == nil {
		return err
	}
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		v, err := t.s.getTx(t.tx, appPath(bucket), k)
		if err != nil {
			return err
		}
		if err := fn(bytes.Clone(k), v); err != nil {
			return err
		}
	}
	return nil
}

// AppUpdate runs fn in one write transaction: all of it or nothing.
func (s *Store) AppUpdate(ctx context.Context, fn func(tx *AppTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(ctx, func(t *txn) error { return fn(&AppTx{s: s, tx: t.tx, w: t}) })
}

// AppSubmit queues fn to run in a write transaction after every write
// submitted before it, without waiting for the commit (see Submit): the application's
// way to keep its records in the same commit order as the device's session
// updates without waiting for each commit.
func (s *Store) AppSubmit(ctx context.Context, fn func(tx *AppTx) error) Pending {
	return s.Submit(ctx, func(ctx context.Context) error {
		t := txFrom(ctx)
		return fn(&AppTx{s: s, tx: t.tx, w: t})
	})
}

// AppView runs fn in a read transaction.
func (s *Store) AppView(ctx context.Context, fn func(tx *AppTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.view(ctx, func(tx *bolt.Tx) error { return fn(&AppTx{s: s, tx: tx}) })
}

// Range calls fn for every key from start on, in key order, with the
// decrypted value.
func (t *AppTx) Range(bucket string, start []byte, fn func(key, value []byte) error) error {
	b, err := bucketPath(t.tx, false, appPath(bucket))
	if err != nil || b == nil {
		return err
	}
	c := b.Cursor()
	for k, _ := c.Seek(start); k != nil; k, _ = c.Next() {
		v, err := t.s.getTx(t.tx, appPath(bucket), k)
		if err != nil {
			return err
		}
		if err := fn(bytes.Clone(k), v); err != nil {
			return err
		}
	}
	return nil
}
