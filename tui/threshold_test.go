package tui

import "testing"

// The keygen form proposes the configured threshold (keygen.threshold)
// when the human types none, not a majority of the roster.
func TestKeygenFormDefaultsToTheConfiguredThreshold(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 80, 24, WithThreshold(3))
	h.send(roster())
	h.run(h.send("K", "enter"))
	if len(h.core.keygens) != 1 || h.core.keygens[0] != 3 {
		t.Errorf("StartKeygen calls %v, want [3]", h.core.keygens)
	}
}
