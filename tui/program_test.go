package tui

import (
	"bytes"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/signal-mpc/cosigner/core/event"
)

// Whole-program flows: a real tea.Program on a fake terminal (no TTY),
// events through the real bridge from a real bus.

// waitFor waits until the output since the last wait holds every text.
func waitFor(t *testing.T, tm *teatest.TestModel, texts ...string) {
	t.Helper()
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool {
		for _, s := range texts {
			if !bytes.Contains(b, []byte(s)) {
				return false
			}
		}
		return true
	}, teatest.WithDuration(waitLimit), teatest.WithCheckInterval(5*time.Millisecond))
}

func runeKey(r rune) tea.KeyMsg { return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}} }

func finalModel(t *testing.T, tm *teatest.TestModel) *Model {
	t.Helper()
	m, ok := tm.FinalModel(t, teatest.WithFinalTimeout(waitLimit)).(*Model)
	if !ok {
		t.Fatal("final model is not a *Model")
	}
	return m
}

func TestProgramLinkThenMain(t *testing.T) {
	t.Parallel()
	m := New(t.Context(), &fakeCore{}, WithLinking(true))
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	tm.Send(LinkURL{URL: linkURL, Expires: time.Now().Add(time.Minute)})
	waitFor(t, tm, "Link this console", "▀▀▀▀", "sgnl://linkdevice")
	tm.Send(LinkStep{Text: "waiting for scan"})
	waitFor(t, tm, "waiting for scan")
	tm.Send(LinkStep{Text: "prekeys uploaded"})
	tm.Send(Linked{Account: acct, Device: 2})
	waitFor(t, tm, "MPC log")
	tm.Send(runeKey('q'))
	if got := finalModel(t, tm); got.screen != screenMain || got.id.Device != 2 {
		t.Errorf("final screen %d, device %d", got.screen, got.id.Device)
	}
}

func TestProgramApproveRequest(t *testing.T) {
	t.Parallel()
	fc := &fakeCore{called: make(chan string, 4)}
	var bus event.Bus
	sub := bus.Subscribe(0)
	m := New(t.Context(), fc, WithGrace(50*time.Millisecond))
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	go Bridge(t.Context(), sub, tm.Send)

	r := request()
	r.Expires = time.Now().Add(5 * time.Minute)
	bus.Publish(r)
	waitFor(t, tm, "signing request from bob")
	tm.Send(runeKey('3'))
	tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
	waitFor(t, tm, "a approve   d decline") // armed: the grace period is over
	tm.Send(runeKey('a'))
	select {
	case c := <-fc.called:
		if c != "approve" {
			t.Fatalf("core got %s", c)
		}
	case <-time.After(waitLimit):
		t.Fatal("Approve was not called")
	}
	bus.Publish(event.ApprovalResolved{ID: reqID, Decision: "approved"})
	waitFor(t, tm, "3f2a1b9c approved")
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlC})
	got := finalModel(t, tm)
	if len(got.queue.list) != 0 {
		t.Errorf("queue still has %d requests", len(got.queue.list))
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.approved) != 1 || fc.approved[0] != mustID(t, reqID) {
		t.Errorf("approved %x", fc.approved)
	}
}

func TestProgramQuit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		keys []tea.KeyMsg
	}{
		{"q on the main screen", []tea.KeyMsg{runeKey('q')}},
		{"ctrl+c inside a form", []tea.KeyMsg{runeKey('s'), runeKey('q'), {Type: tea.KeyCtrlC}}},
		{"q after closing the help", []tea.KeyMsg{runeKey('?'), {Type: tea.KeyEsc}, runeKey('q')}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tm := teatest.NewTestModel(t, New(t.Context(), &fakeCore{}), teatest.WithInitialTermSize(80, 24))
			waitFor(t, tm, "MPC log")
			for _, k := range tt.keys {
				tm.Send(k)
			}
			tm.WaitFinished(t, teatest.WithFinalTimeout(waitLimit))
		})
	}
}

// waitLimit bounds the waits of the whole-program tests: generous, since a
// loaded CI machine can take seconds to run a program's first frames; a
// test that passes never waits that long.
const waitLimit = 30 * time.Second
