package tui

import (
	"context"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/signal-mpc/cosigner/core/event"
)

// Bridge forwards core's events to the program until ctx ends or the
// subscription is closed: send is tea.Program.Send. It is the only
// goroutine that talks to the program from outside besides main's link and
// roster messages. It also reports the events the subscription dropped
// under load, so the log can show them. Send blocks while the program is
// busy; the bus then queues, and drops only droppable events.
func Bridge(ctx context.Context, sub *event.Subscription, send func(tea.Msg)) {
	var dropped uint64
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			return
		}
		if d := sub.Dropped(); d != dropped {
			dropped = d
			send(droppedMsg{total: d})
		}
		if e == nil {
			continue
		}
		send(e)
	}
}
