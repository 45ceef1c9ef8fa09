package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/signal-mpc/cosigner/core/config"
	"github.com/signal-mpc/cosigner/signal/store"
)

var daemonCommand = command{
	name:    "daemon",
	summary: "run this signer as a service: no screen, the socket API, until stopped",
	usage: `Usage: cosigner daemon [global flags]

Run this signer's co-signer until it is stopped (SIGTERM or SIGINT): it takes
part in every key generation and signing of its group, and serves the local
API on <data_dir>/cosigner.sock (mode 0600; JSON-RPC 2.0, one object a line:
see docs/api.md). People attach to it with cosigner (the console), scripts
ask through the socket, and the headless commands (sign, keygen, ...) go
through it while it runs. Whoever can connect to the socket can approve:
see [api] in config.example.toml.

Events are logged on stderr at log.level, in log.format. On SIGTERM it
stops cleanly: what it accepted stays accepted, its last messages get a few
seconds to leave, and what did not is sent again at the next start.

Exit status: 0 when stopped by a signal; 1 when it cannot go on (its store
failed or is damaged, the device is not linked or was unlinked, the socket
cannot be made), so that a supervisor sees it and restarts it.

With [metrics] listen (or --metrics-listen ADDR) it serves Prometheus
metrics, /healthz and /readyz there over plain HTTP (see [metrics] in
config.example.toml).

Flags:
` + globalFlagsHelp + `  --metrics-listen ADDR   serve metrics at ADDR (instead of metrics.listen)
`,
	run: runDaemon,
}

// daemonFlush bounds how long a stopping daemon waits for its last sends.
const daemonFlush = 5 * time.Second

func runDaemon(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	metricsListen := fs.String("metrics-listen", "", "metrics listen address")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	if err := config.CheckListen(*metricsListen); err != nil {
		return usageError(cmd, sio, "--metrics-listen: %v", err)
	}
	if fs.NArg() > 0 {
		return usageError(cmd, sio, "cosigner daemon takes no arguments")
	}
	err := withStore(ctx, g, sio, func(e *env, st *store.Store) error {
		isLinked, err := e.linked(ctx, st)
		if err != nil {
			return err
		}
		if !isLinked {
			return errors.New("this console is not linked yet: run cosigner link (or cosigner register) first")
		}
		d, err := e.dialer()
		if err != nil {
			return err
		}
		cfg := e.consoleConfig(d, st)
		cfg.NoHistoryAtStart = true // no screen: attached consoles ask for the history
		if err := e.serveSocket(&cfg, false); err != nil {
			return err
		}
		cfg.MetricsListen = e.cfg.Metrics.Listen
		if *metricsListen != "" {
			cfg.MetricsListen = *metricsListen
		}
		c, err := openConsole(ctx, cfg)
		if err != nil {
			return err
		}
		e.warnAutoApprove()
		// The node runs on its own context: a signal first lets the last
		// sends leave, then stops it.
		runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		defer stop()
		sub := c.Bus.Subscribe(0)
		defer sub.Close()
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx) }()
		e.log.Info("daemon running", "account", c.Card.Account, "device", c.Card.Device, "name", c.Card.Name,
			"socket", cfg.Socket, "socket_approves", cfg.APIApprove)
		go func() {
			for {
				ev, err := sub.Next(runCtx)
				if err != nil {
					return
				}
				logEvent(e.log, ev)
			}
		}()
		select {
		case err := <-done:
			if err == nil {
				err = errConsoleStopped
			}
			return fmt.Errorf("the daemon cannot go on: %w", err)
		case <-ctx.Done():
		}
		e.log.Info("stopping: letting the last messages leave", "within", daemonFlush)
		fctx, cancel := context.WithTimeout(runCtx, daemonFlush)
		if err := c.App.Flush(fctx); err != nil {
			e.log.Warn("some messages had not left; they are sent again at the next start")
		}
		cancel()
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		e.log.Info("stopped")
		return nil
	})
	if err != nil && ctx.Err() != nil {
		// Stopped by its signal before it was up (while it waited for the
		// store's lock, say): the stop was asked for, so it is a clean one.
		sio.say(slog.LevelInfo, cmd.name, "stopped before it was up (%v)", err)
		return exitOK
	}
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}
