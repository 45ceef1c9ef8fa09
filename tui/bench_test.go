package tui

import (
	"context"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/signal-mpc/cosigner/core/event"
)

// fullModel is an 80x24 console whose log is full.
func fullModel(b *testing.B, filter string) *Model {
	b.Helper()
	m := New(context.Background(), &fakeCore{}, WithClock(func() time.Time { return t0 }))
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	for i := range DefaultLogLimit {
		m.Update(benchMessage(i))
	}
	if filter != "" {
		m.mpc.setFilter(filter)
	}
	return m
}

func benchMessage(i int) event.Message {
	peers := []string{"alice", "bob", "carol"}
	return event.Message{Time: t0, Direction: event.Direction(i % 2), Peer: peers[i%3], Ceremony: "c0ffee01",
		Round: uint32(i % 4), Kind: "deal", Size: 1000 + i, Digest: "9f8e7d6c"}
}

// BenchmarkLogEvent is one MPC log event arriving at a full log, and the
// frame drawn after it, as the program does for every message.
func BenchmarkLogEvent(b *testing.B) {
	for _, bc := range []struct{ name, filter string }{{"unfiltered", ""}, {"filter matching a third", "carol"}, {"filter matching nothing", "zzz"}} {
		b.Run(bc.name, func(b *testing.B) {
			m := fullModel(b, bc.filter)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m.Update(benchMessage(i))
				_ = m.View()
				i++
			}
		})
	}
}

// BenchmarkKeyPress is a key handled with a full log: scroll up, redraw.
func BenchmarkKeyPress(b *testing.B) {
	m := fullModel(b, "")
	up, down := keyMsg("k"), keyMsg("j")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			m.Update(up)
		} else {
			m.Update(down)
		}
		_ = m.View()
		i++
	}
}
