package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signal-mpc/cosigner/core/config"
	"github.com/signal-mpc/cosigner/metrics"
	"github.com/signal-mpc/cosigner/signal/relay"
)

var relayCommand = command{
	name:    "relay",
	summary: "run a self-hosted Signal-compatible relay for the co-signers",
	usage: `Usage: cosigner relay [--listen ADDR] [--data DIR] [--tls-cert FILE --tls-key FILE] [flags]
       cosigner relay challenge-code [--data DIR] TOKEN

Run a server that speaks the Signal service protocol for linked devices
(provisioning, linking, prekeys, messages over WebSocket), so co-signers can
talk without Signal's servers. Accounts, devices, keys and queued messages
are kept in DIR/relay.db and survive a restart. Stop it with Ctrl-C.

Settings come from the [relay] section of the configuration file (--config,
or the default file when it exists; see config.example.toml); a flag given
on the command line wins over the file. Without either, the relay listens
on 127.0.0.1:8443 and keeps its data in $XDG_DATA_HOME/cosigner/relay.

Without TLS the relay only listens on loopback (127.0.0.1, ::1, localhost)
unless --allow-insecure says an operator really wants plain HTTP (for
example behind a TLS-terminating proxy).

Accounts are created by 'cosigner register'. With a registration token
(--registration-token-file) every registration must carry it; without one,
registration is open on a loopback listener and closed on any other.

An account that keeps sending while the relay refuses it (429, Retry-After)
is challenged: its sends are answered 428 with a token until it answers
with a code only the operator can make. Its owner sees the token (the
console shows it) and asks the operator, who runs
  cosigner relay challenge-code TOKEN
on the relay's machine (it reads DIR/challenge.key, DIR from the same
settings; the relay may be running) and gives the code back; the owner
enters it in the console (!) or runs 'cosigner challenge'. A console that
waits as Retry-After says, as cosigner's do, is refused at most once per
message in flight per wait: far below the default tolerance.

Flags:
  --config PATH                    configuration file (default $XDG_CONFIG_HOME/cosigner/config.toml)
  --listen ADDR                    address to listen on, e.g. 127.0.0.1:8443 (port 0 picks one)
  --data DIR                       the relay's data directory (created with mode 0700)
  --tls-cert FILE                  PEM certificate chain; needs --tls-key
  --tls-key FILE                   PEM private key; needs --tls-cert
  --registration-token-file FILE   file holding the operator's registration token (instead
                                   of relay.registration_token)
  --allow-insecure                 allow plain HTTP beyond loopback (a warning is logged)
  --message-rate R                 sends a second per account (0: 500); over it, 429
  --message-burst N                sends at once beyond the rate (0: 1000)
  --challenge-after N              refused sends an account may pile up (forgiven at N a
                                   minute) before it is challenged; 0: the send burst (1000),
                                   -1: never
  --max-queue N                    envelopes kept for one device that does not fetch them
                                   (0: 10000); over it, sends to it get 507
  --max-connections N              plain HTTP connections at once (0: 1000)
  --max-sockets N                  WebSockets at once besides the devices' message sockets,
                                   which are never refused (0: 10000)
  --max-unauth-sockets N           WebSockets without credentials at once (0: 1000)
  --max-unauth-sockets-per-source N   the same from one address, IPv6 one /64 (0: 16)
  --metrics-listen ADDR            serve Prometheus metrics, /healthz and /readyz at ADDR
                                   over plain HTTP (instead of relay.metrics_listen; port 0
                                   picks one)
  --verbose                        log debug lines (instead of log.level)

Logs go to stderr, at the configuration's log.level in its log.format
(text or json; with json every line on stderr is one JSON object). When
listening, the relay prints its URL on stdout (and then its metrics URL).

With relay.metrics_listen (or --metrics-listen) it also serves Prometheus
metrics at /metrics, liveness at /healthz and readiness (store open,
serving) at /readyz, over plain HTTP on that address.
`,
	run: runRelay,
}

type relayArgs struct {
	config, listen, data, tlsCert, tlsKey, tokenFile string
	metricsListen                                    string
	allowInsecure, verbose                           bool
	messageRate                                      float64
	messageBurst, challengeAfter, maxQueue           int
	maxConns, maxSockets, maxUnauth, maxUnauthPerSrc int
}

