// Package config loads cosigner's TOML configuration strictly: an unknown
// key is an error that names it, every value is validated, and defaults are
// filled in one place. config.example.toml at the repository root documents
// every key; a test loads it so it cannot drift from this code.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/roster"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("config")

// Duration is a time.Duration written as a string ("90s", "10m").
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config is the whole configuration.
type Config struct {
	// Server is the [server] table or, in a file with [[servers]], the
	// first of them: the code made for one server reads it.
	Server Server `toml:"server"`
	// ServerBlocks are the [[servers]] blocks; see Servers for the list
	// the console uses.
	ServerBlocks []NamedServer `toml:"servers"`

	Device  Device  `toml:"device"`
	Store   Store   `toml:"store"`
	Keygen  Keygen  `toml:"keygen"`
	Signing Signing `toml:"signing"`
	Log     Log     `toml:"log"`
	Relay   Relay   `toml:"relay"`
	API     API     `toml:"api"`
	Metrics Metrics `toml:"metrics"`
	Reshare Reshare `toml:"reshare"`
}

// Reshare holds the approval rules of reshares, refreshes and imports.
// signing.auto_approve never covers them.
type Reshare struct {
	// Rule ([[reshare.rule]]) lists when a proposal is accepted without
	// asking.
	Rule []KeygenRule `toml:"rule"`

	compiled []*core.ReshareRule
}

// Rules returns the [[reshare.rule]] list compiled by Validate.
func (r *Reshare) Rules() []*core.ReshareRule { return r.compiled }

// Metrics is the console's and the daemon's Prometheus listener. The
// relay has its own (relay.metrics_listen), so that one file can serve a
// console and a relay on one machine without a clash of ports.
type Metrics struct {
	// Listen, when set, serves /metrics, /healthz and /readyz over plain
	// HTTP at this address (e.g. "127.0.0.1:9464"). Empty: off.
	Listen string `toml:"listen"`
}

// API is the local socket API (DATA/cosigner.sock, mode 0600) that the
// process owning the store serves: attached consoles and scripts.
type API struct {
	// Approve: whoever can connect may approve and decline, and what it
	// asks for counts as this signer's approval. Off: the socket asks and
	// reads only; its signing requests wait in this signer's queue.
	Approve bool `toml:"approve"`
	// Group, when set, names a system group whose members may use the
	// socket too: it is then <data_dir>/api/cosigner.sock, mode 0660, and
	// the data directory and api/ let that group through (0710) without
	// listing them; every file stays the owner's.
	Group string `toml:"group"`
}

// Server is the Signal-compatible server this console talks through.
type Server struct {
	URL       string `toml:"url"`
	CAFile    string `toml:"ca_file"`
	Transport string `toml:"transport"`
}

// DefaultServer is the name of the server a [server] table configures.
const DefaultServer = "default"

// NamedServer is one Signal-compatible server of the console: a
// [[servers]] block, or the [server] table named DefaultServer.
type NamedServer struct {
	// Name is a local label (logs, commands). Consoles know a shared
	// server by its canonical URL, never by its name.
	Name      string `toml:"name"`
	URL       string `toml:"url"`
	CAFile    string `toml:"ca_file"`
	Transport string `toml:"transport"`
	// Canonical is URL's canonical form (roster.CanonicalServer), the
	// one a card carries: set by Servers, "" when the URL has none (a
	// [server] URL checked only as before).
	Canonical string `toml:"-"`
}

// Servers returns the servers this console uses, in file order: the
// [[servers]] blocks, or else the [server] table as one server named
// "default" (its URL may be empty: not configured yet).
func (c *Config) Servers() []NamedServer {
	list := slices.Clone(c.ServerBlocks)
	if len(list) == 0 {
		list = []NamedServer{{Name: DefaultServer, URL: c.Server.URL, CAFile: c.Server.CAFile, Transport: c.Server.Transport}}
	}
	for i := range list {
		list[i].Canonical, _ = roster.CanonicalServer(list[i].URL)
	}
	return list
}

