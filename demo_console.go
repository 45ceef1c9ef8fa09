package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/tui"
)

// demoModel shows the three signers' consoles one at a time: F1, F2 and F3
// (or alt+1..3) switch between them. Each console is a tui.Model of its
// own; messages and commands are tagged with the console they belong to.
type demoModel struct {
	names  []string
	models []*tui.Model
	active int
	width  int
	height int
}

// demoMsg is a message for one console.
type demoMsg struct {
	idx int
	msg tea.Msg
}

// demoDone carries the outcome of the setup to the program.
type demoDone struct{ err error }

func (m *demoModel) tag(idx int, cmd tea.Cmd) tea.Cmd {
	if cmd == nil {
		return nil
	}
	return func() tea.Msg { return demoMsg{idx: idx, msg: cmd()} }
}

func (m *demoModel) Init() tea.Cmd {
	cmds := make([]tea.Cmd, len(m.models))
	for i, sub := range m.models {
		cmds[i] = m.tag(i, sub.Init())
	}
	return tea.Batch(cmds...)
}

func (m *demoModel) forward(idx int, msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case nil:
		return nil
	case tea.QuitMsg:
		return tea.Quit
	case tea.BatchMsg:
		cmds := make([]tea.Cmd, len(msg))
		for i, c := range msg {
			cmds[i] = m.tag(idx, c)
		}
		return tea.Batch(cmds...)
	}
	_, cmd := m.models[idx].Update(msg)
	return m.tag(idx, cmd)
}

func (m *demoModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case demoMsg:
		return m, m.forward(msg.idx, msg.msg)
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		inner := tea.WindowSizeMsg{Width: msg.Width, Height: max(msg.Height-m.headerLines(), 1)}
		cmds := make([]tea.Cmd, len(m.models))
		for i := range m.models {
			cmds[i] = m.forward(i, inner)
		}
		return m, tea.Batch(cmds...)
	case tea.KeyMsg:
		switch msg.String() {
		case "f1", "alt+1":
			m.active = 0
			return m, nil
		case "f2", "alt+2":
			m.active = 1
			return m, nil
		case "f3", "alt+3":
			m.active = 2
			return m, nil
		}
		return m, m.forward(m.active, msg)
	case demoDone:
		if msg.err != nil {
			// On the link screen as a step, on the main screen as an error.
			for i := range m.models {
				m.models[i].Update(tui.LinkStep{Text: "demo failed: " + msg.err.Error()})
				m.models[i].Update(event.Error{Time: time.Now(), Text: "demo failed: " + msg.err.Error()})
			}
		}
		return m, nil
	}
	// Anything else (ticks and the like) goes to every console.
	cmds := make([]tea.Cmd, len(m.models))
	for i := range m.models {
		cmds[i] = m.forward(i, msg)
	}
	return m, tea.Batch(cmds...)
}

// headerLines is 1 when the window has a line to spare for the signer
// tabs; at 80x24 every line goes to the console so the QR code fits (the
// status bar names the signer, and F1-F3 still switch).
func (m *demoModel) headerLines() int {
	if m.height > 24 {
		return 1
	}
	return 0
}

func (m *demoModel) View() string {
	if m.headerLines() == 0 {
		return m.models[m.active].View()
	}
	var b strings.Builder
	for i, n := range m.names {
		label := fmt.Sprintf(" F%d %s ", i+1, n)
		if i == m.active {
			label = "[" + strings.TrimSpace(label) + "]"
		}
		b.WriteString(label)
	}
	header := b.String()
	if m.width > 0 && len(header) > m.width {
		header = header[:m.width]
	}
	return header + "\n" + m.models[m.active].View()
}