func newRelayFlags(stderr io.Writer) (*flag.FlagSet, *relayArgs) {
	var a relayArgs
	fs := newFlagSet("relay", stderr)
	fs.StringVar(&a.config, "config", "", "configuration file")
	fs.StringVar(&a.listen, "listen", "", "listen address")
	fs.StringVar(&a.data, "data", "", "data directory")
	fs.StringVar(&a.tlsCert, "tls-cert", "", "TLS certificate (PEM)")
	fs.StringVar(&a.tlsKey, "tls-key", "", "TLS key (PEM)")
	fs.StringVar(&a.tokenFile, "registration-token-file", "", "registration token file")
	fs.BoolVar(&a.allowInsecure, "allow-insecure", false, "allow plain HTTP beyond loopback")
	fs.BoolVar(&a.verbose, "verbose", false, "debug logs")
	fs.StringVar(&a.metricsListen, "metrics-listen", "", "metrics listen address")
	fs.Float64Var(&a.messageRate, "message-rate", 0, "sends a second per account")
	fs.IntVar(&a.messageBurst, "message-burst", 0, "sends at once beyond the rate")
	fs.IntVar(&a.challengeAfter, "challenge-after", 0, "refusals before a challenge")
	fs.IntVar(&a.maxQueue, "max-queue", 0, "envelopes queued per device")
	fs.IntVar(&a.maxConns, "max-connections", 0, "plain HTTP connections")
	fs.IntVar(&a.maxSockets, "max-sockets", 0, "WebSockets besides message sockets")
	fs.IntVar(&a.maxUnauth, "max-unauth-sockets", 0, "WebSockets without credentials")
	fs.IntVar(&a.maxUnauthPerSrc, "max-unauth-sockets-per-source", 0, "WebSockets without credentials per source")
	return fs, &a
}

// maxTokenFile bounds the registration token file.
const maxTokenFile = 4 << 10

