package tui

import (
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/mdp/qrterminal/v3"
)

// maxQRInput bounds what is encoded: a longer URL gets no QR code (and
// could not be scanned from a terminal anyway).
const maxQRInput = 1024

// Sizes of the link screen's side panel.
const (
	panelMin = 24 // narrowest useful side panel
	panelGap = 2
)

// linkState is the link screen: the current URL, its QR code, the steps.
type linkState struct {
	url     string
	expires time.Time
	steps   []string
	err     string
	linked  bool
	qr      qrCache
}

// qrCache keeps the rendered QR of one URL: View renders it once.
type qrCache struct {
	url   string
	lines []string
	w     int
}

func (l *linkState) setURL(u LinkURL) {
	l.url = Clean(u.URL)
	l.expires = u.Expires
	l.err = ""
}

func (l *linkState) addStep(s string) {
	l.steps = append(l.steps, Clean(s))
	if len(l.steps) > maxSteps {
		l.steps = l.steps[len(l.steps)-maxSteps:]
	}
}

// qrLines renders the URL as half-block QR lines (two modules a line), with
// a quiet zone of two modules, or nil when it cannot be encoded.
func (l *linkState) qrLines() ([]string, int) {
	if l.url == "" || len(l.url) > maxQRInput {
		return nil, 0
	}
	if l.qr.url == l.url {
		return l.qr.lines, l.qr.w
	}
	lines := renderQR(l.url)
	w := 0
	for _, s := range lines {
		w = max(w, ansi.StringWidth(s))
	}
	l.qr = qrCache{url: l.url, lines: lines, w: w}
	return lines, w
}

func renderQR(s string) (lines []string) {
	defer func() {
		if recover() != nil { // qrterminal ignores encoding errors
			lines = nil
		}
	}()
	var b strings.Builder
	qrterminal.GenerateWithConfig(s, qrterminal.Config{
		Level:          qrterminal.L,
		Writer:         &b,
		HalfBlocks:     true,
		BlackChar:      qrterminal.BLACK_BLACK,
		WhiteBlackChar: qrterminal.WHITE_BLACK,
		WhiteChar:      qrterminal.WHITE_WHITE,
		BlackWhiteChar: qrterminal.BLACK_WHITE,
		QuietZone:      2,
	})
	return strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
}

// linkView: the QR code with a side panel (instructions, countdown, steps)
// and the URL as plain text below for copying; a window too small for the QR
// shows the URL and the size it needs.
func (m *Model) linkView() []string {
	st := m.st
	l := &m.link
	qr, qw := l.qrLines()
	urlLines := func(w int) []string {
		if l.url == "" {
			return nil
		}
		return strings.Split(ansi.Hardwrap(l.url, max(w, 1), false), "\n")
	}
	help := m.helpLine()
	if qr != nil {
		// The URL goes under the code when there is room; without it (a
		// version 6 code at 24 rows) c still copies it.
		needW := qw + panelGap + panelMin
		needH := len(qr) + 1
		if m.width >= needW && m.height >= needH {
			withURL := m.height >= needH+len(urlLines(m.width))
			pw := m.width - qw - panelGap
			pl := panelLines(m.linkPanel(true, !withURL), pw, len(qr))
			qrStyle := st.QR
			var lines []string
			for i, q := range qr {
				row := qrStyle.Render(q) + strings.Repeat(" ", qw-ansi.StringWidth(q)+panelGap)
				if i < len(pl) {
					row += pl[i]
				}
				lines = append(lines, row)
			}
			if withURL {
				lines = append(lines, urlLines(m.width)...)
			}
			lines = padLines(lines, m.height-1)
			return append(lines, help)
		}
		// Too small: say so, and show everything else.
		lines := []string{
			st.Title.Render("Link this console to Signal"),
			st.Warn.Render("The QR code needs a window of at least " + itoa(needW) + "x" + itoa(needH) +
				" (this one is " + itoa(m.width) + "x" + itoa(m.height) + "): enlarge it, or copy the link below."),
		}
		lines = append(lines, urlLines(m.width)...)
		lines = append(lines, m.linkPanel(false, false)[1:]...)
		lines = padLines(wrapAll(lines, m.width), m.height-1)
		return append(lines, help)
	}
	lines := m.linkPanel(true, false)
	if l.url != "" {
		lines = append(lines, st.Warn.Render("This link is too long for a QR code: copy it."))
		lines = append(lines, urlLines(m.width)...)
	}
	lines = padLines(wrapAll(lines, m.width), m.height-1)
	return append(lines, help)
}

// linkPanel is the text beside the QR code; copyHint says how to get the
// link when it is not on screen.
func (m *Model) linkPanel(withQR, copyHint bool) []string {
	st := m.st
	l := &m.link
	lines := []string{st.Title.Render("Link this console to Signal")}
	if l.url == "" {
		lines = append(lines, "", st.Dim.Render("waiting for a link code from the server…"))
	} else {
		if withQR {
			lines = append(lines, "",
				"On the phone: Signal › Settings ›",
				"Linked devices › Link new device,",
				"then scan this code.")
			if copyHint {
				lines = append(lines, st.Dim.Render("(c copies the link)"))
			}
		}
		lines = append(lines, "")
		if !l.expires.IsZero() {
			if left := l.expires.Sub(m.now()); left > 0 {
				lines = append(lines, "New code in "+st.Peer.Render(clock(left)))
			} else {
				lines = append(lines, st.Dim.Render("code expired: a new one is coming…"))
			}
		}
	}
	if len(l.steps) > 0 {
		if withQR {
			lines = append(lines, "")
		}
		for i, s := range l.steps {
			if i == len(l.steps)-1 && !l.linked {
				lines = append(lines, st.Peer.Render("› "+s))
			} else {
				lines = append(lines, st.OK.Render("✓ ")+s)
			}
		}
	}
	if l.err != "" {
		lines = append(lines, "", st.Error.Render("! "+l.err))
	}
	return lines
}

// panelLines wraps the panel to width w and keeps at most h lines: the
// title and the newest steps win.
func panelLines(panel []string, w, h int) []string {
	lines := wrapAll(panel, w)
	if len(lines) <= h {
		return lines
	}
	return append(lines[:1:1], lines[len(lines)-h+1:]...)
}

// wrapAll word-wraps styled lines to width w.
func wrapAll(lines []string, w int) []string {
	var out []string
	for _, l := range lines {
		if ansi.StringWidth(l) <= w {
			out = append(out, l)
			continue
		}
		out = append(out, strings.Split(ansi.Wrap(l, w, " "), "\n")...)
	}
	return out
}
