package tui

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
)

const (
	reqID  = "3f2a1b9c00112233445566778899aabbccddeeff00112233445566778899aabb"
	reqID2 = "9b1c2d3e00112233445566778899aabbccddeeff00112233445566778899aabb"
	cerID  = "c0ffee01"
	acct   = "6e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
	// linkURL is 98 characters, the size of a real provisioning URL.
	linkURL = "sgnl://linkdevice?uuid=Yp8nQm3kR2tL5vX9wZ1aBc&pub_key=BQx7Lr2mNp4sTv6wYz8aCd0eFg2hJk4mNp6qRs8tUvWx"
	// linkURLv6 is a link as a server gives it (padded base64, escaped):
	// 110 characters, a version 6 QR code.
	linkURLv6 = "sgnl://linkdevice?uuid=X4i5HbejiXd2LHZveqkoUg%3D%3D&pub_key=BfWYdiBGTN%2FFxqQ9xgOwj9%2B88OmtUh8gFC63VYsz%2BSI8"
)

var (
	fingerprint = "12345 67890 13579 24680 11223 34455 66778 89900 10293 84756 56473 82910"
	sigHex      = strings.Repeat("a1b2c3d4", 24)
	groupKey    = strings.Repeat("8f9e", 24)
)

func identity() Identity {
	return Identity{Name: "alice", Account: acct, Device: 2, Server: "https://127.0.0.1:8443"}
}

func roster() Roster {
	return Roster{Signers: []Signer{
		{Name: "alice", Account: acct, Device: 2, Fingerprint: fingerprint, Verified: true, Self: true},
		{Name: "bob", Account: "7a7a7a7a-0000-4000-8000-000000000000", Device: 3, Fingerprint: fingerprint, Verified: true},
		{Name: "carol", Account: "8b8b8b8b-0000-4000-8000-000000000000", Device: 2, Fingerprint: fingerprint},
	}}
}

func keysOf() []core.KeyInfo {
	var id [32]byte
	copy(id[:], []byte{0x5e, 0xed, 0x12, 0x34, 9, 9})
	gk := make([]byte, 48)
	gk[0] = 0x8f
	return []core.KeyInfo{{KeyID: id, GroupKey: gk, T: 2, N: 3, Self: 1}}
}

// traffic is a ceremony in progress with its log lines.
func traffic() []any {
	steps := []any{
		identity(), roster(), keysMsg{keys: keysOf()},
		event.Connection{State: "connected"},
		event.Untagged{Total: 7},
	}
	peers := []string{"bob", "carol"}
	kinds := []string{"proposal", "accept", "deal", "complaint"}
	for i := range 12 {
		steps = append(steps, event.Message{
			Time: t0.Add(time.Duration(i) * time.Second), Direction: event.Direction(i % 2), Peer: peers[i%2],
			Ceremony: cerID, Round: uint32(i / 4), Kind: kinds[i%4], Size: 200 + 300*i, Digest: "9f8e7d6c",
		})
	}
	steps = append(steps,
		event.Message{Time: t0.Add(13 * time.Second), Direction: event.In, Peer: "mallory.9", Ceremony: "deadbeef", Round: 1,
			Kind: "deal", Size: 12, Digest: "00ff00ff", Note: "dropped: not a signer of that ceremony"},
		event.Progress{Ceremony: cerID, Kind: "keygen", Round: "deal", Step: 2, Total: 4, Got: []string{"alice", "carol"},
			Waiting: []string{"bob"}, Deadline: t0.Add(9*time.Minute + 41*time.Second)},
		// bob asked: this console (alice) sees its own answer and the
		// declines, not the others' partials.
		event.Progress{Ceremony: "9b1c2d3e", Kind: "sign", Round: "collecting", Step: 0, Total: 2,
			Waiting: []string{"alice"}, Requester: "bob", Unseen: []string{"bob", "carol"}, Deadline: t0.Add(4*time.Minute + 12*time.Second)},
	)
	return steps
}

func request() event.ApprovalRequested {
	return event.ApprovalRequested{
		ID: reqID, Kind: "sign", Requester: "bob", KeyID: "5eed1234",
		Text: "pay invoice 42\nto ACME Corp", Hex: hex.EncodeToString([]byte("pay invoice 42\nto ACME Corp")), SHA256: strings.Repeat("ab", 32),
		Description: "monthly invoice, approved by finance", Expires: t0.Add(5 * time.Minute),
	}
}

func signDone() event.SignDone {
	return event.SignDone{ID: reqID2, KeyID: "5eed1234", Message: "68656c6c6f", Signature: sigHex,
		Signers: []string{"alice", "bob"}, Verified: true}
}

// signDoneApproved is a result with who answered it: this console over
// SSH through the socket, bob, and carol's decline.
func signDoneApproved() event.SignDone {
	e := signDone()
	e.Approvals = []event.Approval{
		{Signer: "alice", Decision: "approved", User: "ops", SSHClient: "10.0.0.5:52722"},
		{Signer: "bob", Decision: "approved"},
		{Signer: "carol", Decision: "declined"},
	}
	return e
}

