package tui

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/signal-mpc/cosigner/core/event"
)

// Defaults of the options.
const (
	DefaultGrace    = time.Second // the approval prompt ignores keys this long
	DefaultLogLimit = 2000        // MPC log lines kept in memory
	maxHistory      = 500         // signatures kept
	maxCeremonies   = 100         // ceremonies kept (finished ones go first)
	maxSteps        = 20          // link steps kept
	callTimeout     = 30 * time.Second
)

type screen int

const (
	screenLink screen = iota // the QR code, until Linked
	screenMain               // the console
)

// mode is what keys go to on the main screen.
type mode int

const (
	modeNormal        mode = iota // the tabs
	modeFilter                    // typing the log filter
	modeReview                    // reviewing an approval request
	modeSigDetail                 // one signature
	modeKeygenForm                // the keygen form
	modeSignForm                  // the signing request form
	modeChallengeForm             // answering the server's challenge
	modeReshareForm               // the reshare form (reshare_form.go)
)

type tab int

const (
	tabLog tab = iota
	tabCeremonies
	tabQueue
	tabSigs
	tabRoster
	numTabs
)

// Option configures the console.
type Option func(*Model)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(m *Model) { m.now = now } }

// WithGrace sets how long the approval prompt ignores keys after it appears
// (house rule 8); DefaultGrace if d <= 0.
func WithGrace(d time.Duration) Option {
	return func(m *Model) {
		if d > 0 {
			m.grace = d
		}
	}
}

// WithLinking starts on the link screen: the device is not linked yet and
// main will send LinkURL, LinkStep and finally Linked.
func WithLinking(linking bool) Option {
	return func(m *Model) {
		if linking {
			m.screen = screenLink
		}
	}
}

// WithIdentity sets what the status bar shows about this console.
func WithIdentity(id Identity) Option { return func(m *Model) { m.setIdentity(id) } }

// WithClipboard is where OSC 52 clipboard sequences are written, normally
// the program's output (os.Stdout, or the SSH session). Without it the copy
// keys say so and the value stays on screen to select.
func WithClipboard(w io.Writer) Option { return func(m *Model) { m.clip = w } }

// WithLogger sets the logger (a file: never stderr while the TUI runs).
func WithLogger(l *slog.Logger) Option {
	return func(m *Model) {
		if l != nil {
			m.log = l
		}
	}
}

// WithThreshold is the keygen form's threshold when the human types none
// (keygen.threshold); without it, or if t <= 0, a majority of the roster.
func WithThreshold(t int) Option { return func(m *Model) { m.threshold = max(t, 0) } }

// WithRenderer sets the lipgloss renderer (one per SSH session).
func WithRenderer(r *lipgloss.Renderer) Option { return func(m *Model) { m.st = newStyles(r) } }

// WithLogLimit sets how many MPC log lines are kept; DefaultLogLimit if n <= 0.
func WithLogLimit(n int) Option {
	return func(m *Model) {
		if n > 0 {
			m.mpc = newLogState(n)
		}
	}
}

// Model is the console. It is a tea.Model; use it through a *Model.
type Model struct {
	ctx   context.Context
	core  Core
	keys  keyMap
	st    styles
	help  help.Model
	now   func() time.Time
	grace time.Duration
	clip  io.Writer
	log   *slog.Logger
	// threshold is the keygen form's default (WithThreshold); 0: a majority.
	threshold int

	width, height int
	screen        screen
	mode          mode
	tab           tab
	showHelp      bool

	id         Identity
	conn       event.Connection
	servers    []serverState // each server's, when there are several
	link       linkState
	mpc        logState
	cers       ceremonies
	queue      approvals
	review     review
	sigs       signatures
	signers    []Signer
	keyList    []keyItem
	forms      forms
	challenge  challenge
	notice     notice
	connNotice notice // the notice the connection's trouble set, if any
	rosterY    int    // roster scroll
	cerY       int    // ceremonies scroll
}

// notice is the one-line message above the help line.
type notice struct {
	text string
	err  bool
}

