package core

// Approval rules: which signing requests and keygen proposals this console
// approves without asking a person. The matcher is pure: the App gives it
// the facts of a request and the rate counts, it answers which rule (if
// any) approves.

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/core/ceremony"
)

// RateWindow is the rolling window of a rule's max_per_hour.
const RateWindow = time.Hour

// SigningRuleSpec is one [[signing.rule]] as the configuration writes it.
// An empty string or a zero is a field left out.
type SigningRuleSpec struct {
	Requester        string // a roster name
	Key              string // a key id prefix, hex
	MessagePrefixHex string // the message starts with these bytes
	MessageRegex     string // Go regexp over the message as UTF-8 text, unanchored
	MaxPerHour       int    // approvals per requester in a rolling hour
}

// KeygenRuleSpec is one [[keygen.rule]] as the configuration writes it.
type KeygenRuleSpec struct {
	VerifiedParties bool // approve proposals whose parties are all verified
}

// SigningRule is a compiled [[signing.rule]]: every field it sets must
// match.
type SigningRule struct {
	Name       string // "signing.rule[i]": recorded as Input.By of its approvals
	requester  string
	key        string // lower-case hex prefix
	prefix     []byte
	re         *regexp.Regexp
	maxPerHour int
}

// KeygenRule is a compiled [[keygen.rule]].
type KeygenRule struct {
	Name string // "keygen.rule[i]"
}

// RuleError is a rule that cannot be compiled; it names the rule and the
// field ("signing.rule[1]: message_regex: ..."). It is an ErrConfig.
type RuleError struct {
	Rule   string // "signing.rule[1]"
	Field  string // the TOML key at fault; empty for the whole rule
	Reason string
}

func (e *RuleError) Error() string {
	if e.Field == "" {
		return e.Rule + ": " + e.Reason
	}
	return e.Rule + ": " + e.Field + ": " + e.Reason
}

// Is makes a RuleError an ErrConfig.
func (e *RuleError) Is(target error) bool { return target == ErrConfig }

// SigningRuleName is the name of the i-th [[signing.rule]].
func SigningRuleName(i int) string { return fmt.Sprintf("signing.rule[%d]", i) }

// KeygenRuleName is the name of the i-th [[keygen.rule]].
func KeygenRuleName(i int) string { return fmt.Sprintf("keygen.rule[%d]", i) }

