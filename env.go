package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/config"
	"github.com/signal-mpc/cosigner/node"
	"github.com/signal-mpc/cosigner/signal/liblog"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// globalFlags are the flags every console command takes.
type globalFlags struct {
	config   string
	data     string
	headless bool
}

func (g *globalFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", "", "configuration file")
	fs.StringVar(&g.data, "data", "", "data directory")
	fs.BoolVar(&g.headless, "headless", false, "no console")
}

const globalFlagsHelp = `  --config PATH     configuration file (default $XDG_CONFIG_HOME/cosigner/config.toml)
  --data DIR        data directory (default $XDG_DATA_HOME/cosigner)
  --headless        no console: logs on stderr, results as JSON on stdout
`

// env is a loaded configuration with its data directory.
type env struct {
	cfg *config.Config
	dir string
	log *slog.Logger
	// file is the configuration file read, or "" when none was (the
	// defaults); searched is where one was looked for then.
	file, searched string
	stderr         io.Writer // for what a person must read even when the console owns the screen later
}

func defaultDirs() (configFile, dataDir string) {
	home, _ := os.UserHomeDir()
	cfgHome := os.Getenv("XDG_CONFIG_HOME")
	if cfgHome == "" {
		cfgHome = filepath.Join(home, ".config")
	}
	dataHome := os.Getenv("XDG_DATA_HOME")
	if dataHome == "" {
		dataHome = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(cfgHome, "cosigner", "config.toml"), filepath.Join(dataHome, "cosigner")
}

// loadConfig reads the configuration file named by path, else the default
// file when it exists, else the defaults (an absent named file is an
// error). data, when set (the --data flag), wins over device.data_dir.
func loadConfig(path, data string) (*config.Config, error) {
	cfg, _, err := loadConfigFile(path, data)
	return cfg, err
}

// loadConfigFile is loadConfig that also returns the file it read ("" for
// the defaults).
func loadConfigFile(path, data string) (*config.Config, string, error) {
	cfgFile, dataDir := defaultDirs()
	if path == "" {
		if _, err := os.Stat(cfgFile); err == nil {
			path = cfgFile
		}
	}
	if path == "" {
		if data != "" {
			dataDir = data
		}
		return config.Default(dataDir), "", nil
	}
	cfg, err := config.Load(path, dataDir, data)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("%w (to write one, start from config.example.toml, where every key is documented)", err)
	}
	return cfg, path, err
}

// defaultConfigFile is where the configuration is looked for without
// --config.
func defaultConfigFile() string {
	f, _ := defaultDirs()
	return f
}

// loadEnv reads the configuration (loadConfig) and prepares the data
// directory.
func loadEnv(g globalFlags, sio stdio) (*env, error) {
	cfg, file, err := loadConfigFile(g.config, g.data)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Device.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	liblog.Silence()
	applyLogFormat(cfg.Log, sio)
	return &env{cfg: cfg, dir: cfg.Device.DataDir, log: newLogger(sio.err, cfg.Log), file: file, searched: defaultConfigFile(),
		stderr: sio.err}, nil
}

// applyLogFormat sends the command's own messages to stderr as JSON
// records when the configuration asks for JSON logs.
func applyLogFormat(lc config.Log, sio stdio) {
	if lc.Format == "json" && sio.diag != nil {
		sio.diag.setJSON(sio.err)
	}
}

