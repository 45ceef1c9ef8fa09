package tui

import (
	"time"

	"github.com/signal-mpc/cosigner/core"
)

// The messages main sends with tea.Program.Send for what core's event bus
// does not carry. They are plain values; every string in them is cleaned
// before it is shown.

// LinkURL is a fresh provisioning URL to show as a QR code. Expires is when
// the server replaces it (the screen counts down to it); zero if unknown.
type LinkURL struct {
	URL     string
	Expires time.Time
}

// LinkStep is one step of linking as it happens ("waiting for scan", "keys
// received", "device registered", "prekeys uploaded").
type LinkStep struct {
	Text string
}

// Linked ends linking: the console switches to the main screen.
type Linked struct {
	Account string
	Device  uint32
}

// Identity sets what the status bar shows about this console. Empty fields
// leave the current value.
type Identity struct {
	Name    string // this signer's roster name
	Account string // Signal account (ACI)
	Device  uint32 // Signal device id of the console
	Server  string // the Signal server, as configured
}

// Roster replaces the roster view.
type Roster struct {
	Signers []Signer
}

// Signer is one roster entry.
type Signer struct {
	Name        string
	Account     string
	Device      uint32
	Fingerprint string // 12 groups of 5 digits
	Verified    bool   // a human compared the fingerprint
	Blocked     bool   // the signer's keys changed and await verification
	Self        bool   // this console
}

// internal messages: results of commands and timers.

type tickMsg struct{}

// armMsg redraws the review when its grace period ends.
type armMsg struct{ id string }

type keysMsg struct {
	keys []core.KeyInfo
	err  error
}

type decisionMsg struct {
	id      string
	approve bool
	err     error
}

type keygenResultMsg struct {
	res *core.KeygenResult
	err error
}

type signResultMsg struct {
	res *core.SignResult
	err error
}

type copiedMsg struct {
	what string
	err  error
}

// droppedMsg reports how many droppable events the bridge's subscription
// lost to a full queue.
type droppedMsg struct{ total uint64 }
