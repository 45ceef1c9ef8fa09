package tui

import "github.com/charmbracelet/lipgloss"

// Colours are from the ANSI 16-colour palette (and two 256-colour greys) so
// the console looks the same in any terminal, over SSH, with no true colour;
// nothing relies on colour alone: selection has a marker, states have words.
const (
	colRed     = lipgloss.Color("1")
	colGreen   = lipgloss.Color("2")
	colYellow  = lipgloss.Color("3")
	colBlue    = lipgloss.Color("4")
	colMagenta = lipgloss.Color("5")
	colCyan    = lipgloss.Color("6")
	colBlack   = lipgloss.Color("0")
	colWhite   = lipgloss.Color("15")
	colGrey    = lipgloss.Color("245")
	colDark    = lipgloss.Color("236")
)

// styles is every style of the console, in one place.
type styles struct {
	Status      lipgloss.Style // the status bar
	StatusKey   lipgloss.Style
	Connected   lipgloss.Style
	Reconnect   lipgloss.Style
	Tab         lipgloss.Style
	TabActive   lipgloss.Style
	Title       lipgloss.Style
	Dim         lipgloss.Style
	Selected    lipgloss.Style
	In          lipgloss.Style
	Out         lipgloss.Style
	Peer        lipgloss.Style
	Digest      lipgloss.Style
	Note        lipgloss.Style
	Error       lipgloss.Style
	Notice      lipgloss.Style
	OK          lipgloss.Style
	Warn        lipgloss.Style
	Label       lipgloss.Style
	Claim       lipgloss.Style // what a requester says: untrusted
	Arming      lipgloss.Style
	Armed       lipgloss.Style
	QR          lipgloss.Style // black on white whatever the terminal theme
	FieldActive lipgloss.Style
	Field       lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) styles {
	if r == nil {
		r = lipgloss.DefaultRenderer()
	}
	n := r.NewStyle
	return styles{
		Status:      n().Background(colDark).Foreground(colWhite),
		StatusKey:   n().Background(colDark).Foreground(colCyan).Bold(true),
		Connected:   n().Background(colDark).Foreground(colGreen).Bold(true),
		Reconnect:   n().Background(colDark).Foreground(colYellow).Bold(true),
		Tab:         n().Foreground(colGrey),
		TabActive:   n().Foreground(colWhite).Bold(true).Underline(true),
		Title:       n().Bold(true).Foreground(colCyan),
		Dim:         n().Foreground(colGrey),
		Selected:    n().Reverse(true),
		In:          n().Foreground(colBlue),
		Out:         n().Foreground(colMagenta),
		Peer:        n().Bold(true),
		Digest:      n().Foreground(colGrey),
		Note:        n().Foreground(colYellow),
		Error:       n().Foreground(colRed).Bold(true),
		Notice:      n().Foreground(colGreen),
		OK:          n().Foreground(colGreen).Bold(true),
		Warn:        n().Foreground(colYellow).Bold(true),
		Label:       n().Foreground(colGrey),
		Claim:       n().Foreground(colYellow),
		Arming:      n().Foreground(colBlack).Background(colYellow).Bold(true),
		Armed:       n().Foreground(colBlack).Background(colGreen).Bold(true),
		QR:          n().Foreground(colWhite).Background(colBlack),
		FieldActive: n().Foreground(colCyan).Bold(true),
		Field:       n().Foreground(colGrey),
	}
}
