package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/signal-mpc/cosigner/api"
)

var auditCommand = command{
	name:    "audit",
	summary: "print this console's audit trail (who approved what), verify it, print its head",
	usage: `Usage: cosigner audit [--json] [--since TIME] [global flags]

Print the audit trail: one entry per ceremony that ended here (signing
requests and key generations): who asked, the message's SHA-256, when it
was asked and ended, how it ended, and who answered: this console's answer
with who gave it (the socket user and the SSH client that user's process
reported, or the approval rule), and the other signers' answers as seen
here. Each entry is chained to the one before by hash and signed with this
console's key; the whole trail is verified first, and a changed or removed
entry stops the command (exit 1) naming the first bad one.

The head (count of entries, hash of the last) is printed last. A cut-off
tail or a store rolled back to an older copy is found only against a head
kept elsewhere: keep it.

Goes through the socket of the co-signer running on this data directory
(a daemon or a console); works offline when none runs.

Flags:
  --json        one JSON object: {"entries":[{"seq","hash","prev","kind","id","key_id","outcome","reason",
                "requester","requester_at_the_time","message_hex","sha256","description","created","ended",
                "signature","signers","blamed","approvals":[{"signer","decision","user","ssh_client","rule","by"}],
                "peer_heads","converted"}],"head":{"count","hash"}}
  --since TIME  only the entries that ended at or after TIME (RFC 3339, or a date: 2026-12-07)
` + globalFlagsHelp,
	run: runAudit,
}

// parseSince reads --since: an RFC 3339 time or a date (UTC midnight).
func parseSince(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("--since takes an RFC 3339 time (2026-12-07T10:00:00Z) or a date (2026-12-07)")
}

func runAudit(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	asJSON := fs.Bool("json", false, "JSON")
	sinceFlag := fs.String("since", "", "only entries that ended at or after this time")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	since, err := parseSince(*sinceFlag)
	if err != nil {
		return usageError(cmd, sio, "%v", err)
	}
	res, err := auditTrail(ctx, g, sio, since)
	if err != nil {
		return fail(sio, cmd, err)
	}
	if *asJSON {
		if err := printJSON(sio, res); err != nil {
			return fail(sio, cmd, err)
		}
		return exitOK
	}
	for _, e := range res.Entries {
		fmt.Fprintln(sio.out, auditLine(e))
	}
	fmt.Fprintf(sio.out, "head: %d entries, last %s (verified)\n", res.Head.Count, orNone(res.Head.Hash))
	return exitOK
}

// auditTrail reads the verified trail through the running co-signer, or
// from the store with only the engine running.
func auditTrail(ctx context.Context, g globalFlags, sio stdio, since time.Time) (api.AuditResult, error) {
	cl, _, err := attached(ctx, g, sio)
	if err != nil {
		return api.AuditResult{}, err
	}
	if cl != nil {
		defer cl.Close()
		var res api.AuditResult
		if err := cl.Call(ctx, api.MethodAudit, api.AuditParams{Since: since}, &res); err != nil {
			return api.AuditResult{}, remoteError(err)
		}
		return res, nil
	}
	var res api.AuditResult
	err = withEngine(ctx, g, sio, func(c *console) error {
		entries, head, err := c.App.Audit(ctx, since)
		if err != nil {
			return err
		}
		res = api.AuditResultOf(entries, head)
		return nil
	})
	return res, err
}

// auditLine is one entry as a line of text.
func auditLine(e api.AuditEntry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d  %s  %s %s  %s", e.Seq, e.Ended.UTC().Format(time.RFC3339), e.Kind, shortHex(e.ID), e.Outcome)
	if e.Reason != "" {
		fmt.Fprintf(&b, " (%s)", e.Reason)
	}
	if e.Requester != "" {
		fmt.Fprintf(&b, "  asked by %s", e.Requester)
	}
	if e.KeyID != "" {
		fmt.Fprintf(&b, "  key %s", shortHex(e.KeyID))
	}
	if e.SHA256 != "" {
		fmt.Fprintf(&b, "  sha256 %s", e.SHA256)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, "  %q", e.Description)
	}
	var who []string
	for _, a := range e.Approvals {
		s := a.Signer + " " + a.Decision
		var detail []string
		if a.Rule != "" {
			detail = append(detail, "rule "+a.Rule)
		}
		if a.User != "" {
			detail = append(detail, "user "+a.User)
		}
		if a.SSHClient != "" {
			detail = append(detail, "ssh client "+a.SSHClient)
		}
		if len(detail) > 0 {
			s += " (" + strings.Join(detail, ", ") + ")"
		}
		who = append(who, s)
	}
	if len(who) > 0 {
		fmt.Fprintf(&b, "  answers: %s", strings.Join(who, "; "))
	}
	if e.Converted {
		b.WriteString("  [converted]")
	}
	return b.String()
}

func shortHex(hexID string) string {
	if len(hexID) > 8 {
		return hexID[:8]
	}
	return hexID
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