// New makes the console. ctx bounds the calls it makes into c (they run in
// tea.Cmds); it starts nothing.
func New(ctx context.Context, c Core, opts ...Option) *Model {
	m := &Model{
		ctx:    ctx,
		core:   c,
		keys:   defaultKeys(),
		st:     newStyles(nil),
		help:   help.New(),
		now:    time.Now,
		grace:  DefaultGrace,
		log:    slog.New(slog.DiscardHandler),
		width:  80,
		height: 24,
		screen: screenMain,
		mpc:    newLogState(DefaultLogLimit),
		cers:   ceremonies{byID: map[string]*ceremony{}},
	}
	for _, o := range opts {
		o(m)
	}
	m.forms = newForms()
	m.challenge = newChallenge()
	m.help.ShortSeparator = " · "
	return m
}

// Init starts the clock that drives countdowns and asks core for its keys.
func (m *Model) Init() tea.Cmd {
	return tea.Batch(tick(), m.loadKeys())
}

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(time.Time) tea.Msg { return tickMsg{} })
}

func (m *Model) loadKeys() tea.Cmd {
	c, ctx := m.core, m.ctx
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		keys, err := c.Keys(ctx)
		return keysMsg{keys: keys, err: err}
	}
}

func (m *Model) setNotice(text string) { m.notice = notice{text: Clean(text)} }
func (m *Model) setError(text string)  { m.notice = notice{text: Clean(text), err: true} }

func (m *Model) setIdentity(id Identity) {
	if id.Name != "" {
		m.id.Name = Clean(id.Name)
	}
	if id.Account != "" {
		m.id.Account = Clean(id.Account)
	}
	if id.Device != 0 {
		m.id.Device = id.Device
	}
	if id.Server != "" {
		m.id.Server = Clean(id.Server)
	}
}

// Typing reports whether keys go to a text field (a form or the log
// filter) rather than to commands.
func (m *Model) Typing() bool {
	switch m.mode {
	case modeFilter, modeKeygenForm, modeSignForm, modeChallengeForm, modeReshareForm:
		return true
	}
	return false
}

