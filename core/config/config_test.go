package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The example documents every key; loading it proves it parses, has no key
// this code does not know, and passes validation.
func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	c, err := Load(filepath.Join("..", "..", "config.example.toml"), "/data", "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Keygen.Threshold != 2 || c.Keygen.Parties != 0 || c.Keygen.RoundTimeout.Duration != 10*time.Minute {
		t.Fatalf("keygen %+v", c.Keygen)
	}
	if c.Signing.AutoApprove {
		t.Fatal("the example turns auto-approval on")
	}
	if c.Device.DataDir != "/data" {
		t.Fatalf("data dir %q: an empty value must keep the default", c.Device.DataDir)
	}
}

// Every field of Config must appear in the example, so it documents them all.
func TestExampleDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "config.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		"url", "ca_file", "transport", "name", "data_dir", "passphrase_env", "key_file", "threshold", "parties",
		"round_timeout", "resend", "request_ttl", "approval_grace", "auto_approve", "file", "level", "format", "listen",
		"tls_cert", "tls_key", "registration_token", "allow_insecure_nonloopback",
	} {
		if !strings.Contains(string(b), "\n"+key+" = ") {
			t.Errorf("config.example.toml does not document %s", key)
		}
	}
}

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadConfigsAreRefusedNamingTheKey(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ body, want string }{
		"unknown key":                  {"[server]\nurll = \"x\"\n", "server.urll"},
		"unknown section":              {"[servre]\nurl = \"x\"\n", "servre"},
		"threshold > n":                {"[keygen]\nthreshold = 4\nparties = 3\n", "keygen.threshold"},
		"threshold 0":                  {"[keygen]\nthreshold = 0\n", "keygen.threshold"},
		"bad duration":                 {"[signing]\nrequest_ttl = \"soon\"\n", "request_ttl"},
		"tiny timeout":                 {"[keygen]\nround_timeout = \"10ms\"\n", "keygen.round_timeout"},
		"missing ca file":              {"[server]\nca_file = \"nope.pem\"\n", "server.ca_file"},
		"plain http remote":            {"[server]\nurl = \"http://example.org\"\n", "server.url"},
		"bad transport":                {"[server]\ntransport = \"h3\"\n", "server.transport"},
		"cert without key":             {"[relay]\ntls_cert = \"c.toml\"\n", "relay.tls_cert"},
		"bad level":                    {"[log]\nlevel = \"loud\"\n", "log.level"},
		"bad log format":               {"[log]\nformat = \"xml\"\n", "log.format"},
		"empty signing rule":           {"[[signing.rule]]\nrequester = \"a\"\n[[signing.rule]]\n", "signing.rule[1]: a rule needs"},
		"rate-only rule":               {"[[signing.rule]]\nmax_per_hour = 3\n", "signing.rule[0]: a rule needs"},
		"bad rule regex":               {"[[signing.rule]]\nmessage_regex = \"(\"\n", "signing.rule[0]: message_regex: "},
		"bad rule hex":                 {"[[signing.rule]]\nmessage_prefix_hex = \"0x0a\"\n", "signing.rule[0]: message_prefix_hex: "},
		"bad rule key":                 {"[[signing.rule]]\nkey = \"5eed-12\"\n", "signing.rule[0]: key: "},
		"negative rule rate":           {"[[signing.rule]]\nrequester = \"a\"\nmax_per_hour = -1\n", "signing.rule[0]: max_per_hour: "},
		"unknown rule key":             {"[[signing.rule]]\nrequester = \"a\"\n[[signing.rule]]\nrequestor = \"b\"\n", "signing.rule[1]: unknown key requestor"},
		"rule key type":                {"[[signing.rule]]\nmax_per_hour = \"ten\"\n", "max_per_hour"},
		"empty keygen rule":            {"[[keygen.rule]]\nverified_parties = false\n", "keygen.rule[0]: verified_parties: "},
		"unknown keygen key":           {"[[keygen.rule]]\nverified_parties = true\nall = true\n", "keygen.rule[0]: unknown key all"},
		"empty reshare rule":           {"[[reshare.rule]]\nverified_parties = false\n", "reshare.rule[0]: verified_parties: "},
		"unknown reshare key":          {"[[reshare.rule]]\nverified_parties = true\nall = true\n", "reshare.rule[0]: unknown key all"},
		"negative parties":             {"[keygen]\nparties = -1\n", "keygen.parties"},
		"wrong type":                   {"[keygen]\nthreshold = \"two\"\n", "threshold"},
		"long grace":                   {"[signing]\napproval_grace = \"1m\"\n", "signing.approval_grace"},
		"negative queue cap":           {"[relay]\nmax_queue = -1\n", "relay.max_queue"},
		"metrics no port":              {"[metrics]\nlisten = \"127.0.0.1\"\n", "metrics.listen"},
		"metrics empty port":           {"[metrics]\nlisten = \"127.0.0.1:\"\n", "metrics.listen"},
		"relay metrics port":           {"[relay]\nmetrics_listen = \"localhost\"\n", "relay.metrics_listen"},
		"server and servers":           {"[server]\nurl = \"https://a.example\"\n[[servers]]\nname = \"b\"\nurl = \"https://b.example\"\n", "servers: a file has either one [server] table"},
		"server transport and servers": {"[server]\ntransport = \"http1\"\n[[servers]]\nname = \"b\"\nurl = \"https://b.example\"\n", "not both"},
		"server without name":          {"[[servers]]\nurl = \"https://a.example\"\n", "servers[0].name"},
		"server bad name":              {"[[servers]]\nname = \"my relay\"\nurl = \"https://a.example\"\n", "servers[0].name"},
		"server names clash":           {"[[servers]]\nname = \"a\"\nurl = \"https://a.example\"\n[[servers]]\nname = \"a\"\nurl = \"https://b.example\"\n", "servers[1].name: \"a\" is also servers[0]'s"},
		"server without url":           {"[[servers]]\nname = \"a\"\n", "servers[0].url"},
		"one server twice": {"[[servers]]\nname = \"a\"\nurl = \"https://a.example\"\n[[servers]]\nname = \"b\"\nurl = \"HTTPS://A.example:443/\"\n",
			"servers[1].url: https://a.example is servers[0]'s server too"},
		"server url query":     {"[[servers]]\nname = \"a\"\nurl = \"https://a.example/?x=1\"\n", "servers[0].url"},
		"server plain http":    {"[[servers]]\nname = \"a\"\nurl = \"http://a.example\"\n", "servers[0].url: plain http"},
		"server bad transport": {"[[servers]]\nname = \"a\"\nurl = \"https://a.example\"\ntransport = \"h3\"\n", "servers[0].transport"},
		"server missing ca":    {"[[servers]]\nname = \"a\"\nurl = \"https://a.example\"\nca_file = \"nope.pem\"\n", "servers[0].ca_file"},
		"server unknown key":   {"[[servers]]\nname = \"a\"\nurl = \"https://a.example\"\nurll = \"x\"\n", "servers.urll"},
	}
	for name, c := range cases {
		_, err := Load(write(t, c.body), "/d", "")
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want an error naming %s", name, err, c.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.toml"), "/d", ""); !errors.Is(err, ErrConfig) {
		t.Errorf("missing file: %v", err)
	}
}