func runRelay(ctx context.Context, cmd command, args []string, sio stdio) int {
	if len(args) > 0 && args[0] == "challenge-code" {
		return runChallengeCode(cmd, args[1:], sio)
	}
	fs, a := newRelayFlags(sio.err)
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	if (a.tlsCert == "") != (a.tlsKey == "") {
		return usageError(cmd, sio, "--tls-cert and --tls-key go together")
	}
	cfg, err := loadConfig(a.config, "")
	if err != nil {
		sio.say(slog.LevelError, cmd.name, "%v", err)
		return exitFailure
	}
	rc, lc := cfg.Relay, cfg.Log
	applyLogFormat(lc, sio)
	// The file's settings, then what the command line says.
	token := rc.RegistrationToken
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			rc.Listen = a.listen
		case "data":
			rc.DataDir = a.data
		case "tls-cert", "tls-key":
			rc.TLSCert, rc.TLSKey = a.tlsCert, a.tlsKey
		case "allow-insecure":
			rc.AllowInsecureNonLoopback = a.allowInsecure
		case "message-rate":
			rc.MessageRate = a.messageRate
		case "message-burst":
			rc.MessageBurst = a.messageBurst
		case "challenge-after":
			rc.ChallengeAfter = a.challengeAfter
		case "max-queue":
			rc.MaxQueue = a.maxQueue
		case "max-connections":
			rc.MaxConnections = a.maxConns
		case "max-sockets":
			rc.MaxSockets = a.maxSockets
		case "max-unauth-sockets":
			rc.MaxUnauthSockets = a.maxUnauth
		case "max-unauth-sockets-per-source":
			rc.MaxUnauthSocketsPerSource = a.maxUnauthPerSrc
		case "metrics-listen":
			rc.MetricsListen = a.metricsListen
		}
	})
	switch {
	case rc.MessageRate < 0 || rc.MessageBurst < 0:
		return usageError(cmd, sio, "--message-rate and --message-burst are 0 (the default) or more")
	case rc.ChallengeAfter < -1:
		return usageError(cmd, sio, "--challenge-after is -1 (never), 0 (the send burst) or more")
	case config.CheckListen(rc.MetricsListen) != nil:
		return usageError(cmd, sio, "--metrics-listen: %v", config.CheckListen(rc.MetricsListen))
	case rc.MaxQueue < 0 || rc.MaxConnections < 0 || rc.MaxSockets < 0 || rc.MaxUnauthSockets < 0 || rc.MaxUnauthSocketsPerSource < 0:
		return usageError(cmd, sio, "--max-queue, --max-connections, --max-sockets, --max-unauth-sockets and --max-unauth-sockets-per-source are 0 (the default) or more")
	}
	if a.tokenFile != "" {
		b, err := readSmallFile(a.tokenFile, maxTokenFile)
		if err != nil {
			sio.say(slog.LevelError, cmd.name, "registration token: %v", err)
			return exitFailure
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			sio.say(slog.LevelError, cmd.name, "registration token file %s is empty", a.tokenFile)
			return exitFailure
		}
	}
	if a.verbose {
		lc.Level = "debug"
	}
	log := newLogger(sio.err, lc)
	var srv *relay.Server
	var obs relay.Observer
	var reg *prometheus.Registry
	if rc.MetricsListen != "" {
		reg = metrics.NewRegistry()
		// The observer goes into the server's configuration: it reads the
		// server, made next, only when scraped.
		obs = metrics.NewRelay(reg, metrics.RelaySources{
			Stats:       func() (relay.Stats, error) { return srv.Stats() },
			QueueDepths: func(fn func(int)) { srv.QueueDepths(fn) },
		})
	}
	srv, err = relay.New(relay.Config{
		Listen: rc.Listen, DataDir: rc.DataDir, TLSCert: rc.TLSCert, TLSKey: rc.TLSKey,
		AllowInsecure: rc.AllowInsecureNonLoopback, RegistrationToken: token, Logger: log,
		MessageRate: rc.MessageRate, MessageBurst: rc.MessageBurst, ChallengeAfter: rc.ChallengeAfter,
		MaxQueue: rc.MaxQueue, MaxConns: rc.MaxConnections, MaxSockets: rc.MaxSockets,
		MaxUnauthSockets: rc.MaxUnauthSockets, MaxUnauthSocketsPerSource: rc.MaxUnauthSocketsPerSource,
		Observer: obs,
	})
	if err != nil {
		sio.say(slog.LevelError, cmd.name, "%v", err)
		return exitFailure
	}
	var metricsURL string
	if reg != nil {
		ml, err := metrics.Listen(ctx, rc.MetricsListen, log)
		if err != nil {
			sio.say(slog.LevelError, cmd.name, "%v", err)
			return exitFailure
		}
		mctx, stop := context.WithCancel(ctx)
		served := make(chan struct{})
		defer func() { stop(); <-served }()
		go func() {
			defer close(served)
			if err := metrics.Serve(mctx, ml, metrics.Handler(reg, metrics.RelayReady(srv.Stats))); err != nil {
				log.Error("metrics stopped", "err", err)
			}
		}()
		metricsURL = "http://" + ml.Addr().String() + "/metrics"
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
		if srv.Addr() != nil {
			fmt.Fprintf(sio.out, "relay listening on %s\n", srv.URL())
			if metricsURL != "" {
				fmt.Fprintf(sio.out, "relay metrics on %s\n", metricsURL)
			}
		}
	case err := <-done:
		return relayExit(err, sio)
	}
	return relayExit(<-done, sio)
}

// relaySettings is the [relay] section of the configuration (loadConfig).
func relaySettings(path string) (config.Relay, error) {
	cfg, err := loadConfig(path, "")
	if err != nil {
		return config.Relay{}, err
	}
	return cfg.Relay, nil
}

// runChallengeCode prints the code that answers a challenge token of the
// relay whose data folder is --data (or the configuration's).
func runChallengeCode(cmd command, args []string, sio stdio) int {
	fs := newFlagSet(cmd.name+" challenge-code", sio.err)
	cfgPath := fs.String("config", "", "configuration file")
	data := fs.String("data", "", "data directory")
	pos, code, ok := parseFlagsArgs(fs, cmd, args, sio, 1)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return usageError(cmd, sio, "challenge-code: give the TOKEN the console shows")
	}
	dir := *data
	if dir == "" {
		rc, err := relaySettings(*cfgPath)
		if err != nil {
			sio.say(slog.LevelError, "relay challenge-code", "%v", err)
			return exitFailure
		}
		dir = rc.DataDir
	}
	answer, err := relay.ChallengeCode(dir, pos[0])
	if err != nil {
		sio.say(slog.LevelError, "relay challenge-code", "%v", err)
		return exitFailure
	}
	fmt.Fprintln(sio.out, answer)
	return exitOK
}

func relayExit(err error, sio stdio) int {
	if err != nil {
		sio.say(slog.LevelError, "relay", "%v", err)
		return exitFailure
	}
	return exitOK
}

// readSmallFile reads a file of at most limit bytes.
func readSmallFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errors.New("file too large")
	}
	return b, nil
}
