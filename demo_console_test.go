package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/tui"
)

// newTestDemoModel is the demo's model with consoles whose core never
// comes: newRun records the runs it was asked for.
func newTestDemoModel(t *testing.T, runs *[]int) *demoModel {
	t.Helper()
	dm := &demoModel{names: demoNames}
	dm.newRun = func(n int) ([]*tui.Model, tea.Cmd) {
		*runs = append(*runs, n)
		models := make([]*tui.Model, len(demoNames))
		for i, name := range demoNames {
			models[i] = tui.New(t.Context(), &lateCore{ready: make(chan struct{})}, tui.WithLinking(true),
				tui.WithIdentity(tui.Identity{Name: name}))
		}
		return models, func() tea.Msg { return nil }
	}
	dm.models, dm.start = dm.newRun(0)
	dm.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	return dm
}

// demoScreen is the view without ANSI, checked to fit 80x24, and its text
// with the line breaks as spaces (wrapped sentences read whole).
func demoScreen(t *testing.T, dm *demoModel) (screen, text string) {
	t.Helper()
	raw := dm.View()
	lines := strings.Split(raw, "\n")
	if len(lines) > 24 {
		t.Errorf("view has %d lines", len(lines))
	}
	for i, l := range lines {
		if w := ansi.StringWidth(l); w > 80 {
			t.Errorf("line %d is %d cells wide", i+1, w)
		}
	}
	screen = ansi.Strip(raw)
	return screen, strings.Join(strings.Fields(screen), " ")
}

func TestAFailedDemoOffersToStartAgainAndRStartsIt(t *testing.T) {
	t.Parallel()
	failure := errors.New("keygen 3f2a1b9c aborted in round accept by bob: declined, blaming bob: not now, I am reading the docs")
	for _, linked := range []bool{false, true} {
		name := "on the link screen"
		if linked {
			name = "on the main screen"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var runs []int
			dm := newTestDemoModel(t, &runs)
			if linked {
				for i := range dm.models {
					dm.Update(demoMsg{run: 0, idx: i, msg: tui.Linked{Account: "6e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b", Device: 2}})
				}
			}
			// r does nothing while the story runs.
			if _, cmd := dm.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("r")}); dm.run != 0 || len(runs) != 1 {
				t.Fatalf("r restarted a running story (cmd %v, runs %v)", cmd != nil, runs)
			}
			dm.Update(demoDone{run: 0, err: failure})
			_, text := demoScreen(t, dm)
			for _, want := range []string{"demo failed: " + failure.Error(), "Press r to start the story again, q to quit."} {
				if !strings.Contains(text, want) {
					t.Errorf("the screen does not say %q:\n%s", want, text)
				}
			}
			_, cmd := dm.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("r")})
			if cmd == nil || dm.run != 1 || len(runs) != 2 || runs[1] != 1 || dm.failed != nil {
				t.Fatalf("r after the failure: cmd %v, run %d, runs %v, failed %v", cmd != nil, dm.run, runs, dm.failed)
			}
			// The old run's words no longer reach the screen.
			dm.Update(demoMsg{run: 0, idx: 0, msg: event.Error{Time: time.Now(), Text: "from the old run"}})
			dm.Update(demoDone{run: 0, err: failure})
			screen, text := demoScreen(t, dm)
			if strings.Contains(text, "demo failed") || strings.Contains(text, "old run") || !strings.Contains(screen, "Link this console") {
				t.Errorf("after r the screen is not a fresh story:\n%s", screen)
			}
		})
	}
}

func TestTheDemoExitsNonZeroWhenTheStoryDidNotFinish(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		outcome  demoOutcome
		code     int
		out, err string
	}{
		{"quit during the keygen", demoOutcome{stage: "the key generation"}, exitFailure, "",
			"cosigner demo: the story did not finish: quit during the key generation\n"},
		{"failed", demoOutcome{stage: "the signing request", err: errors.New("signing request 9b1c2d3e failed: expired")}, exitFailure, "",
			"cosigner demo: the story did not finish: signing request 9b1c2d3e failed: expired\n"},
		{"finished", demoOutcome{stage: "the signing request", group: []byte{0x8f}, sig: []byte{0xa1}}, exitOK,
			"cosigner verify --pubkey 8f --signature a1 --hex 6869", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			code := demoExit(tt.outcome, []byte("hi"), stdio{out: &out, err: &errb})
			if code != tt.code || !strings.Contains(out.String(), tt.out) || errb.String() != tt.err || (tt.out == "" && out.Len() > 0) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tt.code, tt.out, tt.err)
			}
		})
	}
}

// The console demo quit with q before the story ended exits 1 and says so.
func TestTheConsoleDemoQuitEarlyExitsOne(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	in, typed := io.Pipe()
	go func() {
		time.Sleep(200 * time.Millisecond)
		typed.Write([]byte("q"))
	}()
	defer typed.Close()
	var out, errb bytes.Buffer
	code := runDemoConsole(ctx, t.TempDir(), []byte("hi"), stdio{out: &out, err: &errb}, tea.WithInput(in), tea.WithoutSignalHandler())
	if code != exitFailure || !strings.HasPrefix(errb.String(), "cosigner demo: the story did not finish: ") {
		t.Fatalf("exit %d, stderr %q; want 1 and why", code, errb.String())
	}
}

func TestTheDemoGivesPeopleTime(t *testing.T) {
	t.Parallel()
	cfg := demoConsoleConfig("alice", nil, nil, slog.New(slog.DiscardHandler), false)
	if cfg.RoundTimeout < 30*time.Minute || cfg.RequestTTL < 30*time.Minute {
		t.Fatalf("a keygen round gets %v and a request %v: a person reading the console needs half an hour", cfg.RoundTimeout, cfg.RequestTTL)
	}
}
