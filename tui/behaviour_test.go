package tui

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
	"github.com/signal-mpc/cosigner/core/event"
)

// run executes a command that is expected to call core or write, and feeds
// its message back, as the program would.
func (h *harness) run(cmd tea.Cmd) tea.Msg {
	h.t.Helper()
	if cmd == nil {
		h.t.Fatal("no command")
	}
	msg := cmd()
	h.m.Update(msg)
	return msg
}

func mustID(t *testing.T, s string) [32]byte {
	t.Helper()
	id, err := parseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestApprovalGracePeriod(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		grace       time.Duration
		wait        time.Duration
		press       string
		wantApprove bool
		wantDecline bool
	}{
		{"a at once does nothing", 0, 0, "a", false, false},
		{"a just before the default second does nothing", 0, 999 * time.Millisecond, "a", false, false},
		{"d before the grace period does nothing", 0, 500 * time.Millisecond, "d", false, false},
		{"a after the default second approves", 0, time.Second, "a", true, false},
		{"d after the grace period declines", 0, 1500 * time.Millisecond, "d", false, true},
		{"a configurable grace of 3s ignores a key at 2s", 3 * time.Second, 2 * time.Second, "a", false, false},
		{"a configurable grace of 3s arms at 3s", 3 * time.Second, 3 * time.Second, "a", true, false},
		{"other keys never decide", 0, 2 * time.Second, "y", false, false},
		{"after expiry a does nothing", 0, 6 * time.Minute, "a", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, 80, 24, WithGrace(tt.grace))
			h.send(request(), "3", "enter", advance(tt.wait))
			cmd := h.key(tt.press)
			if cmd != nil {
				h.run(cmd)
			}
			want := mustID(t, reqID)
			if got := len(h.core.approved) == 1 && h.core.approved[0] == want; got != tt.wantApprove {
				t.Errorf("approved %x, want approve=%v", h.core.approved, tt.wantApprove)
			}
			if got := len(h.core.declined) == 1 && h.core.declined[0] == want; got != tt.wantDecline {
				t.Errorf("declined %x, want decline=%v", h.core.declined, tt.wantDecline)
			}
			if !tt.wantApprove && !tt.wantDecline && cmd != nil {
				t.Errorf("an ignored key returned a command")
			}
		})
	}
}

func TestApprovalFlow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24)
	h.send(request(), "3", "enter")
	if v := h.view(); !strings.Contains(v, "ARMING") {
		t.Fatalf("a fresh prompt does not say it is arming:\n%s", v)
	}
	h.send(advance(time.Second))
	if v := h.view(); !strings.Contains(v, "a approve") || strings.Contains(v, "ARMING") {
		t.Fatalf("an armed prompt does not offer a and d:\n%s", v)
	}
	h.run(h.key("a"))
	if len(h.core.approved) != 1 || h.core.approved[0] != mustID(t, reqID) {
		t.Fatalf("approved %x", h.core.approved)
	}
	// A second press while core answers, or after, is not a second answer.
	if cmd := h.key("a"); cmd != nil {
		t.Errorf("a second a returned a command")
	}
	if cmd := h.key("d"); cmd != nil {
		t.Errorf("d after approving returned a command")
	}
	h.send(event.ApprovalResolved{ID: reqID, Decision: "approved"})
	if h.m.mode != modeNormal || len(h.m.queue.list) != 0 {
		t.Errorf("the resolved request stays open: mode %d, queue %d", h.m.mode, len(h.m.queue.list))
	}
	if v := h.view(); !strings.Contains(v, "request 3f2a1b9c approved") {
		t.Errorf("no notice of the decision:\n%s", v)
	}
}

func TestReviewRearmsWhenTheRequestChanges(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24)
	h.send(request(), "3", "enter", advance(900*time.Millisecond))
	r := request()
	r.Description = "changed while you were reading"
	h.send(r, advance(500*time.Millisecond))
	if cmd := h.key("a"); cmd != nil {
		t.Fatal("a was taken 0.5 s after the request changed on screen")
	}
	h.send(advance(600 * time.Millisecond))
	if cmd := h.key("a"); cmd == nil {
		t.Fatal("a was not taken once armed again")
	}
}

