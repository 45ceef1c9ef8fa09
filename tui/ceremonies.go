package tui

import (
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/signal-mpc/cosigner/core/event"
)

// ceremony is the latest state of one keygen or signing ceremony.
type ceremony struct {
	id       string // short id
	kind     string // keygen or sign
	round    string
	step     int
	total    int
	got      []string
	waiting  []string
	declined []string
	asker    string   // sign: who asked
	unseen   []string // sign: whose partials go to the asker, unseen here
	deadline time.Time
	done     bool
	failed   bool
	result   string
}

// ceremonies keeps them in the order they appeared, newest last.
type ceremonies struct {
	list []*ceremony
	byID map[string]*ceremony
}

func (c *ceremonies) get(id, kind string) *ceremony {
	if x, ok := c.byID[id]; ok {
		return x
	}
	x := &ceremony{id: id, kind: kind}
	c.byID[id] = x
	c.list = append(c.list, x)
	if len(c.list) > maxCeremonies {
		for i, old := range c.list {
			if old.done || i == len(c.list)-1 {
				delete(c.byID, old.id)
				c.list = append(c.list[:i:i], c.list[i+1:]...)
				break
			}
		}
	}
	return x
}

func (c *ceremonies) progress(p event.Progress) {
	x := c.get(Clean(p.Ceremony), Clean(p.Kind))
	if x.done {
		return // a late progress event after the result
	}
	x.round, x.step, x.total = Clean(p.Round), p.Step, p.Total
	x.got, x.waiting, x.deadline = cleanAll(p.Got), cleanAll(p.Waiting), p.Deadline
	x.declined, x.asker, x.unseen = cleanAll(p.Declined), Clean(p.Requester), cleanAll(p.Unseen)
}

func (c *ceremonies) keygenDone(e event.KeygenDone) {
	x := c.get(Clean(e.Ceremony), "keygen")
	x.done = true
	x.result = "key " + Clean(e.KeyID) + " " + itoa(e.T) + "-of-" + itoa(e.N)
}

// keygenFailed ends a keygen that stopped: its countdown goes, the reason
// and who is at fault stay.
func (c *ceremonies) keygenFailed(e event.KeygenFailed) {
	x := c.get(Clean(e.Ceremony), "keygen")
	x.done, x.failed = true, true
	x.result = "failed"
	if e.Round != "" {
		x.result += " in round " + Clean(e.Round)
	}
	x.result += ": " + Clean(e.Reason)
	if by := Clean(e.By); by != "" {
		x.result += " (stopped by " + by + ")"
	}
	if len(e.Blamed) > 0 {
		x.result += "; blamed " + names(cleanAll(e.Blamed))
	}
	if len(e.Claimed) > 0 {
		x.result += "; accused without proof " + names(cleanAll(e.Claimed))
	}
}

// reshareDone ends a reshare, refresh or import: the key's new epoch.
func (c *ceremonies) reshareDone(e event.ReshareDone) {
	x := c.get(Clean(e.Ceremony), Clean(e.What))
	x.done = true
	x.result = "key " + Clean(e.KeyID) + " epoch " + itoa(int(e.Epoch)) + " " + itoa(e.T) + "-of-" + itoa(e.N)
	if e.HandedOver {
		x.result += ", handed over: this console's share is erased"
	}
}

// reshareFailed ends a reshare that stopped, as keygenFailed does; the old
// group keeps the key.
func (c *ceremonies) reshareFailed(e event.ReshareFailed) {
	x := c.get(Clean(e.Ceremony), "reshare")
	kind := x.kind
	c.keygenFailed(event.KeygenFailed{Ceremony: e.Ceremony, Reason: e.Reason, Round: e.Round, By: e.By, Blamed: e.Blamed, Claimed: e.Claimed})
	x.kind = kind
	x.result += "; the old group keeps the key"
}

func (c *ceremonies) signDone(e event.SignDone) {
	x := c.get(shortID(Clean(e.ID)), "sign")
	x.done = true
	if e.Failure != "" {
		x.failed = true
		x.result = "failed: " + Clean(e.Failure)
		if len(e.Blamed) > 0 {
			x.result += "; blamed " + names(cleanAll(e.Blamed))
		}
		return
	}
	x.result = "signed by " + names(cleanAll(e.Signers)) + " (" + verifiedWord(e.Verified) + ")"
}

func (c *ceremonies) active() int {
	n := 0
	for _, x := range c.list {
		if !x.done {
			n++
		}
	}
	return n
}

// line is the ceremony as one line of plain text:
// "keygen 3f2a  round 2/4 deal  got alice, carol  waiting bob  9:41 left".
func (x *ceremony) line(now time.Time) string {
	// Kinds longer than keygen (reshare, refresh) keep their whole name.
	head := pad(x.kind, max(6, len(x.kind))) + " " + x.id + "  "
	if x.done {
		return head + x.result
	}
	var b strings.Builder
	b.WriteString(head)
	// On a console that did not ask, the others' partials go to the asker:
	// their count and who is still to answer are unknown here.
	hidden := x.kind == "sign" && len(x.unseen) > 0
	switch {
	case hidden:
		b.WriteString(x.round + "  needs " + itoa(x.total) + " approvals")
		if x.asker != "" {
			b.WriteString("  asked by " + x.asker)
		}
	case x.kind == "sign":
		b.WriteString("approvals " + itoa(x.step) + "/" + itoa(x.total))
	default:
		b.WriteString("round " + itoa(x.step) + "/" + itoa(x.total))
	}
	if !hidden && x.round != "" {
		b.WriteString(" " + x.round)
	}
	if !hidden || len(x.got) > 0 {
		b.WriteString("  got " + names(x.got))
	}
	if len(x.declined) > 0 {
		b.WriteString("  declined " + names(x.declined))
	}
	if len(x.waiting) > 0 {
		b.WriteString("  waiting " + names(x.waiting))
	}
	if hidden && x.asker != "" {
		b.WriteString("  approvals go to " + x.asker)
	}
	if !x.deadline.IsZero() {
		if left := x.deadline.Sub(now); left > 0 {
			b.WriteString("  " + clock(left) + " left")
		} else {
			b.WriteString("  time is up")
		}
	}
	return b.String()
}

func (m *Model) ceremoniesView(h int) []string {
	st := m.st
	lines := []string{st.Title.Render("Ceremonies") + st.Dim.Render(" "+itoa(m.cers.active())+" running, newest first")}
	if len(m.cers.list) == 0 {
		return append(lines, st.Dim.Render("none yet: K starts a keygen, s a signing request"))
	}
	var body []string
	now := m.now()
	for i := len(m.cers.list) - 1; i >= 0; i-- {
		x := m.cers.list[i]
		style := st.Peer
		switch {
		case x.failed:
			style = st.Error
		case x.done:
			style = st.Dim
		}
		// wrap long lines with an indent so names are never cut off
		// (continuation lines are indented: wrap to leave room for it)
		wrapped := strings.Split(ansi.Wrap(x.line(now), max(m.width-4, 10), " ,"), "\n")
		for j, w := range wrapped {
			if j > 0 {
				w = "    " + w
			}
			body = append(body, style.Render(w))
		}
	}
	win, top := window(body, m.cerY, h-1)
	m.cerY = top
	return append(lines, win...)
}
