package core

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func mustRules(t *testing.T, specs ...SigningRuleSpec) []*SigningRule {
	t.Helper()
	rs, err := CompileSigningRules(specs)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestSigningRuleMatchers(t *testing.T) {
	t.Parallel()
	k1 := [32]byte{0x5e, 0xed, 0x12, 0x34}
	k2 := [32]byte{0x5e, 0xed, 0x99}
	k3 := [32]byte{0xab}
	base := SignFacts{Requester: "alice", RequesterID: "a.2", KeyID: k1, Keys: [][32]byte{k1, k2, k3}, Message: []byte("release v1.2")}
	with := func(f func(*SignFacts)) SignFacts { c := base; f(&c); return c }
	tests := []struct {
		name  string
		spec  SigningRuleSpec
		facts SignFacts
		want  bool
		note  string // a part of the note, when one is expected
	}{
		{"requester matches a verified member", SigningRuleSpec{Requester: "alice"}, base, true, ""},
		{"requester differs", SigningRuleSpec{Requester: "bob"}, base, false, ""},
		{"requester not verified or blocked never matches", SigningRuleSpec{Requester: "alice"}, with(func(f *SignFacts) { f.Requester = "" }), false, ""},
		{"unique key prefix matches its key", SigningRuleSpec{Key: "5eed1234"}, base, true, ""},
		{"key prefix is case-insensitive", SigningRuleSpec{Key: "5EED12"}, base, true, ""},
		{"unique key prefix of another key", SigningRuleSpec{Key: "ab"}, base, false, ""},
		{"ambiguous key prefix never matches", SigningRuleSpec{Key: "5eed"}, base, false, "matches 2 keys"},
		{"unknown key prefix never matches", SigningRuleSpec{Key: "ffff"}, base, false, "matches no key"},
		{"message prefix matches", SigningRuleSpec{MessagePrefixHex: "72656c"}, base, true, ""},
		{"message prefix differs", SigningRuleSpec{MessagePrefixHex: "0a0b"}, base, false, ""},
		{"message prefix longer than the message", SigningRuleSpec{MessagePrefixHex: "72656c656173652076312e3200"}, base, false, ""},
		{"regex matches unanchored", SigningRuleSpec{MessageRegex: `v1\.2`}, base, true, ""},
		{"regex anchored by the rule", SigningRuleSpec{MessageRegex: `^v1`}, base, false, ""},
		{"regex never matches invalid UTF-8", SigningRuleSpec{MessageRegex: `.*`}, with(func(f *SignFacts) { f.Message = []byte{0xff, 'a'} }), false, ""},
		{"hex prefix matches invalid UTF-8", SigningRuleSpec{MessagePrefixHex: "ff"}, with(func(f *SignFacts) { f.Message = []byte{0xff, 'a'} }), true, ""},
		{"all fields match (AND)", SigningRuleSpec{Requester: "alice", Key: "5eed12", MessagePrefixHex: "72", MessageRegex: "^release v"}, base, true, ""},
		{"one field fails the rule (AND)", SigningRuleSpec{Requester: "alice", Key: "5eed12", MessageRegex: "^hotfix"}, base, false, ""},
		{"under max_per_hour", SigningRuleSpec{Requester: "alice", MaxPerHour: 2}, with(func(f *SignFacts) { f.Used = func(string, string) int { return 1 } }), true, ""},
		{"at max_per_hour", SigningRuleSpec{Requester: "alice", MaxPerHour: 2}, with(func(f *SignFacts) { f.Used = func(string, string) int { return 2 } }), false, "max_per_hour 2 reached"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name, ok, notes := MatchSigning(mustRules(t, tc.spec), tc.facts)
			if ok != tc.want {
				t.Fatalf("match %v, want %v (notes %v)", ok, tc.want, notes)
			}
			if ok && name != "signing.rule[0]" {
				t.Fatalf("rule %q", name)
			}
			if tc.note != "" && (len(notes) != 1 || !strings.Contains(notes[0], tc.note) || !strings.HasPrefix(notes[0], "signing.rule[0]: ")) {
				t.Fatalf("notes %q, want one with %q", notes, tc.note)
			}
			if tc.note == "" && len(notes) != 0 {
				t.Fatalf("unexpected notes %q", notes)
			}
		})
	}
}

func TestAnySigningRuleSufficesAndNamesItself(t *testing.T) {
	t.Parallel()
	rules := mustRules(t, SigningRuleSpec{Requester: "bob"}, SigningRuleSpec{MessageRegex: "^release"}, SigningRuleSpec{Requester: "alice"})
	name, ok, _ := MatchSigning(rules, SignFacts{Requester: "alice", Message: []byte("release v2")})
	if !ok || name != "signing.rule[1]" {
		t.Fatalf("got %q %v, want the first matching rule, signing.rule[1]", name, ok)
	}
	if _, ok, _ := MatchSigning(rules, SignFacts{Requester: "carol", Message: []byte("hotfix")}); ok {
		t.Fatal("no rule matches, yet approved")
	}
	if _, ok, _ := MatchSigning(nil, SignFacts{Requester: "alice"}); ok {
		t.Fatal("no rules approved")
	}
}

