package tui

import (
	"strings"
	"testing"

	"github.com/signal-mpc/cosigner/core/event"
)

const challengeToken = "K7QX2M4PZR8TJW3N"

func TestAServerChallengeIsAnsweredFromTheConsole(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24)
	h.send(traffic()...)
	if cmd := h.key("!"); cmd != nil || h.m.mode != modeNormal || !strings.Contains(h.view(), "asks for no challenge") {
		t.Fatalf("! without a challenge opened something:\n%s", h.view())
	}
	h.send(event.Challenge{Time: t0, Token: challengeToken})
	v := h.view()
	if !strings.Contains(v, "server challenge: ! to answer") || !strings.Contains(v, "! answer challenge") {
		t.Fatalf("a pending challenge is not on screen:\n%s", v)
	}
	h.key("!")
	if h.m.mode != modeChallengeForm || !strings.Contains(h.view(), "challenge-code "+challengeToken) {
		t.Fatalf("! did not open the form with the token:\n%s", h.view())
	}
	if cmd := h.key("enter"); cmd != nil || !strings.Contains(h.view(), "type the code first") {
		t.Fatalf("an empty code was sent:\n%s", h.view())
	}

	// A refused answer keeps the form open with the reason.
	h.core.err = errFake
	h.send(typeText("wrong")...)
	cmd := h.key("enter")
	if cmd == nil {
		t.Fatal("enter did not send the answer")
	}
	if again := h.key("enter"); again != nil {
		t.Fatal("a second enter sent the answer twice while the first was on its way")
	}
	h.send(cmd())
	if h.m.mode != modeChallengeForm || !strings.Contains(h.view(), "not accepted: fake failure") {
		t.Fatalf("a refused answer:\n%s", h.view())
	}

	h.core.err = nil
	for range len("wrong") {
		h.key("backspace")
	}
	h.send(typeText(" ab12-cd34 ")...)
	h.send(h.key("enter")())
	if got := h.core.answers; len(got) != 2 || got[1] != [2]string{challengeToken, "ab12-cd34"} {
		t.Fatalf("answers %q, want the token with the trimmed code last", got)
	}
	v = h.view()
	if h.m.mode != modeNormal || strings.Contains(v, "server challenge: ! to answer") || !strings.Contains(v, "challenge answered") {
		t.Fatalf("after the accepted answer:\n%s", v)
	}
	// The event that follows on the bus changes nothing more.
	h.send(event.ChallengeAnswered{Time: t0, Token: challengeToken})
	if strings.Contains(h.view(), "server challenge: ! to answer") {
		t.Fatal("the challenge came back")
	}
}

func TestAChallengeAnsweredElsewhereClosesTheForm(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24)
	h.send(event.Challenge{Time: t0, Token: challengeToken}, "!")
	// Another challenge's answer does not close it.
	h.send(event.ChallengeAnswered{Time: t0, Token: "OTHER"})
	if h.m.mode != modeChallengeForm {
		t.Fatal("another token's answer closed the form")
	}
	h.send(event.ChallengeAnswered{Time: t0, Token: challengeToken})
	if h.m.mode != modeNormal || strings.Contains(h.view(), "server challenge: ! to answer") {
		t.Fatalf("the answered challenge is still open:\n%s", h.view())
	}
	h.send("esc")
}

func TestEscLeavesTheChallengeFormAndTheChallengeOpen(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24)
	h.send(event.Challenge{Time: t0, Token: challengeToken}, "!", "esc")
	if h.m.mode != modeNormal || !strings.Contains(h.view(), "server challenge: ! to answer") {
		t.Fatalf("after esc:\n%s", h.view())
	}
}