// Device is this console as a Signal device.
type Device struct {
	Name    string `toml:"name"`
	DataDir string `toml:"data_dir"`
}

// Store says how secrets at rest are keyed.
type Store struct {
	PassphraseEnv string `toml:"passphrase_env"`
	KeyFile       string `toml:"key_file"`
}

// Keygen holds the defaults of key generation.
type Keygen struct {
	Threshold int `toml:"threshold"`
	// Parties is the roster size a keygen requires; 0: whatever the roster
	// holds.
	Parties      int      `toml:"parties"`
	RoundTimeout Duration `toml:"round_timeout"`
	Resend       Duration `toml:"resend"`
	// Rule ([[keygen.rule]]) lists when a proposal is accepted without
	// asking.
	Rule []KeygenRule `toml:"rule"`

	compiled []*core.KeygenRule
}

// KeygenRule is one [[keygen.rule]].
type KeygenRule struct {
	// VerifiedParties: accept proposals whose parties are all verified
	// roster members, none blocked.
	VerifiedParties bool `toml:"verified_parties"`
}

// Rules returns the [[keygen.rule]] list compiled by Validate.
func (k *Keygen) Rules() []*core.KeygenRule { return k.compiled }

// Signing holds the signing policy.
type Signing struct {
	RequestTTL    Duration `toml:"request_ttl"`
	ApprovalGrace Duration `toml:"approval_grace"`
	// AutoApprove approves every request and proposal; deprecated by
	// [[signing.rule]] and [[keygen.rule]].
	AutoApprove bool     `toml:"auto_approve"`
	Resend      Duration `toml:"resend"`
	// Rule ([[signing.rule]]) lists which signing requests are approved
	// without asking; any one rule suffices, all its fields must match.
	Rule []SigningRule `toml:"rule"`

	compiled []*core.SigningRule
}

// SigningRule is one [[signing.rule]]; a field left out matches anything,
// but a rule must set one of the first four.
type SigningRule struct {
	Requester        string `toml:"requester"`          // a roster name: a verified member, not blocked
	Key              string `toml:"key"`                // a key id prefix that names exactly one key
	MessagePrefixHex string `toml:"message_prefix_hex"` // the message starts with these bytes
	MessageRegex     string `toml:"message_regex"`      // Go regexp over the message as UTF-8, unanchored
	MaxPerHour       int    `toml:"max_per_hour"`       // per requester, rolling hour; 0: no limit
}

// Rules returns the [[signing.rule]] list compiled by Validate.
func (s *Signing) Rules() []*core.SigningRule { return s.compiled }

// ruleKeys are the keys a rule table may hold.
var ruleKeys = map[string][]string{
	"signing.rule": {"requester", "key", "message_prefix_hex", "message_regex", "max_per_hour"},
	"keygen.rule":  {"verified_parties"},
	"reshare.rule": {"verified_parties"},
}

// checkRuleKeys refuses an unknown key in a rule table, naming the rule
// ("signing.rule[1]: unknown key foo"): the general check below names the
// key but not which rule holds it.
func checkRuleKeys(text string) error {
	var raw struct {
		Signing struct {
			Rule []map[string]any `toml:"rule"`
		} `toml:"signing"`
		Keygen struct {
			Rule []map[string]any `toml:"rule"`
		} `toml:"keygen"`
		Reshare struct {
			Rule []map[string]any `toml:"rule"`
		} `toml:"reshare"`
	}
	if _, err := toml.Decode(text, &raw); err != nil {
		return err
	}
	for table, rules := range map[string][]map[string]any{"signing.rule": raw.Signing.Rule, "keygen.rule": raw.Keygen.Rule, "reshare.rule": raw.Reshare.Rule} {
		for i, r := range rules {
			for k := range r {
				if !slices.Contains(ruleKeys[table], k) {
					return fmt.Errorf("%s[%d]: unknown key %s", table, i, k)
				}
			}
		}
	}
	return nil
}