func TestRateCountsPerRuleAndRequester(t *testing.T) {
	t.Parallel()
	rules := mustRules(t, SigningRuleSpec{MessageRegex: "x", MaxPerHour: 1}, SigningRuleSpec{MessageRegex: "x", MaxPerHour: 1})
	u := ruleUses{}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	facts := func(who string) SignFacts {
		return SignFacts{RequesterID: who, Message: []byte("x"), Used: func(r, q string) int { return u.count(r, q, now) }}
	}
	u.add("signing.rule[0]", "alice", now.Add(-59*time.Minute))
	if name, _, _ := MatchSigning(rules, facts("alice")); name != "signing.rule[1]" {
		t.Fatalf("alice: %q, want rule 1 (rule 0 used up)", name)
	}
	if name, _, _ := MatchSigning(rules, facts("bob")); name != "signing.rule[0]" {
		t.Fatalf("bob: %q, want rule 0 (alice's count is hers)", name)
	}
	u.add("signing.rule[1]", "alice", now)
	if _, ok, _ := MatchSigning(rules, facts("alice")); ok {
		t.Fatal("alice approved past both limits")
	}
	now = now.Add(2 * time.Minute) // rule 0's use is over an hour old
	if name, _, _ := MatchSigning(rules, facts("alice")); name != "signing.rule[0]" {
		t.Fatalf("an hour later: %q, want rule 0", name)
	}
}

func TestBadRulesAreRefusedByName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		specs []SigningRuleSpec
		want  string
	}{
		{"empty rule", []SigningRuleSpec{{Requester: "a"}, {}}, "signing.rule[1]: a rule needs"},
		{"only a rate", []SigningRuleSpec{{MaxPerHour: 3}}, "signing.rule[0]: a rule needs"},
		{"bad regex", []SigningRuleSpec{{Requester: "a"}, {MessageRegex: "("}}, "signing.rule[1]: message_regex: "},
		{"bad hex", []SigningRuleSpec{{MessagePrefixHex: "0g"}}, "signing.rule[0]: message_prefix_hex: "},
		{"odd hex", []SigningRuleSpec{{MessagePrefixHex: "0a0"}}, "signing.rule[0]: message_prefix_hex: "},
		{"bad key", []SigningRuleSpec{{Key: "xyz"}}, "signing.rule[0]: key: "},
		{"negative rate", []SigningRuleSpec{{Requester: "a", MaxPerHour: -1}}, "signing.rule[0]: max_per_hour: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := CompileSigningRules(tc.specs)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrConfig with %q", err, tc.want)
			}
		})
	}
	if _, err := CompileKeygenRules([]KeygenRuleSpec{{VerifiedParties: true}, {}}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "keygen.rule[1]") {
		t.Fatalf("empty keygen rule: %v", err)
	}
}

func TestKeygenRuleNeedsEveryPartyVerified(t *testing.T) {
	t.Parallel()
	rules, err := CompileKeygenRules([]KeygenRuleSpec{{VerifiedParties: true}})
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := MatchKeygen(rules, true); !ok || name != "keygen.rule[0]" {
		t.Fatalf("all verified: %q %v", name, ok)
	}
	if _, ok := MatchKeygen(rules, false); ok {
		t.Fatal("approved with an unverified party")
	}
	if _, ok := MatchKeygen(nil, true); ok {
		t.Fatal("approved without a keygen rule")
	}
}

// Rules come from a file and messages from peers: neither may panic the
// matcher, and a compiled rule must never match invalid UTF-8 by regex.
func FuzzSigningRule(f *testing.F) {
	f.Add("alice", "5eed", "0a0b", "^release v", 3, []byte("release v1"))
	f.Add("", "", "", ".*", 0, []byte{0xff})
	f.Fuzz(func(t *testing.T, requester, key, prefix, re string, max int, msg []byte) {
		rules, err := CompileSigningRules([]SigningRuleSpec{{Requester: requester, Key: key, MessagePrefixHex: prefix, MessageRegex: re, MaxPerHour: max}})
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v is not ErrConfig", err)
			}
			return
		}
		k := [32]byte{0x5e, 0xed}
		_, ok, _ := MatchSigning(rules, SignFacts{Requester: "alice", RequesterID: "a", KeyID: k, Keys: [][32]byte{k}, Message: msg,
			Used: func(string, string) int { return 0 }})
		if ok && re != "" && !utf8.Valid(msg) {
			t.Fatalf("regex %q matched invalid UTF-8 %x", re, msg)
		}
	})
}
