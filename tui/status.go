package tui

import (
	"strings"

	"github.com/charmbracelet/x/ansi"
)

// statusBar is the top line, most important first so a narrow window cuts
// the least important: connection, queue, key, who, server.
func (m *Model) statusBar() string {
	st := m.st
	sep := st.Status.Render(" │ ")
	var parts []string
	parts = append(parts, m.connState())
	if s := m.serversState(); s != "" {
		parts = append(parts, s)
	}
	if m.challenge.token != "" {
		parts = append(parts, st.Reconnect.Render("server challenge: ! to answer"))
	}
	q := len(m.queue.list)
	if q > 0 {
		parts = append(parts, st.Reconnect.Render("queue "+itoa(q)))
	} else {
		parts = append(parts, st.Status.Render("queue 0"))
	}
	if k, ok := m.currentKey(); ok {
		parts = append(parts, st.Status.Render("key ")+st.StatusKey.Render(k.short))
	} else {
		parts = append(parts, st.Status.Render("no key yet"))
	}
	who := shortAccount(m.id.Account, m.id.Device)
	if m.id.Name != "" {
		who = m.id.Name + " " + who
	}
	parts = append(parts, st.StatusKey.Render(who))
	if m.id.Server != "" {
		s := strings.TrimPrefix(strings.TrimPrefix(m.id.Server, "https://"), "wss://")
		parts = append(parts, st.Status.Render(s))
	}
	line := st.Status.Render(" ") + strings.Join(parts, sep)
	if w := ansi.StringWidth(line); w < m.width {
		line += st.Status.Render(strings.Repeat(" ", m.width-w))
	}
	return line
}

func (m *Model) connState() string {
	st := m.st
	c := m.conn
	switch c.State {
	case "":
		return st.Status.Render("○ offline")
	case "connected":
		return st.Connected.Render("● connected")
	case "reconnecting":
		s := "◌ reconnecting"
		if !c.RetryAt.IsZero() {
			left := c.RetryAt.Sub(m.now())
			if left > 0 {
				s += " in " + itoa(int((left+999_999_999)/1_000_000_000)) + "s"
			} else {
				s += " now"
			}
		}
		return st.Reconnect.Render(s)
	case "stopped":
		return st.Status.Inherit(st.Error).Render("✕ stopped")
	default:
		return st.Reconnect.Render("◌ " + c.State)
	}
}

var tabNames = [numTabs][2]string{
	{"Log", "Log"},
	{"Ceremonies", "Cer"},
	{"Approvals", "Appr"},
	{"Signatures", "Sigs"},
	{"Roster", "Rost"},
}

// tabBar names the views; the approvals tab shows the queue size.
func (m *Model) tabBar() string {
	short := m.width < 72
	var b strings.Builder
	for i := range numTabs {
		name := tabNames[i][0]
		if short {
			name = tabNames[i][1]
		}
		label := itoa(int(i)+1) + " " + name
		switch i {
		case tabCeremonies:
			if n := m.cers.active(); n > 0 {
				label += " (" + itoa(n) + ")"
			}
		case tabQueue:
			if n := len(m.queue.list); n > 0 {
				label += " (" + itoa(n) + ")"
			}
		case tabSigs:
			if n := len(m.sigs.list); n > 0 && !short {
				label += " (" + itoa(n) + ")"
			}
		}
		style, mark := m.st.Tab, " "
		if i == m.tab {
			style, mark = m.st.TabActive, "›"
		}
		b.WriteString(mark + style.Render(label) + " ")
	}
	return b.String()
}
