package tui

import (
	"context"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/signal-mpc/cosigner/core"
)

// Resharer is what the reshare form needs of core beyond Core: *core.App
// and the API's Remote have it. A console whose core lacks it has no form.
type Resharer interface {
	// StartReshare proposes a reshare or refresh of a key and waits until
	// it ends.
	StartReshare(ctx context.Context, req core.ReshareRequest) (*core.ReshareResult, error)
}

// reshareForm is the form's state: the threshold and the new group's
// roster names, for the key the status bar shows.
type reshareForm struct {
	signers string // as typed, comma-separated
	focus   int    // 0 threshold, 1 signers
	err     string
}

type reshareResultMsg struct {
	res *core.ReshareResult
	err error
}

func (m *Model) openReshareForm() tea.Cmd {
	if _, ok := m.core.(Resharer); !ok {
		m.setError("this console cannot propose a reshare: use cosigner reshare")
		return nil
	}
	k, ok := m.currentKey()
	if !ok {
		m.setError("no key to reshare yet")
		return nil
	}
	m.mode = modeReshareForm
	f := &m.forms
	f.reshare = reshareForm{}
	f.threshold.SetValue("")
	f.threshold.Placeholder = itoa(k.t)
	f.signersIn.SetValue("")
	f.signersIn.Blur()
	return f.threshold.Focus()
}

func (m *Model) reshareFormKey(msg tea.KeyMsg) tea.Cmd {
	f := &m.forms
	switch {
	case key.Matches(msg, m.keys.Cancel):
		m.mode = modeNormal
		f.threshold.Blur()
		f.signersIn.Blur()
		return nil
	case key.Matches(msg, m.keys.NextField), key.Matches(msg, m.keys.PrevField):
		f.reshare.focus = 1 - f.reshare.focus
		if f.reshare.focus == 0 {
			f.signersIn.Blur()
			return f.threshold.Focus()
		}
		f.threshold.Blur()
		return f.signersIn.Focus()
	case key.Matches(msg, m.keys.Submit):
		return m.submitReshare()
	}
	var cmd tea.Cmd
	if f.reshare.focus == 0 {
		f.threshold, cmd = f.threshold.Update(msg)
	} else {
		f.signersIn, cmd = f.signersIn.Update(msg)
	}
	f.reshare.err = ""
	return cmd
}

func (m *Model) submitReshare() tea.Cmd {
	f := &m.forms
	k, ok := m.currentKey()
	r, can := m.core.(Resharer)
	if !ok || !can {
		m.mode = modeNormal
		return nil
	}
	v := strings.TrimSpace(f.threshold.Value())
	if v == "" {
		v = f.threshold.Placeholder
	}
	t, err := strconv.Atoi(v)
	var names []string
	for _, n := range strings.Split(f.signersIn.Value(), ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	switch {
	case err != nil || t < 1:
		f.reshare.err = "the threshold is a whole number of signers, at least 1"
		return nil
	case len(names) == 0:
		f.reshare.err = "name the new group's signers (roster names, comma-separated, yours included if you stay)"
		return nil
	case t > len(names):
		f.reshare.err = "the threshold cannot exceed the " + itoa(len(names)) + " signers named"
		return nil
	}
	m.mode = modeNormal
	f.threshold.Blur()
	f.signersIn.Blur()
	m.tab = tabCeremonies
	m.setNotice("reshare of key " + k.short + " proposed: " + itoa(t) + "-of-" + itoa(len(names)) + "; the others must accept")
	ctx, id := m.ctx, k.id
	return func() tea.Msg {
		res, err := r.StartReshare(ctx, core.ReshareRequest{KeyID: id, Threshold: t, Signers: names})
		return reshareResultMsg{res: res, err: err}
	}
}

func (m *Model) reshareResult(msg reshareResultMsg) tea.Cmd {
	if msg.err != nil {
		m.setError("reshare: " + msg.err.Error())
		return nil
	}
	m.setNotice("reshare done: key " + shortHex(msg.res.KeyID[:]) + " epoch " + itoa(int(msg.res.Epoch)) + ", " + itoa(msg.res.T) + "-of-" + itoa(msg.res.N))
	return m.loadKeys()
}

func (m *Model) reshareFormView() []string {
	st := m.st
	f := &m.forms
	k, _ := m.currentKey()
	field := func(i int, s string) string {
		if f.reshare.focus == i {
			return st.FieldActive.Render(s)
		}
		return st.Label.Render(s)
	}
	lines := []string{
		st.Title.Render("Reshare key " + k.short + " (now " + itoa(k.t) + "-of-" + itoa(k.n) + ", epoch " + itoa(int(k.epoch)) + ")"),
		"",
		st.Dim.Render("The key and its id stay; its shares move to the signers named, at the next epoch."),
		st.Dim.Render("The same signers and threshold refresh the shares. Every old share is erased at the end."),
		"",
		field(0, "threshold ") + f.threshold.View(),
		field(1, "signers   ") + f.signersIn.View(),
	}
	if f.reshare.err != "" {
		lines = append(lines, "", st.Error.Render(f.reshare.err))
	}
	return lines
}
