package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/tui"
)

// consoleCommand is the console: plain "cosigner", or "cosigner console".
var consoleCommand = command{
	name:    "console",
	summary: "run the console (the same as cosigner with no command)",
	usage:   consoleUsage,
	run: func(ctx context.Context, _ command, args []string, sio stdio) int {
		return runConsole(ctx, args, sio)
	},
}

// consoleUsage documents the bare command.
const consoleUsage = `Usage: cosigner console [global flags]
       cosigner [global flags]

Run the console: the live MPC log, ceremonies, the approval queue and the
signatures. If this device is not linked yet, it shows the link screen (a QR
code to scan with the account's phone) first. Without a terminal, or with
--headless, it runs without the screen: events are logged on stderr, and
requests are approved only by the approval rules ([[signing.rule]],
[[keygen.rule]]) or signing.auto_approve.

Flags:
` + globalFlagsHelp

// runConsole is cosigner with no command.
func runConsole(ctx context.Context, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet("", sio.err)
	g.register(fs)
	cmd := command{name: "console", usage: consoleUsage} // not consoleCommand: it refers to this function
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(sio.err, "cosigner: unknown command %q; run 'cosigner help'\n", fs.Arg(0))
		return exitUsage
	}
	cl, e, err := attached(ctx, g, sio)
	switch {
	case err != nil:
	case cl != nil && (g.headless || !isTerminal(sio.out)):
		cl.Close()
		err = fmt.Errorf("a cosigner already runs on %s (its socket: %s): attach to it with cosigner on a terminal, or use its socket API (docs/api.md)", e.dir, e.socketPath())
	case cl != nil:
		err = runConsoleAttached(ctx, e, cl, sio)
	case g.headless || !isTerminal(sio.out):
		err = runConsoleHeadless(ctx, g, sio)
	default:
		err = runConsoleTUI(ctx, g, sio)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		sio.say(slog.LevelError, "", "%v", err)
		return exitFailure
	}
	return exitOK
}

// runConsoleHeadless runs the console and logs its events until ctx ends.
func runConsoleHeadless(ctx context.Context, g globalFlags, sio stdio) error {
	// The console keeps reconnecting while another console holds the same
	// device (it logs an error each time, ever more slowly).
	return runConsoleServing(ctx, g, sio, 0, true, func(ctx context.Context, c *console) error {
		sub := c.Bus.Subscribe(0)
		defer sub.Close()
		log := c.Config().Logger
		log.Info("console running", "account", c.Card.Account, "device", c.Card.Device, "name", c.Card.Name)
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				return nil
			}
			logEvent(log, e)
		}
	})
}

// logEvent writes an event as a log line; texts are cleaned of control
// characters first (they may come from peers).
func logEvent(log *slog.Logger, e event.Event) {
	switch e := e.(type) {
	case event.Message:
		log.Debug("mpc message", "dir", e.Direction.String(), "peer", tui.Clean(e.Peer), "ceremony", e.Ceremony, "round", e.Round, "kind", e.Kind, "size", e.Size, "digest", e.Digest, "note", tui.Clean(e.Note))
	case event.Progress:
		log.Info("progress", "ceremony", e.Ceremony, "kind", e.Kind, "round", e.Round, "step", e.Step, "total", e.Total, "waiting", e.Waiting)
	case event.ApprovalRequested:
		log.Info("approval requested", "id", e.ID[:8], "kind", e.Kind, "from", tui.Clean(e.Requester), "sha256", e.SHA256, "expires", e.Expires.Format(time.RFC3339))
	case event.ApprovalResolved:
		if e.Rule != "" {
			log.Info("approval resolved", "id", e.ID[:8], "decision", e.Decision, "rule", tui.Clean(e.Rule))
		} else {
			log.Info("approval resolved", "id", e.ID[:8], "decision", e.Decision)
		}
	case event.KeygenDone:
		log.Info("key generated", "key", e.KeyID, "group_key", e.GroupKey, "t", e.T, "n", e.N)
	case event.KeygenFailed:
		log.Warn("key generation failed", "ceremony", tui.Clean(e.Ceremony), "reason", tui.Clean(e.Reason), "round", tui.Clean(e.Round),
			"by", tui.Clean(e.By), "blamed", cleanNames(e.Blamed), "claimed", cleanNames(e.Claimed))
	case event.ReshareDone:
		log.Info("key moved to a new epoch", "what", e.What, "key", e.KeyID, "group_key", e.GroupKey, "epoch", e.Epoch, "t", e.T, "n", e.N, "handed_over", e.HandedOver)
	case event.ReshareFailed:
		log.Warn("reshare failed: the old group keeps the key", "ceremony", tui.Clean(e.Ceremony), "reason", tui.Clean(e.Reason), "round", tui.Clean(e.Round),
			"by", tui.Clean(e.By), "blamed", cleanNames(e.Blamed), "claimed", cleanNames(e.Claimed))
	case event.SignDone:
		if e.Restored {
			log.Debug("signing finished before this run", "id", e.ID[:8], "signature", e.Signature, "failure", tui.Clean(e.Failure))
			return
		}
		log.Info("signing finished", "id", e.ID[:8], "signature", e.Signature, "signers", e.Signers, "failure", tui.Clean(e.Failure))
	case event.Error:
		log.Warn(tui.Clean(e.Text))
	case event.Connection:
		log.Info("connection", "state", e.State, "detail", tui.Clean(e.Detail))
	case event.Challenge:
		token := tui.Clean(e.Token)
		log.Warn("the server refuses this console's messages until its challenge is answered: get the code from the relay's operator "+
			"(cosigner relay challenge-code --data DIR TOKEN), stop this console and run: cosigner challenge --token TOKEN --code CODE",
			"token", token)
	case event.ChallengeAnswered:
		log.Info("server challenge answered", "token", tui.Clean(e.Token))
	}
}

