package tui

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Clean makes an untrusted string safe to put on one line of the screen:
// C0 and C1 control characters, DEL, line and paragraph separators,
// bidirectional overrides and isolates, and invisible zero-width characters
// are replaced by a visible escape (\x1b, \u202e), and invalid UTF-8 by
// U+FFFD. Newlines and tabs are escaped too: callers that want several lines
// split first and Clean each line.
func Clean(s string) string {
	if isClean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteRune('\uFFFD')
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			fmt.Fprintf(&b, `\x%02x`, r)
		case hidden(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// CleanLines cleans a multi-line untrusted string into lines.
func CleanLines(s string) []string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Clean(strings.TrimSuffix(l, "\r"))
	}
	return lines
}

func isClean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			return cleanSlow(s)
		}
	}
	return true
}

func cleanSlow(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return false
			}
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || hidden(r) {
			return false
		}
	}
	return true
}

// hidden reports runes that change how the text around them is shown, or
// do not show at all: bidi marks, embeddings, overrides and isolates, line
// and paragraph separators, zero-width characters and the byte order mark.
func hidden(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200e, r == 0x200f: // ALM, LRM, RLM
		return true
	case r >= 0x200b && r <= 0x200d: // ZWSP, ZWNJ, ZWJ
		return true
	case r >= 0x2028 && r <= 0x202e: // LS, PS, LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2060 && r <= 0x2069: // word joiner .. PDI
		return true
	case r == 0xfeff:
		return true
	case r >= 0xfff9 && r <= 0xfffb: // interlinear annotations
		return true
	}
	return false
}

// cleanAll cleans every string of a list.
func cleanAll(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = Clean(s)
	}
	return out
}
