package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/api"
)

// checkAuditCommand checks what `cosigner audit --json` printed after a
// 2-of-3 keygen and one signing with auto-approval on the others.
func checkAuditCommand(t *testing.T, out, errs string, code int) {
	t.Helper()
	if code != 0 {
		t.Fatalf("audit: %d %s", code, errs)
	}
	var res api.AuditResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("audit printed %q: %v", out, err)
	}
	if res.Head.Count != 2 || len(res.Entries) != 2 || res.Head.Hash != res.Entries[1].Hash || res.Entries[1].Prev != res.Entries[0].Hash {
		t.Fatalf("audit trail: head %+v over %d entries", res.Head, len(res.Entries))
	}
	kg, sg := res.Entries[0], res.Entries[1]
	if kg.Kind != "keygen" || kg.Outcome != "generated" || sg.Kind != "sign" || sg.Outcome != "signed" || sg.Requester != "alice" ||
		sg.SHA256 == "" || sg.Description != "test" || len(sg.Signers) != 2 {
		t.Fatalf("entries %+v", res.Entries)
	}
	if len(sg.Approvals) == 0 {
		t.Fatalf("no approvals in %+v", sg)
	}
	own := sg.Approvals[0]
	switch own.Signer {
	case "alice": // she asked from the command line: her own answer, no rule
		if own.Decision != "approved" || own.Rule != "" {
			t.Fatalf("alice's answer %+v", own)
		}
	default: // bob's console approves everything
		if own.Decision != "approved" || own.Rule != "signing.auto_approve" {
			t.Fatalf("%s's answer %+v", own.Signer, own)
		}
	}
}

func TestAuditSinceTakesATimeOrADate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"", time.Time{}, true},
		{"2026-12-07", time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), true},
		{"2026-12-07T10:00:00Z", time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC), true},
		{"yesterday", time.Time{}, false},
	} {
		got, err := parseSince(tc.in)
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestAuditLineSaysWhoAnswered(t *testing.T) {
	t.Parallel()
	line := auditLine(api.AuditEntry{Seq: 3, Kind: "sign", ID: "0123456789abcdef", Outcome: "signed", Requester: "alice",
		Approvals: []api.AuditApproval{{Signer: "bob", Decision: "approved", User: "ops", SSHClient: "10.0.0.7 52100 22"}, {Signer: "carol", Decision: "declined"}}})
	for _, want := range []string{"3  ", "sign 01234567", "asked by alice", "bob approved (user ops, ssh client 10.0.0.7 52100 22)", "carol declined"} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
}