// TestViewGolden compares screens, ANSI stripped, with testdata; -update
// rewrites them. Every screen is also checked to fit its window.
func TestViewGolden(t *testing.T) {
	t.Parallel()
	full := func(extra ...any) []any { return append(traffic(), extra...) }
	tests := []struct {
		name  string
		w, h  int
		opts  []Option
		steps []any
	}{
		{"log at 80x24", 80, 24, nil, full()},
		{"log at 40x12", 40, 12, nil, full()},
		{"log filtered by peer", 80, 24, nil, full("/", typeText("carol"), "enter")},
		{"log scrolled up is paused", 80, 12, nil, full("k", "k", "k")},
		{"ceremonies with per-round progress", 80, 24, nil, full("2")},
		{"ceremonies wrap at 40x12", 40, 12, nil, full("2")},
		{"ceremonies of a request this console made", 80, 24, nil, full(event.Progress{Ceremony: "5a6b7c8d", Kind: "sign", Round: "collecting",
			Step: 1, Total: 2, Got: []string{"alice"}, Declined: []string{"carol"}, Waiting: []string{"bob"}, Requester: "alice",
			Deadline: t0.Add(29 * time.Minute)}, "2")},
		{"approval queue", 80, 24, nil, full(request(), "3")},
		{"review while arming", 80, 24, nil, full(request(), "3", "enter", advance(400*time.Millisecond))},
		{"review armed", 80, 24, nil, full(request(), "3", "enter", advance(time.Second))},
		{"review of hex message at 40x12", 40, 12, nil, full(func() any {
			r := request()
			r.Text, r.Hex = "", strings.Repeat("00ff", 40)
			return r
		}(), "3", "enter", advance(2*time.Second))},
		{"keygen proposal review", 80, 24, nil, full(event.ApprovalRequested{ID: reqID, Kind: "keygen", Requester: "carol",
			Text: "generate a 2-of-3 key with alice, bob and carol", Expires: t0.Add(10 * time.Minute)}, "3", "enter", advance(time.Second))},
		{"signatures", 80, 24, nil, full(signDone(), event.SignDone{ID: reqID, KeyID: "5eed1234", Message: "00",
			Failure: "expired with 1 of 2 approvals", Blamed: []string{"carol"}}, "4")},
		{"signature detail", 80, 24, nil, full(signDone(), "4", "enter")},
		{"signatures with who approved", 80, 24, nil, full(event.SignDone{ID: reqID, KeyID: "5eed1234", Message: "00", Signature: sigHex,
			Signers: []string{"alice", "carol"}, Verified: true, Approvals: []event.Approval{
				{Signer: "alice", Decision: "approved", Rule: "signing.rule[0]"}, {Signer: "carol", Decision: "approved"}}},
			signDoneApproved(), "4")},
		{"signature detail with who approved", 80, 24, nil, full(signDoneApproved(), "4", "enter")},
		{"roster", 80, 24, nil, full("5")},
		{"roster at 40x12", 40, 12, nil, full("5")},
		{"sign form", 80, 24, nil, full("s", typeText("hello"))},
		{"keygen form with error", 80, 24, nil, full("K", typeText("9"), "enter")},
		{"full help", 80, 24, nil, full("?")},
		{"server challenge pending", 80, 24, nil, full(event.Challenge{Time: t0, Token: challengeToken})},
		{"server challenge pending at 40x12", 40, 12, nil, full(event.Challenge{Time: t0, Token: challengeToken})},
		{"challenge form", 80, 24, nil, full(event.Challenge{Time: t0, Token: challengeToken}, "!", typeText("ab12-cd34"))},
		{"reconnecting with countdown", 80, 24, nil, full(event.Connection{State: "reconnecting", RetryAt: t0.Add(5 * time.Second)}, event.Error{Time: t0, Text: "websocket: read: connection reset"})},
		{"long error notice wraps at 80x24", 80, 24, nil, full(event.Error{Time: t0, Text: "demo failed: signing request 9b1c2d3e failed: " +
			"expired with 1 of 2 partial signatures; declined: carol; press r to start the story again, q to quit"})},
		{"link screen at 80x24", 80, 24, []Option{WithLinking(true)}, []any{
			LinkURL{URL: linkURL, Expires: t0.Add(45 * time.Second)}, LinkStep{Text: "waiting for scan"}}},
		{"link screen after steps", 80, 24, []Option{WithLinking(true)}, []any{
			LinkURL{URL: linkURL, Expires: t0.Add(45 * time.Second)}, LinkStep{Text: "waiting for scan"},
			LinkStep{Text: "keys received"}, LinkStep{Text: "device registered"}, advance(50 * time.Second)}},
		{"link screen with a version 6 code at 80x24", 80, 24, []Option{WithLinking(true)}, []any{
			LinkURL{URL: linkURLv6, Expires: t0.Add(45 * time.Second)}, LinkStep{Text: "waiting for scan"}}},
		{"link screen too small at 40x12", 40, 12, []Option{WithLinking(true)}, []any{
			LinkURL{URL: linkURL, Expires: t0.Add(45 * time.Second)}, LinkStep{Text: "waiting for scan"}}},
		{"link screen before the url", 80, 24, []Option{WithLinking(true)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tt.w, tt.h, tt.opts...)
			h.send(flatten(tt.steps)...)
			golden.RequireEqual(t, []byte(h.view()))
		})
	}
}

