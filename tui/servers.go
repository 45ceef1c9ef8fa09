package tui

import (
	"slices"
	"strings"

	"github.com/signal-mpc/cosigner/core/event"
)

// serverState is one server of a console on several: its connection and
// the peers it lags for (it delivered nothing from them for a while
// although another server did).
type serverState struct {
	name    string
	state   string
	lagging []string
}

func (m *Model) server(name string) *serverState {
	name = Clean(name)
	for i := range m.servers {
		if m.servers[i].name == name {
			return &m.servers[i]
		}
	}
	m.servers = append(m.servers, serverState{name: name})
	return &m.servers[len(m.servers)-1]
}

func (m *Model) serverConnection(c event.Connection) {
	m.server(c.Server).state = Clean(c.State)
}

func (m *Model) serverLagging(l event.ServerLagging) {
	s := m.server(l.Server)
	peer := Clean(l.Peer)
	s.lagging = slices.DeleteFunc(s.lagging, func(p string) bool { return p == peer })
	if l.Lagging {
		s.lagging = append(s.lagging, peer)
		slices.Sort(s.lagging)
		m.setError("server " + s.name + " delivers nothing from " + peer + " while another server does")
	}
}

// serversState is the status bar's part for several servers: each one's
// name with a mark for its connection and the peers it lags for.
func (m *Model) serversState() string {
	if len(m.servers) < 2 {
		return ""
	}
	st := m.st
	parts := make([]string, 0, len(m.servers))
	for _, s := range m.servers {
		mark, style := "◌", st.Reconnect
		switch s.state {
		case "connected":
			mark, style = "●", st.Connected
		case "stopped":
			mark, style = "✕", st.Status.Inherit(st.Error)
		}
		text := mark + " " + s.name
		if len(s.lagging) > 0 {
			text += " lagging for " + strings.Join(s.lagging, ",")
			style = st.Reconnect
		}
		parts = append(parts, style.Render(text))
	}
	return strings.Join(parts, st.Status.Render(" "))
}
