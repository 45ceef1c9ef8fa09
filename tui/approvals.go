package tui

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
	"github.com/signal-mpc/cosigner/core/event"
)

// Bounds of what a review shows of a message.
const (
	maxShownLines = 500
	maxShownHex   = 8192
)

// approval is one pending request, cleaned when it arrived.
type approval struct {
	ev      event.ApprovalRequested // every string cleaned except Text
	text    []string                // the message text, cleaned line by line; nil if not text
	arrived time.Time
	busy    string // "approving" or "declining" while the answer is on its way
}

// approvals is the queue, oldest first.
type approvals struct {
	list []*approval
	sel  int
}

func (q *approvals) find(id string) (int, *approval) {
	for i, a := range q.list {
		if a.ev.ID == id {
			return i, a
		}
	}
	return -1, nil
}

// review is the open review of one request. shownAt is when the request on
// screen appeared there: keys are ignored until shownAt+grace.
type review struct {
	id      string
	shownAt time.Time
	y       int
}

func (m *Model) approvalRequested(e event.ApprovalRequested) tea.Cmd {
	raw := e.Text
	e.ID, e.Kind, e.Requester, e.KeyID = Clean(e.ID), Clean(e.Kind), Clean(e.Requester), Clean(e.KeyID)
	e.Hex, e.SHA256, e.Description, e.Text = Clean(e.Hex), Clean(e.SHA256), Clean(e.Description), ""
	a := &approval{ev: e, arrived: m.now()}
	if raw != "" {
		a.text = CleanLines(raw)
		if len(a.text) > maxShownLines {
			a.text = append(a.text[:maxShownLines:maxShownLines], "… "+itoa(len(a.text)-maxShownLines)+" more lines (the sha-256 covers them all)")
		}
	}
	if i, _ := m.queue.find(e.ID); i >= 0 {
		m.queue.list[i] = a
	} else {
		m.queue.list = append(m.queue.list, a)
	}
	what := "signing request"
	if isProposal(e.Kind) {
		what = e.Kind + " proposal"
	}
	m.setNotice(what + " from " + e.Requester + ": 3 then enter to review")
	if m.mode == modeReview && m.review.id == e.ID {
		return m.openReview(e.ID) // the request changed under the reader: arm again
	}
	return nil
}

func (m *Model) approvalResolved(e event.ApprovalResolved) tea.Cmd {
	id := Clean(e.ID)
	i, _ := m.queue.find(id)
	if i < 0 {
		return nil
	}
	m.queue.list = append(m.queue.list[:i:i], m.queue.list[i+1:]...)
	m.queue.sel = min(m.queue.sel, max(len(m.queue.list)-1, 0))
	decision := Clean(e.Decision)
	if e.Rule != "" {
		decision += " by " + Clean(e.Rule)
	}
	m.setNotice("request " + shortID(id) + " " + decision)
	if m.mode == modeReview && m.review.id == id {
		m.mode = modeNormal
		m.tab = tabQueue
	}
	return nil
}

// openReview shows one request; the prompt arms after the grace period.
func (m *Model) openReview(id string) tea.Cmd {
	m.mode = modeReview
	m.review = review{id: id, shownAt: m.now()}
	m.notice = notice{}
	return tea.Tick(m.grace, func(time.Time) tea.Msg { return armMsg{id: id} })
}

// armed reports whether the review accepts a decision now.
func (m *Model) armed() bool {
	return !m.now().Before(m.review.shownAt.Add(m.grace))
}

