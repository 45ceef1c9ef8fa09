package main

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/tui"
)

// The console screen's feed: the console connects, and the screen learns
// who it is, its roster and its connection state; cancelling stops it.
func TestTheConsoleScreenIsFedAndTheConsoleConnects(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	s := newSigner(t, r, "alice")
	st, err := store.Open(t.Context(), s.path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := openConsole(t.Context(), consoleConfig{Name: "alice", Dialer: r.dialer, Store: st,
		RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	msgs := make(chan tea.Msg, 256)
	done := make(chan error, 1)
	go func() { done <- feedConsole(ctx, c, r.URL(), func(m tea.Msg) { msgs <- m }) }()

	var linked, connected, rostered bool
	deadline := time.After(20 * time.Second)
	for !linked || !connected || !rostered {
		select {
		case m := <-msgs:
			switch m := m.(type) {
			case tui.Linked:
				linked = m.Account == c.Card.Account && m.Device == c.Card.Device
			case tui.Roster:
				rostered = len(m.Signers) == 1 && m.Signers[0].Name == "alice" && m.Signers[0].Self
			case event.Connection:
				connected = connected || m.State == "connected"
			}
		case err := <-done:
			t.Fatalf("the console stopped: %v", err)
		case <-deadline:
			t.Fatalf("linked %v, roster %v, connected %v: the screen never learnt it all", linked, rostered, connected)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the console did not stop")
	}
}

// The screen gets the past results once the console runs: its start does
// not read them (NoHistoryAtStart), feedConsole asks for them after.
func TestTheConsoleScreenGetsThePastResultsOnceItRuns(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	signers := threeSigners(t, r, true)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := signers[0].con.App.RequestSignature(ctx, kr.KeyID, []byte("past"), "")
	if err != nil {
		t.Fatal(err)
	}
	alice := signers[0]
	alice.stop()
	st, err := store.Open(ctx, alice.path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := openConsole(ctx, consoleConfig{Name: alice.name, Dialer: r.dialer, Store: st, NoHistoryAtStart: true,
		RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	msgs := make(chan tea.Msg, 1024)
	done := make(chan error, 1)
	go func() { done <- feedConsole(runCtx, c, r.URL(), func(m tea.Msg) { msgs <- m }) }()
	want := hex.EncodeToString(sr.ID[:])
	for {
		select {
		case m := <-msgs:
			if d, ok := m.(event.SignDone); ok && d.ID == want {
				if !d.Restored || d.Signature == "" {
					t.Fatalf("the past signing reached the screen as %+v", d)
				}
				stop()
				<-done
				return
			}
		case err := <-done:
			t.Fatalf("the console stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("the screen never got the past signing")
		}
	}
}
