package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/signal-mpc/cosigner/core/event"
)

func TestTheHeadlessLogReportsAFailedKeygen(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, nil))
	logEvent(log, event.KeygenFailed{Ceremony: "c0ffee01", Reason: "declined", Round: "accept", By: "carol\x1b[2J",
		Blamed: []string{"carol"}, Text: "keygen c0ffee01 aborted"})
	got := b.String()
	for _, want := range []string{"level=WARN", `msg="key generation failed"`, "ceremony=c0ffee01", "reason=declined", "round=accept", "blamed=[carol]"} {
		if !strings.Contains(got, want) {
			t.Errorf("log line lacks %s: %s", want, got)
		}
	}
	if strings.Contains(got, "\x1b") {
		t.Errorf("log line holds a raw escape: %q", got)
	}
}