// Update handles one message. It never blocks: calls into core, clipboard
// writes and timers are returned as commands.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = max(msg.Width, 1), max(msg.Height, 1)
		m.forms.resize(m.width)
		m.challenge.code.Width = max(m.width-18, 8)
		m.mpc.filter.Width = max(m.width-20, 8)
		return m, nil
	case tickMsg:
		return m, tick()
	case armMsg:
		return m, nil // redraw: the prompt is armed
	case tea.KeyMsg:
		return m, m.handleKey(msg)

	// linking and roster, from main
	case LinkURL:
		m.link.setURL(msg)
		return m, nil
	case LinkStep:
		m.link.addStep(msg.Text)
		return m, nil
	case Linked:
		m.setIdentity(Identity{Account: msg.Account, Device: msg.Device})
		m.link.linked = true
		m.screen = screenMain
		m.setNotice("linked as " + shortAccount(m.id.Account, m.id.Device))
		return m, nil
	case Identity:
		m.setIdentity(msg)
		return m, nil
	case Roster:
		m.setRoster(msg)
		return m, nil

	// core events, from the bridge
	case event.Message:
		m.mpc.addMessage(msg)
		return m, nil
	case event.Untagged:
		m.mpc.untagged = msg.Total
		return m, nil
	case droppedMsg:
		m.mpc.dropped = msg.total
		return m, nil
	case event.Progress:
		m.cers.progress(msg)
		return m, nil
	case event.ApprovalRequested:
		return m, m.approvalRequested(msg)
	case event.ApprovalResolved:
		return m, m.approvalResolved(msg)
	case event.KeygenDone:
		m.cers.keygenDone(msg)
		m.setNotice("key " + msg.KeyID + " ready: " + itoa(msg.T) + "-of-" + itoa(msg.N))
		return m, m.loadKeys()
	case event.KeygenFailed:
		m.cers.keygenFailed(msg)
		if msg.Text != "" {
			m.setError(msg.Text)
		}
		// A key disputed after it was made leaves the list.
		return m, m.loadKeys()
	case event.ReshareDone:
		m.cers.reshareDone(msg)
		if msg.HandedOver {
			m.setNotice("key " + Clean(msg.KeyID) + " handed over: this console's share is erased")
		} else {
			m.setNotice("key " + Clean(msg.KeyID) + " at epoch " + itoa(int(msg.Epoch)) + ": " + itoa(msg.T) + "-of-" + itoa(msg.N))
		}
		return m, m.loadKeys()
	case event.ReshareFailed:
		m.cers.reshareFailed(msg)
		if msg.Text != "" {
			m.setError(msg.Text)
		}
		return m, nil
	case event.SignDone:
		if msg.Restored {
			// History from before this run: listed, not announced.
			at := msg.Time
			if at.IsZero() {
				at = m.now()
			}
			m.sigs.add(msg, at)
			return m, nil
		}
		m.cers.signDone(msg)
		m.sigs.add(msg, m.now())
		if msg.Failure != "" {
			m.setError("signing " + shortID(msg.ID) + " failed: " + msg.Failure)
		} else {
			m.setNotice("signature " + shortID(msg.ID) + " ready (" + verifiedWord(msg.Verified) + "): 4 to see it")
		}
		return m, nil
	case event.Error:
		m.mpc.addError(msg)
		m.link.err = Clean(msg.Text)
		m.setError(msg.Text)
		return m, nil
	case event.Challenge:
		m.challengeRequested(msg)
		return m, nil
	case event.ChallengeAnswered:
		m.challengeAnswered(msg)
		return m, nil
	case challengeResultMsg:
		m.challengeResult(msg)
		return m, nil
	case event.ServerLagging:
		m.serverLagging(msg)
		return m, nil
	case event.Connection:
		if msg.Server != "" {
			m.serverConnection(msg)
			return m, nil
		}
		prev := m.conn.State
		m.conn = event.Connection{State: Clean(msg.State), RetryAt: msg.RetryAt, Detail: Clean(msg.Detail)}
		switch {
		case m.conn.State != prev && m.conn.State != "connected" && m.conn.Detail != "":
			m.setError("connection " + m.conn.State + ": " + m.conn.Detail)
			m.connNotice = m.notice
		case m.conn.State == "connected" && prev != "connected" && m.notice == m.connNotice && m.notice.text != "":
			// The connection's own complaint is stale now; another
			// message shown since stays.
			m.setNotice("connected again")
		}
		return m, nil

	// command results
	case keysMsg:
		if msg.err != nil {
			m.log.Warn("list keys", "err", msg.err)
			return m, nil
		}
		m.setKeys(msg.keys)
		return m, nil
	case decisionMsg:
		m.decided(msg)
		return m, nil
	case reshareResultMsg:
		return m, m.reshareResult(msg)
	case keygenResultMsg:
		if msg.err != nil {
			m.setError("keygen: " + msg.err.Error())
		} else {
			m.setNotice("keygen done: key " + shortHex(msg.res.KeyID[:]) + " " + itoa(msg.res.T) + "-of-" + itoa(msg.res.N))
		}
		return m, m.loadKeys()
	case signResultMsg:
		if msg.err != nil {
			m.setError("signing request: " + msg.err.Error())
		} else {
			m.setNotice("your request " + shortHex(msg.res.ID[:]) + " is signed: 4 to see it")
		}
		return m, nil
	case copiedMsg:
		if msg.err != nil {
			m.setError("copy " + msg.what + ": " + msg.err.Error() + " (select the text on screen instead)")
		} else {
			m.setNotice(msg.what + " sent to the clipboard (OSC 52)")
		}
		return m, nil
	}
	return m, nil
}

func (m *Model) handleKey(msg tea.KeyMsg) tea.Cmd {
	k := m.keys
	if msg.String() == "ctrl+c" {
		return tea.Quit
	}
	if m.screen == screenLink {
		switch {
		case key.Matches(msg, k.Quit):
			return tea.Quit
		case key.Matches(msg, k.CopyURL) && m.link.url != "":
			return m.copy("link URL", m.link.url)
		}
		return nil
	}
	switch m.mode {
	case modeFilter:
		return m.filterKey(msg)
	case modeKeygenForm:
		return m.keygenFormKey(msg)
	case modeSignForm:
		return m.signFormKey(msg)
	case modeChallengeForm:
		return m.challengeFormKey(msg)
	case modeReshareForm:
		return m.reshareFormKey(msg)
	case modeReview:
		return m.reviewKey(msg)
	case modeSigDetail:
		return m.sigDetailKey(msg)
	}
	if m.showHelp {
		if key.Matches(msg, k.Help, k.Back) {
			m.showHelp = false
			return nil
		}
		if key.Matches(msg, k.Quit) {
			return tea.Quit
		}
		return nil
	}
	switch {
	case key.Matches(msg, k.Quit):
		return tea.Quit
	case key.Matches(msg, k.Help):
		m.showHelp = true
	case key.Matches(msg, k.NextTab):
		m.tab = (m.tab + 1) % numTabs
	case key.Matches(msg, k.PrevTab):
		m.tab = (m.tab + numTabs - 1) % numTabs
	case key.Matches(msg, k.TabLog):
		m.tab = tabLog
	case key.Matches(msg, k.TabCer):
		m.tab = tabCeremonies
	case key.Matches(msg, k.TabQueue):
		m.tab = tabQueue
	case key.Matches(msg, k.TabSigs):
		m.tab = tabSigs
	case key.Matches(msg, k.TabRoster):
		m.tab = tabRoster
	case key.Matches(msg, k.Keygen):
		return m.openKeygenForm()
	case key.Matches(msg, k.Reshare):
		return m.openReshareForm()
	case key.Matches(msg, k.Sign):
		return m.openSignForm()
	case key.Matches(msg, k.Challenge):
		return m.openChallengeForm()
	default:
		return m.tabKey(msg)
	}
	return nil
}