// newLogger is a logger to w at the configured level and format.
func newLogger(w io.Writer, lc config.Log) *slog.Logger {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[lc.Level]
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// warnAutoApprove logs that signing.auto_approve is on, when it is: it
// accepts keygen proposals too, and nothing else on screen says so. It
// also says which approval rules are in force.
func (e *env) warnAutoApprove() {
	if e.cfg.Signing.AutoApprove {
		e.log.Warn("signing.auto_approve is on: this console accepts every signing request and every key generation proposal without asking")
		e.log.Warn("signing.auto_approve is deprecated: use [[signing.rule]] and [[keygen.rule]] (see config.example.toml)")
	}
	if n, k := len(e.cfg.Signing.Rules()), len(e.cfg.Keygen.Rules()); n+k > 0 {
		e.log.Info("approval rules in force: what they match is approved without asking", "signing_rules", n, "keygen_rules", k)
	}
}

// consoleConfig is the co-signer's configuration from the file's
// settings, over the given server and store.
func (e *env) consoleConfig(d *transport.Dialer, st *store.Store) consoleConfig {
	servers, _ := e.servers() // d is the first: its errors were seen
	return consoleConfig{Name: e.cfg.Device.Name, Dialer: d, Servers: servers, Store: st, Logger: e.log,
		AutoApprove:  e.cfg.Signing.AutoApprove,
		SigningRules: e.cfg.Signing.Rules(), KeygenRules: e.cfg.Keygen.Rules(), ReshareRules: e.cfg.Reshare.Rules(),
		RoundTimeout: e.cfg.Keygen.RoundTimeout.Duration, RequestTTL: e.cfg.Signing.RequestTTL.Duration,
		ResendEvery: min(e.cfg.Keygen.Resend.Duration, e.cfg.Signing.Resend.Duration),
		Threshold:   e.cfg.Keygen.Threshold, Parties: e.cfg.Keygen.Parties, APIApprove: e.cfg.API.Approve,
		Protected: e.ownFiles()}
}

// ownFiles are the store and its key file: a backup never replaces them.
func (e *env) ownFiles() []string {
	return []string{filepath.Join(e.dir, "device.db"), e.cfg.Store.KeyFile}
}

// socketPath is where the owner of this data directory's store serves the
// socket API: in api/ when a group shares it ([api] group).
func (e *env) socketPath() string {
	if e.cfg.API.Group != "" {
		return filepath.Join(e.dir, "api", api.SocketName)
	}
	return filepath.Join(e.dir, api.SocketName)
}

// serveSocket makes cfg serve the socket API (optional: a console that
// cannot still runs, with a warning; the daemon cannot).
func (e *env) serveSocket(cfg *consoleConfig, optional bool) error {
	gid, err := e.socketGroup()
	if err != nil {
		if !optional {
			return err
		}
		e.log.Warn("no socket API for this console", "err", err)
		return nil
	}
	cfg.Socket, cfg.SocketGroup, cfg.SocketOptional = e.socketPath(), gid, optional
	return nil
}

// socketGroup prepares the shared socket's folder for [api] group and
// returns the group's id (0: not shared).
func (e *env) socketGroup() (int, error) {
	if e.cfg.API.Group == "" {
		return 0, nil
	}
	g, err := user.LookupGroup(e.cfg.API.Group)
	if err != nil {
		return 0, fmt.Errorf("api.group: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil || gid <= 0 {
		return 0, fmt.Errorf("api.group: %s is not a group the socket can be shared with (gid %s)", e.cfg.API.Group, g.Gid)
	}
	if err := api.SocketDir(e.dir, filepath.Dir(e.socketPath()), gid); err != nil {
		return 0, err
	}
	return gid, nil
}

// dialer is the transport to the first configured server.
func (e *env) dialer() (*transport.Dialer, error) {
	servers, err := e.servers()
	if err != nil {
		return nil, err
	}
	return servers[0].Dialer, nil
}

// servers are the transports to the configured servers, in file order.
func (e *env) servers() ([]node.Server, error) {
	if len(e.cfg.ServerBlocks) == 0 {
		switch {
		case e.cfg.Server.URL == "" && e.file == "":
			return nil, fmt.Errorf("no server: there is no configuration file at %s (searched without --config): "+
				"copy config.example.toml there (or anywhere, and give --config PATH) and set server.url", e.searched)
		case e.cfg.Server.URL == "":
			return nil, fmt.Errorf("no server: set server.url in %s (see config.example.toml)", e.file)
		}
	}
	var out []node.Server
	for i, s := range e.cfg.Servers() {
		key := "server."
		if len(e.cfg.ServerBlocks) > 0 {
			key = fmt.Sprintf("servers[%d].", i)
		}
		d, err := dialerFor(s, key)
		if err != nil {
			return nil, err
		}
		out = append(out, node.Server{Name: s.Name, Dialer: d})
	}
	return out, nil
}

// server is the configured server named name ("": the first).
func (e *env) server(name string) (node.Server, error) {
	servers, err := e.servers()
	if err != nil {
		return node.Server{}, err
	}
	if name == "" {
		return servers[0], nil
	}
	var names []string
	for _, s := range servers {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return node.Server{}, fmt.Errorf("%w: no server named %q in %s (there are: %s)", core.ErrConfig, name, e.file, strings.Join(names, ", "))
}

// serverStore is the configured server named name ("": the first) and
// its device's store in st.
func (e *env) serverStore(st *store.Store, name string) (node.Server, *store.Store, error) {
	srv, err := e.server(name)
	if err != nil {
		return node.Server{}, nil, err
	}
	sub, err := st.Server(srv.Name)
	if err != nil {
		return node.Server{}, nil, err
	}
	return srv, sub, nil
}

// dialerFor is the transport to one configured server; key prefixes the
// configuration keys its errors name.
func dialerFor(s config.NamedServer, key string) (*transport.Dialer, error) {
	mode, err := transport.ParseMode(s.Transport)
	if err != nil {
		return nil, fmt.Errorf("%stransport: %w", key, err)
	}
	var pool *x509.CertPool
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%sca_file: %w", key, err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%sca_file: %s holds no PEM certificate", key, s.CAFile)
		}
	}
	return transport.NewDialer(transport.Config{URL: s.URL, RootCAs: pool, Mode: mode})
}

