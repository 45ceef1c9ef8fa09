package tui

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
	"github.com/signal-mpc/cosigner/core"
)

// t0 is the test clock's start.
var t0 = time.Date(2026, 11, 25, 20, 41, 0, 0, time.UTC)

// fakeCore records the calls the console makes.
type fakeCore struct {
	mu       sync.Mutex
	approved [][32]byte
	declined [][32]byte
	keygens  []int
	signs    []signCall
	keys     []core.KeyInfo
	answers  [][2]string // token, answer
	reshares []core.ReshareRequest
	err      error
	called   chan string // optional: one name per call
}

type signCall struct {
	keyID [32]byte
	msg   []byte
	desc  string
}

func (f *fakeCore) note(name string) {
	if f.called != nil {
		f.called <- name
	}
}

func (f *fakeCore) StartKeygen(_ context.Context, t int) (*core.KeygenResult, error) {
	f.mu.Lock()
	f.keygens = append(f.keygens, t)
	f.mu.Unlock()
	f.note("keygen")
	return &core.KeygenResult{T: t, N: 3}, f.err
}

func (f *fakeCore) RequestSignature(_ context.Context, keyID [32]byte, msg []byte, desc string) (*core.SignResult, error) {
	f.mu.Lock()
	f.signs = append(f.signs, signCall{keyID, msg, desc})
	f.mu.Unlock()
	f.note("sign")
	if f.err != nil {
		return nil, f.err
	}
	return &core.SignResult{KeyID: keyID, Message: msg}, nil
}

func (f *fakeCore) Approve(_ context.Context, id [32]byte) error {
	f.mu.Lock()
	f.approved = append(f.approved, id)
	f.mu.Unlock()
	f.note("approve")
	return f.err
}

func (f *fakeCore) Decline(_ context.Context, id [32]byte, _ string) error {
	f.mu.Lock()
	f.declined = append(f.declined, id)
	f.mu.Unlock()
	f.note("decline")
	return f.err
}

func (f *fakeCore) AnswerChallenge(_ context.Context, token, answer string) error {
	f.mu.Lock()
	f.answers = append(f.answers, [2]string{token, answer})
	f.mu.Unlock()
	f.note("challenge")
	return f.err
}

func (f *fakeCore) Keys(context.Context) ([]core.KeyInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keys, nil
}

var errFake = errors.New("fake failure")

// testClock is a settable time source.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// advance is a script step that moves the test clock.
type advance time.Duration

// harness drives a Model without a program: Update and View only.
type harness struct {
	t     *testing.T
	m     *Model
	core  *fakeCore
	clock *testClock
}

func newHarness(t *testing.T, w, h int, opts ...Option) *harness {
	t.Helper()
	c := &testClock{t: t0}
	fc := &fakeCore{}
	opts = append([]Option{WithClock(c.now)}, opts...)
	m := New(t.Context(), fc, opts...)
	hs := &harness{t: t, m: m, core: fc, clock: c}
	hs.send(tea.WindowSizeMsg{Width: w, Height: h})
	return hs
}

// send applies a script: messages, keys (by name) and clock steps. It
// returns the command of the last message.
func (h *harness) send(steps ...any) tea.Cmd {
	h.t.Helper()
	var cmd tea.Cmd
	for _, s := range steps {
		switch s := s.(type) {
		case advance:
			h.clock.add(time.Duration(s))
		case string:
			cmd = h.key(s)
		case tea.Msg:
			_, cmd = h.m.Update(s)
		}
	}
	return cmd
}

// key sends one key by its name as bubbletea spells it.
func (h *harness) key(name string) tea.Cmd {
	_, cmd := h.m.Update(keyMsg(name))
	return cmd
}

func keyMsg(name string) tea.KeyMsg {
	switch name {
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "tab":
		return tea.KeyMsg{Type: tea.KeyTab}
	case "shift+tab":
		return tea.KeyMsg{Type: tea.KeyShiftTab}
	case "up":
		return tea.KeyMsg{Type: tea.KeyUp}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	case "backspace":
		return tea.KeyMsg{Type: tea.KeyBackspace}
	case "space":
		return tea.KeyMsg{Type: tea.KeySpace, Runes: []rune{' '}}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(name)}
}

// typeText sends each rune as a key.
func typeText(s string) []any {
	var out []any
	for _, r := range s {
		out = append(out, tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
	}
	return out
}

// view returns the screen without ANSI and checks its size.
func (h *harness) view() string {
	h.t.Helper()
	raw := h.m.View()
	checkFits(h.t, raw, h.m.width, h.m.height)
	return ansi.Strip(raw)
}

func checkFits(t *testing.T, raw string, w, hgt int) {
	t.Helper()
	lines := strings.Split(raw, "\n")
	if len(lines) > hgt {
		t.Errorf("view has %d lines, the window %d", len(lines), hgt)
	}
	for i, l := range lines {
		if got := ansi.StringWidth(l); got > w {
			t.Errorf("line %d is %d cells wide, the window %d: %q", i+1, got, w, ansi.Strip(l))
		}
	}
}