func cleanNames(ns []string) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = tui.Clean(n)
	}
	return out
}

// feedConsole runs the console c and tells the screen about it through
// send: who it is, its roster, then every event of its bus. It returns when
// the console stops. The roster is asked of the running App (its loop owns
// it): asked before Run, the call would wait forever, and the console with
// it, never connecting.
func feedConsole(ctx context.Context, c *console, server string, send func(tea.Msg)) error {
	go tui.Bridge(ctx, c.Bus.Subscribe(0), send) // subscribed now: no event of the run is missed
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	send(tui.Identity{Name: c.Card.Name, Account: c.Card.Account, Device: c.Card.Device, Server: server})
	send(tui.Linked{Account: c.Card.Account, Device: c.Card.Device})
	if r, err := screenRoster(ctx, c); err == nil {
		send(r)
	}
	// The history is asked for once the console runs, as an attached
	// console does: the start does not wait for it (NoHistoryAtStart), and
	// the screen merges what it gets twice by id.
	if sigs, err := c.App.Signatures(ctx, screenHistory); err == nil {
		for _, s := range sigs {
			s.Restored = true
			send(s)
		}
	}
	return <-done
}

// screenHistory is how many past signing results the screen shows.
const screenHistory = 500

// screenRoster is the console's roster as the screen shows it.
func screenRoster(ctx context.Context, c *console) (tui.Roster, error) {
	members, err := c.App.Roster(ctx)
	if err != nil {
		return tui.Roster{}, err
	}
	var r tui.Roster
	for _, mb := range members {
		r.Signers = append(r.Signers, tui.Signer{Name: mb.Card.Name, Account: mb.Card.Account, Device: mb.Card.Device,
			Fingerprint: mb.Card.Fingerprint(), Verified: mb.Verified, Blocked: mb.Blocked(),
			Self: mb.Card.Account == c.Card.Account && mb.Card.Device == c.Card.Device})
	}
	return r, nil
}

// runConsoleTUI runs the Bubble Tea console, with the link screen first if
// the device is not linked yet.
func runConsoleTUI(ctx context.Context, g globalFlags, sio stdio) error {
	e, err := loadEnv(g, sio)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(e.cfg.Log.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	e.log = newLogger(logf, e.cfg.Log)
	st, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	d, err := e.dialer()
	if err != nil {
		return err
	}
	isLinked, err := e.linked(ctx, st)
	if err != nil {
		return err
	}
	first, err := e.server("")
	if err != nil {
		return err
	}
	linkStore, err := st.Server(first.Name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lc := &lateCore{ready: make(chan struct{})}
	m := tui.New(ctx, partiesGuard{lc, e.cfg.Keygen.Parties}, tui.WithLinking(!isLinked), tui.WithLogger(e.log), tui.WithClipboard(sio.out),
		tui.WithGrace(e.cfg.Signing.ApprovalGrace.Duration), tui.WithThreshold(e.cfg.Keygen.Threshold),
		tui.WithIdentity(tui.Identity{Name: e.cfg.Device.Name, Server: e.cfg.Server.URL}))
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx), tea.WithOutput(unwrap(sio.out)))
	runErr := make(chan error, 1)
	go func() {
		runErr <- func() error {
			if !isLinked {
				_, err := device.Link(ctx, device.LinkConfig{Dialer: d, Store: linkStore, Name: e.cfg.Device.Name,
					OnURL:  func(url string, exp time.Time) { p.Send(tui.LinkURL{URL: url, Expires: exp}) },
					OnStep: func(s string) { p.Send(tui.LinkStep{Text: s}) },
				})
				if err != nil {
					return err
				}
			}
			cfg := e.consoleConfig(d, st)
			cfg.NoHistoryAtStart = true // feedConsole asks for it once the console runs
			if err := e.serveSocket(&cfg, true); err != nil {
				return err
			}
			cfg.MetricsListen = e.cfg.Metrics.Listen
			c, err := openConsole(ctx, cfg)
			if err != nil {
				return err
			}
			e.warnAutoApprove()
			lc.set(c.App)
			return feedConsole(ctx, c, e.cfg.Server.URL, p.Send)
		}()
	}()
	if _, err := p.Run(); err != nil && ctx.Err() == nil {
		return err
	}
	cancel()
	if err := <-runErr; err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