// Log says where log lines go (the file while the console owns the
// terminal, else stderr), from which level, and in which format.
type Log struct {
	File   string `toml:"file"`
	Level  string `toml:"level"`
	Format string `toml:"format"` // "text" (key=value) or "json" (one object a line)
}

// Relay configures `cosigner relay`.
type Relay struct {
	Listen                    string  `toml:"listen"`
	DataDir                   string  `toml:"data_dir"`
	TLSCert                   string  `toml:"tls_cert"`
	TLSKey                    string  `toml:"tls_key"`
	RegistrationToken         string  `toml:"registration_token"`
	AllowInsecureNonLoopback  bool    `toml:"allow_insecure_nonloopback"`
	MessageRate               float64 `toml:"message_rate"`
	MessageBurst              int     `toml:"message_burst"`
	ChallengeAfter            int     `toml:"challenge_after"`
	MaxQueue                  int     `toml:"max_queue"`
	MaxConnections            int     `toml:"max_connections"`
	MaxSockets                int     `toml:"max_sockets"`
	MaxUnauthSockets          int     `toml:"max_unauth_sockets"`
	MaxUnauthSocketsPerSource int     `toml:"max_unauth_sockets_per_source"`
	MetricsListen             string  `toml:"metrics_listen"`
}

// Default returns the configuration used when no file exists; dataDir is
// the default data directory (XDG).
func Default(dataDir string) *Config {
	c := defaults()
	c.fill(dataDir)
	return c
}

// defaults are the values of the keys a file leaves out, before the paths
// that derive from the data directory are filled in.
func defaults() *Config {
	return &Config{
		Server:  Server{Transport: "auto"},
		Device:  Device{Name: "cosigner"},
		Keygen:  Keygen{Threshold: 2, RoundTimeout: Duration{10 * time.Minute}, Resend: Duration{30 * time.Second}},
		Signing: Signing{RequestTTL: Duration{15 * time.Minute}, ApprovalGrace: Duration{time.Second}, Resend: Duration{30 * time.Second}},
		Log:     Log{Level: "info", Format: "text"},
		Relay:   Relay{Listen: "127.0.0.1:8443"},
		API:     API{Approve: true},
	}
}

// Load reads path over the defaults and validates the result. Relative
// file names in the file are taken relative to the file's directory.
// dataDir is the data directory when the file names none; a non-empty
// forceDataDir (the --data flag) wins over the file's device.data_dir. The
// paths left empty that live in the data directory by default (the store's
// key file, the log, the relay's data) are then placed in the one chosen.
func Load(path, dataDir, forceDataDir string) (*Config, error) {
	c := defaults()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	md, err := toml.Decode(string(b), c)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	if md.IsDefined("server") && md.IsDefined("servers") {
		return nil, fmt.Errorf("%w: %s: servers: a file has either one [server] table or [[servers]] blocks, not both", ErrConfig, path)
	}
	if err := checkRuleKeys(string(b)); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("%w: %s: unknown key %s", ErrConfig, path, strings.Join(keys, ", "))
	}
	c.resolve(filepath.Dir(path))
	if forceDataDir != "" {
		c.Device.DataDir = forceDataDir
	}
	c.fill(dataDir)
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(c.ServerBlocks) > 0 {
		first := c.ServerBlocks[0]
		c.Server = Server{URL: first.URL, CAFile: first.CAFile, Transport: first.Transport}
	}
	return c, nil
}

