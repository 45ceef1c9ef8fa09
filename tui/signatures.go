package tui

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
)

// sigEntry is one finished signing request, cleaned.
type sigEntry struct {
	ev event.SignDone
	at time.Time
}

// signatures is the history, oldest first; the view shows newest first.
type signatures struct {
	list    []sigEntry
	sel     int // index in the view (0 = newest)
	detailY int
}

func (s *signatures) add(e event.SignDone, now time.Time) {
	e.ID, e.KeyID, e.Message, e.Signature, e.Failure = Clean(e.ID), Clean(e.KeyID), Clean(e.Message), Clean(e.Signature), Clean(e.Failure)
	e.Signers, e.Blamed = cleanAll(e.Signers), cleanAll(e.Blamed)
	e.Approvals = slices.Clone(e.Approvals)
	for i, a := range e.Approvals {
		e.Approvals[i] = event.Approval{Signer: Clean(a.Signer), Decision: Clean(a.Decision), User: Clean(a.User),
			SSHClient: Clean(a.SSHClient), Rule: Clean(a.Rule)}
	}
	for i := range s.list {
		if s.list[i].ev.ID == e.ID {
			s.list[i] = sigEntry{ev: e, at: now}
			return
		}
	}
	s.list = append(s.list, sigEntry{ev: e, at: now})
	if len(s.list) > maxHistory {
		s.list = s.list[len(s.list)-maxHistory:]
	}
	if s.sel > 0 {
		s.sel = min(s.sel+1, len(s.list)-1) // keep the same entry selected
	}
}

func (s *signatures) selected() (sigEntry, bool) {
	if len(s.list) == 0 {
		return sigEntry{}, false
	}
	i := len(s.list) - 1 - min(s.sel, len(s.list)-1)
	return s.list[i], true
}

// keyItem is a generated key as the console shows it.
type keyItem struct {
	id    [32]byte
	short string
	group string // hex
	t, n  int
	epoch uint32 // 0 from a keygen or import; a reshare adds one
}

func (m *Model) setKeys(keys []core.KeyInfo) {
	m.keyList = m.keyList[:0]
	for _, k := range keys {
		if k.HandedOver {
			continue // no share here: nothing to sign with
		}
		m.keyList = append(m.keyList, keyItem{id: k.KeyID, short: shortHex(k.KeyID[:]), group: hex.EncodeToString(k.GroupKey), t: k.T, n: k.N, epoch: k.Epoch})
	}
	// a stable order: by short id
	for i := 1; i < len(m.keyList); i++ {
		for j := i; j > 0 && m.keyList[j].short < m.keyList[j-1].short; j-- {
			m.keyList[j], m.keyList[j-1] = m.keyList[j-1], m.keyList[j]
		}
	}
}

// currentKey is the key the status bar shows: the only one, or the first.
func (m *Model) currentKey() (keyItem, bool) {
	if len(m.keyList) == 0 {
		return keyItem{}, false
	}
	return m.keyList[0], true
}

func (m *Model) keyByShort(short string) (keyItem, bool) {
	for _, k := range m.keyList {
		if k.short == short {
			return k, true
		}
	}
	return keyItem{}, false
}

// sigJSON is what "copy as JSON" puts on the clipboard.
type sigJSON struct {
	ID             string   `json:"id"`
	KeyID          string   `json:"key_id"`
	GroupPublicKey string   `json:"group_public_key,omitempty"`
	MessageHex     string   `json:"message_hex"`
	Signature      string   `json:"signature"`
	Signers        []string `json:"signers"`
	Blamed         []string `json:"blamed,omitempty"`
	Verified       bool     `json:"verified"`
}

func (m *Model) signatureJSON(s sigEntry) string {
	j := sigJSON{ID: s.ev.ID, KeyID: s.ev.KeyID, MessageHex: s.ev.Message, Signature: s.ev.Signature,
		Signers: s.ev.Signers, Blamed: s.ev.Blamed, Verified: s.ev.Verified}
	if k, ok := m.keyByShort(s.ev.KeyID); ok {
		j.GroupPublicKey = k.group
	}
	b, _ := json.Marshal(j) // plain strings and bools: cannot fail
	return string(b)
}

func (m *Model) copySignature(s sigEntry, asJSON bool) tea.Cmd {
	if s.ev.Signature == "" {
		m.setError("request " + shortID(s.ev.ID) + " has no signature: " + s.ev.Failure)
		return nil
	}
	if asJSON {
		return m.copy("signature JSON", m.signatureJSON(s))
	}
	return m.copy("signature hex", s.ev.Signature)
}

var errNoClipboard = errors.New("no clipboard output configured")

// copy writes an OSC 52 sequence to the terminal, in a command.
func (m *Model) copy(what, value string) tea.Cmd {
	w := m.clip
	return func() tea.Msg {
		if w == nil {
			return copiedMsg{what: what, err: errNoClipboard}
		}
		_, err := w.Write([]byte(ansi.SetSystemClipboard(value)))
		return copiedMsg{what: what, err: err}
	}
}

func (m *Model) sigDetailKey(msg tea.KeyMsg) tea.Cmd {
	k := m.keys
	s, ok := m.sigs.selected()
	switch {
	case key.Matches(msg, k.Back):
		m.mode = modeNormal
	case key.Matches(msg, k.Quit):
		return tea.Quit
	case key.Matches(msg, k.Up):
		m.sigs.detailY = max(m.sigs.detailY-1, 0)
	case key.Matches(msg, k.Down):
		m.sigs.detailY++
	case key.Matches(msg, k.CopyHex) && ok:
		return m.copySignature(s, false)
	case key.Matches(msg, k.CopyJSON) && ok:
		return m.copySignature(s, true)
	}
	return nil
}

