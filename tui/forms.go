package tui

import (
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
)

// The sign form's fields, in tab order.
const (
	fieldKey = iota
	fieldFormat
	fieldMessage
	fieldDesc
	numFields
)

// forms holds the keygen and signing request forms.
type forms struct {
	threshold textinput.Model
	keygenErr string

	signersIn textinput.Model // the reshare form's new group
	reshare   reshareForm

	key, message, desc textinput.Model
	hex                bool // the message is hex
	focus              int
	signErr            string
}

func newInput(placeholder string, limit int) textinput.Model {
	ti := textinput.New()
	ti.Placeholder = placeholder
	ti.CharLimit = limit
	ti.Prompt = "> "
	ti.Cursor.SetMode(cursor.CursorStatic)
	ti.KeyMap.Paste.SetEnabled(false) // no clipboard tools run on a signer: the terminal's paste works
	return ti
}

func newForms() forms {
	return forms{
		threshold: newInput("2", 3),
		signersIn: newInput("alice, bob, carol", 2048),
		key:       newInput("first 8 hex digits; empty: the only key", 64),
		message:   newInput("what to sign", 64*1024),
		desc:      newInput("what it is, for the other signers", 512),
	}
}

func (f *forms) resize(w int) {
	iw := max(w-18, 8)
	for _, ti := range []*textinput.Model{&f.threshold, &f.key, &f.message, &f.desc, &f.signersIn} {
		ti.Width = iw
	}
}

func (m *Model) openKeygenForm() tea.Cmd {
	m.mode = modeKeygenForm
	m.forms.keygenErr = ""
	m.forms.threshold.SetValue("")
	switch n := len(m.signers); {
	case m.threshold > 0:
		m.forms.threshold.Placeholder = itoa(m.threshold)
	case n > 0:
		m.forms.threshold.Placeholder = itoa(n/2 + 1)
	}
	return m.forms.threshold.Focus()
}

func (m *Model) keygenFormKey(msg tea.KeyMsg) tea.Cmd {
	f := &m.forms
	switch {
	case key.Matches(msg, m.keys.Cancel):
		m.mode = modeNormal
		f.threshold.Blur()
		return nil
	case key.Matches(msg, m.keys.Submit):
		v := strings.TrimSpace(f.threshold.Value())
		if v == "" {
			v = f.threshold.Placeholder
		}
		t, err := strconv.Atoi(v)
		n := len(m.signers)
		switch {
		case err != nil || t < 1:
			f.keygenErr = "the threshold is a whole number of signers, at least 1"
			return nil
		case n > 0 && t > n:
			f.keygenErr = "the threshold cannot exceed the " + itoa(n) + " signers of the roster"
			return nil
		}
		m.mode = modeNormal
		f.threshold.Blur()
		m.tab = tabCeremonies
		m.setNotice("keygen proposed: " + itoa(t) + "-of-" + itoa(max(n, t)) + "; the others must accept")
		c, ctx := m.core, m.ctx
		return func() tea.Msg {
			res, err := c.StartKeygen(ctx, t)
			return keygenResultMsg{res: res, err: err}
		}
	}
	var cmd tea.Cmd
	f.threshold, cmd = f.threshold.Update(msg)
	f.keygenErr = ""
	return cmd
}

func (m *Model) keygenFormView() []string {
	st := m.st
	f := &m.forms
	n := "the roster"
	if len(m.signers) > 0 {
		n = itoa(len(m.signers)) + " signers"
	}
	lines := []string{
		st.Title.Render("New key (distributed key generation)"),
		"",
		st.Dim.Render("Every signer of " + n + " takes part and must accept."),
		st.Dim.Render("The threshold is how many of them must approve each signature."),
		"",
		st.FieldActive.Render("threshold ") + f.threshold.View(),
	}
	if f.keygenErr != "" {
		lines = append(lines, "", st.Error.Render(f.keygenErr))
	}
	return lines
}

func (m *Model) openSignForm() tea.Cmd {
	f := &m.forms
	m.mode = modeSignForm
	f.signErr = ""
	if k, ok := m.currentKey(); ok && f.key.Value() == "" {
		f.key.SetValue(k.short)
	}
	f.message.SetValue("")
	f.desc.SetValue("")
	f.focus = fieldMessage
	return m.focusField()
}

func (m *Model) focusField() tea.Cmd {
	f := &m.forms
	f.key.Blur()
	f.message.Blur()
	f.desc.Blur()
	switch f.focus {
	case fieldKey:
		return f.key.Focus()
	case fieldMessage:
		return f.message.Focus()
	case fieldDesc:
		return f.desc.Focus()
	}
	return nil
}