// fill gives the keys whose empty value means "the default" their value.
func (c *Config) fill(dataDir string) {
	if c.Device.DataDir == "" {
		c.Device.DataDir = dataDir
	}
	if c.Server.Transport == "" {
		c.Server.Transport = "auto"
	}
	for i := range c.ServerBlocks {
		if c.ServerBlocks[i].Transport == "" {
			c.ServerBlocks[i].Transport = "auto"
		}
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Store.KeyFile == "" && c.Device.DataDir != "" {
		c.Store.KeyFile = filepath.Join(c.Device.DataDir, "store.key")
	}
	if c.Log.File == "" && c.Device.DataDir != "" {
		c.Log.File = filepath.Join(c.Device.DataDir, "cosigner.log")
	}
	if c.Relay.DataDir == "" && c.Device.DataDir != "" {
		c.Relay.DataDir = filepath.Join(c.Device.DataDir, "relay")
	}
}

func (c *Config) resolve(base string) {
	paths := []*string{&c.Server.CAFile}
	for i := range c.ServerBlocks {
		paths = append(paths, &c.ServerBlocks[i].CAFile)
	}
	for _, p := range append(paths, &c.Store.KeyFile, &c.Log.File, &c.Relay.TLSCert, &c.Relay.TLSKey, &c.Device.DataDir, &c.Relay.DataDir) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// Validate checks every value; the error names the key.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, key, fmt.Sprintf(format, args...))
	}
	if err := c.validateServers(bad); err != nil {
		return err
	}
	for key, f := range map[string]string{"relay.tls_cert": c.Relay.TLSCert, "relay.tls_key": c.Relay.TLSKey} {
		if err := checkFile(f); err != nil {
			return bad(key, "%v", err)
		}
	}
	if (c.Relay.TLSCert == "") != (c.Relay.TLSKey == "") {
		return bad("relay.tls_cert", "tls_cert and tls_key go together")
	}
	if c.Device.Name == "" || len(c.Device.Name) > 64 {
		return bad("device.name", "must be 1..64 bytes")
	}
	if c.Keygen.Parties < 0 || c.Keygen.Parties > 255 {
		return bad("keygen.parties", "%d, want 0 (the whole roster) or 1..255", c.Keygen.Parties)
	}
	if c.Keygen.Threshold < 1 || c.Keygen.Threshold > 255 || c.Keygen.Parties > 0 && c.Keygen.Threshold > c.Keygen.Parties {
		return bad("keygen.threshold", "%d, want 1..parties (%d): the number of signatures needed", c.Keygen.Threshold, c.Keygen.Parties)
	}
	for key, d := range map[string]Duration{
		"keygen.round_timeout": c.Keygen.RoundTimeout, "keygen.resend": c.Keygen.Resend,
		"signing.request_ttl": c.Signing.RequestTTL, "signing.resend": c.Signing.Resend,
	} {
		if d.Duration < time.Second {
			return bad(key, "%v, want at least 1s", d.Duration)
		}
	}
	if c.Keygen.RoundTimeout.Duration%time.Second != 0 {
		return bad("keygen.round_timeout", "whole seconds only")
	}
	if c.Signing.ApprovalGrace.Duration < 0 || c.Signing.ApprovalGrace.Duration > 10*time.Second {
		return bad("signing.approval_grace", "%v, want 0..10s", c.Signing.ApprovalGrace.Duration)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "%q, want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log.format", "%q, want text or json", c.Log.Format)
	}
	if c.Store.PassphraseEnv != "" && strings.ContainsAny(c.Store.PassphraseEnv, "= \t") {
		return bad("store.passphrase_env", "%q is not an environment variable name", c.Store.PassphraseEnv)
	}
	if _, _, err := net.SplitHostPort(c.Relay.Listen); err != nil {
		return bad("relay.listen", "%v", err)
	}
	for key, addr := range map[string]string{"metrics.listen": c.Metrics.Listen, "relay.metrics_listen": c.Relay.MetricsListen} {
		if err := CheckListen(addr); err != nil {
			return bad(key, "%v", err)
		}
	}
	if c.Relay.MessageRate < 0 || c.Relay.MessageBurst < 0 {
		return bad("relay.message_rate", "rate %v and burst %d, want 0 (the default) or more", c.Relay.MessageRate, c.Relay.MessageBurst)
	}
	for key, n := range map[string]int{
		"relay.max_queue": c.Relay.MaxQueue, "relay.max_connections": c.Relay.MaxConnections,
		"relay.max_sockets": c.Relay.MaxSockets, "relay.max_unauth_sockets": c.Relay.MaxUnauthSockets,
		"relay.max_unauth_sockets_per_source": c.Relay.MaxUnauthSocketsPerSource,
	} {
		if n < 0 {
			return bad(key, "%d, want 0 (the default) or more", n)
		}
	}
	if c.Relay.ChallengeAfter < -1 {
		return bad("relay.challenge_after", "%d, want -1 (never), 0 (the send burst) or a number of refused sends", c.Relay.ChallengeAfter)
	}
	specs := make([]core.SigningRuleSpec, len(c.Signing.Rule))
	for i, r := range c.Signing.Rule {
		specs[i] = core.SigningRuleSpec{Requester: r.Requester, Key: r.Key, MessagePrefixHex: r.MessagePrefixHex, MessageRegex: r.MessageRegex, MaxPerHour: r.MaxPerHour}
	}
	signing, err := core.CompileSigningRules(specs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	kspecs := make([]core.KeygenRuleSpec, len(c.Keygen.Rule))
	for i, r := range c.Keygen.Rule {
		kspecs[i] = core.KeygenRuleSpec{VerifiedParties: r.VerifiedParties}
	}
	keygen, err := core.CompileKeygenRules(kspecs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	rspecs := make([]core.ReshareRuleSpec, len(c.Reshare.Rule))
	for i, r := range c.Reshare.Rule {
		rspecs[i] = core.ReshareRuleSpec{VerifiedParties: r.VerifiedParties}
	}
	reshare, err := core.CompileReshareRules(rspecs)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c.Signing.compiled, c.Keygen.compiled, c.Reshare.compiled = signing, keygen, reshare
	return nil
}

// validateServers checks the [server] table as before, or each
// [[servers]] block: a name (unique), a URL (unique in its canonical
// form), its CA file and transport.
func (c *Config) validateServers(bad func(key, format string, args ...any) error) error {
	// (Load refuses a file with both; with blocks, Server is a copy of
	// the first.)
	blocks := len(c.ServerBlocks) > 0
	names, urls := map[string]int{}, map[string]int{}
	for i, s := range c.Servers() {
		key := func(k string) string { return "server." + k }
		if blocks {
			key = func(k string) string { return fmt.Sprintf("servers[%d].%s", i, k) }
			if s.Name == "" || len(s.Name) > 32 || strings.IndexFunc(s.Name, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
			}) >= 0 {
				return bad(key("name"), "%q, want 1..32 letters, digits, '-', '_' or '.'", s.Name)
			}
			if j, dup := names[s.Name]; dup {
				return bad(key("name"), "%q is also servers[%d]'s name", s.Name, j)
			}
			names[s.Name] = i
			if s.URL == "" {
				return bad(key("url"), "each [[servers]] block needs its url")
			}
		}
		if s.URL != "" {
			u, err := url.Parse(s.URL)
			if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
				return bad(key("url"), "%q is not an https:// (or http:// for a local relay) URL", s.URL)
			}
			if u.Scheme == "http" && !isLoopback(u.Hostname()) {
				return bad(key("url"), "plain http is only for a relay on loopback; use https")
			}
		}
		if blocks {
			// Consoles compare servers by this form: two blocks with
			// one form would be one server twice.
			canon, err := roster.CanonicalServer(s.URL)
			if err != nil {
				return bad(key("url"), "%v", err)
			}
			if j, dup := urls[canon]; dup {
				return bad(key("url"), "%s is servers[%d]'s server too", canon, j)
			}
			urls[canon] = i
		}
		switch s.Transport {
		case "auto", "http1", "http2":
		default:
			return bad(key("transport"), "%q, want auto, http1 or http2", s.Transport)
		}
		if err := checkFile(s.CAFile); err != nil {
			return bad(key("ca_file"), "%v", err)
		}
	}
	return nil
}

// checkFile: an empty name, or a file that exists.
func checkFile(f string) error {
	if f == "" {
		return nil
	}
	if _, err := os.Stat(f); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("file %s does not exist", f)
		}
		return err
	}
	return nil
}

// CheckListen checks a metrics listen address: empty (off) or host:port
// with a port.
func CheckListen(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
