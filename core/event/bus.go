// Package event is core's event stream to the user interface: plain values
// (strings, numbers, short hex digests; never key material, never library
// types) on a bus with two delivery modes. Log lines and progress may be
// dropped under load, and the drops are counted; approvals, results, link
// results and errors are always delivered.
package event

import (
	"context"
	"sync"
	"sync/atomic"
)

// Event is one thing that happened. Implementations are the types of this
// package.
type Event interface {
	// Must reports whether the event must be delivered (approvals, results,
	// errors) or may be dropped under load (log lines, progress).
	Must() bool
}

// DefaultBacklog is how many droppable events a subscriber may have queued
// before new droppable ones are dropped.
const DefaultBacklog = 1024

// Bus fans events out to subscribers. Publish never blocks. The zero Bus is
// ready to use.
type Bus struct {
	mu   sync.Mutex
	subs []*Subscription
}

// Subscription is one subscriber's ordered queue.
type Subscription struct {
	bus     *Bus
	backlog int
	mu      sync.Mutex
	queue   []Event
	notify  chan struct{} // has a token while the queue is non-empty
	closed  bool
	dropped atomic.Uint64
}

// Subscribe returns a new subscription; backlog <= 0 means DefaultBacklog.
func (b *Bus) Subscribe(backlog int) *Subscription {
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	s := &Subscription{bus: b, backlog: backlog, notify: make(chan struct{}, 1)}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	b.mu.Unlock()
	return s
}

// Publish queues e for every subscriber. A droppable event is dropped for a
// subscriber whose queue is full; a must-deliver event is always queued.
func (b *Bus) Publish(e Event) {
	b.mu.Lock()
	subs := b.subs
	b.mu.Unlock()
	for _, s := range subs {
		s.push(e)
	}
}

func (s *Subscription) push(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if !e.Must() && len(s.queue) >= s.backlog {
		s.dropped.Add(1)
		return
	}
	s.queue = append(s.queue, e)
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Next returns the oldest queued event, waiting until there is one or ctx
// ends.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			e := s.queue[0]
			s.queue[0] = nil
			s.queue = s.queue[1:]
			if len(s.queue) > 0 {
				select {
				case s.notify <- struct{}{}:
				default:
				}
			}
			s.mu.Unlock()
			return e, nil
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.notify:
		}
	}
}

// Dropped is how many droppable events this subscriber lost to a full queue.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close unsubscribes; queued events are discarded.
func (s *Subscription) Close() {
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
	b := s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, x := range b.subs {
		if x == s {
			b.subs = append(b.subs[:i:i], b.subs[i+1:]...)
			break
		}
	}
}