func TestUntrustedTextIsNeutralised(t *testing.T) {
	t.Parallel()
	evil := "ok\x1b[2J\x1b]52;c;ZXZpbA==\x07\u009b31m\u202egnp.exe\x7f"
	tests := []struct {
		name  string
		steps []any
		keys  []any
	}{
		{"message text in the review", []any{func() any { r := request(); r.Text = evil; return r }()}, []any{"3", "enter"}},
		{"description in the review", []any{func() any { r := request(); r.Description = evil; return r }()}, []any{"3", "enter"}},
		{"requester in the queue", []any{func() any { r := request(); r.Requester = evil; return r }()}, []any{"3"}},
		{"peer and note in the log", []any{event.Message{Time: t0, Peer: evil, Note: evil, Kind: evil}}, nil},
		{"error text", []any{event.Error{Time: t0, Text: evil}}, nil},
		{"roster name", []any{Roster{Signers: []Signer{{Name: evil, Fingerprint: evil}}}}, []any{"5"}},
		{"signature failure", []any{event.SignDone{ID: reqID, Failure: evil, Signers: []string{evil}}}, []any{"4", "enter"}},
		{"who approved in the list", []any{event.SignDone{ID: reqID, Signature: sigHex, Verified: true, Approvals: []event.Approval{
			{Signer: evil, Decision: "approved", User: evil, SSHClient: evil, Rule: evil}}}}, []any{"4"}},
		{"who answered in the detail", []any{event.SignDone{ID: reqID, Signature: sigHex, Verified: true, Approvals: []event.Approval{
			{Signer: evil, Decision: evil, User: evil, SSHClient: evil, Rule: evil}}}}, []any{"4", "enter"}},
		{"ceremony progress", []any{event.Progress{Ceremony: evil, Kind: "sign", Got: []string{evil}, Waiting: []string{evil}}}, []any{"2"}},
		{"keygen failure", []any{event.KeygenFailed{Ceremony: evil, Reason: evil, By: evil, Blamed: []string{evil}, Claimed: []string{evil}, Text: evil}}, []any{"2"}},
		{"connection detail", []any{event.Connection{State: evil}}, nil},
		{"identity", []any{Identity{Name: evil, Server: evil}}, nil},
		{"challenge token", []any{event.Challenge{Time: t0, Token: evil}}, []any{"!"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, 200, 40)
			h.send(tt.steps...)
			h.send(tt.keys...)
			raw := h.m.View()
			for _, bad := range []string{"\x1b[2J", "\x1b]52", "\x07", "\u009b", "\u202e", "\x7f"} {
				if strings.Contains(raw, bad) {
					t.Errorf("the view contains %q raw", bad)
				}
			}
			if !strings.Contains(ansi.Strip(raw), `\x1b[2J`) {
				t.Errorf("the escaped text is not shown:\n%s", ansi.Strip(raw))
			}
		})
	}
}

func TestLinkURLIsNeutralised(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24, WithLinking(true))
	h.send(LinkURL{URL: "sgnl://x\x1b[2J"}, LinkStep{Text: "step\x1b]0;title\x07"})
	raw := h.m.View()
	if strings.Contains(raw, "\x1b[2J") || strings.Contains(raw, "\x1b]0;") {
		t.Errorf("raw escape on the link screen")
	}
}

func TestLinkedSwitchesToTheMainScreen(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24, WithLinking(true))
	h.send(LinkURL{URL: linkURL}, Linked{Account: acct, Device: 3})
	v := h.view()
	if h.m.screen != screenMain || !strings.Contains(v, "MPC log") || !strings.Contains(v, "6e1f2a3b….3") {
		t.Errorf("after Linked:\n%s", v)
	}
}

func TestLogIsBounded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		limit, sent int
	}{
		{"under the limit keeps all", 10, 7},
		{"at the limit keeps all", 10, 10},
		{"over the limit keeps the newest", 10, 25},
		{"the default keeps 2000", 0, 2500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, 80, 24, WithLogLimit(tt.limit))
			for i := range tt.sent {
				h.send(event.Message{Time: t0, Peer: "p" + itoa(i), Kind: "deal"})
			}
			limit := tt.limit
			if limit == 0 {
				limit = DefaultLogLimit
			}
			want := min(tt.sent, limit)
			if h.m.mpc.n != want || len(h.m.mpc.ring) != limit {
				t.Fatalf("kept %d in a ring of %d, want %d of %d", h.m.mpc.n, len(h.m.mpc.ring), want, limit)
			}
			if first := h.m.mpc.at(0).msg.Peer; first != "p"+itoa(tt.sent-want) {
				t.Errorf("oldest kept is %s, want p%d", first, tt.sent-want)
			}
			if v := h.view(); !strings.Contains(v, "p"+itoa(tt.sent-1)+" ") {
				t.Errorf("the newest line is not on screen:\n%s", v)
			}
		})
	}
}

func TestDroppedAndUntaggedAreCounted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 100, 24)
	h.send(event.Untagged{Total: 42}, droppedMsg{total: 5})
	v := h.view()
	if !strings.Contains(v, "untagged 42") || !strings.Contains(v, "5 lost to load") {
		t.Errorf("counters missing:\n%s", v)
	}
}

func TestSignForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		keys     []any
		wantMsg  []byte
		wantDesc string
		wantErr  string
	}{
		{"text message", []any{"s", typeText("hello"), "enter", typeText("for the demo"), "enter"}, []byte("hello"), "for the demo", ""},
		{"hex message", []any{"s", "shift+tab", "space", "tab", typeText("0xdead beef"), "enter", "enter"}, []byte{0xde, 0xad, 0xbe, 0xef}, "", ""},
		{"bad hex", []any{"s", "shift+tab", "space", "tab", typeText("xyz"), "enter", "enter"}, nil, "", "not hex"},
		{"empty message", []any{"s", "enter", "enter"}, nil, "", "the message is empty"},
		{"unknown key", []any{"s", "up", "up", typeText("ff"), "enter", "enter", typeText("m"), "enter", "enter"}, nil, "", "no key starts with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, 80, 24)
			h.send(keysMsg{keys: keysOf()})
			cmd := h.send(flatten(tt.keys)...)
			if tt.wantErr != "" {
				if v := h.view(); !strings.Contains(v, tt.wantErr) {
					t.Errorf("no %q on screen:\n%s", tt.wantErr, v)
				}
				return
			}
			h.run(cmd)
			if len(h.core.signs) != 1 {
				t.Fatalf("RequestSignature called %d times", len(h.core.signs))
			}
			got := h.core.signs[0]
			if !bytes.Equal(got.msg, tt.wantMsg) || got.desc != tt.wantDesc || got.keyID != keysOf()[0].KeyID {
				t.Errorf("sign(%x, %q, %q), want (%x, %q, %x)", got.keyID, got.msg, got.desc, keysOf()[0].KeyID, tt.wantMsg, tt.wantDesc)
			}
		})
	}
}

func TestKeygenForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		keys    []any
		wantT   int
		wantErr string
	}{
		{"threshold typed", []any{"K", typeText("2"), "enter"}, 2, ""},
		{"empty takes the majority", []any{"K", "enter"}, 2, ""},
		{"above the roster", []any{"K", typeText("4"), "enter"}, 0, "cannot exceed"},
		{"zero", []any{"K", typeText("0"), "enter"}, 0, "at least 1"},
		{"escape cancels", []any{"K", typeText("2"), "esc"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, 80, 24)
			h.send(roster())
			cmd := h.send(flatten(tt.keys)...)
			if tt.wantErr != "" {
				if v := h.view(); !strings.Contains(v, tt.wantErr) {
					t.Errorf("no %q on screen:\n%s", tt.wantErr, v)
				}
				return
			}
			if tt.wantT == 0 {
				if cmd != nil || h.m.mode != modeNormal {
					t.Errorf("cancel left mode %d, cmd %v", h.m.mode, cmd != nil)
				}
				return
			}
			h.run(cmd)
			if len(h.core.keygens) != 1 || h.core.keygens[0] != tt.wantT {
				t.Errorf("StartKeygen calls %v, want [%d]", h.core.keygens, tt.wantT)
			}
		})
	}
}

func TestCopySignature(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		key     string
		clip    bool
		want    string // decoded clipboard content; "" when nothing is written
		wantErr string
	}{
		{"hex", "c", true, sigHex, ""},
		{"json", "C", true, `"signature":"` + sigHex + `"`, ""},
		{"no clipboard", "c", false, "", "no clipboard output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			opts := []Option{}
			if tt.clip {
				opts = append(opts, WithClipboard(&out))
			}
			h := newHarness(t, 80, 24, opts...)
			h.send(keysMsg{keys: keysOf()}, signDone(), "4")
			h.run(h.key(tt.key))
			if tt.wantErr != "" {
				if v := h.view(); !strings.Contains(v, tt.wantErr) {
					t.Errorf("no %q on screen:\n%s", tt.wantErr, v)
				}
				return
			}
			seq := out.String()
			if !strings.HasPrefix(seq, "\x1b]52;c;") || !strings.HasSuffix(seq, "\x07") {
				t.Fatalf("not an OSC 52 sequence: %q", seq)
			}
			data, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(strings.TrimPrefix(seq, "\x1b]52;c;"), "\x07"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), tt.want) {
				t.Errorf("clipboard %q lacks %q", data, tt.want)
			}
			if tt.key == "C" {
				var j sigJSON
				if err := json.Unmarshal(data, &j); err != nil || j.GroupPublicKey != hex.EncodeToString(keysOf()[0].GroupKey) || !j.Verified {
					t.Errorf("json %s: %v", data, err)
				}
			}
		})
	}
}

func TestQuitKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		steps    []any
		key      string
		wantQuit bool
	}{
		{"q quits the main screen", nil, "q", true},
		{"ctrl+c quits", nil, "ctrl+c", true},
		{"q quits the link screen", []any{LinkURL{URL: linkURL}}, "q", true},
		{"q types into the filter", []any{"/"}, "q", false},
		{"q types into a form", []any{"s"}, "q", false},
		{"ctrl+c quits from a form", []any{"s"}, "ctrl+c", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts []Option
			if len(tt.steps) > 0 {
				if _, ok := tt.steps[0].(LinkURL); ok {
					opts = append(opts, WithLinking(true))
				}
			}
			h := newHarness(t, 80, 24, opts...)
			h.send(tt.steps...)
			cmd := h.key(tt.key)
			quit := false
			if cmd != nil {
				_, quit = cmd().(tea.QuitMsg)
			}
			if quit != tt.wantQuit {
				t.Errorf("quit = %v, want %v", quit, tt.wantQuit)
			}
		})
	}
}

func TestResultsFromBeforeARestartAreListedQuietly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24)
	old := signDone()
	old.Restored, old.Time = true, t0.Add(-26*time.Hour)
	h.send(old)
	if h.m.notice.text != "" {
		t.Errorf("a restored result made a notice: %q", h.m.notice.text)
	}
	if len(h.m.cers.byID) != 0 {
		t.Errorf("a restored result was listed as a ceremony of this run")
	}
	if s, ok := h.m.sigs.selected(); !ok || s.ev.ID != old.ID || !s.at.Equal(old.Time) {
		t.Fatalf("signatures %+v: want the restored one, at its own time", h.m.sigs.list)
	}
	// A result of this run is news.
	h.send(event.SignDone{ID: reqID, KeyID: "5eed1234", Message: "00", Signature: sigHex, Signers: []string{"alice", "bob"}, Verified: true})
	if !strings.Contains(h.m.notice.text, "ready") || len(h.m.sigs.list) != 2 {
		t.Fatalf("a live result: notice %q, %d signatures", h.m.notice.text, len(h.m.sigs.list))
	}
}

func TestAConnectionComplaintGoesWhenTheConnectionIsBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24)
	h.send(event.Connection{State: "connected"},
		event.Connection{State: "reconnecting", RetryAt: t0.Add(2 * time.Second), Detail: "dial tcp: connection refused"})
	if !h.m.notice.err || !strings.Contains(h.m.notice.text, "connection refused") {
		t.Fatalf("notice %+v while reconnecting", h.m.notice)
	}
	h.send(event.Connection{State: "connected"})
	if h.m.notice.err || h.m.notice.text != "connected again" {
		t.Fatalf("notice %+v once connected", h.m.notice)
	}
	// Another message shown meanwhile is not replaced.
	h.send(event.Connection{State: "reconnecting", Detail: "reset"}, event.Error{Time: t0, Text: "keygen 1234 aborted"},
		event.Connection{State: "connected"})
	if !strings.Contains(h.m.notice.text, "keygen 1234 aborted") {
		t.Fatalf("notice %+v: the later error was replaced", h.m.notice)
	}
}

// A console on several servers shows each one's state in the status bar
// beside the console's own, a server lagging for a peer by name, and its
// one server's events never flip the console's own state.
func TestEachServerShowsInTheStatusBar(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 160, 24)
	h.send(event.Connection{State: "connected"},
		event.Connection{State: "connected", Server: "home"},
		event.Connection{State: "reconnecting", Server: "backup", Detail: "refused"})
	bar := ansi.Strip(h.m.statusBar())
	for _, want := range []string{"● connected", "● home", "◌ backup"} {
		if !strings.Contains(bar, want) {
			t.Fatalf("status bar %q lacks %q", bar, want)
		}
	}
	if h.m.notice.err {
		t.Fatalf("one server reconnecting while another is up is not an error: %+v", h.m.notice)
	}
	h.send(event.ServerLagging{Time: t0, Server: "home", Peer: "bob", Lagging: true})
	if bar := ansi.Strip(h.m.statusBar()); !strings.Contains(bar, "home lagging for bob") {
		t.Fatalf("status bar %q does not name home lagging for bob", bar)
	}
	if !strings.Contains(h.m.notice.text, "home") || !strings.Contains(h.m.notice.text, "bob") {
		t.Fatalf("notice %+v", h.m.notice)
	}
	h.send(event.ServerLagging{Time: t0, Server: "home", Peer: "bob"})
	if bar := ansi.Strip(h.m.statusBar()); strings.Contains(bar, "lagging") {
		t.Fatalf("status bar %q still says lagging", bar)
	}
}

// The log names the server an incoming message came through.
func TestTheLogNamesTheServerAMessageCameThrough(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 160, 24)
	h.send(event.Message{Time: t0, Direction: event.In, Peer: "bob", Ceremony: "aabbccdd", Kind: "partial", Digest: "0102",
		Server: "https://relay.example:8443"})
	view := ansi.Strip(strings.Join(h.m.logView(10), "\n"))
	if !strings.Contains(view, "via relay.example:8443") {
		t.Fatalf("log view does not name the server:\n%s", view)
	}
}
