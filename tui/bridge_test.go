package tui

import (
	"context"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/signal-mpc/cosigner/core/event"
)

// recorder is a send function that keeps what it got.
type recorder struct {
	mu   sync.Mutex
	msgs []tea.Msg
	got  chan struct{}
}

func (r *recorder) send(m tea.Msg) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.got <- struct{}{}
}

func TestBridge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		backlog int
		publish []event.Event
		want    []tea.Msg
	}{
		{
			name:    "events arrive in order",
			backlog: 10,
			publish: []event.Event{event.Untagged{Total: 1}, event.Error{Text: "x"}, event.Untagged{Total: 2}},
			want:    []tea.Msg{event.Untagged{Total: 1}, event.Error{Text: "x"}, event.Untagged{Total: 2}},
		},
		{
			name:    "drops under load are reported, must-deliver events are kept",
			backlog: 1,
			publish: []event.Event{event.Untagged{Total: 1}, event.Untagged{Total: 2}, event.ApprovalResolved{ID: "a"}, event.Untagged{Total: 3}},
			want:    []tea.Msg{droppedMsg{total: 2}, event.Untagged{Total: 1}, event.ApprovalResolved{ID: "a"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var bus event.Bus
			sub := bus.Subscribe(tt.backlog)
			for _, e := range tt.publish {
				bus.Publish(e)
			}
			ctx, cancel := context.WithCancel(t.Context())
			rec := &recorder{got: make(chan struct{}, 16)}
			done := make(chan struct{})
			go func() {
				Bridge(ctx, sub, rec.send)
				close(done)
			}()
			for range tt.want {
				select {
				case <-rec.got:
				case <-time.After(5 * time.Second):
					t.Fatalf("timeout; got %v", rec.msgs)
				}
			}
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Bridge did not return when its context ended")
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.msgs) != len(tt.want) {
				t.Fatalf("got %v, want %v", rec.msgs, tt.want)
			}
			for i := range tt.want {
				if !equalMsg(rec.msgs[i], tt.want[i]) {
					t.Errorf("message %d = %#v, want %#v", i, rec.msgs[i], tt.want[i])
				}
			}
		})
	}
}

func equalMsg(a, b tea.Msg) bool {
	switch a := a.(type) {
	case event.Untagged, event.ApprovalResolved, droppedMsg:
		return a == b
	case event.Error:
		bb, ok := b.(event.Error)
		return ok && a.Text == bb.Text
	}
	return false
}
