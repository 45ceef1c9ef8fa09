package roster

import (
	"errors"
	"testing"
)

func TestCanonicalServerSpellsOneServerOneWay(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"https://relay.example", "https://relay.example"},
		{"HTTPS://Relay.Example.COM/", "https://relay.example.com"},
		{"https://relay.example:443", "https://relay.example"},
		{"http://127.0.0.1:80/", "http://127.0.0.1"},
		{"http://127.0.0.1:8443", "http://127.0.0.1:8443"},
		{"https://relay.example:08443", "https://relay.example:8443"},
		{"https://relay.example:80", "https://relay.example:80"},
		{"http://relay.example:443", "http://relay.example:443"},
		{"https://[::1]:443", "https://[::1]"},
		{"https://[::1]:8443/", "https://[::1]:8443"},
		{"https://[FE80::1]", "https://[fe80::1]"},
		{"https://relay.example/signal//", "https://relay.example/signal"},
		{"https://relay.example/Signal", "https://relay.example/Signal"}, // paths are case-sensitive
		{"https://relay.example/a%7eb", "https://relay.example/a~b"},
		{"https://relay.example/a b", "https://relay.example/a%20b"},
	}
	for _, c := range cases {
		got, err := CanonicalServer(c.in)
		if err != nil || got != c.want {
			t.Errorf("CanonicalServer(%q) = %q, %v; want %q", c.in, got, err, c.want)
			continue
		}
		if again, err := CanonicalServer(got); err != nil || again != got {
			t.Errorf("CanonicalServer(%q) = %q, %v: not a fixed point", got, again, err)
		}
	}
}

func TestCanonicalServerRefusesWhatNamesNoServerPlainly(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"",
		"relay.example",
		"//relay.example",
		"wss://relay.example",
		"ftp://relay.example",
		"https://",
		"https://:443",
		"https://relay.example?x=1",
		"https://relay.example/?",
		"https://relay.example#top",
		"https://relay.example/#",
		"https://user:pw@relay.example",
		"https://relay.example:0",
		"https://relay.example:65536",
		"https://relay.example:",
		"https://[fe80::1%25eth0]",
		"https:relay.example",
		"https://relay.example/" + string(make([]byte, 300)),
	} {
		if got, err := CanonicalServer(in); !errors.Is(err, ErrServerURL) {
			t.Errorf("CanonicalServer(%q) = %q, %v; want ErrServerURL", in, got, err)
		}
	}
}

func FuzzCanonicalServer(f *testing.F) {
	for _, s := range []string{"https://relay.example", "HTTP://[::1]:80/a/", "https://x:08443//", "https://x/%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := CanonicalServer(in)
		if err != nil {
			if !errors.Is(err, ErrServerURL) {
				t.Fatalf("error without ErrServerURL: %v", err)
			}
			return
		}
		again, err := CanonicalServer(got)
		if err != nil || again != got {
			t.Fatalf("CanonicalServer(%q) = %q; of that: %q, %v", in, got, again, err)
		}
	})
}
