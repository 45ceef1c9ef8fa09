package tui

import (
	"context"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/signal-mpc/cosigner/core/event"
)

// challenge is the server's open challenge, if any: until a person answers
// it the server refuses this console's messages (core retries them and
// sends what was held back once it is answered).
type challenge struct {
	token string // as the server gave it (the answer names it); empty: none open
	shown string // token, cleaned for the screen
	code  textinput.Model
	err   string
	busy  bool // an answer is on its way
}

type challengeResultMsg struct {
	token string
	err   error
}

func newChallenge() challenge { return challenge{code: newInput("the code you were given", 512)} }

func (m *Model) challengeRequested(e event.Challenge) {
	m.challenge.token, m.challenge.shown = e.Token, Clean(e.Token)
	m.challenge.err = ""
	text := "server challenge: press ! to answer it; until then no message goes out"
	m.mpc.addError(event.Error{Time: e.Time, Text: text})
	m.setError(text)
}

func (m *Model) challengeAnswered(e event.ChallengeAnswered) {
	if e.Token != m.challenge.token {
		return
	}
	m.challenge.token = ""
	if m.mode == modeChallengeForm {
		m.mode = modeNormal
		m.challenge.code.Blur()
	}
	m.setNotice("challenge answered: this console's messages go out again")
}

func (m *Model) openChallengeForm() tea.Cmd {
	if m.challenge.token == "" {
		m.setNotice("the server asks for no challenge")
		return nil
	}
	m.mode = modeChallengeForm
	m.challenge.err = ""
	m.challenge.code.SetValue("")
	return m.challenge.code.Focus()
}

func (m *Model) challengeFormKey(msg tea.KeyMsg) tea.Cmd {
	ch := &m.challenge
	switch {
	case key.Matches(msg, m.keys.Cancel):
		m.mode = modeNormal
		ch.code.Blur()
		return nil
	case key.Matches(msg, m.keys.Submit):
		code := strings.TrimSpace(ch.code.Value())
		switch {
		case ch.busy:
			return nil
		case code == "":
			ch.err = "type the code first"
			return nil
		}
		ch.busy, ch.err = true, ""
		c, ctx, token := m.core, m.ctx, ch.token
		return func() tea.Msg {
			ctx, cancel := context.WithTimeout(ctx, callTimeout)
			defer cancel()
			return challengeResultMsg{token: token, err: c.AnswerChallenge(ctx, token, code)}
		}
	}
	var cmd tea.Cmd
	ch.code, cmd = ch.code.Update(msg)
	ch.err = ""
	return cmd
}

func (m *Model) challengeResult(msg challengeResultMsg) {
	ch := &m.challenge
	ch.busy = false
	if msg.err == nil {
		// ChallengeAnswered follows on the bus; the form closes now.
		if msg.token == ch.token {
			ch.token = ""
		}
		if m.mode == modeChallengeForm {
			m.mode = modeNormal
			ch.code.Blur()
		}
		m.setNotice("challenge answered: this console's messages go out again")
		return
	}
	text := "the answer was not accepted: " + msg.err.Error()
	if m.mode == modeChallengeForm {
		ch.err = Clean(text)
	} else {
		m.setError(text)
	}
}

func (m *Model) challengeFormView() []string {
	st := m.st
	ch := &m.challenge
	lines := []string{
		st.Title.Render("Answer the server's challenge"),
		"",
		st.Dim.Render("The server refuses this console's messages until a person answers."),
		"",
		st.Field.Render(pad("token", 7)) + ch.shown,
		"",
		st.Dim.Render("On the project's relay, give the token to its operator, who runs"),
		"  cosigner relay challenge-code " + ch.shown,
		st.Dim.Render("and type the code they give you. On Signal's service: the captcha token."),
		"",
		st.FieldActive.Render(pad("code", 7)) + ch.code.View(),
		"",
	}
	switch {
	case ch.busy:
		lines = append(lines, st.Dim.Render("sending the answer..."))
	case ch.err != "":
		lines = append(lines, st.Error.Render(ch.err))
	default:
		lines = append(lines, st.Dim.Render("enter sends the answer; esc cancels"))
	}
	return lines
}