// flatten expands nested step lists.
func flatten(steps []any) []any {
	var out []any
	for _, s := range steps {
		if l, ok := s.([]any); ok {
			out = append(out, flatten(l)...)
			continue
		}
		out = append(out, s)
	}
	return out
}

// TestResize checks that every screen fits every window, going through
// several sizes in a row as a user dragging the window would.
func TestResize(t *testing.T) {
	t.Parallel()
	sizes := [][2]int{{80, 24}, {120, 40}, {60, 18}, {40, 12}, {20, 6}, {1, 1}, {200, 60}, {80, 24}}
	screens := []struct {
		name  string
		opts  []Option
		steps []any
	}{
		{"log", nil, traffic()},
		{"ceremonies", nil, append(traffic(), "2")},
		{"review", nil, append(traffic(), request(), "3", "enter", advance(time.Second))},
		{"signature detail", nil, append(traffic(), signDone(), "4", "enter")},
		{"roster", nil, append(traffic(), "5")},
		{"sign form", nil, append(traffic(), "s")},
		{"help", nil, append(traffic(), "?")},
		{"link", []Option{WithLinking(true)}, []any{LinkURL{URL: linkURL, Expires: t0.Add(time.Minute)}, LinkStep{Text: "waiting for scan"}}},
	}
	for _, sc := range screens {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, 80, 24, sc.opts...)
			h.send(flatten(sc.steps)...)
			for _, s := range sizes {
				h.send(tea.WindowSizeMsg{Width: s[0], Height: s[1]})
				v := h.view()
				if n := len(strings.Split(v, "\n")); s[1] >= 6 && n != s[1] {
					t.Errorf("%dx%d: view has %d lines, want the full height", s[0], s[1], n)
				}
			}
		})
	}
}

// TestLinkScreenShowsQRWhenItFits: the QR of a 98-character URL is 21
// lines of 41 cells, a real link of 110 characters (padded base64, escaped)
// makes a version 6 code of 23 lines of 45 cells. Each shows in 80x24 (the
// longer without the URL under it: c copies it), and a smaller window says
// the size.
func TestLinkScreenShowsQRWhenItFits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		url              string
		w, h             int
		wantQR, wantURL  bool
		wantText         string
		wantLines, wantW int
	}{
		{"80x24 shows the QR and the URL", linkURL, 80, 24, true, true, "New code in 0:45", 21, 41},
		{"67x24 is just enough", linkURL, 67, 24, true, true, "New code in", 21, 41},
		{"80x23 drops the URL", linkURL, 80, 23, true, false, "c copies the link", 21, 41},
		{"80x21 is too short", linkURL, 80, 21, false, true, "at least 67x22", 0, 0},
		{"40x12 is too small", linkURL, 40, 12, false, true, "this one is 40x12", 0, 0},
		{"version 6 at 80x24 drops the URL", linkURLv6, 80, 24, true, false, "c copies the link", 23, 45},
		{"version 6 at 80x30 shows the URL", linkURLv6, 80, 30, true, true, "New code in 0:45", 23, 45},
		{"version 6 at 80x23 is too short", linkURLv6, 80, 23, false, true, "at least 71x24", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tt.w, tt.h, WithLinking(true))
			h.send(LinkURL{URL: tt.url, Expires: t0.Add(45 * time.Second)})
			v := h.view()
			if got := strings.Contains(v, "▀") || strings.Contains(v, "▄"); got != tt.wantQR {
				t.Errorf("QR shown = %v, want %v\n%s", got, tt.wantQR, v)
			}
			if got := strings.Contains(strings.ReplaceAll(v, "\n", ""), tt.url); got != tt.wantURL {
				t.Errorf("URL shown = %v, want %v\n%s", got, tt.wantURL, v)
			}
			if !strings.Contains(v, tt.wantText) {
				t.Errorf("screen lacks %q:\n%s", tt.wantText, v)
			}
			if tt.wantQR {
				lines, w := h.m.link.qrLines()
				if len(lines) != tt.wantLines || w != tt.wantW {
					t.Errorf("QR is %d lines x %d cells, want %d x %d", len(lines), w, tt.wantLines, tt.wantW)
				}
				// The whole code is on screen: every one of its lines.
				for i, l := range lines {
					if !strings.Contains(v, ansi.Strip(l)) {
						t.Fatalf("QR line %d is not on screen:\n%s", i+1, v)
					}
				}
			}
			if h.key("c") == nil {
				t.Error("c does not copy the link")
			}
		})
	}
}