// runDemoConsole sets up the demo behind the console: each signer's link
// screen shows its QR code being scanned, then the main screens; alice
// starts the keygen, bob asks for a signature, and the humans approve.
func runDemoConsole(ctx context.Context, dir string, msg []byte, sio stdio) int {
	logf, err := demoLogFile(dir)
	if err != nil {
		fmt.Fprintf(sio.err, "cosigner demo: %v\n", err)
		return exitFailure
	}
	defer logf.Close()
	log := slog.New(slog.NewTextHandler(logf, nil))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	dm := &demoModel{names: demoNames}
	cores := make([]*lateCore, len(demoNames))
	for i, n := range demoNames {
		cores[i] = &lateCore{ready: make(chan struct{})}
		dm.models = append(dm.models, tui.New(ctx, cores[i], tui.WithLinking(true), tui.WithLogger(log.With("signer", n)),
			tui.WithClipboard(os.Stdout), tui.WithIdentity(tui.Identity{Name: n, Server: "in-process relay on 127.0.0.1"})))
	}
	p := tea.NewProgram(dm, tea.WithAltScreen(), tea.WithContext(ctx), tea.WithOutput(unwrap(sio.out)))
	index := map[string]int{}
	for i, n := range demoNames {
		index[n] = i
	}
	send := func(name string, m tea.Msg) { p.Send(demoMsg{idx: index[name], msg: m}) }

	var result struct {
		group, sig []byte
	}
	go func() {
		w, err := startDemoWorld(ctx, dir, log, nil, demoHooks{
			OnURL: func(name, url string, expires time.Time) {
				send(name, tui.LinkURL{URL: url, Expires: expires})
				time.Sleep(1500 * time.Millisecond) // long enough to see the QR before the "scan"
			},
			OnStep: func(name, step string) { send(name, tui.LinkStep{Text: step}) },
		})
		if err != nil {
			p.Send(demoDone{err: err})
			return
		}
		for _, s := range w.signers {
			i := index[s.name]
			cores[i].set(s.con.app)
			sub := s.con.bus.Subscribe(0)
			go tui.Bridge(ctx, sub, func(m tea.Msg) { p.Send(demoMsg{idx: i, msg: m}) })
			// The connection came up before the console subscribed.
			st := s.con.dev.Status()
			s.con.bus.Publish(event.Connection{State: st.State.String(), RetryAt: st.RetryAt, Detail: st.Err})
			send(s.name, tui.Identity{Name: s.name, Account: s.con.card.Account, Device: s.con.card.Device})
			send(s.name, tui.Linked{Account: s.con.card.Account, Device: s.con.card.Device})
			if r, err := screenRoster(ctx, s.con); err == nil {
				send(s.name, r)
			}
		}
		defer w.close()
		alice, bob := w.signer("alice"), w.signer("bob")
		// Alice proposes the keygen; the others accept on their consoles.
		go func() {
			kr, err := alice.con.app.StartKeygen(ctx, 2)
			if err != nil {
				p.Send(demoDone{err: err})
				return
			}
			result.group = kr.GroupKey
			// Then bob asks for a signature (once he holds the key too);
			// the humans decide.
			if err := waitHoldsKey(ctx, bob, kr.KeyID); err != nil {
				p.Send(demoDone{err: err})
				return
			}
			sr, err := bob.con.app.RequestSignature(ctx, kr.KeyID, msg, "demo signing request")
			if err != nil {
				p.Send(demoDone{err: err})
				return
			}
			result.sig = sr.Signature
			p.Send(demoDone{})
		}()
		<-ctx.Done()
	}()
	if _, err := p.Run(); err != nil && ctx.Err() == nil {
		fmt.Fprintf(sio.err, "cosigner demo: %v\n", err)
		return exitFailure
	}
	cancel()
	if result.sig != nil {
		fmt.Fprintf(sio.out, "group public key: %x\nmessage:          %q\nsignature:        %x\ncheck it again with:\n  cosigner verify --pubkey %x --signature %x --hex %x\n",
			result.group, msg, result.sig, result.group, result.sig, msg)
	}
	return exitOK
}

// lateCore is a tui.Core whose App exists only once the demo's setup
// finished; calls wait for it (they run in tea.Cmds, never in Update).
type lateCore struct {
	ready chan struct{}
	app   *core.App
	once  sync.Once
}

func (l *lateCore) set(a *core.App) {
	l.once.Do(func() {
		l.app = a
		close(l.ready)
	})
}

func (l *lateCore) wait(ctx context.Context) (*core.App, error) {
	select {
	case <-l.ready:
		return l.app, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *lateCore) StartKeygen(ctx context.Context, t int) (*core.KeygenResult, error) {
	a, err := l.wait(ctx)
	if err != nil {
		return nil, err
	}
	return a.StartKeygen(ctx, t)
}

func (l *lateCore) RequestSignature(ctx context.Context, keyID [32]byte, msg []byte, desc string) (*core.SignResult, error) {
	a, err := l.wait(ctx)
	if err != nil {
		return nil, err
	}
	return a.RequestSignature(ctx, keyID, msg, desc)
}

func (l *lateCore) Approve(ctx context.Context, id [32]byte) error {
	a, err := l.wait(ctx)
	if err != nil {
		return err
	}
	return a.Approve(ctx, id)
}

func (l *lateCore) Decline(ctx context.Context, id [32]byte, reason string) error {
	a, err := l.wait(ctx)
	if err != nil {
		return err
	}
	return a.Decline(ctx, id, reason)
}

func (l *lateCore) AnswerChallenge(ctx context.Context, token, answer string) error {
	a, err := l.wait(ctx)
	if err != nil {
		return err
	}
	return a.AnswerChallenge(ctx, token, answer)
}

func (l *lateCore) Keys(ctx context.Context) ([]core.KeyInfo, error) {
	a, err := l.wait(ctx)
	if err != nil {
		return nil, err
	}
	return a.Keys(ctx)
}
