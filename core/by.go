package core

import "strings"

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
