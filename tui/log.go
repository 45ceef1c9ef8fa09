package tui

import (
	"strings"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/signal-mpc/cosigner/core/event"
)

// logEntry is one line of the MPC log, cleaned when it arrived.
type logEntry struct {
	msg   event.Message // cleaned
	err   string        // an error line instead of a message
	lower string        // the plain line in lower case, for the filter
	shown string        // the styled line, rendered the first time it is on screen
}

// logState keeps the last limit log lines in a ring. Rendering walks only
// the lines on screen, so a full log costs the same as an empty one.
type logState struct {
	ring     []logEntry
	start    int // index of the oldest entry
	n        int
	total    uint64 // lines ever added
	untagged uint64 // untagged Signal messages dropped unread (core's count)
	dropped  uint64 // droppable events the bridge lost under load
	offset   int    // matching lines between the bottom of the view and the newest; 0 follows
	filter   textinput.Model
	query    string // lower-cased filter
}

func newLogState(limit int) logState {
	ti := textinput.New()
	ti.Prompt = "/"
	ti.Placeholder = "filter: peer, kind, ceremony…"
	ti.CharLimit = 64
	ti.Cursor.SetMode(cursor.CursorStatic)
	ti.KeyMap.Paste.SetEnabled(false)
	return logState{ring: make([]logEntry, limit), filter: ti}
}

func (l *logState) at(i int) *logEntry { return &l.ring[(l.start+i)%len(l.ring)] }

func (l *logState) push(e logEntry) {
	if l.n < len(l.ring) {
		l.ring[(l.start+l.n)%len(l.ring)] = e
		l.n++
	} else {
		l.ring[l.start] = e
		l.start = (l.start + 1) % len(l.ring)
	}
	l.total++
	if l.offset > 0 && l.matches(&e) {
		l.offset++ // keep the lines the reader is looking at in place
	}
}

func (l *logState) addMessage(m event.Message) {
	m.Peer, m.Ceremony, m.Kind, m.Digest, m.Note = Clean(m.Peer), Clean(m.Ceremony), Clean(m.Kind), Clean(m.Digest), Clean(m.Note)
	e := logEntry{msg: m}
	e.lower = strings.ToLower(plainMessage(m))
	l.push(e)
}

func (l *logState) addError(e event.Error) {
	t := Clean(e.Text)
	l.push(logEntry{msg: event.Message{Time: e.Time}, err: t, lower: strings.ToLower(e.Time.Format("15:04:05") + " error " + t)})
}

func (l *logState) setFilter(q string) {
	q = strings.ToLower(strings.TrimSpace(q))
	if q != l.query {
		l.query = q
		l.offset = 0
	}
	if q == "" && l.filter.Value() != "" {
		l.filter.SetValue("")
	}
}

func (l *logState) matches(e *logEntry) bool {
	return l.query == "" || strings.Contains(e.lower, l.query)
}

// count is the number of lines the filter lets through.
func (l *logState) count() int {
	if l.query == "" {
		return l.n
	}
	c := 0
	for i := range l.n {
		if l.matches(l.at(i)) {
			c++
		}
	}
	return c
}

func (l *logState) scroll(msg tea.KeyMsg, k keyMap, page int) {
	switch {
	case key.Matches(msg, k.Up):
		l.offset++
	case key.Matches(msg, k.Down):
		l.offset--
	case key.Matches(msg, k.PageUp):
		l.offset += page
	case key.Matches(msg, k.PageDown):
		l.offset -= page
	case key.Matches(msg, k.Top):
		l.offset = 1 << 30
	case key.Matches(msg, k.Bottom):
		l.offset = 0
	default:
		return
	}
	l.offset = min(max(l.offset, 0), max(l.count()-page, 0))
}

// visible returns up to h entries, oldest first, ending offset matching
// lines above the newest.
func (l *logState) visible(h int) []*logEntry {
	out := make([]*logEntry, 0, h)
	skip := l.offset
	for i := l.n - 1; i >= 0 && len(out) < h; i-- {
		e := l.at(i)
		if !l.matches(e) {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		out = append(out, e)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// plainMessage is a log line without styles.
func plainMessage(m event.Message) string {
	dir := "in "
	if m.Direction == event.Out {
		dir = "out"
	}
	s := m.Time.Format("15:04:05") + " " + dir + " " + pad(m.Peer, 10) + " " + pad(m.Ceremony, 8) + " r" + pad(itoa(int(m.Round)), 2) +
		" " + pad(m.Kind, 10) + " " + pad(size(m.Size), 5) + " " + m.Digest
	if m.Server != "" {
		s += " via " + serverHost(m.Server)
	}
	if m.Note != "" {
		s += " " + m.Note
	}
	return s
}

// serverHost is a server's URL as a log line shows it: its host (and
// port), the scheme being https but on loopback.
func serverHost(u string) string {
	for _, p := range []string{"https://", "http://", "wss://", "ws://"} {
		u = strings.TrimPrefix(u, p)
	}
	return Clean(u)
}

func (m *Model) logView(h int) []string {
	l := &m.mpc
	st := m.st
	header := st.Title.Render("MPC log") + st.Dim.Render(" "+itoa(l.n)+" kept · untagged "+utoa(l.untagged)+" dropped unread")
	if l.dropped > 0 {
		header += st.Warn.Render(" · " + utoa(l.dropped) + " lost to load")
	}
	if l.offset > 0 {
		header += st.Warn.Render(" · paused, G follows")
	}
	lines := []string{header}
	if m.mode == modeFilter {
		lines = append(lines, l.filter.View())
	} else if l.query != "" {
		lines = append(lines, st.Label.Render("filter: ")+l.query+st.Dim.Render("  (/ edits, esc clears)"))
	}
	rows := h - len(lines)
	vis := l.visible(rows)
	if len(vis) == 0 {
		if l.query != "" {
			lines = append(lines, st.Dim.Render("no line matches"))
		} else {
			lines = append(lines, st.Dim.Render("no MPC traffic yet"))
		}
	}
	for _, e := range vis {
		if e.shown == "" {
			e.shown = m.renderLogEntry(e) // entries never change: render once
		}
		lines = append(lines, e.shown)
	}
	return lines
}

func (m *Model) renderLogEntry(e *logEntry) string {
	st := m.st
	t := st.Dim.Render(e.msg.Time.Format("15:04:05"))
	if e.err != "" {
		return t + " " + st.Error.Render("error "+e.err)
	}
	msg := e.msg
	dir := st.In.Render("in ")
	if msg.Direction == event.Out {
		dir = st.Out.Render("out")
	}
	s := t + " " + dir + " " + st.Peer.Render(pad(msg.Peer, 10)) + " " + pad(msg.Ceremony, 8) + " r" + pad(itoa(int(msg.Round)), 2) +
		" " + pad(msg.Kind, 10) + " " + pad(size(msg.Size), 5) + " " + st.Digest.Render(msg.Digest)
	if msg.Server != "" {
		s += " " + st.Dim.Render("via "+serverHost(msg.Server))
	}
	if msg.Note != "" {
		s += " " + st.Note.Render(msg.Note)
	}
	return s
}
