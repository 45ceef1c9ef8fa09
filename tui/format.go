package tui

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"
)

func itoa(n int) string { return strconv.Itoa(n) }

// shortID is the first 8 hex digits of a hex id, as core's short ids.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func shortHex(b []byte) string { return shortID(hex.EncodeToString(b)) }

func verifiedWord(v bool) string {
	if v {
		return "verified"
	}
	return "NOT verified"
}

// shortAccount shows an account id (a UUID) short enough for the status bar.
func shortAccount(account string, device uint32) string {
	a := account
	if len(a) > 8 {
		a = a[:8] + "…"
	}
	if a == "" {
		a = "not linked"
	}
	if device != 0 {
		a += "." + strconv.FormatUint(uint64(device), 10)
	}
	return a
}

// clock formats a duration as m:ss or h:mm:ss, rounding up so a countdown
// shows 0:00 only when the time is up.
func clock(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int((d + time.Second - 1) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// size formats a byte count in a few cells.
func size(n int) string {
	switch {
	case n < 1000:
		return strconv.Itoa(n) + "B"
	case n < 10_000:
		return fmt.Sprintf("%.1fk", float64(n)/1000)
	case n < 1_000_000:
		return strconv.Itoa(n/1000) + "k"
	default:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	}
}

// names joins signer names for a line.
func names(ns []string) string {
	if len(ns) == 0 {
		return "-"
	}
	return strings.Join(ns, ", ")
}

// pad right-pads or cuts s to n cells (plain text only).
func pad(s string, n int) string {
	w := ansi.StringWidth(s)
	if w > n {
		s = ansi.Truncate(s, n, "…")
		w = ansi.StringWidth(s)
	}
	return s + strings.Repeat(" ", max(n-w, 0))
}

func utoa(n uint64) string { return strconv.FormatUint(n, 10) }