// tabKey handles the keys of the current tab.
func (m *Model) tabKey(msg tea.KeyMsg) tea.Cmd {
	k := m.keys
	page := max(m.bodyHeight()-2, 1)
	switch m.tab {
	case tabLog:
		switch {
		case key.Matches(msg, k.Filter):
			m.mode = modeFilter
			return m.mpc.filter.Focus()
		case key.Matches(msg, k.Back):
			m.mpc.setFilter("")
		default:
			m.mpc.scroll(msg, k, page)
		}
	case tabCeremonies:
		m.cerY = scrollKey(msg, k, m.cerY, page)
	case tabRoster:
		m.rosterY = scrollKey(msg, k, m.rosterY, page)
	case tabQueue:
		switch {
		case key.Matches(msg, k.Up):
			m.queue.sel = max(m.queue.sel-1, 0)
		case key.Matches(msg, k.Down):
			m.queue.sel = min(m.queue.sel+1, max(len(m.queue.list)-1, 0))
		case key.Matches(msg, k.Open):
			if len(m.queue.list) > 0 {
				return m.openReview(m.queue.list[m.queue.sel].ev.ID)
			}
		}
	case tabSigs:
		n := len(m.sigs.list)
		switch {
		case key.Matches(msg, k.Up):
			m.sigs.sel = max(m.sigs.sel-1, 0)
		case key.Matches(msg, k.Down):
			m.sigs.sel = min(m.sigs.sel+1, max(n-1, 0))
		case key.Matches(msg, k.Open):
			if n > 0 {
				m.mode = modeSigDetail
				m.sigs.detailY = 0
			}
		case key.Matches(msg, k.CopyHex):
			if s, ok := m.sigs.selected(); ok {
				return m.copySignature(s, false)
			}
		case key.Matches(msg, k.CopyJSON):
			if s, ok := m.sigs.selected(); ok {
				return m.copySignature(s, true)
			}
		}
	}
	return nil
}

// scrollKey moves a top-line offset; clamping happens when rendering.
func scrollKey(msg tea.KeyMsg, k keyMap, y, page int) int {
	switch {
	case key.Matches(msg, k.Up):
		y--
	case key.Matches(msg, k.Down):
		y++
	case key.Matches(msg, k.PageUp):
		y -= page
	case key.Matches(msg, k.PageDown):
		y += page
	case key.Matches(msg, k.Top):
		y = 0
	case key.Matches(msg, k.Bottom):
		y = 1 << 30
	}
	return max(y, 0)
}

func (m *Model) filterKey(msg tea.KeyMsg) tea.Cmd {
	switch msg.Type {
	case tea.KeyEnter:
		m.mode = modeNormal
		m.mpc.filter.Blur()
		return nil
	case tea.KeyEsc:
		m.mode = modeNormal
		m.mpc.filter.Blur()
		m.mpc.setFilter("")
		return nil
	}
	var cmd tea.Cmd
	m.mpc.filter, cmd = m.mpc.filter.Update(msg)
	m.mpc.setFilter(m.mpc.filter.Value())
	return cmd
}