func (m *Model) signFormKey(msg tea.KeyMsg) tea.Cmd {
	f := &m.forms
	k := m.keys
	switch {
	case key.Matches(msg, k.Cancel):
		m.mode = modeNormal
		f.key.Blur()
		f.message.Blur()
		f.desc.Blur()
		return nil
	case msg.Type == tea.KeyTab || msg.Type == tea.KeyDown:
		f.focus = (f.focus + 1) % numFields
		return m.focusField()
	case msg.Type == tea.KeyShiftTab || msg.Type == tea.KeyUp:
		f.focus = (f.focus + numFields - 1) % numFields
		return m.focusField()
	case key.Matches(msg, k.Submit):
		if f.focus != fieldDesc {
			f.focus++
			return m.focusField()
		}
		return m.submitSign()
	case f.focus == fieldFormat:
		if key.Matches(msg, k.Toggle) {
			f.hex = !f.hex
		}
		return nil
	}
	var cmd tea.Cmd
	switch f.focus {
	case fieldKey:
		f.key, cmd = f.key.Update(msg)
	case fieldMessage:
		f.message, cmd = f.message.Update(msg)
	case fieldDesc:
		f.desc, cmd = f.desc.Update(msg)
	}
	f.signErr = ""
	return cmd
}

func (m *Model) submitSign() tea.Cmd {
	f := &m.forms
	var keyID [32]byte
	if p := strings.ToLower(strings.TrimSpace(f.key.Value())); p != "" {
		var found []keyItem
		for _, k := range m.keyList {
			if strings.HasPrefix(hex.EncodeToString(k.id[:]), p) {
				found = append(found, k)
			}
		}
		switch len(found) {
		case 0:
			f.signErr = "no key starts with " + Clean(p)
			f.focus = fieldKey
			return m.focusField()
		case 1:
			keyID = found[0].id
		default:
			f.signErr = "several keys start with " + Clean(p) + ": type more digits"
			f.focus = fieldKey
			return m.focusField()
		}
	}
	var msg []byte
	if f.hex {
		h := strings.NewReplacer(" ", "", ":", "").Replace(strings.TrimSpace(f.message.Value()))
		h = strings.TrimPrefix(strings.TrimPrefix(h, "0x"), "0X")
		b, err := hex.DecodeString(h)
		if err != nil {
			f.signErr = "the message is not hex: " + err.Error()
			f.focus = fieldMessage
			return m.focusField()
		}
		msg = b
	} else {
		msg = []byte(f.message.Value())
	}
	if len(msg) == 0 {
		f.signErr = "the message is empty"
		f.focus = fieldMessage
		return m.focusField()
	}
	desc := f.desc.Value()
	m.mode = modeNormal
	f.key.Blur()
	f.message.Blur()
	f.desc.Blur()
	m.tab = tabCeremonies
	m.setNotice("signing request sent (" + itoa(len(msg)) + " bytes): waiting for approvals")
	c, ctx := m.core, m.ctx
	return func() tea.Msg {
		res, err := c.RequestSignature(ctx, keyID, msg, desc)
		return signResultMsg{res: res, err: err}
	}
}

func (m *Model) signFormView() []string {
	st := m.st
	f := &m.forms
	label := func(i int, s string) string {
		if f.focus == i {
			return st.FieldActive.Render("› " + pad(s, 12))
		}
		return st.Field.Render("  " + pad(s, 12))
	}
	format := "( ) text  (•) hex"
	if !f.hex {
		format = "(•) text  ( ) hex"
	}
	keys := "no key yet"
	if len(m.keyList) > 0 {
		var ks []string
		for _, k := range m.keyList {
			s := k.short + " " + itoa(k.t) + "-of-" + itoa(k.n)
			if k.epoch > 0 {
				s += " epoch " + itoa(int(k.epoch))
			}
			ks = append(ks, s)
		}
		keys = "keys: " + strings.Join(ks, ", ")
	}
	lines := []string{
		st.Title.Render("Request a signature") + st.Dim.Render("  every signer sees it and decides"),
		"",
		label(fieldKey, "key") + f.key.View(),
		"  " + pad("", 12) + st.Dim.Render(keys),
		label(fieldFormat, "format") + format + st.Dim.Render("  (space switches)"),
		label(fieldMessage, "message") + f.message.View(),
		label(fieldDesc, "description") + f.desc.View(),
		"",
		st.Dim.Render("enter on the description sends the request; esc cancels"),
	}
	if f.signErr != "" {
		lines = append(lines, st.Error.Render(f.signErr))
	}
	return lines
}
