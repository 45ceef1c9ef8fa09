package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
// own; messages and commands are tagged with the console and the run of the
// story they belong to. When a run fails, r starts the story again.
type demoModel struct {
	names  []string
	models []*tui.Model
	active int
	width  int
	height int
	run    int     // the run of the story the consoles show
	failed error   // why this run stopped, if it did
	start  tea.Cmd // starts the first run (Init)
	// newRun makes the consoles of run n and the command that starts it,
	// stopping the run before; nothing happens until the command runs.
	newRun func(n int) ([]*tui.Model, tea.Cmd)
}

// demoMsg is a message for one console of one run.
type demoMsg struct {
	run int
	idx int
	msg tea.Msg
}

// demoDone says how a run ended: err is why it failed, nil once the
// signature is there.
type demoDone struct {
	run int
	err error
}

// demoRestartKey starts a failed story again.
const demoRestartKey = "r"

func (m *demoModel) tag(idx int, cmd tea.Cmd) tea.Cmd {
	if cmd == nil {
		return nil
	}
	run := m.run
	return func() tea.Msg { return demoMsg{run: run, idx: idx, msg: cmd()} }
}

func (m *demoModel) Init() tea.Cmd {
	return tea.Batch(m.initModels(), m.start)
}

func (m *demoModel) initModels() tea.Cmd {
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

// resize tells every console its size: the window less the signer tabs.
func (m *demoModel) resize() tea.Cmd {
	if m.width == 0 {
		return nil
	}
	inner := tea.WindowSizeMsg{Width: m.width, Height: max(m.height-m.headerLines(), 1)}
	cmds := make([]tea.Cmd, len(m.models))
	for i := range m.models {
		cmds[i] = m.forward(i, inner)
	}
	return tea.Batch(cmds...)
}

// restart shows fresh consoles for a new run of the story and starts it.
func (m *demoModel) restart() tea.Cmd {
	m.run++
	m.failed = nil
	models, start := m.newRun(m.run)
	m.models = models
	return tea.Batch(m.initModels(), m.resize(), start)
}

func (m *demoModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case demoMsg:
		if msg.run != m.run {
			return m, nil // from a run that was replaced
		}
		return m, m.forward(msg.idx, msg.msg)
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		return m, m.resize()
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
		case demoRestartKey:
			if m.failed != nil && !m.models[m.active].Typing() {
				return m, m.restart()
			}
		}
		return m, m.forward(m.active, msg)
	case demoDone:
		if msg.run != m.run || msg.err == nil {
			return m, nil
		}
		m.failed = msg.err
		// On the link screen as a step, on the main screen as an error.
		text := "demo failed: " + msg.err.Error() + ". Press " + demoRestartKey + " to start the story again, q to quit."
		for i := range m.models {
			m.models[i].Update(tui.LinkStep{Text: "demo failed"})
			m.models[i].Update(event.Error{Time: time.Now(), Text: text})
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

// demoStory runs the story behind the consoles: each signer's link screen
// shows its QR code being scanned, then the main screens; alice starts the
// keygen, bob asks for a signature, and the humans approve. One run at a
// time: starting one stops the one before.
type demoStory struct {
	ctx  context.Context
	dir  string
	msg  []byte
	log  *slog.Logger
	send func(tea.Msg)

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	outcome demoOutcome
}

// demoOutcome is how far the current run got.
type demoOutcome struct {
	stage      string // what it was doing
	group, sig []byte // set once it finished
	err        error  // why it failed
}

// start stops the current run, if any, and starts run n with the consoles'
// cores.
func (s *demoStory) start(n int, cores []*lateCore) {
	s.stop()
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	s.mu.Lock()
	s.cancel, s.done, s.outcome = cancel, done, demoOutcome{stage: "the linking of the consoles"}
	s.mu.Unlock()
	go func() {
		defer close(done)
		s.run(ctx, n, cores)
	}()
}

// stop ends the current run and waits until its world is closed.
func (s *demoStory) stop() {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.cancel, s.done = nil, nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (s *demoStory) result() demoOutcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outcome
}

func (s *demoStory) update(f func(o *demoOutcome)) {
	s.mu.Lock()
	f(&s.outcome)
	s.mu.Unlock()
}

func (s *demoStory) run(ctx context.Context, n int, cores []*lateCore) {
	index := map[string]int{}
	for i, name := range demoNames {
		index[name] = i
	}
	send := func(name string, m tea.Msg) { s.send(demoMsg{run: n, idx: index[name], msg: m}) }
	fail := func(err error) {
		if ctx.Err() != nil {
			return // stopped: quit or started again
		}
		s.update(func(o *demoOutcome) { o.err = err })
		s.send(demoDone{run: n, err: err})
	}
	// Each run has a folder of its own: a new relay and new stores.
	dir := filepath.Join(s.dir, fmt.Sprintf("run-%d", n+1))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fail(err)
		return
	}
	w, err := startDemoWorld(ctx, dir, s.log, nil, demoHooks{
		OnURL: func(name, url string, expires time.Time) {
			send(name, tui.LinkURL{URL: url, Expires: expires})
			time.Sleep(1500 * time.Millisecond) // long enough to see the QR before the "scan"
		},
		OnStep: func(name, step string) { send(name, tui.LinkStep{Text: step}) },
	})
	if err != nil {
		fail(err)
		return
	}
	defer w.close()
	for _, sg := range w.signers {
		i := index[sg.name]
		cores[i].set(sg.con.App)
		sub := sg.con.Bus.Subscribe(0)
		go tui.Bridge(ctx, sub, func(m tea.Msg) { s.send(demoMsg{run: n, idx: i, msg: m}) })
		// The connection came up before the console subscribed.
		st := sg.con.Device.Status()
		sg.con.Bus.Publish(event.Connection{State: st.State.String(), RetryAt: st.RetryAt, Detail: st.Err})
		send(sg.name, tui.Identity{Name: sg.name, Account: sg.con.Card.Account, Device: sg.con.Card.Device})
		send(sg.name, tui.Linked{Account: sg.con.Card.Account, Device: sg.con.Card.Device})
		if r, err := screenRoster(ctx, sg.con); err == nil {
			send(sg.name, r)
		}
	}
	alice, bob := w.signer("alice"), w.signer("bob")
	// Alice proposes the keygen; the others accept on their consoles.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.update(func(o *demoOutcome) { o.stage = "the key generation" })
		kr, err := alice.con.App.StartKeygen(ctx, 2)
		if err != nil {
			fail(err)
			return
		}
		// Then bob asks for a signature (once he holds the key too); the
		// humans decide.
		if err := waitHoldsKey(ctx, bob, kr.KeyID); err != nil {
			fail(err)
			return
		}
		s.update(func(o *demoOutcome) { o.stage = "the signing request" })
		sr, err := bob.con.App.RequestSignature(ctx, kr.KeyID, s.msg, "demo signing request")
		if err != nil {
			fail(err)
			return
		}
		s.update(func(o *demoOutcome) { o.group, o.sig = kr.GroupKey, sr.Signature })
		s.send(demoDone{run: n})
	}()
	<-ctx.Done()
	wg.Wait() // its calls end with ctx: no word of this run comes after it
}