// openStore opens the device store: keyed by the passphrase in the
// configured environment variable, or else by the key file.
func (e *env) openStore(ctx context.Context) (*store.Store, error) {
	o := store.Options{KeyFile: e.cfg.Store.KeyFile, LockTimeout: 2 * time.Second}
	if v := e.cfg.Store.PassphraseEnv; v != "" {
		pass := os.Getenv(v)
		if pass == "" {
			return nil, fmt.Errorf("store.passphrase_env names %s, which is not set", v)
		}
		o.Passphrase = []byte(pass)
	}
	abandoned := 0
	o.AfterRestore = func(_ context.Context, tx *store.AppTx, backup time.Time) error {
		var err error
		abandoned, err = core.AbandonBeforeRestore(tx, backup)
		return err
	}
	st, err := store.Open(ctx, filepath.Join(e.dir, "device.db"), o)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("another cosigner is using %s (close it first): %w", e.dir, err)
	}
	if err != nil {
		return nil, err
	}
	// On stderr even for the console: printed before it takes the screen,
	// the line is there again when it gives the screen back.
	if r, ok := st.Restored(); ok && e.stderr != nil {
		fmt.Fprintf(e.stderr, "cosigner: this store was restored from a backup made %s: %d Signal sessions were reset "+
			"(each peer's next message from this console starts a new one) and %d ceremonies begun before the backup "+
			"were abandoned (this console no longer takes part in them)\n",
			r.BackupTime.Format(time.RFC3339), r.Sessions, abandoned)
	}
	return st, nil
}

// linked reports whether the store holds an account on any configured
// server.
func (e *env) linked(ctx context.Context, st *store.Store) (bool, error) {
	for _, s := range e.cfg.Servers() {
		sub, err := st.Server(s.Name)
		if err != nil {
			return false, err
		}
		if ok, err := linked(ctx, sub); err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// linked reports whether the store (one server's device) holds an account.
func linked(ctx context.Context, st *store.Store) (bool, error) {
	_, err := st.Account(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