func (m *Model) sigsView(h int) []string {
	st := m.st
	lines := []string{st.Title.Render("Signatures") + st.Dim.Render(" newest first · enter opens · c/C copy hex/json")}
	if len(m.sigs.list) == 0 {
		return append(lines, st.Dim.Render("no signatures yet: s asks the group for one"))
	}
	var rows []string
	for i := range m.sigs.list {
		e := m.sigs.list[len(m.sigs.list)-1-i].ev
		var state string
		switch {
		case e.Failure != "":
			state = st.Error.Render("✕ failed  ")
		case e.Verified:
			state = st.OK.Render("✓ verified")
		default:
			state = st.Warn.Render("? unverif.")
		}
		row := state + " " + shortID(e.ID) + " key " + e.KeyID + "  "
		if e.Failure != "" {
			row += e.Failure
		} else {
			row += "by " + m.approvedBy(e) + "  sig " + shortID(e.Signature) + "…"
		}
		if i == m.sigs.sel {
			rows = append(rows, st.Selected.Render("›")+" "+row)
		} else {
			rows = append(rows, "  "+row)
		}
	}
	win, _ := window(rows, max(m.sigs.sel-(h-2), 0), h-1)
	return append(lines, win...)
}

// sigDetailView shows one result in full; the hex values are plain text
// wrapped to the width, so they can be selected with the mouse of the
// terminal too.
func (m *Model) sigDetailView(h int) []string {
	st := m.st
	s, ok := m.sigs.selected()
	if !ok {
		return nil
	}
	e := s.ev
	w := max(m.width-2, 8)
	label := func(x string) string { return st.Label.Render(pad(x, 10)) }
	body := []string{st.Title.Render("Signature " + shortID(e.ID))}
	switch {
	case e.Failure != "":
		body = append(body, label("result")+st.Error.Render("failed: "+e.Failure))
	case e.Verified:
		body = append(body, label("result")+st.OK.Render("verified against the group key"))
	default:
		body = append(body, label("result")+st.Warn.Render("NOT verified"))
	}
	body = append(body, label("request")+e.ID, label("key")+e.KeyID, label("signers")+names(e.Signers))
	for i, a := range e.Approvals {
		l := pad("", 10)
		if i == 0 {
			l = label("answers")
		}
		body = append(body, l+m.answer(a, true))
	}
	if len(e.Blamed) > 0 {
		body = append(body, label("blamed")+st.Error.Render(names(e.Blamed)))
	}
	if k, ok := m.keyByShort(e.KeyID); ok {
		body = append(body, label("group key"))
		body = append(body, strings.Split(ansi.Hardwrap(k.group, w, true), "\n")...)
	}
	body = append(body, label("message")+st.Dim.Render(itoa(len(e.Message)/2)+" bytes"))
	msgHex := e.Message
	if len(msgHex) > maxShownHex {
		msgHex = msgHex[:maxShownHex] + "… (" + itoa((len(e.Message)-maxShownHex)/2) + " more bytes)"
	} else if b, err := hex.DecodeString(msgHex); err == nil && len(b) > 0 && isText(b) {
		for _, l := range CleanLines(string(b)) {
			body = append(body, wrapIndent(l, w, "│ ")...)
		}
		body = append(body, st.Dim.Render("hex:"))
	}
	body = append(body, strings.Split(ansi.Hardwrap(msgHex, w, true), "\n")...)
	if e.Signature != "" {
		body = append(body, label("signature")+st.Dim.Render("c copies it, C copies all as JSON"))
		body = append(body, strings.Split(ansi.Hardwrap(e.Signature, w, true), "\n")...)
	}
	win, top := window(body, m.sigs.detailY, h)
	m.sigs.detailY = top
	return win
}

// isText reports whether b reads as text without hidden characters.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r == '\n' || r == '\t' {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || hidden(r) {
			return false
		}
	}
	return true
}

// approvedBy says who approved a signature, for its row: the approving
// signers, this console's own answer with who gave it ("alice (you,
// user=ops, ssh 10.0.0.5), bob"); the signers when the result has no
// answers (history from before they were recorded).
func (m *Model) approvedBy(e event.SignDone) string {
	var out []string
	for _, a := range e.Approvals {
		if a.Decision == "approved" {
			out = append(out, m.answer(a, false))
		}
	}
	if len(out) == 0 {
		return names(e.Signers)
	}
	return strings.Join(out, ", ")
}

// answer is one signer's answer: its name, its decision when asked for
// (full), and what says who gave it: "you" for this console, the user,
// the SSH client claimed (its host only, unless full) and the rule.
func (m *Model) answer(a event.Approval, full bool) string {
	var who []string
	if a.Signer == m.id.Name && m.id.Name != "" {
		who = append(who, "you")
	}
	if a.User != "" {
		who = append(who, "user="+a.User)
	}
	if a.SSHClient != "" {
		ssh := a.SSHClient
		if host, _, err := net.SplitHostPort(ssh); err == nil && !full {
			ssh = host
		}
		who = append(who, "ssh "+ssh)
	}
	if a.Rule != "" {
		who = append(who, "rule "+a.Rule)
	}
	s := a.Signer
	if full {
		s += " " + a.Decision
	}
	if len(who) > 0 {
		s += " (" + strings.Join(who, ", ") + ")"
	}
	return s
}
