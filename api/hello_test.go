package api

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core/event"
)

func TestCheckSSHClientAcceptsOnlyAnAddressAndPort(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		ok bool
	}{
		{"192.0.2.7:52722", true},
		{"[2001:db8::7]:22", true},
		{"[fe80::1%eth0]:22", true},
		{"192.0.2.7", false},              // no port
		{"192.0.2.7:0", false},            // port 0
		{"192.0.2.7:65536", false},        // port out of range
		{"2001:db8::7:22", false},         // IPv6 without brackets
		{"[2001:DB8::7]:22", false},       // not canonical
		{"host.example:22", false},        // a name, not an address
		{"192.0.2.7:22 user=root", false}, // a space: would forge a field of By
		{"192.0.2.7:22\n", false},
		{"192.0.2.7:\x1b[2J", false},
		{"[fe80::1%" + strings.Repeat("a", 60) + "]:22", false}, // too long
		{"[fe80::1%é]:22", false},                               // not ASCII
		{"", false},
	}
	for _, tt := range tests {
		if err := CheckSSHClient(tt.in); (err == nil) != tt.ok {
			t.Errorf("CheckSSHClient(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestSSHClientComesFromTheEnvironment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"none", nil, ""},
		{"ssh connection", map[string]string{"SSH_CONNECTION": "192.0.2.7 52722 198.51.100.1 22"}, "192.0.2.7:52722"},
		{"ssh connection over ssh client", map[string]string{"SSH_CONNECTION": "192.0.2.7 52722 198.51.100.1 22", "SSH_CLIENT": "192.0.2.8 1 22"}, "192.0.2.7:52722"},
		{"ssh client only", map[string]string{"SSH_CLIENT": "192.0.2.8 4000 22"}, "192.0.2.8:4000"},
		{"ipv6", map[string]string{"SSH_CONNECTION": "2001:db8::7 52722 2001:db8::1 22"}, "[2001:db8::7]:52722"},
		{"bad connection falls back", map[string]string{"SSH_CONNECTION": "junk", "SSH_CLIENT": "192.0.2.8 4000 22"}, "192.0.2.8:4000"},
		{"bad port", map[string]string{"SSH_CONNECTION": "192.0.2.7 99999 198.51.100.1 22"}, ""},
		{"zero port", map[string]string{"SSH_CLIENT": "192.0.2.7 0 22"}, ""},
		{"a name", map[string]string{"SSH_CLIENT": "evil.example 22 22"}, ""},
	}
	for _, tt := range tests {
		if got := SSHClientFromEnv(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// A hello's SSH client is recorded with the answers given on its
// connection; a bad or second hello is refused and changes nothing.
func TestHelloRecordsTheSSHClientWithTheAnswers(t *testing.T) {
	t.Parallel()
	id := hex.EncodeToString((&[32]byte{7})[:])
	approve := `{"jsonrpc":"2.0","id":9,"method":"approve","params":{"id":"` + id + `"}}`
	decline := `{"jsonrpc":"2.0","id":9,"method":"decline","params":{"id":"` + id + `","reason":"no"}}`
	hello := func(addr string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"hello","params":{"ssh_client":%q}}`, addr)
	}
	tests := []struct {
		name    string
		lines   []string
		codes   []int
		wantBy  string // suffix of By after the peer's credentials
		changes string
	}{
		{"no hello", []string{approve}, []int{0}, "", "approve"},
		{"hello then approve", []string{hello("192.0.2.7:52722"), approve}, []int{0, 0}, " ssh_client=192.0.2.7:52722", "approve"},
		{"hello then decline", []string{hello("[2001:db8::7]:22"), decline}, []int{0, 0}, " ssh_client=[2001:db8::7]:22", "decline no"},
		{"empty hello", []string{hello(""), approve}, []int{0, 0}, "", "approve"},
		{"bad hello", []string{hello("192.0.2.7:22 user=root"), approve}, []int{CodeInvalidParams, 0}, "", "approve"},
		{"hello with a control character", []string{`{"jsonrpc":"2.0","id":1,"method":"hello","params":{"ssh_client":"192.0.2.7:22\u001b[2J"}}`, approve}, []int{CodeInvalidParams, 0}, "", "approve"},
		{"unknown hello field", []string{`{"jsonrpc":"2.0","id":1,"method":"hello","params":{"ssh":"192.0.2.7:22"}}`, approve}, []int{CodeInvalidParams, 0}, "", "approve"},
		{"second hello", []string{hello("192.0.2.7:1"), hello("192.0.2.8:2"), approve}, []int{0, CodeRefused, 0}, " ssh_client=192.0.2.7:1", "approve"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			answers := exchange(t, serve(t, f, true), tt.lines...)
			for i, a := range answers {
				if errCode(a) != tt.codes[i] {
					t.Fatalf("answer %d: %v, want code %d", i, a, tt.codes[i])
				}
			}
			f.mu.Lock()
			by := f.by
			f.mu.Unlock()
			if !strings.HasPrefix(by, "socket ") || !strings.HasSuffix(by, tt.wantBy) || (tt.wantBy == "" && strings.Contains(by, "ssh_client")) {
				t.Fatalf("by %q, want the peer's credentials ending in %q", by, tt.wantBy)
			}
			if ch := strings.Join(f.Changes(), ","); ch != tt.changes {
				t.Fatalf("changes %q, want %q", ch, tt.changes)
			}
		})
	}
}

// The client's hello: sent only with a claim, and a server without the
// method (an older co-signer) is no error.
func TestClientHelloClaimsAndToleratesAnOlderServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	f := newFake()
	c, err := Dial(ctx, serve(t, f, true))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello(ctx, "192.0.2.7:52722"); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, MethodApprove, IDParams{ID: hex.EncodeToString((&[32]byte{7})[:])}, nil); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	by := f.by
	f.mu.Unlock()
	if !strings.HasSuffix(by, " ssh_client=192.0.2.7:52722") {
		t.Fatalf("by %q", by)
	}
	// A second hello is the server's refusal, returned as an error; an
	// older server's "method not found" is not.
	if err := c.Hello(ctx, "192.0.2.7:1"); err == nil {
		t.Fatal("a second hello was accepted")
	}
	old, err := Dial(ctx, serve(t, newFake(), true))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Hello(ctx, ""); err != nil {
		t.Fatalf("an empty claim: %v", err)
	}
}

// Accepted claims are always safe to put in By, whatever the input.
func FuzzCheckSSHClient(f *testing.F) {
	for _, s := range []string{"192.0.2.7:52722", "[2001:db8::7]:22", "[fe80::1%eth0]:22", "1.2.3.4:0", "a b", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckSSHClient(s) != nil {
			return
		}
		if len(s) > MaxSSHClient || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Fatalf("accepted %q", s)
		}
	})
}

// Who approved reaches an attached console unchanged: in the history and
// in a sign_done event.
func TestApprovalsPassThroughTheSocket(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := event.SignDone{ID: "9b1c", KeyID: "5eed1234", Signature: "02", Signers: []string{"alice", "bob"}, Verified: true,
		Approvals: []event.Approval{
			{Signer: "alice", Decision: "approved", User: "ops", SSHClient: "[2001:db8::7]:22"},
			{Signer: "bob", Decision: "approved"},
			{Signer: "carol", Decision: "declined"},
		}}
	f := newFake()
	f.sigs = []event.SignDone{done}
	c, err := Dial(ctx, serve(t, f, true))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sr SignaturesResult
	if err := c.Call(ctx, MethodSignatures, nil, &sr); err != nil || len(sr.Signatures) != 1 || !slices.Equal(sr.Signatures[0].Approvals, done.Approvals) {
		t.Fatalf("signatures %+v, %v", sr, err)
	}
	if err := c.Call(ctx, MethodSubscribe, nil, nil); err != nil {
		t.Fatal(err)
	}
	f.bus.Publish(done)
	for {
		select {
		case e := <-c.Events():
			if d, ok := e.(event.SignDone); ok {
				if !slices.Equal(d.Approvals, done.Approvals) {
					t.Fatalf("sign_done approvals %+v, want %+v", d.Approvals, done.Approvals)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("no sign_done event")
		}
	}
}

func TestAUserNameStaysOneFieldOfBy(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ops":                     "ops",
		"Domain User":             "Domain_User",
		"evil ssh_client=1.2.3.4": "evil_ssh_client=1.2.3.4",
		"tab\there\nnl\x7f\u0085": "tab_here_nl__",
	} {
		if got := byField(in); got != want {
			t.Errorf("byField(%q) = %q, want %q", in, got, want)
		}
	}
}

// A script may write hello and its answer in one go without waiting: the
// answer is still recorded with the claim (hello is handled before the
// connection reads on, while other requests run side by side).
func TestAHelloWrittenWithTheAnswerStillCounts(t *testing.T) {
	t.Parallel()
	id := hex.EncodeToString((&[32]byte{7})[:])
	for range 20 {
		f := newFake()
		c, err := net.Dial("unix", serve(t, f, true))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		both := `{"jsonrpc":"2.0","id":1,"method":"hello","params":{"ssh_client":"192.0.2.7:52722"}}` + "\n" +
			`{"jsonrpc":"2.0","id":2,"method":"approve","params":{"id":"` + id + `"}}` + "\n"
		if _, err := c.Write([]byte(both)); err != nil {
			t.Fatal(err)
		}
		r := newLineReader(c)
		for range 2 {
			if _, err := r(); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		f.mu.Lock()
		by := f.by
		f.mu.Unlock()
		if !strings.HasSuffix(by, " ssh_client=192.0.2.7:52722") {
			t.Fatalf("by %q: the approve written right after hello lost its claim", by)
		}
	}
}