// runDemoConsole runs the demo's story behind the console. It exits 0 with
// the signature once the story finished, 1 with the reason on stderr when
// it did not (a failure, or q before the end).
func runDemoConsole(ctx context.Context, dir string, msg []byte, sio stdio, opts ...tea.ProgramOption) int {
	logf, err := demoLogFile(dir)
	if err != nil {
		fmt.Fprintf(sio.err, "cosigner demo: %v\n", err)
		return exitFailure
	}
	defer logf.Close()
	log := slog.New(slog.NewTextHandler(logf, nil))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	story := &demoStory{ctx: ctx, dir: dir, msg: msg, log: log, outcome: demoOutcome{stage: "the linking of the consoles"}}
	dm := &demoModel{names: demoNames}
	dm.newRun = func(n int) ([]*tui.Model, tea.Cmd) {
		cores := make([]*lateCore, len(demoNames))
		models := make([]*tui.Model, len(demoNames))
		for i, name := range demoNames {
			cores[i] = &lateCore{ready: make(chan struct{})}
			models[i] = tui.New(ctx, cores[i], tui.WithLinking(true), tui.WithLogger(log.With("signer", name)),
				tui.WithClipboard(unwrap(sio.out)), tui.WithIdentity(tui.Identity{Name: name, Server: "in-process relay on 127.0.0.1"}))
		}
		return models, func() tea.Msg {
			story.start(n, cores)
			return nil
		}
	}
	dm.models, dm.start = dm.newRun(0)
	opts = append([]tea.ProgramOption{tea.WithAltScreen(), tea.WithContext(ctx), tea.WithOutput(unwrap(sio.out))}, opts...)
	p := tea.NewProgram(dm, opts...)
	story.send = p.Send
	_, err = p.Run()
	stopped := ctx.Err() != nil // by the caller (a signal), not by q
	cancel()
	story.stop()
	if err != nil && !stopped {
		fmt.Fprintf(sio.err, "cosigner demo: %v\n", err)
		return exitFailure
	}
	return demoExit(story.result(), msg, sio)
}

// demoExit prints the signature of a finished story (exit 0) or why it did
// not finish (exit 1).
func demoExit(o demoOutcome, msg []byte, sio stdio) int {
	if o.sig == nil {
		why := "quit during " + o.stage
		if o.err != nil {
			why = o.err.Error()
		}
		fmt.Fprintf(sio.err, "cosigner demo: the story did not finish: %s\n", why)
		return exitFailure
	}
	fmt.Fprintf(sio.out, "group public key: %x\nmessage:          %q\nsignature:        %x\ncheck it again with:\n  cosigner verify --pubkey %x --signature %x --hex %x\n",
		o.group, msg, o.sig, o.group, o.sig, msg)
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

// StartReshare proposes a reshare once the App exists (tui.Resharer).
func (l *lateCore) StartReshare(ctx context.Context, req core.ReshareRequest) (*core.ReshareResult, error) {
	a, err := l.wait(ctx)
	if err != nil {
		return nil, err
	}
	return a.StartReshare(ctx, req)
}