// CompileSigningRules compiles the [[signing.rule]] list; the error names
// the rule and its field ("signing.rule[1]: message_regex: ...").
func CompileSigningRules(specs []SigningRuleSpec) ([]*SigningRule, error) {
	out := make([]*SigningRule, 0, len(specs))
	for i, s := range specs {
		r, err := compileSigningRule(SigningRuleName(i), s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func compileSigningRule(name string, s SigningRuleSpec) (*SigningRule, error) {
	bad := func(field, format string, args ...any) error {
		return &RuleError{Rule: name, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	r := &SigningRule{Name: name, requester: s.Requester, maxPerHour: s.MaxPerHour}
	if s.Requester == "" && s.Key == "" && s.MessagePrefixHex == "" && s.MessageRegex == "" {
		// max_per_hour only limits: alone it would approve anything.
		return nil, bad("", "a rule needs at least one of requester, key, message_prefix_hex, message_regex")
	}
	if s.Key != "" {
		k := strings.ToLower(s.Key)
		if len(k) > 64 || strings.Trim(k, "0123456789abcdef") != "" {
			return nil, bad("key", "%q is not a hex key id prefix", s.Key)
		}
		r.key = k
	}
	if s.MessagePrefixHex != "" {
		b, err := hex.DecodeString(s.MessagePrefixHex)
		if err != nil {
			return nil, bad("message_prefix_hex", "%v", err)
		}
		r.prefix = b
	}
	if s.MessageRegex != "" {
		re, err := regexp.Compile(s.MessageRegex)
		if err != nil {
			return nil, bad("message_regex", "%v", err)
		}
		r.re = re
	}
	if s.MaxPerHour < 0 {
		return nil, bad("max_per_hour", "%d, want 1 or more (or leave it out)", s.MaxPerHour)
	}
	return r, nil
}

// CompileKeygenRules compiles the [[keygen.rule]] list.
func CompileKeygenRules(specs []KeygenRuleSpec) ([]*KeygenRule, error) {
	out := make([]*KeygenRule, 0, len(specs))
	for i, s := range specs {
		name := KeygenRuleName(i)
		if !s.VerifiedParties {
			return nil, &RuleError{Rule: name, Field: "verified_parties", Reason: "a keygen rule needs verified_parties = true"}
		}
		out = append(out, &KeygenRule{Name: name})
	}
	return out, nil
}

// SignFacts is what the signing rules look at.
type SignFacts struct {
	// Requester is the roster name of the requester when it is a verified
	// member that is not blocked (and holds the keys the key pinned);
	// else "".
	Requester string
	// RequesterID identifies the requester for max_per_hour (its Signal
	// address), verified or not.
	RequesterID string
	KeyID       [32]byte
	Keys        [][32]byte // every key this console holds (for key prefixes)
	Message     []byte
	// Used counts the approvals rule gave requester in the last RateWindow.
	Used func(rule, requester string) int
}

// MatchSigning returns the first rule that approves the request. notes
// say why a rule that could have matched did not, where an operator would
// want to know (an ambiguous key prefix, a rate reached).
func MatchSigning(rules []*SigningRule, f SignFacts) (name string, ok bool, notes []string) {
	for _, r := range rules {
		match, note := r.match(f)
		if note != "" {
			notes = append(notes, r.Name+": "+note)
		}
		if match {
			return r.Name, true, notes
		}
	}
	return "", false, notes
}

func (r *SigningRule) match(f SignFacts) (bool, string) {
	if r.requester != "" && (f.Requester == "" || f.Requester != r.requester) {
		return false, ""
	}
	if r.prefix != nil && !strings.HasPrefix(string(f.Message), string(r.prefix)) {
		return false, ""
	}
	if r.re != nil && (!utf8.Valid(f.Message) || !r.re.Match(f.Message)) {
		return false, ""
	}
	if r.key != "" {
		match := KeysWithPrefix(f.Keys, r.key)
		hits, want := len(match), slices.Contains(match, f.KeyID)
		switch {
		case hits > 1:
			return false, fmt.Sprintf("key prefix %s matches %d keys: no match", r.key, hits)
		case hits == 0:
			return false, fmt.Sprintf("key prefix %s matches no key", r.key)
		case !want:
			return false, ""
		}
	}
	if r.maxPerHour > 0 && f.Used != nil {
		if n := f.Used(r.Name, f.RequesterID); n >= r.maxPerHour {
			return false, fmt.Sprintf("max_per_hour %d reached for %s", r.maxPerHour, f.RequesterID)
		}
	}
	return true, ""
}

// MatchKeygen returns the first rule that approves a keygen proposal;
// allVerified: every party is a verified roster member, none blocked.
func MatchKeygen(rules []*KeygenRule, allVerified bool) (string, bool) {
	if !allVerified || len(rules) == 0 {
		return "", false
	}
	return rules[0].Name, true
}

// limited reports whether the rule named name has a max_per_hour: only
// those rules' approvals are counted (an unlimited rule's would pile up).
func limited(rules []*SigningRule, name string) bool {
	for _, r := range rules {
		if r.Name == name {
			return r.maxPerHour > 0
		}
	}
	return false
}

// ruleUses counts the approvals each rule gave each requester, over a
// rolling RateWindow. Loop-owned.
type ruleUses map[[2]string][]time.Time

func (u ruleUses) add(rule, requester string, at time.Time) {
	k := [2]string{rule, requester}
	u[k] = append(u[k], at)
}

// count returns the uses within RateWindow before now, dropping older ones.
func (u ruleUses) count(rule, requester string, now time.Time) int {
	k := [2]string{rule, requester}
	ts := u[k]
	kept := ts[:0]
	for _, t := range ts {
		if now.Sub(t) < RateWindow {
			kept = append(kept, t)
		}
	}
	if len(kept) == 0 {
		delete(u, k)
		return 0
	}
	u[k] = kept
	return len(kept)
}

// ruleOf returns by when it names an approval rule (Input.By of a rule's
// approval), else "".
func ruleOf(by string) string {
	if strings.HasPrefix(by, "signing.rule[") || strings.HasPrefix(by, "keygen.rule[") || strings.HasPrefix(by, "reshare.rule[") {
		return by
	}
	return ""
}

// verifiedName returns the roster name of party p when it is a verified
// member, not blocked, whose pinned keys are the party's; else "".
func (a *App) verifiedName(p dkg.Party) string {
	name := a.cfg.Roster.NameOf(p.Account, p.Device)
	if name == "" {
		return ""
	}
	m, ok := a.cfg.Roster.Lookup(name)
	if !ok || !m.Verified || m.Blocked() ||
		!bytes.Equal(m.Card.IdentityKey, p.IdentityKey) || !bytes.Equal(m.Card.ConsoleKey, p.ConsoleKey) {
		return ""
	}
	return name
}

// signByRule approves a request this console just saw live when a signing
// rule matches it. Only live requests: one restored at start was seen (and
// not approved by a rule) before, so it waits for a person.
func (a *App) signByRule(ctx context.Context, st *signState) {
	if len(a.cfg.SigningRules) == 0 {
		return
	}
	id, req, p := st.s.ID(), st.s.Request(), st.s.Progress()
	parties := st.key.key.Parties
	who := partyAddr(parties, p.Requester)
	f := SignFacts{RequesterID: who.String(), KeyID: st.key.key.ID, Message: req.Message,
		Used: func(rule, requester string) int { return a.uses.count(rule, requester, a.now()) }}
	if p.Requester >= 1 && int(p.Requester) <= len(parties) {
		f.Requester = a.verifiedName(parties[p.Requester-1])
	}
	for k := range a.keys {
		f.Keys = append(f.Keys, k)
	}
	name, ok, notes := MatchSigning(a.cfg.SigningRules, f)
	for _, n := range notes {
		a.log.Info("signing rule did not approve", "request", ceremony.ShortID(id), "why", n)
	}
	if !ok {
		return
	}
	if err := a.decide(ctx, id, true, "", name); err != nil {
		a.log.Warn("approval by rule failed", "request", ceremony.ShortID(id), "rule", name, "err", err)
		return
	}
	if limited(a.cfg.SigningRules, name) {
		a.uses.add(name, who.String(), a.now())
	}
	a.log.Info("approved by rule", "request", ceremony.ShortID(id), "rule", name, "requester", a.name(who), "key", ceremony.ShortID(st.key.key.ID))
}

// keygenByRule accepts a proposal this console just saw live when a
// keygen rule exists and every party is verified.
func (a *App) keygenByRule(ctx context.Context, st *keygenState) {
	if len(a.cfg.KeygenRules) == 0 {
		return
	}
	id := st.s.ID()
	all := true
	for _, p := range st.s.Proposal().Parties {
		all = all && a.verifiedName(p) != ""
	}
	name, ok := MatchKeygen(a.cfg.KeygenRules, all)
	if !ok {
		a.log.Info("keygen rule did not approve: a party is not verified", "ceremony", ceremony.ShortID(id))
		return
	}
	if err := a.decide(ctx, id, true, "", name); err != nil {
		a.log.Warn("approval by rule failed", "ceremony", ceremony.ShortID(id), "rule", name, "err", err)
		return
	}
	a.log.Info("accepted by rule", "ceremony", ceremony.ShortID(id), "rule", name)
}

// noteRuleUses counts, at restore, the approvals a signing rule gave in
// the last RateWindow, so that max_per_hour survives a restart.
func (a *App) noteRuleUses(st *signState, r *CeremonyRecord) {
	now := a.now()
	for _, in := range r.Inputs {
		if in.Kind != InputAccept || !limited(a.cfg.SigningRules, in.By) || now.Sub(in.Time) >= RateWindow {
			continue
		}
		who := partyAddr(st.key.key.Parties, st.s.Progress().Requester)
		a.uses.add(in.By, who.String(), in.Time)
	}
}
