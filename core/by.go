package core

import (
	"slices"
	"strings"

	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

// ParseBy reads who gave an answer from its recorded Input.By: the user
// ("user=NAME", the socket peer's name as the kernel's uid maps to it), the
// SSH client the connecting process claimed ("ssh_client=ADDR") and the
// rule that approved it when By is a rule's name ("signing.rule[i]",
// "keygen.rule[i]", "signing.auto_approve"). Empty By (this console's own
// screen or command) gives three empty strings.
func ParseBy(by string) (user, sshClient, rule string) {
	if r := ruleOf(by); r != "" || by == "signing.auto_approve" {
		return "", "", by
	}
	for f := range strings.FieldsSeq(by) {
		if v, ok := strings.CutPrefix(f, "user="); ok && user == "" {
			user = v
		}
		if v, ok := strings.CutPrefix(f, "ssh_client="); ok && sshClient == "" {
			sshClient = v
		}
	}
	return user, sshClient, rule
}

// approvals lists who answered a signing request, in party order: this
// console's own answer, with who gave it (the By of its recorded input),
// and the others' approved partials and declines as its session saw them.
func (a *App) approvals(st *signState) []event.Approval {
	id, p := st.s.ID(), st.s.Progress()
	parties := st.key.key.Parties
	self := st.key.share.Self
	var out []event.Approval
	for j := uint32(1); int(j) <= len(parties); j++ {
		var decision string
		switch {
		case j == self && p.Decision == ceremony.DecisionPending:
			continue
		case j == self:
			decision = p.Decision.String()
		case slices.Contains(p.Approved, j):
			decision = "approved"
		case slices.Contains(p.Declined, j):
			decision = "declined"
		default:
			continue
		}
		ap := event.Approval{Signer: a.name(partyAddr(parties, j)), Decision: decision}
		if j == self {
			ap.User, ap.SSHClient, ap.Rule = ParseBy(a.answeredBy(id))
		}
		out = append(out, ap)
	}
	return out
}

// answeredBy is the By of this console's recorded answer to a ceremony
// ("" when it answered on its own screen or not at all; who asked, when
// asking was its approval).
func (a *App) answeredBy(id [32]byte) string {
	rec, ok := a.records[id]
	if !ok {
		return ""
	}
	if d := decisionOf(rec); d != nil {
		return d.By
	}
	return ""
}