func (m *Model) reviewKey(msg tea.KeyMsg) tea.Cmd {
	k := m.keys
	_, a := m.queue.find(m.review.id)
	switch {
	case key.Matches(msg, k.Back):
		m.mode = modeNormal
		return nil
	case key.Matches(msg, k.Quit):
		return tea.Quit
	case key.Matches(msg, k.Up):
		m.review.y = max(m.review.y-1, 0)
		return nil
	case key.Matches(msg, k.Down):
		m.review.y++
		return nil
	case key.Matches(msg, k.PageUp):
		m.review.y = max(m.review.y-m.bodyHeight()/2, 0)
		return nil
	case key.Matches(msg, k.PageDown):
		m.review.y += m.bodyHeight() / 2
		return nil
	}
	if a == nil {
		return nil
	}
	approve := key.Matches(msg, k.Approve)
	if !approve && !key.Matches(msg, k.Decline) {
		return nil
	}
	// House rule 8: a key before the prompt is armed does nothing, and so
	// does a second answer or an answer to an expired request.
	if !m.armed() || a.busy != "" {
		m.log.Debug("approval key ignored", "id", a.ev.ID, "armed", m.armed(), "busy", a.busy)
		return nil
	}
	if !a.ev.Expires.IsZero() && !m.now().Before(a.ev.Expires) {
		m.setError("request " + shortID(a.ev.ID) + " has expired: it counts as declined")
		return nil
	}
	id, err := parseID(a.ev.ID)
	if err != nil {
		m.setError("request id: " + err.Error())
		return nil
	}
	c, ctx, hexID := m.core, m.ctx, a.ev.ID
	if approve {
		a.busy = "approving"
		return func() tea.Msg {
			ctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			return decisionMsg{id: hexID, approve: true, err: c.Approve(ctx, id)}
		}
	}
	a.busy = "declining"
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		return decisionMsg{id: hexID, approve: false, err: c.Decline(ctx, id, "declined at the console")}
	}
}

func (m *Model) decided(d decisionMsg) {
	_, a := m.queue.find(d.id)
	if a != nil {
		a.busy = ""
	}
	verb := "decline"
	if d.approve {
		verb = "approve"
	}
	if d.err != nil {
		m.log.Warn("approval answer failed", "id", d.id, "answer", verb, "err", d.err)
		m.setError(verb + " " + shortID(d.id) + ": " + d.err.Error())
		return
	}
	m.log.Info("approval answered at the console", "id", d.id, "answer", verb)
	m.setNotice(verb + "d " + shortID(d.id))
	if d.approve && a != nil {
		a.busy = "approved"
	}
	if !d.approve && a != nil {
		a.busy = "declined"
	}
}

func parseID(s string) ([32]byte, error) {
	var id [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%q is not a 32-byte hex id", shortID(s))
	}
	copy(id[:], b)
	return id, nil
}

func (m *Model) queueView(h int) []string {
	st := m.st
	lines := []string{st.Title.Render("Approval queue") + st.Dim.Render(" "+itoa(len(m.queue.list))+" waiting · enter reviews")}
	if len(m.queue.list) == 0 {
		return append(lines, st.Dim.Render("nothing to approve"))
	}
	now := m.now()
	var rows []string
	for i, a := range m.queue.list {
		e := a.ev
		what := "sign  "
		if isProposal(e.Kind) {
			what = e.Kind
		}
		subject := summary(a)
		row := what + " " + shortID(e.ID) + "  from " + pad(e.Requester, 8) + "  " + expiry(e.Expires, now) + "  " + subject
		if a.busy != "" {
			row += "  [" + a.busy + "]"
		}
		if i == m.queue.sel {
			rows = append(rows, st.Selected.Render("› "+row))
		} else {
			rows = append(rows, "  "+row)
		}
	}
	win, _ := window(rows, max(m.queue.sel-(h-2), 0), h-1)
	return append(lines, win...)
}

// summary is the request's message in a few words for the queue.
func summary(a *approval) string {
	switch {
	case len(a.text) > 0:
		s := strings.Join(a.text, `\n`)
		return `"` + ansi.Truncate(s, 40, "…") + `"`
	case a.ev.Hex != "":
		return "hex " + ansi.Truncate(a.ev.Hex, 24, "…") + " (" + itoa(len(a.ev.Hex)/2) + " bytes)"
	}
	return ""
}

func expiry(t, now time.Time) string {
	if t.IsZero() {
		return "no expiry"
	}
	if left := t.Sub(now); left > 0 {
		return clock(left) + " left"
	}
	return "expired"
}