// View draws the screen: every line fits the width, and there are never
// more lines than the height.
func (m *Model) View() string {
	var lines []string
	if m.screen == screenLink {
		lines = m.linkView()
	} else {
		lines = m.mainView()
	}
	return fit(lines, m.width, m.height)
}

// bodyHeight is what the tab gets: the window less the status and tab bars,
// the notice (one line or more) and the help line.
func (m *Model) bodyHeight() int { return max(m.height-3-len(m.noticeLines()), 1) }

func (m *Model) mainView() []string {
	lines := make([]string, 0, m.height)
	lines = append(lines, m.statusBar(), m.tabBar())
	h := m.bodyHeight()
	var body []string
	switch {
	case m.showHelp:
		body = m.fullHelpView(h)
	case m.mode == modeReview:
		body = m.reviewView(h)
	case m.mode == modeSigDetail:
		body = m.sigDetailView(h)
	case m.mode == modeKeygenForm:
		body = m.keygenFormView()
	case m.mode == modeSignForm:
		body = m.signFormView()
	case m.mode == modeChallengeForm:
		body = m.challengeFormView()
	case m.mode == modeReshareForm:
		body = m.reshareFormView()
	default:
		switch m.tab {
		case tabLog:
			body = m.logView(h)
		case tabCeremonies:
			body = m.ceremoniesView(h)
		case tabQueue:
			body = m.queueView(h)
		case tabSigs:
			body = m.sigsView(h)
		case tabRoster:
			body = m.rosterView(h)
		}
	}
	body = padLines(body, h)
	lines = append(lines, body...)
	lines = append(lines, m.noticeLines()...)
	lines = append(lines, m.helpLine())
	return lines
}

// maxNoticeLines bounds a long notice; the tab keeps the rest of the window.
const maxNoticeLines = 3

// noticeLines is the notice word-wrapped to the width (a failure's reason
// is read in full, not cut at the edge): at least one line, at most
// maxNoticeLines, fewer on a small window.
func (m *Model) noticeLines() []string {
	if m.notice.text == "" {
		return []string{""}
	}
	text, style := m.notice.text, m.st.Notice
	if m.notice.err {
		text, style = "! "+text, m.st.Error
	}
	wrapped := strings.Split(ansi.Wrap(text, max(m.width, 1), " "), "\n")
	limit := min(maxNoticeLines, max(m.height-6, 1))
	if len(wrapped) > limit {
		wrapped = wrapped[:limit]
		wrapped[limit-1] = ansi.Truncate(wrapped[limit-1]+" …", m.width, "…")
	}
	for i, l := range wrapped {
		wrapped[i] = style.Render(l)
	}
	return wrapped
}

func (m *Model) helpLine() string {
	m.help.Width = m.width
	return m.help.ShortHelpView(m.bindings().short)
}

// fit cuts every line to width cells and the whole to height lines, and
// pads short screens so the frame keeps its size.
func fit(lines []string, width, height int) string {
	var out []string
	for _, l := range lines {
		out = append(out, strings.Split(l, "\n")...)
	}
	if len(out) > height {
		out = out[:height]
	}
	for i, l := range out {
		if ansi.StringWidth(l) > width {
			out[i] = ansi.Truncate(l, width, "…")
		}
	}
	return strings.Join(out, "\n")
}

// padLines makes lines exactly h long.
func padLines(lines []string, h int) []string {
	if len(lines) > h {
		return lines[:h]
	}
	for len(lines) < h {
		lines = append(lines, "")
	}
	return lines
}

// window returns at most h lines from top, clamping top; it returns the
// clamped top too.
func window(lines []string, top, h int) ([]string, int) {
	top = min(top, max(len(lines)-h, 0))
	top = max(top, 0)
	end := min(top+h, len(lines))
	return lines[top:end], top
}

// fullHelpView lists every key of the mode in columns as tall as the body.
func (m *Model) fullHelpView(h int) []string {
	var all []key.Binding
	for _, g := range m.mainFull() {
		all = append(all, g...)
	}
	rows := max(h-1, 1)
	var cols [][]key.Binding
	for len(all) > 0 {
		n := min(rows, len(all))
		cols = append(cols, all[:n])
		all = all[n:]
	}
	head := m.st.Title.Render("All keys") + m.st.Dim.Render("  (? or esc closes)")
	return append([]string{head}, strings.Split(m.help.FullHelpView(cols), "\n")...)
}
