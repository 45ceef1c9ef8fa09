package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var bucketTest = []byte("test")

// holdLeader submits an operation that blocks the leader until release is
// called, so that the operations submitted meanwhile form one group.
func holdLeader(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, gate := make(chan struct{}), make(chan struct{})
	// From a goroutine of its own: the first operation of an idle store
	// runs on the submitter's goroutine.
	go s.Submit(t.Context(), func(context.Context) error {
		close(started)
		<-gate
		return nil
	})
	<-started
	return func() { close(gate) }
}

func putOp(s *Store, key, value string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		return s.put(ctx, [][]byte{bucketTest}, []byte(key), []byte(value))
	}
}

func getString(t *testing.T, s *Store, key string) string {
	t.Helper()
	v, err := s.get(t.Context(), [][]byte{bucketTest}, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

func TestWritesSubmittedDuringACommitShareTheNextOne(t *testing.T) {
	t.Parallel()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	release := holdLeader(t, s)
	before := s.commits.Load()
	var pending []Pending
	for i := range 20 {
		pending = append(pending, s.Submit(t.Context(), putOp(s, fmt.Sprint("k", i), fmt.Sprint("v", i))))
	}
	release()
	for _, p := range pending {
		if err := p.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	// The holding operation wrote nothing (its group is rolled back, not
	// committed); the twenty writes are one group.
	if got := s.commits.Load() - before; got != 1 {
		t.Fatalf("%d commits for 20 writes submitted together, want 1", got)
	}
	for i := range 20 {
		if got := getString(t, s, fmt.Sprint("k", i)); got != fmt.Sprint("v", i) {
			t.Fatalf("k%d = %q", i, got)
		}
	}
}

func TestAFailedOperationIsUndoneWithoutTheOthersOfItsGroup(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openStore(t, path, Options{})
	if err := s.put(ctx, [][]byte{bucketTest}, []byte("shared"), []byte("old")); err != nil {
		t.Fatal(err)
	}
	release := holdLeader(t, s)
	boom := errors.New("boom")
	a := s.Submit(ctx, putOp(s, "a", "1"))
	b := s.Submit(ctx, func(ctx context.Context) error {
		if err := putOp(s, "b", "2")(ctx); err != nil {
			return err
		}
		if err := putOp(s, "shared", "overwritten")(ctx); err != nil {
			return err
		}
		if err := s.del(ctx, [][]byte{bucketTest}, []byte("a")); err != nil {
			return err
		}
		return boom
	})
	var sawB, sawShared, sawA string
	c := s.Submit(ctx, func(ctx context.Context) error {
		for key, dst := range map[string]*string{"a": &sawA, "b": &sawB, "shared": &sawShared} {
			v, err := s.get(ctx, [][]byte{bucketTest}, []byte(key))
			if err != nil {
				return err
			}
			*dst = string(v)
		}
		return putOp(s, "c", "3")(ctx)
	})
	panics := s.Submit(ctx, func(ctx context.Context) error {
		if err := putOp(s, "p", "x")(ctx); err != nil {
			return err
		}
		var m map[string]int
		m["nil map"]++ // panics
		return nil
	})
	release()
	if err := a.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(ctx); !errors.Is(err, boom) {
		t.Fatalf("failed operation: Wait = %v, want its own error", err)
	}
	if err := b.Ran(ctx); !errors.Is(err, boom) {
		t.Fatalf("failed operation: Ran = %v, want its own error", err)
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := panics.Wait(ctx); !errors.Is(err, ErrPanicked) {
		t.Fatalf("panicking operation: %v, want ErrPanicked", err)
	}
	if sawA != "1" || sawB != "" || sawShared != "old" {
		t.Fatalf("the next operation saw a=%q b=%q shared=%q; want the failed one's writes undone", sawA, sawB, sawShared)
	}
	s.Close()
	s = openStore(t, path, Options{})
	for key, want := range map[string]string{"a": "1", "b": "", "shared": "old", "c": "3", "p": ""} {
		if got := getString(t, s, key); got != want {
			t.Errorf("after reopening %s = %q, want %q", key, got, want)
		}
	}
}

func TestAGroupThatOnlyReadsDoesNotCommit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	if err := s.put(ctx, [][]byte{bucketTest}, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	before := s.commits.Load()
	var got []byte
	err := s.Atomic(ctx, func(ctx context.Context) error {
		var err error
		got, err = s.get(ctx, [][]byte{bucketTest}, []byte("k"))
		return err
	})
	if err != nil || string(got) != "v" {
		t.Fatalf("read in an operation: %q, %v", got, err)
	}
	if n := s.commits.Load() - before; n != 0 {
		t.Fatalf("%d commits for a read", n)
	}
}

func TestCloseWaitsForSubmittedWritesAndRefusesLaterOnes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "s.db")
	s := openStore(t, path, Options{})
	release := holdLeader(t, s)
	p := s.Submit(ctx, putOp(s, "k", "kept"))
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("a write submitted before Close: %v", err)
	}
	if err := s.Submit(ctx, putOp(s, "k", "late")).Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("a write after Close: %v, want ErrClosed", err)
	}
	s = openStore(t, path, Options{})
	if got := getString(t, s, "k"); got != "kept" {
		t.Fatalf("k = %q after reopening", got)
	}
}

func TestACancelledOperationDoesNotRun(t *testing.T) {
	t.Parallel()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	release := holdLeader(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	ran := false
	p := s.Submit(ctx, func(context.Context) error { ran = true; return nil })
	cancel()
	release()
	if err := p.Wait(t.Context()); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("cancelled before its turn: ran=%v err=%v", ran, err)
	}
}

func TestObserveCommitsIsToldOfEachCommitThatWrote(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := openStore(t, filepath.Join(t.TempDir(), "s.db"), Options{})
	var mu sync.Mutex
	var seen []time.Duration
	s.ObserveCommits(func(d time.Duration) {
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	if err := s.put(ctx, [][]byte{bucketTest}, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d commits observed after one write, want 1", n)
	}
	if err := s.Atomic(ctx, func(ctx context.Context) error {
		_, err := s.get(ctx, [][]byte{bucketTest}, []byte("k"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d commits observed after a read, want still 1", n)
	}
	s.ObserveCommits(nil)
	if err := s.put(ctx, [][]byte{bucketTest}, []byte("k"), []byte("w")); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d commits observed after the observer was removed, want still 1", n)
	}
}