// The rules of the file reach the caller compiled, named in file order.
func TestRulesAreCompiledInOrder(t *testing.T) {
	t.Parallel()
	body := `[keygen]
[[keygen.rule]]
verified_parties = true
[signing]
auto_approve = false
[[signing.rule]]
requester = "alice"
key = "5eed1234"
message_prefix_hex = "0a0b"
message_regex = "^release v"
max_per_hour = 10
[[signing.rule]]
message_regex = "^hotfix"
[[reshare.rule]]
verified_parties = true
`
	c, err := Load(write(t, body), "/d", "")
	if err != nil {
		t.Fatal(err)
	}
	sr, kr := c.Signing.Rules(), c.Keygen.Rules()
	if len(sr) != 2 || sr[0].Name != "signing.rule[0]" || sr[1].Name != "signing.rule[1]" {
		t.Fatalf("signing rules %+v", sr)
	}
	if len(kr) != 1 || kr[0].Name != "keygen.rule[0]" {
		t.Fatalf("keygen rules %+v", kr)
	}
	if rr := c.Reshare.Rules(); len(rr) != 1 || rr[0].Name != "reshare.rule[0]" {
		t.Fatalf("reshare rules %+v", rr)
	}
	if c, err := Load(write(t, ""), "/d", ""); err != nil || len(c.Signing.Rules()) != 0 || len(c.Keygen.Rules()) != 0 {
		t.Fatalf("no rules: %v %v %v", err, c.Signing.Rules(), c.Keygen.Rules())
	}
}