// reviewView is the full request: requester, key, message as text or hex,
// SHA-256, the requester's description marked as a claim, and the expiry;
// the last line is the prompt, arming or armed.
func (m *Model) reviewView(h int) []string {
	st := m.st
	_, a := m.queue.find(m.review.id)
	if a == nil {
		return []string{st.Dim.Render("this request is no longer open (esc)")}
	}
	e := a.ev
	w := max(m.width-4, 8)
	now := m.now()
	label := func(s string) string { return st.Label.Render(pad(s, 12)) }
	var body []string
	title := "Signing request "
	if isProposal(e.Kind) {
		title = proposalTitle(e.Kind)
	}
	body = append(body, st.Title.Render(title+shortID(e.ID))+st.Dim.Render("  id "+e.ID))
	body = append(body, label("requester")+st.Peer.Render(e.Requester))
	if e.KeyID != "" {
		body = append(body, label("key")+e.KeyID)
	}
	switch {
	case isProposal(e.Kind):
		body = append(body, label("proposal"))
		for _, l := range a.text {
			body = append(body, wrapIndent(l, w, "  │ ")...)
		}
	case len(a.text) > 0:
		body = append(body, label("message")+st.Dim.Render("text, "+itoa(len(e.Hex)/2)+" bytes, "+itoa(len(a.text))+" line(s)"))
		for _, l := range a.text {
			body = append(body, wrapIndent(l, w, "  │ ")...)
		}
	default:
		body = append(body, label("message")+st.Warn.Render("not printable text")+st.Dim.Render(", shown as hex, "+itoa(len(e.Hex)/2)+" bytes"))
		hx := e.Hex
		if len(hx) > maxShownHex {
			hx = hx[:maxShownHex] + "… " + itoa((len(e.Hex)-maxShownHex)/2) + " more bytes (the sha-256 covers them all)"
		}
		body = append(body, wrapIndent(hx, w, "  │ ")...)
	}
	if e.SHA256 != "" {
		if 12+len(e.SHA256) <= w {
			body = append(body, label("sha-256")+e.SHA256)
		} else {
			body = append(body, label("sha-256"))
			body = append(body, wrapIndent(e.SHA256, w, "    ")...)
		}
	}
	if e.Description != "" {
		body = append(body, label("description")+st.Claim.Render("the requester's claim, not verified"))
		for _, l := range wrapIndent(e.Description, w, "  ┆ ") {
			body = append(body, st.Claim.Render(l))
		}
	}
	exp := expiry(e.Expires, now)
	if !e.Expires.IsZero() {
		exp += " (" + e.Expires.Format("15:04:05") + "); no answer means decline"
	}
	body = append(body, label("expires")+exp)
	win, top := window(body, m.review.y, h-1)
	m.review.y = top
	out := append([]string{}, win...)
	if top+len(win) < len(body) && len(out) > 1 {
		out[len(out)-1] = st.Warn.Render("↓ more below (↓/j): sha-256, description, expiry")
	}
	out = padLines(out, h-1)
	return append(out, m.promptLine(a))
}

// promptLine says whether the prompt takes keys yet.
func (m *Model) promptLine(a *approval) string {
	st := m.st
	now := m.now()
	switch {
	case a.busy != "":
		return st.Dim.Render(" " + a.busy + " … ")
	case !a.ev.Expires.IsZero() && !now.Before(a.ev.Expires):
		return st.Error.Render(" expired: counts as declined ")
	case !m.armed():
		left := m.review.shownAt.Add(m.grace).Sub(now)
		return st.Arming.Render(fmt.Sprintf(" ARMING: keys ignored for %.1fs ", left.Seconds())) + st.Dim.Render(" read the request")
	}
	return st.Armed.Render(" a approve ") + " " + st.Error.Render(" d decline ") + st.Dim.Render("  esc back")
}

// wrapIndent wraps plain text to width w with a prefix on every line.
func wrapIndent(s string, w int, prefix string) []string {
	inner := max(w-ansi.StringWidth(prefix), 4)
	var out []string
	for _, l := range strings.Split(ansi.Hardwrap(s, inner, true), "\n") {
		out = append(out, prefix+l)
	}
	return out
}

// isProposal reports whether an approval is a ceremony proposal (a keygen,
// reshare, refresh or import: its text says what it makes) rather than a
// signing request.
func isProposal(kind string) bool {
	switch kind {
	case "keygen", "reshare", "refresh", "import":
		return true
	}
	return false
}

// proposalTitle heads a proposal's review: "Keygen proposal ".
func proposalTitle(kind string) string {
	if kind == "" {
		return "Proposal "
	}
	return strings.ToUpper(kind[:1]) + kind[1:] + " proposal "
}
