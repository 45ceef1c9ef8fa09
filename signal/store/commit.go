package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group commit. A durable bbolt commit costs two fdatasyncs (about 0.5 ms
// on the machines this runs on), which would cap a console at a few
// hundred messages a second if every session update, decrypted message and
// ceremony record had its own. So every write is an operation queued for
// the next group: one goroutine at a time (the leader) runs the queued
// operations one after the other in one bbolt transaction and commits them
// together. Operations that arrive while a group commits form the next
// group, with no artificial delay: a lone write waits only for its own
// commit.
//
// One operation failing must not undo the others of its group, and bbolt
// has no savepoints, so each write is recorded in an undo log and a failed
// operation's writes are reverted in the transaction before the next
// operation runs. bbolt's own DB.Batch does not fit: it waits a fixed delay
// to gather a group and reruns every function of a group in which one
// fails.
//
// Operations run in the order they were submitted and their groups commit
// in that order, so a write that is durable implies that every write
// submitted before it is too. Submit lets a caller go on once its
// operation has run (its writes visible to every later operation) and wait
// for durability only where it matters: before a message leaves or an
// envelope is acknowledged.

// Pending is a write operation submitted to the store.
type Pending struct{ o *op }

type op struct {
	ctx    context.Context
	fn     func(ctx context.Context) error
	ran    chan struct{} // closed once fn has run (runErr is set)
	done   chan struct{} // closed once durable or failed (err is set)
	runErr error
	err    error
}

// Ran waits until the operation has run and returns its own error: nil
// means its writes are visible to every operation submitted after it, but
// they may not be durable yet (see Wait). A context error means the wait
// ended first; the operation may still run.
func (p Pending) Ran(ctx context.Context) error {
	select {
	case <-p.o.ran:
		return p.o.runErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done is closed once the operation is durable or has failed.
func (p Pending) Done() <-chan struct{} { return p.o.done }

// Wait waits until the operation is durable (nil) or has failed (its own
// error, or the commit's). A context error means the wait ended first; the
// operation may still commit.
func (p Pending) Wait(ctx context.Context) error {
	select {
	case <-p.o.done:
		return p.o.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newOp(ctx context.Context, fn func(ctx context.Context) error) *op {
	return &op{ctx: ctx, fn: fn, ran: make(chan struct{}), done: make(chan struct{})}
}

// fail ends an operation that did not run or whose function failed.
func (o *op) fail(err error) {
	o.runErr, o.err = err, err
	close(o.ran)
	close(o.done)
}

// Submit queues fn to run in a write transaction after every operation
// submitted before it, and returns without waiting for the commit. fn gets
// a context carrying the transaction: every store write it makes through
// that context commits with it, and fn sees the writes of the operations
// before it. When fn
// fails (or panics), its writes are undone and the in-memory session and
// identity caches are dropped (they may hold what fn changed); the other
// operations of its group are unaffected.
//
// fn may run on the caller's goroutine before Submit returns (when the
// store is idle) or on another one; it must not wait for other store
// operations (it would wait for itself) or for anything its caller holds:
// everything it needs from the store it reads through its context.
func (s *Store) Submit(ctx context.Context, fn func(ctx context.Context) error) Pending {
	o := newOp(ctx, fn)
	s.enqueue(o, false)
	return Pending{o}
}

// submitWait is Submit followed by Wait, for callers that wait anyway: an
// idle store then also commits on the caller's goroutine.
func (s *Store) submitWait(ctx context.Context, fn func(ctx context.Context) error) error {
	o := newOp(ctx, fn)
	s.enqueue(o, true)
	return Pending{o}.Wait(ctx)
}

// enqueue queues o. When no group is running, the caller leads the next
// one itself: its operations run on the caller's goroutine (no handoff,
// which on a busy machine can cost as much as a time slice of whatever
// else runs), and only the commit moves to a goroutine of its own, which
// leads the groups that queued meanwhile.
func (s *Store) enqueue(o *op, wait bool) {
	s.cmu.Lock()
	if s.closed {
		s.cmu.Unlock()
		o.fail(ErrClosed)
		return
	}
	s.queue = append(s.queue, o)
	if s.leading {
		s.cmu.Unlock()
		return
	}
	s.leading = true
	s.leaders.Add(1)
	s.cmu.Unlock()
	if g := s.nextGroup(); g != nil {
		if ready := s.execute(g); ready != nil {
			if !wait {
				go func() {
					s.commitGroup(ready)
					s.lead()
				}()
				return
			}
			s.commitGroup(ready)
		}
		go s.lead() // the groups that queued meanwhile (or none: it ends at once)
	}
}

// nextGroup takes up to maxGroup queued operations; nil (and the end of
// this leadership) when there are none.
func (s *Store) nextGroup() []*op {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	n := min(len(s.queue), maxGroup)
	if n == 0 {
		s.leading = false
		s.leaders.Done()
		return nil
	}
	group := s.queue[:n:n]
	s.queue = s.queue[n:]
	return group
}

// maxGroup bounds the operations of one transaction, so that the first of
// a long run does not wait for the last.
const maxGroup = 256

// takeQueued takes up to n queued operations.
func (s *Store) takeQueued(n int) []*op {
	if n <= 0 {
		return nil
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	n = min(n, len(s.queue))
	taken := s.queue[:n:n]
	s.queue = s.queue[n:]
	return taken
}

// lead runs groups until the queue is empty.
func (s *Store) lead() {
	for {
		g := s.nextGroup()
		if g == nil {
			return
		}
		if ready := s.execute(g); ready != nil {
			s.commitGroup(ready)
		}
	}
}

// executed is a group whose operations have run, waiting for its commit.
type executed struct {
	t  *txn
	ok []*op
}

// execute runs the operations of a group (and those that arrive
// meanwhile) in one transaction. It returns nil when nothing is left to
// commit (the transaction could not begin, or was abandoned).
func (s *Store) execute(group []*op) *executed {
	tx, err := s.db.Begin(true)
	if err != nil {
		err = fmt.Errorf("store: begin: %w", err)
		for _, o := range group {
			o.fail(err)
		}
		return nil
	}
	e := &executed{t: &txn{tx: tx}}
	if !s.runOps(e, group) {
		return nil
	}
	return e
}

// runOps runs ops in e's transaction, then the operations that came while
// they ran (they join this transaction instead of waiting for the next
// commit), up to maxGroup in all. It returns false when the transaction
// had to be abandoned (every operation of it failed).
func (s *Store) runOps(e *executed, ops []*op) bool {
	t := e.t
	for i := 0; ; i++ {
		if i == len(ops) {
			more := s.takeQueued(maxGroup - len(e.ok) - len(ops) + i)
			if len(more) == 0 {
				return true
			}
			ops = append(ops[i:i:i], more...)
			i = 0
		}
		o := ops[i]
		if err := o.ctx.Err(); err != nil {
			o.fail(err)
			continue
		}
		mark := len(t.undo)
		if err := t.run(o); err != nil {
			if uerr := t.rollbackTo(mark); uerr != nil {
				// The transaction can no longer be trusted: fail the group.
				t.tx.Rollback()
				s.dropCaches()
				o.fail(err)
				uerr = fmt.Errorf("store: undo: %w", uerr)
				s.failAll(e.ok, uerr)
				for _, rest := range ops[i+1:] {
					rest.fail(uerr)
				}
				return false
			}
			s.dropCaches()
			o.fail(err)
			continue
		}
		close(o.ran)
		s.ops.Add(1)
		e.ok = append(e.ok, o)
	}
}

// commitGroup commits an executed group (a transaction in which nothing
// was written is rolled back: a bbolt commit syncs even when nothing
// changed) and tells its operations.
func (s *Store) commitGroup(e *executed) {
	// What queued between the operations' run and now (the commit often
	// starts on a goroutine of its own) still joins.
	if !s.runOps(e, nil) {
		return
	}
	t, tx, ok := e.t, e.t.tx, e.ok
	var err error
	switch {
	case !t.wrote:
		err = tx.Rollback()
		if errors.Is(err, bolt.ErrTxClosed) {
			err = nil
		}
	case s.failCommit != nil:
		if err = s.failCommit(); err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
	default:
		start := time.Now()
		err = tx.Commit()
		if f := s.observe.Load(); f != nil && err == nil {
			(*f)(time.Since(start))
		}
	}
	if t.wrote && err == nil {
		s.commits.Add(1)
	}
	if err != nil {
		s.dropCaches()
		err = fmt.Errorf("store: commit: %w", err)
	}
	for _, o := range ok {
		o.err = err
		close(o.done)
	}
}

func (s *Store) failAll(ops []*op, err error) {
	for _, o := range ops {
		o.err = err
		close(o.done)
	}
}

// dropCaches forgets the live session records and pins: they are read
// again (inside a transaction, from its state) on their next use.
func (s *Store) dropCaches() {
	s.mu.Lock()
	clear(s.sessions)
	clear(s.pins)
	s.mu.Unlock()
}

// txn is a write transaction as one operation sees it: the group's bbolt
// transaction and the undo log of the writes made in it.
type txn struct {
	tx    *bolt.Tx
	undo  []undoEntry
	wrote bool
}

type undoEntry struct {
	path [][]byte
	key  []byte
	old  []byte // nil: the key was absent
}

// run calls the operation's function with the transaction in its context,
// turning a panic (libsignal panics on some malformed input) into an error
// so that its writes are undone like any other failure's.
func (t *txn) run(o *op) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrPanicked, r)
		}
	}()
	return o.fn(context.WithValue(o.ctx, txKey{}, t))
}

// put stores the sealed value, logging what it replaces.
func (t *txn) put(path [][]byte, key, sealed []byte) error {
	b, err := bucketPath(t.tx, true, path)
	if err != nil {
		return err
	}
	t.log(b, path, key)
	return b.Put(key, sealed)
}

// delete removes key from the bucket at path (absent is fine).
func (t *txn) delete(path [][]byte, key []byte) error {
	b, err := bucketPath(t.tx, false, path)
	if err != nil || b == nil {
		return err
	}
	if b.Get(key) == nil {
		return nil
	}
	t.log(b, path, key)
	return b.Delete(key)
}

func (t *txn) log(b *bolt.Bucket, path [][]byte, key []byte) {
	t.wrote = true
	t.undo = append(t.undo, undoEntry{path: path, key: bytes.Clone(key), old: bytes.Clone(b.Get(key))})
}

// rollbackTo undoes the writes logged after mark, newest first. Buckets
// created on the way stay (empty buckets change nothing).
func (t *txn) rollbackTo(mark int) error {
	for i := len(t.undo) - 1; i >= mark; i-- {
		u := t.undo[i]
		b, err := bucketPath(t.tx, true, u.path)
		if err != nil {
			return err
		}
		if u.old == nil {
			err = b.Delete(u.key)
		} else {
			err = b.Put(u.key, u.old)
		}
		if err != nil {
			return err
		}
	}
	t.undo = t.undo[:mark]
	return nil
}
