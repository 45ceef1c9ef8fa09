package main

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mdp/qrterminal/v3"

	"github.com/signal-mpc/cosigner/signal/device"
)

// qrColours are the SGR colours of a printed QR code: black modules on a
// white ground, set explicitly. Left to the terminal's own colours, the
// blocks come out light on a dark theme and dark on a light one, and an
// inverted code does not scan.
const (
	qrColours = "\x1b[30;107m"
	qrReset   = "\x1b[0m"
)

// printQR writes s as a QR code of half blocks (two modules a line) with a
// two-module quiet zone, each line in qrColours.
func printQR(w io.Writer, s string) {
	var b strings.Builder
	// With a black foreground on a white ground a full block is two black
	// modules, hence qrterminal's characters swapped.
	qrterminal.GenerateWithConfig(s, qrterminal.Config{Level: qrterminal.L, Writer: &b, HalfBlocks: true,
		BlackChar: qrterminal.WHITE_WHITE, WhiteChar: qrterminal.BLACK_BLACK,
		BlackWhiteChar: qrterminal.WHITE_BLACK, WhiteBlackChar: qrterminal.BLACK_WHITE, QuietZone: 2})
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	// qrterminal ends with a line whose lower half is dark (its own edge):
	// all white, the ground goes on below the quiet zone.
	last := &lines[len(lines)-1]
	*last = strings.Repeat(qrterminal.BLACK_BLACK, utf8.RuneCountInString(*last))
	var out strings.Builder
	for _, l := range lines {
		out.WriteString(qrColours + l + qrReset + "\n")
	}
	io.WriteString(w, out.String())
}

// linkOutput is what cosigner link prints: each URL on stdout, the steps on
// stderr, and on a terminal the QR code. The code comes last, after the
// lines about it, so that one as tall as the window stays whole on screen
// until the phone has scanned it; the steps after the scan may scroll it.
type linkOutput struct {
	out, err io.Writer
	qr       bool // print the QR code (stdout is a terminal)
}

func (l linkOutput) url(url string, expires time.Time) {
	fmt.Fprintf(l.err, "cosigner link: scan the code within %s (Signal > Settings > Linked devices > Link new device)\n",
		time.Until(expires).Round(time.Second))
	fmt.Fprintln(l.out, url)
	if l.qr {
		printQR(l.out, url)
	}
}

func (l linkOutput) step(s string) {
	if l.qr && s == device.StepWaiting {
		return // said above the code: a line below it would push its top off
	}
	fmt.Fprintf(l.err, "cosigner link: %s\n", s)
}
