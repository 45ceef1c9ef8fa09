package tui

import "github.com/charmbracelet/bubbles/key"

// keyMap is every key of the console, in one place.
type keyMap struct {
	Quit      key.Binding
	Help      key.Binding
	NextTab   key.Binding
	PrevTab   key.Binding
	TabLog    key.Binding
	TabCer    key.Binding
	TabQueue  key.Binding
	TabSigs   key.Binding
	TabRoster key.Binding
	Up        key.Binding
	Down      key.Binding
	PageUp    key.Binding
	PageDown  key.Binding
	Top       key.Binding
	Bottom    key.Binding
	Open      key.Binding
	Back      key.Binding
	Filter    key.Binding
	Approve   key.Binding
	Decline   key.Binding
	Keygen    key.Binding
	Reshare   key.Binding
	Sign      key.Binding
	CopyHex   key.Binding
	CopyJSON  key.Binding
	CopyURL   key.Binding
	Challenge key.Binding
	// forms
	NextField key.Binding
	PrevField key.Binding
	Toggle    key.Binding
	Submit    key.Binding
	Cancel    key.Binding
}

func defaultKeys() keyMap {
	return keyMap{
		Quit:      key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
		Help:      key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "keys")),
		NextTab:   key.NewBinding(key.WithKeys("tab", "right", "l"), key.WithHelp("tab", "views")),
		PrevTab:   key.NewBinding(key.WithKeys("shift+tab", "left", "h"), key.WithHelp("⇧tab/←", "previous")),
		TabLog:    key.NewBinding(key.WithKeys("1"), key.WithHelp("1", "log")),
		TabCer:    key.NewBinding(key.WithKeys("2"), key.WithHelp("2", "ceremonies")),
		TabQueue:  key.NewBinding(key.WithKeys("3"), key.WithHelp("3", "approvals")),
		TabSigs:   key.NewBinding(key.WithKeys("4"), key.WithHelp("4", "signatures")),
		TabRoster: key.NewBinding(key.WithKeys("5"), key.WithHelp("5", "roster")),
		Up:        key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:      key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		PageUp:    key.NewBinding(key.WithKeys("pgup", "ctrl+b"), key.WithHelp("pgup", "page up")),
		PageDown:  key.NewBinding(key.WithKeys("pgdown", "ctrl+f", " "), key.WithHelp("pgdn", "page down")),
		Top:       key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("g/home", "oldest")),
		Bottom:    key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("G/end", "follow")),
		Open:      key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "open")),
		Back:      key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		Filter:    key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Approve:   key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "approve")),
		Decline:   key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "decline")),
		Keygen:    key.NewBinding(key.WithKeys("K"), key.WithHelp("K", "keygen…")),
		Reshare:   key.NewBinding(key.WithKeys("R"), key.WithHelp("R", "reshare…")),
		Sign:      key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "sign…")),
		CopyHex:   key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "copy hex")),
		CopyJSON:  key.NewBinding(key.WithKeys("C"), key.WithHelp("C", "copy json")),
		CopyURL:   key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "copy url")),
		Challenge: key.NewBinding(key.WithKeys("!"), key.WithHelp("!", "answer challenge")),
		NextField: key.NewBinding(key.WithKeys("tab", "down"), key.WithHelp("tab", "next field")),
		PrevField: key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("⇧tab", "previous field")),
		Toggle:    key.NewBinding(key.WithKeys(" ", "left", "right"), key.WithHelp("space", "text/hex")),
		Submit:    key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "next/submit")),
		Cancel:    key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "cancel")),
	}
}

// helpKeys adapts the bindings of the current mode to bubbles/help.
type helpKeys struct {
	short []key.Binding
	full  [][]key.Binding
}

func (h helpKeys) ShortHelp() []key.Binding  { return h.short }
func (h helpKeys) FullHelp() [][]key.Binding { return h.full }

// bindings returns the keys that act in the model's current mode: the help
// line shows the short list (it fits 80 columns) and `?` lists them all.
func (m *Model) bindings() helpKeys {
	k := m.keys
	quitOnly := key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit"))
	sel := key.NewBinding(key.WithKeys("up", "down"), key.WithHelp("↑↓", "select"))
	scroll := key.NewBinding(key.WithKeys("up", "down"), key.WithHelp("↑↓", "scroll"))
	one := func(b ...key.Binding) helpKeys { return helpKeys{short: b, full: [][]key.Binding{b}} }
	switch {
	case m.screen == screenLink:
		return one(k.CopyURL, k.Quit)
	case m.mode == modeFilter:
		return one(key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "keep filter")),
			key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "clear filter")), quitOnly)
	case m.mode == modeKeygenForm:
		return one(key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "propose")), k.Cancel, quitOnly)
	case m.mode == modeReshareForm:
		return one(key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "propose")),
			key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab/⇧tab", "field")), k.Cancel, quitOnly)
	case m.mode == modeChallengeForm:
		return one(key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "send answer")), k.Cancel, quitOnly)
	case m.mode == modeSignForm:
		return one(key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "next/send")),
			key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab/⇧tab", "field")), k.Toggle, k.Cancel, quitOnly)
	case m.mode == modeReview:
		return one(k.Approve, k.Decline, scroll, k.Back, k.Quit)
	case m.mode == modeSigDetail:
		return one(k.CopyHex, k.CopyJSON, scroll, k.Back, k.Quit)
	case m.showHelp:
		return helpKeys{short: []key.Binding{k.Back, k.Quit}, full: m.mainFull()}
	}
	short := []key.Binding{k.NextTab}
	if m.challenge.token != "" {
		// First, so that it shows however narrow the window.
		short = []key.Binding{k.Challenge, k.NextTab}
	}
	switch m.tab {
	case tabLog:
		short = append(short, k.Filter, scroll)
	case tabCeremonies, tabRoster:
		short = append(short, scroll)
	case tabQueue:
		short = append(short, sel, key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "review")))
	case tabSigs:
		short = append(short, sel, k.Open, k.CopyHex, k.CopyJSON)
	}
	if m.tab != tabSigs {
		short = append(short, k.Sign, k.Keygen)
	}
	short = append(short, k.Help, k.Quit)
	return helpKeys{short: short, full: m.mainFull()}
}

// mainFull is every key of the main screen, by topic.
func (m *Model) mainFull() [][]key.Binding {
	k := m.keys
	return [][]key.Binding{
		{k.NextTab, k.PrevTab, k.TabLog, k.TabCer, k.TabQueue, k.TabSigs, k.TabRoster},
		{k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom, k.Filter},
		{k.Open, k.Back, k.Approve, k.Decline, k.CopyHex, k.CopyJSON},
		{k.Sign, k.Keygen, k.Reshare, k.Challenge, k.Help, k.Quit},
	}
}
