package tui

import (
	"testing"
)

func TestClean(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"plain ASCII is unchanged", "alice signed 3f2a", "alice signed 3f2a"},
		{"letters of any script are unchanged", "zoë 日本 ключ", "zoë 日本 ключ"},
		{"CSI is escaped", "a\x1b[2Jb", `a\x1b[2Jb`},
		{"OSC 52 is escaped", "\x1b]52;c;ZXZpbA==\x07", `\x1b]52;c;ZXZpbA==\x07`},
		{"C1 CSI is escaped", "a\u009b31mb", `a\x9b31mb`},
		{"DEL is escaped", "a\x7fb", `a\x7fb`},
		{"newline and tab are escaped", "a\nb\tc\r", `a\nb\tc\x0d`},
		{"right-to-left override is shown", "invoice\u202egnp.exe", `invoice\u202egnp.exe`},
		{"isolates are shown", "\u2066x\u2069", `\u2066x\u2069`},
		{"zero-width characters are shown", "pay\u200b42\ufeff", `pay\u200b42\ufeff`},
		{"invalid UTF-8 becomes U+FFFD", "a\xffb", "a\uFFFDb"},
		{"a lone continuation byte becomes U+FFFD", "\x80", "\uFFFD"},
		{"the escape of a backslash is left alone", `\x1b`, `\x1b`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Clean(tt.in); got != tt.want {
				t.Errorf("Clean(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCleanLines(t *testing.T) {
	t.Parallel()
	got := CleanLines("one\r\ntwo\x1b[1m\nthree")
	want := []string{"one", `two\x1b[1m`, "three"}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func FuzzClean(f *testing.F) {
	f.Add("a\x1b[2Jb\u202e\x9b")
	f.Fuzz(func(t *testing.T, s string) {
		out := Clean(s)
		for _, r := range out {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || hidden(r) {
				t.Fatalf("Clean(%q) left %U", s, r)
			}
		}
		if Clean(out) != out {
			t.Fatalf("Clean is not idempotent on %q", s)
		}
	})
}
