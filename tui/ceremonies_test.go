package tui

import (
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
)

func TestAFailedKeygenStopsItsCountdownAndSaysWhy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ev   event.KeygenFailed
		want []string
	}{
		{"declined", event.KeygenFailed{Ceremony: cerID, Reason: "declined", Round: "accept", By: "carol", Blamed: []string{"carol"},
			Text: "keygen c0ffee01 aborted in round accept by carol: declined, blaming carol"},
			[]string{"keygen c0ffee01  failed in round accept: declined (stopped by carol); blamed carol", "0 running"}},
		{"timed out", event.KeygenFailed{Ceremony: cerID, Reason: "timeout", Round: "deal", By: "alice", Blamed: []string{"bob"},
			Text: "keygen c0ffee01 aborted in round deal by alice: timeout, blaming bob"},
			[]string{"failed in round deal: timeout (stopped by alice); blamed bob", "0 running"}},
		{"accused without proof", event.KeygenFailed{Ceremony: cerID, Reason: "aborted by another party", Round: "echo", By: "bob",
			Claimed: []string{"carol"}, Text: "keygen c0ffee01 aborted"},
			[]string{"failed in round echo: aborted by another party (stopped by bob); accused without proof carol"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, 120, 24)
			h.send(event.Progress{Ceremony: cerID, Kind: "keygen", Round: "deal", Step: 2, Total: 4, Got: []string{"alice"},
				Waiting: []string{"bob", "carol"}, Deadline: t0.Add(9 * time.Minute)}, "2")
			if v := h.view(); !strings.Contains(v, "1 running") || !strings.Contains(v, "9:00 left") {
				t.Fatalf("the keygen is not running before it fails:\n%s", v)
			}
			h.send(tt.ev, advance(10*time.Minute))
			v := h.view()
			for _, w := range tt.want {
				if !strings.Contains(v, w) {
					t.Errorf("screen lacks %q:\n%s", w, v)
				}
			}
			for _, bad := range []string{" left", "time is up", "waiting bob"} {
				if strings.Contains(v, bad) {
					t.Errorf("a failed keygen still shows %q:\n%s", bad, v)
				}
			}
			if !strings.Contains(v, "! "+tt.ev.Text) {
				t.Errorf("the failure is not the notice:\n%s", v)
			}
			// A late progress event does not bring it back.
			h.send(event.Progress{Ceremony: cerID, Kind: "keygen", Round: "deal", Step: 2, Total: 4, Deadline: t0.Add(20 * time.Minute)})
			if v := h.view(); !strings.Contains(v, "0 running") {
				t.Errorf("a late progress event restarts the failed keygen:\n%s", v)
			}
		})
	}
}

func TestASigningShowsOnlyWhatThisConsoleCanKnow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		progress event.Progress
		want     []string
		notWant  []string
	}{
		{"asked by another: own approval, a decline, no count",
			event.Progress{Ceremony: "9b1c2d3e", Kind: "sign", Round: "collecting", Step: 1, Total: 2, Got: []string{"alice"},
				Declined: []string{"carol"}, Requester: "bob", Unseen: []string{"bob"}, Deadline: t0.Add(time.Minute)},
			[]string{"asked by bob", "got alice", "declined carol", "approvals go to bob"},
			[]string{"waiting", "approvals 1/2"}},
		{"asked by another, not answered yet",
			event.Progress{Ceremony: "9b1c2d3e", Kind: "sign", Round: "collecting", Total: 2, Waiting: []string{"alice"},
				Requester: "bob", Unseen: []string{"bob", "carol"}, Deadline: t0.Add(time.Minute)},
			[]string{"needs 2 approvals", "waiting alice", "approvals go to bob"},
			[]string{"waiting bob", "got -"}},
		{"asked here: the count and who declined",
			event.Progress{Ceremony: "9b1c2d3e", Kind: "sign", Round: "collecting", Step: 1, Total: 2, Got: []string{"alice"},
				Declined: []string{"carol"}, Waiting: []string{"bob"}, Requester: "alice", Deadline: t0.Add(time.Minute)},
			[]string{"approvals 1/2", "got alice", "declined carol", "waiting bob"},
			[]string{"asked by", "go to"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, 200, 24)
			h.send(tt.progress, "2")
			v := h.view()
			for _, w := range tt.want {
				if !strings.Contains(v, w) {
					t.Errorf("screen lacks %q:\n%s", w, v)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(v, w) {
					t.Errorf("screen shows %q:\n%s", w, v)
				}
			}
		})
	}
}

// A key disputed after it was made (a peer's abort proved a party
// cheated) leaves the status bar's key: the console asks core again.
func TestADisputedKeyLeavesTheConsole(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 120, 24)
	h.core.keys = []core.KeyInfo{{KeyID: [32]byte{0x5e, 0xed}, GroupKey: []byte{1}, T: 2, N: 3, Self: 1}}
	h.send(keysMsgOf(h), event.KeygenDone{Ceremony: cerID, KeyID: "5eed0000", T: 2, N: 3})
	if v := h.view(); !strings.Contains(v, "key 5eed0000") {
		t.Fatalf("the key is not shown before the dispute:\n%s", v)
	}
	h.core.mu.Lock()
	h.core.keys = nil
	h.core.mu.Unlock()
	cmd := h.send(event.KeygenFailed{Ceremony: cerID, Reason: "disputed", Round: "confirm", By: "alice", Blamed: []string{"bob"},
		Text: "key 5eed0000 is disputed"})
	if cmd == nil {
		t.Fatal("a disputed key does not make the console ask for the keys again")
	}
	h.send(cmd())
	if v := h.view(); !strings.Contains(v, "no key yet") || !strings.Contains(v, "disputed") {
		t.Fatalf("the disputed key is still shown, or the dispute is not:\n%s", v)
	}
}

// keysMsgOf is the answer the console gets when it lists h's keys.
func keysMsgOf(h *harness) tea.Msg { return h.m.loadKeys()() }