// The example documents the rule keys (commented out: a copied example
// approves nothing by itself).
func TestExampleDocumentsTheRules(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "config.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"# [[signing.rule]]", "# [[keygen.rule]]", "# [[servers]]"} {
		if !strings.Contains(string(b), "\n"+line+"\n") {
			t.Errorf("config.example.toml does not show %s", line)
		}
	}
	for _, keys := range ruleKeys {
		for _, key := range keys {
			if !strings.Contains(string(b), "\n# "+key+" = ") {
				t.Errorf("config.example.toml does not document the rule key %s", key)
			}
		}
	}
}

func TestRelativePathsAreTakenFromTheFilesDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("x"), 0o600)
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte("[server]\nca_file = \"ca.pem\"\n"), 0o600)
	c, err := Load(p, "/d", "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.CAFile != filepath.Join(dir, "ca.pem") {
		t.Fatalf("ca_file %q", c.Server.CAFile)
	}
}

// The key file, the log and the relay's data live in the data directory
// unless the file names them: the one the file names, or the one the
// --data flag forces, never the default one.
func TestPathsInTheDataDirectoryFollowTheChosenOne(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, body, force string
		data, key, log    string
		relay             string
	}{
		{"the default", "", "", "/default", "/default/store.key", "/default/cosigner.log", "/default/relay"},
		{"the file's", "[device]\ndata_dir = \"/mine\"\n", "", "/mine", "/mine/store.key", "/mine/cosigner.log", "/mine/relay"},
		{"the file's, relative to it", "[device]\ndata_dir = \"state\"\n", "", filepath.Join(dir, "state"), filepath.Join(dir, "state", "store.key"),
			filepath.Join(dir, "state", "cosigner.log"), filepath.Join(dir, "state", "relay")},
		{"the flag's over the file's", "[device]\ndata_dir = \"/mine\"\n", "/flag", "/flag", "/flag/store.key", "/flag/cosigner.log", "/flag/relay"},
		{"named paths stay", "[device]\ndata_dir = \"/mine\"\n[store]\nkey_file = \"/keys/k\"\n[log]\nfile = \"/var/log/c.log\"\n[relay]\ndata_dir = \"/srv/relay\"\n",
			"/flag", "/flag", "/keys/k", "/var/log/c.log", "/srv/relay"},
	}
	for i, tc := range tests {
		p := filepath.Join(dir, fmt.Sprintf("c%d.toml", i))
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, "/default", tc.force)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.Device.DataDir != tc.data || c.Store.KeyFile != tc.key || c.Log.File != tc.log || c.Relay.DataDir != tc.relay {
			t.Errorf("%s: data %q, key file %q, log %q, relay %q; want %q, %q, %q, %q", tc.name,
				c.Device.DataDir, c.Store.KeyFile, c.Log.File, c.Relay.DataDir, tc.data, tc.key, tc.log, tc.relay)
		}
	}
}

// The [server] table is one server named "default"; [[servers]] blocks
// are the list, in file order, the first also in Server for the code made
// for one.
func TestServersAreListedInFileOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body string
		want       []NamedServer
	}{
		{"no file's server", "", []NamedServer{{Name: "default", Transport: "auto"}}},
		{"the [server] table", "[server]\nurl = \"https://Relay.example:443/\"\ntransport = \"http2\"\n",
			[]NamedServer{{Name: "default", URL: "https://Relay.example:443/", Transport: "http2", Canonical: "https://relay.example"}}},
		{"a [server] URL without a canonical form works as before", "[server]\nurl = \"https://relay.example/?x\"\n",
			[]NamedServer{{Name: "default", URL: "https://relay.example/?x", Transport: "auto"}}},
		{"[[servers]] blocks", "[[servers]]\nname = \"home\"\nurl = \"http://127.0.0.1:8443\"\nca_file = \"ca.pem\"\n" +
			"[[servers]]\nname = \"far\"\nurl = \"https://far.example\"\ntransport = \"http1\"\n",
			[]NamedServer{
				{Name: "home", URL: "http://127.0.0.1:8443", CAFile: filepath.Join(dir, "ca.pem"), Transport: "auto", Canonical: "http://127.0.0.1:8443"},
				{Name: "far", URL: "https://far.example", Transport: "http1", Canonical: "https://far.example"},
			}},
	}
	for i, tc := range tests {
		p := filepath.Join(dir, fmt.Sprintf("c%d.toml", i))
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, "/d", "")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := c.Servers(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: servers %+v, want %+v", tc.name, got, tc.want)
			continue
		}
		first := tc.want[0]
		if c.Server != (Server{URL: first.URL, CAFile: first.CAFile, Transport: first.Transport}) {
			t.Errorf("%s: server %+v is not the first of the list", tc.name, c.Server)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: validating the loaded file again: %v", tc.name, err)
		}
	}
}
