package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/signal-mpc/cosigner/signal/device"
)

// linkURLv6 is a link as a server gives it (padded base64, escaped): 110
// characters, a version 6 QR code (41 modules, 23 lines with the quiet
// zone).
const linkURLv6 = "sgnl://linkdevice?uuid=X4i5HbejiXd2LHZveqkoUg%3D%3D&pub_key=BfWYdiBGTN%2FFxqQ9xgOwj9%2B88OmtUh8gFC63VYsz%2BSI8"

// tty is stdout and stderr of a terminal: one screen, in write order.
type tty struct {
	screen   bytes.Buffer
	out, err bytes.Buffer
}

type ttyStream struct {
	t   *tty
	own *bytes.Buffer
}

func (s ttyStream) Write(p []byte) (int, error) {
	s.t.screen.Write(p)
	return s.own.Write(p)
}

// visible is what an 80x24 terminal shows once everything was written:
// long lines wrap, and the rows scrolled off the top are gone; the last
// row holds the cursor.
func (t *tty) visible(w, h int) []string {
	var rows []string
	for _, l := range strings.Split(strings.TrimSuffix(t.screen.String(), "\n"), "\n") {
		n := max((ansi.StringWidth(l)+w-1)/w, 1)
		for range n {
			rows = append(rows, l) // a wrapped line: each of its rows shows part of it
		}
	}
	if len(rows) > h-1 {
		rows = rows[len(rows)-(h-1):]
	}
	return rows
}

func TestLinkPrintsAWholeBlackOnWhiteCodeLastAt80x24(t *testing.T) {
	t.Parallel()
	var term tty
	show := linkOutput{out: ttyStream{&term, &term.out}, err: ttyStream{&term, &term.err}, qr: true}
	show.url(linkURLv6, time.Now().Add(90*time.Second))
	show.step(device.StepWaiting)

	var qr []string
	for _, l := range strings.Split(strings.TrimSuffix(term.out.String(), "\n"), "\n") {
		if strings.HasPrefix(l, qrColours) {
			qr = append(qr, l)
		}
	}
	if len(qr) != 23 {
		t.Fatalf("the code has %d lines, want 23 (version 6)", len(qr))
	}
	if !strings.Contains(term.out.String(), linkURLv6+"\n") {
		t.Errorf("the URL is not on a line of its own on stdout:\n%s", term.out.String())
	}
	if !strings.Contains(term.err.String(), "scan the code within") {
		t.Errorf("stderr does not say what to do: %q", term.err.String())
	}
	// Every line of the code is on the screen at the end: nothing came
	// after it to scroll its top away.
	screen := term.visible(80, 24)
	shown := 0
	for _, row := range screen {
		if strings.HasPrefix(row, qrColours) {
			shown++
		}
	}
	if shown != len(qr) {
		t.Errorf("%d of the code's %d lines are on the 80x24 screen", shown, len(qr))
	}
	// Black modules on white, explicitly: the top quiet line is white
	// (spaces on the white ground), the finder pattern's first two module
	// rows are a black row over a black-white-black one, whatever the
	// terminal's own colours.
	plain := make([]string, len(qr))
	for i, l := range qr {
		if !strings.HasSuffix(l, qrReset) {
			t.Fatalf("line %d does not reset its colours: %q", i+1, l)
		}
		plain[i] = ansi.Strip(l)
		if w := ansi.StringWidth(plain[i]); w != 45 {
			t.Fatalf("line %d is %d cells, want 45", i+1, w)
		}
	}
	if strings.TrimSpace(plain[0]) != "" || strings.TrimSpace(plain[len(plain)-1]) != "" {
		t.Errorf("the quiet zone is not white:\nfirst %q\nlast  %q", plain[0], plain[len(plain)-1])
	}
	if got := string([]rune(plain[1])[2:9]); got != "█▀▀▀▀▀█" {
		t.Errorf("finder pattern's top reads %q, want black modules as full blocks", got)
	}
}

func TestLinkWithoutATerminalPrintsNoCode(t *testing.T) {
	t.Parallel()
	var term tty
	show := linkOutput{out: ttyStream{&term, &term.out}, err: ttyStream{&term, &term.err}}
	show.url(linkURLv6, time.Now().Add(90*time.Second))
	show.step(device.StepWaiting)
	if term.out.String() != linkURLv6+"\n" {
		t.Errorf("stdout %q, want the URL alone", term.out.String())
	}
	if !strings.Contains(term.err.String(), device.StepWaiting) {
		t.Errorf("stderr lacks the step: %q", term.err.String())
	}
}
