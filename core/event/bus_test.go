package event

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestDroppableEventsDropWhenFullAndMustEventsNever(t *testing.T) {
	t.Parallel()
	var b Bus
	s := b.Subscribe(3)
	for i := range 10 {
		b.Publish(Message{Round: uint32(i)})
	}
	b.Publish(Error{Text: "must arrive"})
	b.Publish(ApprovalRequested{ID: "r1"})
	if s.Dropped() != 7 {
		t.Fatalf("dropped %d, want 7", s.Dropped())
	}
	var got []Event
	for range 5 {
		e, err := s.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if m, ok := got[0].(Message); !ok || m.Round != 0 {
		t.Fatalf("order: first event %#v", got[0])
	}
	if _, ok := got[3].(Error); !ok {
		t.Fatalf("error event lost: %#v", got)
	}
	if a, ok := got[4].(ApprovalRequested); !ok || a.ID != "r1" {
		t.Fatalf("approval lost: %#v", got)
	}
}

func TestNextWaitsAndHonoursTheContext(t *testing.T) {
	t.Parallel()
	var b Bus
	s := b.Subscribe(0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("empty bus: %v", err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		b.Publish(SignDone{ID: "x"})
	}()
	e, err := s.Next(t.Context())
	if err != nil || e.(SignDone).ID != "x" {
		t.Fatalf("%v %v", e, err)
	}
}

func TestPublishersAndSubscribersRunConcurrently(t *testing.T) {
	t.Parallel()
	var b Bus
	subs := []*Subscription{b.Subscribe(0), b.Subscribe(0)}
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				b.Publish(KeygenDone{T: p, N: i})
			}
		}()
	}
	wg.Wait()
	for _, s := range subs {
		for range 400 {
			if _, err := s.Next(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
	}
	b.Publish(Error{}) // after Close: no subscriber, no block
}
