package core

import "fmt"

// ReshareRuleSpec is one [[reshare.rule]] as the configuration writes it.
type ReshareRuleSpec struct {
	VerifiedParties bool // accept reshares, refreshes and imports whose parties are all verified
}

// ReshareRule is a compiled [[reshare.rule]]. signing.auto_approve never
// covers a reshare: only such a rule, or a person, accepts one.
type ReshareRule struct {
	Name string // "reshare.rule[i]"
}

// ReshareRuleName is the name of the i-th [[reshare.rule]].
func ReshareRuleName(i int) string { return fmt.Sprintf("reshare.rule[%d]", i) }

// CompileReshareRules compiles the [[reshare.rule]] list.
func CompileReshareRules(specs []ReshareRuleSpec) ([]*ReshareRule, error) {
	out := make([]*ReshareRule, 0, len(specs))
	for i, s := range specs {
		name := ReshareRuleName(i)
		if !s.VerifiedParties {
			return nil, &RuleError{Rule: name, Field: "verified_parties", Reason: "a reshare rule needs verified_parties = true"}
		}
		out = append(out, &ReshareRule{Name: name})
	}
	return out, nil
}

// MatchReshare returns the first rule that accepts a reshare proposal;
// allVerified: every participant is a verified roster member, none blocked.
func MatchReshare(rules []*ReshareRule, allVerified bool) (string, bool) {
	if !allVerified || len(rules) == 0 {
		return "", false
	}
	return rules[0].Name, true
}
