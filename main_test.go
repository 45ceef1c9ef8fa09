package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Known answer: sk 263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3
// signs 32 zero bytes in the POP ciphersuite.
const (
	kaPubkey    = "a491d1b0ecd9bb917989f0e74f0dea0422eac4a873e5e2644f368dffb9a6e20fd6e10c1b77654d067c0618f6e5a7f79a"
	kaSignature = "b6ed936746e01f8ecf281f020953fbf1f01debd5657c4a383940b020b26507f6076334f91e2366c96e9ab279fb5158090352ea1c5b0c9274504f4f0e7053af24802e51e4568d164fe986834f41e55c8e850ce1f98458c0cfc9ab380b55285a55"
	kaMessage   = "0000000000000000000000000000000000000000000000000000000000000000"
)

type result struct {
	code           int
	stdout, stderr string
}

func runArgs(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(""), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// check compares a result with the expected exit code and the strings each
// stream must contain. A want list of just "" means the stream must be empty.
func (r result) check(t *testing.T, code int, wantOut, wantErr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	checkStream(t, "stdout", r.stdout, wantOut)
	checkStream(t, "stderr", r.stderr, wantErr)
}

func checkStream(t *testing.T, name, got string, want []string) {
	t.Helper()
	for _, w := range want {
		switch {
		case w == "" && got != "":
			t.Errorf("%s should be empty, got %q", name, got)
		case !strings.Contains(got, w):
			t.Errorf("%s %q does not contain %q", name, got, w)
		}
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	verifyUsage := "Usage: cosigner verify --pubkey HEX --signature HEX (--message TEXT | --hex HEX)"
	tests := []struct {
		name             string
		args             []string
		code             int
		wantOut, wantErr []string
	}{
		{"help lists the commands", []string{"help"}, 0,
			[]string{"Commands:", "verify", "version", "help"}, []string{""}},
		{"--help lists the commands", []string{"--help"}, 0, []string{"verify", "version"}, []string{""}},
		{"-h lists the commands", []string{"-h"}, 0, []string{"verify", "version"}, []string{""}},
		{"the console without a configured server says what to set", []string{"--config", "testdata/empty.toml", "--data", "DATADIR"}, 1,
			[]string{""}, []string{"set server.url"}},
		{"help verify shows the verify usage", []string{"help", "verify"}, 0,
			[]string{verifyUsage, "--pubkey", "--signature", "--message", "--hex"}, []string{""}},
		{"verify --help shows the verify usage", []string{"verify", "--help"}, 0,
			[]string{verifyUsage}, []string{""}},
		{"verify -h shows the verify usage", []string{"verify", "-h"}, 0, []string{verifyUsage}, []string{""}},
		{"unknown command is a usage error", []string{"frobnicate"}, 2,
			[]string{""}, []string{`cosigner: unknown command "frobnicate"; run 'cosigner help'`}},
		{"help for an unknown command is a usage error", []string{"help", "frobnicate"}, 2,
			[]string{""}, []string{`unknown command "frobnicate"`}},
		{"help with two topics is a usage error", []string{"help", "verify", "version"}, 2,
			[]string{""}, []string{"too many arguments"}},
		{"version prints a version", []string{"version"}, 0, []string{"cosigner devel\n"}, []string{""}},
		{"version takes no arguments", []string{"version", "x"}, 2, []string{""}, []string{`unexpected argument "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := slices.Clone(tt.args)
			for i, a := range args {
				if a == "DATADIR" {
					args[i] = t.TempDir()
				}
			}
			runArgs(t, args...).check(t, tt.code, tt.wantOut, tt.wantErr)
		})
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	valid := "valid: signature verifies for this public key and message\n"
	doesNotVerify := "cosigner verify: invalid: signature does not verify for this public key and message\n"
	tests := []struct {
		name             string
		args             []string
		code             int
		wantOut, wantErr []string
	}{
		{"known answer verifies", []string{"--pubkey", kaPubkey, "--signature", kaSignature, "--hex", kaMessage}, 0,
			[]string{valid}, []string{""}},
		{"0x prefixes are accepted", []string{"--pubkey", "0x" + kaPubkey, "--signature", "0X" + kaSignature, "--hex", "0x" + kaMessage}, 0,
			[]string{valid}, []string{""}},
		{"flags in the -flag=value form", []string{"-pubkey=" + kaPubkey, "-signature=" + kaSignature, "-hex=" + kaMessage}, 0,
			[]string{valid}, []string{""}},
		{"wrong text message does not verify", []string{"--pubkey", kaPubkey, "--signature", kaSignature, "--message", "hello"}, 1,
			[]string{""}, []string{doesNotVerify}},
		{"text of the hex digits is not the hex message", []string{"--pubkey", kaPubkey, "--signature", kaSignature, "--message", kaMessage}, 1,
			[]string{""}, []string{doesNotVerify}},
		{"empty hex message is a message, and the wrong one", []string{"--pubkey", kaPubkey, "--signature", kaSignature, "--hex", ""}, 1,
			[]string{""}, []string{doesNotVerify}},
		{"public key not hex", []string{"--pubkey", "zz" + kaPubkey[2:], "--signature", kaSignature, "--hex", kaMessage}, 1,
			[]string{""}, []string{"cosigner verify: invalid: public key: not hex: invalid character 'z'\n"}},
		{"public key odd length", []string{"--pubkey", kaPubkey[1:], "--signature", kaSignature, "--hex", kaMessage}, 1,
			[]string{""}, []string{"invalid: public key: not hex: odd number of digits\n"}},
		{"public key short", []string{"--pubkey", kaPubkey[2:], "--signature", kaSignature, "--hex", kaMessage}, 1,
			[]string{""}, []string{"invalid: public key: wrong length: got 47 bytes, want 48\n"}},
		// x = 1: 1 + 4 is not a square mod p, so no point has this x.
		{"public key not on the curve", []string{"--pubkey", "80" + strings.Repeat("00", 46) + "01", "--signature", kaSignature, "--hex", kaMessage}, 1,
			[]string{""}, []string{"invalid: public key: not a point on the curve\n"}},
		// x = 4: 64 + 4 is a square, but the point is outside the r-torsion.
		{"public key outside the subgroup", []string{"--pubkey", "80" + strings.Repeat("00", 46) + "04", "--signature", kaSignature, "--hex", kaMessage}, 1,
			[]string{""}, []string{"invalid: public key: point not in the prime-order subgroup\n"}},
		{"identity public key", []string{"--pubkey", "c0" + strings.Repeat("00", 47), "--signature", kaSignature, "--hex", kaMessage}, 1,
			[]string{""}, []string{"invalid: public key: identity point\n"}},
		{"signature not hex", []string{"--pubkey", kaPubkey, "--signature", "0xg", "--hex", kaMessage}, 1,
			[]string{""}, []string{"invalid: signature: not hex"}},
		{"signature long", []string{"--pubkey", kaPubkey, "--signature", kaSignature + "00", "--hex", kaMessage}, 1,
			[]string{""}, []string{"invalid: signature: wrong length: got 97 bytes, want 96\n"}},
		{"identity signature", []string{"--pubkey", kaPubkey, "--signature", "c0" + strings.Repeat("00", 95), "--hex", kaMessage}, 1,
			[]string{""}, []string{"invalid: signature: identity point\n"}},
		{"message not hex", []string{"--pubkey", kaPubkey, "--signature", kaSignature, "--hex", "xyz"}, 1,
			[]string{""}, []string{"invalid: message: not hex"}},
		{"both --message and --hex", []string{"--pubkey", kaPubkey, "--signature", kaSignature, "--message", "a", "--hex", kaMessage}, 2,
			[]string{""}, []string{"--message or --hex, not both", "Usage: cosigner verify"}},
		{"neither --message nor --hex", []string{"--pubkey", kaPubkey, "--signature", kaSignature}, 2,
			[]string{""}, []string{"the message is required"}},
		{"no --pubkey", []string{"--signature", kaSignature, "--hex", kaMessage}, 2,
			[]string{""}, []string{"--pubkey is required"}},
		{"no --signature", []string{"--pubkey", kaPubkey, "--hex", kaMessage}, 2,
			[]string{""}, []string{"--signature is required"}},
		{"unknown flag", []string{"--pubkey", kaPubkey, "--sig", kaSignature, "--hex", kaMessage}, 2,
			[]string{""}, []string{"flag provided but not defined: -sig", "Usage: cosigner verify"}},
		{"stray argument", []string{"--pubkey", kaPubkey, "--signature", kaSignature, "--hex", kaMessage, "extra"}, 2,
			[]string{""}, []string{`unexpected argument "extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runArgs(t, append([]string{"verify"}, tt.args...)...).check(t, tt.code, tt.wantOut, tt.wantErr)
		})
	}
}

// TestVerifyVectors runs every "verify" case of the shared BLS vectors
// (generated with @noble/curves) through cosigner verify.
func TestVerifyVectors(t *testing.T) {
	t.Parallel()
	// The repository's copy of shared/testdata/bls-vectors.json; a test in
	// bls/internal/vectors keeps it identical to the original.
	path := filepath.Join("bls", "internal", "vectors", "bls-vectors.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the BLS vectors: %v", err)
	}
	var vectors struct {
		Sign []struct {
			Pk, Msg, Sig string
		}
		Verify []struct {
			Case, Pk, Msg, Sig string
			Valid              bool
		}
	}
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	if len(vectors.Verify) == 0 || len(vectors.Sign) == 0 {
		t.Fatalf("%s has no verify or no sign cases", path)
	}

	// Every signature of the "sign" cases is valid (the empty message among them).
	for i, v := range vectors.Sign {
		t.Run(fmt.Sprintf("sign case %d verifies", i), func(t *testing.T) {
			t.Parallel()
			r := runArgs(t, "verify", "--pubkey", v.Pk, "--signature", v.Sig, "--hex", v.Msg)
			r.check(t, 0, []string{"valid: signature verifies"}, []string{""})
		})
	}

	// The reason each invalid case must give, by case name. A case missing
	// here fails the test, so a new vector gets an expectation.
	reasons := map[string]string{
		"wrong key":                                  "signature does not verify for this public key and message",
		"wrong message":                              "signature does not verify for this public key and message",
		"signature under the NUL ciphersuite":        "signature does not verify for this public key and message",
		"identity public key and identity signature": "public key: identity point",
		"public key without compression flag":        "public key: invalid encoding: compression flag not set",
		"truncated signature":                        "signature: wrong length: got 95 bytes, want 96",
	}
	for _, v := range vectors.Verify {
		t.Run(v.Case, func(t *testing.T) {
			t.Parallel()
			r := runArgs(t, "verify", "--pubkey", v.Pk, "--signature", v.Sig, "--hex", v.Msg)
			if v.Valid {
				r.check(t, 0, []string{"valid: signature verifies"}, []string{""})
				return
			}
			reason, ok := reasons[v.Case]
			if !ok {
				t.Fatalf("no expected reason for invalid case %q: add one to the table", v.Case)
			}
			r.check(t, 1, []string{""}, []string{"cosigner verify: invalid: " + reason + "\n"})
		})
	}
}

// TestVerifyUsageNamesEveryFlag keeps the hand-written usage text in step
// with the flags the command defines.
func TestVerifyUsageNamesEveryFlag(t *testing.T) {
	t.Parallel()
	fs, _ := newVerifyFlags(io.Discard)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(verifyCommand.usage, "--"+f.Name+" ") {
			t.Errorf("verify usage does not document --%s", f.Name)
		}
	})
	if n == 0 {
		t.Fatal("verify defines no flags")
	}
}

// TestCommandsAreDocumented checks the command table: unique names, and a
// summary and a usage starting with the synopsis for each.
func TestCommandsAreDocumented(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, c := range commands {
		if seen[c.name] {
			t.Errorf("command %q listed twice", c.name)
		}
		seen[c.name] = true
		if c.summary == "" || strings.Contains(c.summary, "\n") {
			t.Errorf("command %q: summary must be one non-empty line, got %q", c.name, c.summary)
		}
		if !strings.HasPrefix(c.usage, "Usage: cosigner "+c.name) {
			t.Errorf("command %q: usage must start with its synopsis, got %q", c.name, c.usage)
		}
		if c.run == nil {
			t.Errorf("command %q has no run function", c.name)
		}
	}
}
