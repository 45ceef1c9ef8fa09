package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// commandMaxElsewhere is how many times in a row a headless command lets
// the server drop its connection for another console with the same device
// before it gives up (the console itself keeps trying, ever more slowly).
const commandMaxElsewhere = 3

// runConsoleWhile runs this console (device and engine) and calls fn once
// it is up; the console stops when fn returns, and fn's context ends when
// the console stops first (another console with the same device).
func runConsoleWhile(ctx context.Context, g globalFlags, sio stdio, fn func(ctx context.Context, c *console) error) error {
	return runConsoleFor(ctx, g, sio, commandMaxElsewhere, fn)
}

// runConsoleFor is runConsoleWhile with the console's MaxElsewhere.
func runConsoleFor(ctx context.Context, g globalFlags, sio stdio, maxElsewhere int, fn func(ctx context.Context, c *console) error) error {
	return runConsoleServing(ctx, g, sio, maxElsewhere, false, fn)
}

// runConsoleServing is runConsoleFor that also serves the socket API when
// serve is set (the console; a command's short run does not).
func runConsoleServing(ctx context.Context, g globalFlags, sio stdio, maxElsewhere int, serve bool, fn func(ctx context.Context, c *console) error) error {
	return withStore(ctx, g, sio, func(e *env, st *store.Store) error {
		d, err := e.dialer()
		if err != nil {
			return err
		}
		cfg := e.consoleConfig(d, st)
		cfg.MaxElsewhere = maxElsewhere
		// A command's short run shows no past results; the headless console
		// logs them only at debug level, and an attached console asks.
		cfg.NoHistoryAtStart = true
		if serve {
			if err := e.serveSocket(&cfg, true); err != nil {
				return err
			}
			cfg.MetricsListen = e.cfg.Metrics.Listen
		}
		c, err := openConsole(ctx, cfg)
		if err != nil {
			return err
		}
		e.warnAutoApprove()
		err = runWhile(ctx, c, func(ctx context.Context) error { return fn(ctx, c) })
		// Why the console stopped, in the words of what to do.
		switch {
		case errors.Is(err, transport.ErrConnectedElsewhere):
			return fmt.Errorf("%w: %w", errNoConnection, err)
		case errors.Is(err, transport.ErrUnauthorized):
			return fmt.Errorf("the server refused this console (relink it: cosigner link): %w", err)
		}
		return err
	})
}

// runWhile runs r and, beside it, fn; r stops when fn returns, and fn's
// context ends when r stops: a console whose store failed, or whose device
// was unlinked, must not leave its command (or a headless console) up and
// silent. When r stopped on its own, its error is the result.
func runWhile(ctx context.Context, r interface{ Run(context.Context) error }, fn func(context.Context) error) error {
	runCtx, stop := context.WithCancel(ctx)
	fnCtx, fnStop := context.WithCancelCause(ctx)
	done := make(chan error, 1)
	go func() {
		err := r.Run(runCtx)
		if err == nil && runCtx.Err() == nil {
			err = errConsoleStopped
		}
		fnStop(err)
		done <- err
	}()
	ferr := fn(fnCtx)
	stop()
	rerr := <-done
	if rerr != nil && ctx.Err() == nil && errors.Is(context.Cause(fnCtx), rerr) {
		// The console stopped on its own: that is the news, not what fn
		// says about being cut short.
		if ferr == nil || errors.Is(ferr, context.Canceled) || errors.Is(ferr, core.ErrStoreFailed) || errors.Is(ferr, core.ErrStopped) {
			return rerr
		}
	}
	return errors.Join(ferr, rerr)
}

// errConsoleStopped: the console stopped without saying why.
var errConsoleStopped = errors.New("the console stopped")

// runCeremonyWhile is runConsoleWhile for the ceremony commands: a server
// challenge ends fn at once (stopOnChallenge).
func runCeremonyWhile(ctx context.Context, g globalFlags, sio stdio, fn func(ctx context.Context, c *console) error) error {
	return runConsoleWhile(ctx, g, sio, func(ctx context.Context, c *console) error {
		return stopOnChallenge(ctx, c, func(ctx context.Context) error { return fn(ctx, c) })
	})
}

var keygenCommand = command{
	name:    "keygen",
	summary: "generate a t-of-n key with the roster (distributed, nobody holds the key)",
	usage: `Usage: cosigner keygen -t T [--timeout D] [global flags]

Propose a distributed key generation to every signer of the roster: each
console shows the proposal and its human accepts; then the rounds run over
Signal. Prints {"key_id","group_public_key","threshold","parties"} as JSON
when the key is generated and confirmed by every signer.

Flags:
  -t T                 signatures needed (2 for "2-of-3"; default keygen.threshold).
                       Every signer of the roster takes part; with keygen.parties
                       set, the roster must hold exactly that many
  --timeout D          give up waiting after D (default 30m; the ceremony may go on)
  --connect-timeout D  give up when the server is not reachable within D (default 1m)
` + globalFlagsHelp + ceremonyExitHelp,
	run: runKeygen,
}

func runKeygen(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	t := fs.Int("t", 0, "threshold")
	timeout := fs.Duration("timeout", 30*time.Minute, "timeout")
	connect := fs.Duration("connect-timeout", time.Minute, "connect timeout")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	tSet := false
	fs.Visit(func(f *flag.Flag) { tSet = tSet || f.Name == "t" })
	if tSet && *t < 1 {
		return usageError(cmd, sio, "-t is how many signatures are needed: 1 or more (without -t: keygen.threshold)")
	}
	cl, e, err := attached(ctx, g, sio)
	if err != nil {
		return fail(sio, cmd, err)
	}
	if cl != nil {
		defer cl.Close()
		th := e.cfg.Keygen.Threshold
		if tSet {
			th = *t
		}
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		err := keygenRemote(wctx, cl, sio, cmd, th, e.cfg.Keygen.Parties, *connect)
		if err != nil && ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w after --timeout %s: %w; the running cosigner goes on with it", errGaveUp, *timeout, err)
		}
		if err != nil {
			return failCeremony(sio, cmd, err)
		}
		return exitOK
	}
	err = runCeremonyWhile(ctx, g, sio, func(ctx context.Context, c *console) error {
		th := c.Config().Threshold
		if tSet {
			th = *t
		}
		if err := checkParties(ctx, c.App, c.Config().Parties); err != nil {
			return err
		}
		if err := waitOnline(ctx, c, *connect); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		sio.say(slog.LevelInfo, cmd.name, "proposing a %d-of-n key; waiting for every signer to accept...", th)
		defer flushSends(ctx, c, sio)
		r, err := c.App.StartKeygen(wctx, th)
		switch {
		case err != nil && ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("%w after --timeout %s: %w", errGaveUp, *timeout, err)
		case err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil:
			// Interrupted: the proposal is stored, and the ceremony goes on
			// when this console runs again.
			err = fmt.Errorf("%w; it is stored and goes on when this console runs again (cosigner, or cosigner --headless) until it ends or a round's deadline passes", err)
		}
		if err != nil {
			return offlineAtDeadline(c, err)
		}
		return printJSON(sio, map[string]any{"key_id": hex.EncodeToString(r.KeyID[:]), "group_public_key": hex.EncodeToString(r.GroupKey),
			"threshold": r.T, "parties": r.N})
	})
	if err != nil {
		return failCeremony(sio, cmd, err)
	}
	return exitOK
}

var signCommand = command{
	name:    "sign",
	summary: "ask the group for a signature; prints it as JSON once t signers approved",
	usage: `Usage: cosigner sign (--message TEXT | --hex HEX | --file F) [--key ID] [--description D] [global flags]

Send a signing request to the group: every console shows it, and once t
signers approved (this request counts as yours) the partial signatures are
combined, verified and printed:
  {"group_public_key","message_hex","signature","signers","blamed"}
The request expires after signing.request_ttl; unanswered means declined.
A signer whose partial signature was bad is named in "blamed" (and on
stderr); the signature the honest signers made is still printed (exit 0).

Flags:
  --message TEXT       the message (its bytes exactly)
  --hex HEX            the message as hex
  --file F             the message is the file's content
  --key ID             key id (hex prefix) when this console holds several keys
  --description D      what the message is, shown to the approvers
  --connect-timeout D  give up when the server is not reachable within D (default 1m)
` + globalFlagsHelp + ceremonyExitHelp,
	run: runSign,
}

func runSign(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	message := fs.String("message", "", "message")
	hexMsg := fs.String("hex", "", "message as hex")
	file := fs.String("file", "", "message file")
	keyID := fs.String("key", "", "key id")
	desc := fs.String("description", "", "description")
	connect := fs.Duration("connect-timeout", time.Minute, "connect timeout")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	set := 0
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "message" || f.Name == "hex" || f.Name == "file" {
			set++
		}
	})
	if set != 1 {
		return usageError(cmd, sio, "give exactly one of --message, --hex, --file")
	}
	var msg []byte
	var err error
	switch {
	case *hexMsg != "":
		h := strings.TrimPrefix(strings.TrimPrefix(*hexMsg, "0x"), "0X")
		if msg, err = hex.DecodeString(h); err != nil {
			return usageError(cmd, sio, "--hex takes the message as hex digits (an even number of 0-9, a-f; 0x optional): %v", err)
		}
	case *file != "":
		msg, err = os.ReadFile(*file)
	default:
		msg = []byte(*message)
	}
	if err != nil {
		return fail(sio, cmd, err)
	}
	cl, _, err := attached(ctx, g, sio)
	if err != nil {
		return fail(sio, cmd, err)
	}
	if cl != nil {
		defer cl.Close()
		if err := signRemote(ctx, cl, sio, cmd, msg, *keyID, *desc, *connect); err != nil {
			return failCeremony(sio, cmd, err)
		}
		return exitOK
	}
	err = runCeremonyWhile(ctx, g, sio, func(ctx context.Context, c *console) error {
		id, err := pickKeyID(ctx, c, *keyID)
		if err != nil {
			return err
		}
		if err := waitOnline(ctx, c, *connect); err != nil {
			return err
		}
		sio.say(slog.LevelInfo, cmd.name, "request sent; waiting for approvals...")
		defer flushSends(ctx, c, sio)
		r, err := c.App.RequestSignature(ctx, id, msg, *desc)
		if err != nil {
			return offlineAtDeadline(c, err)
		}
		signers := slices.Clone(r.Signers)
		slices.Sort(signers)
		blamed := append([]string{}, r.Blamed...)
		slices.Sort(blamed)
		if len(blamed) > 0 {
			sio.say(slog.LevelWarn, cmd.name, "signed without %s, whose partial signature was bad (blamed with evidence)", strings.Join(blamed, ", "))
		}
		return printJSON(sio, map[string]any{"group_public_key": hex.EncodeToString(r.GroupKey), "message_hex": hex.EncodeToString(msg),
			"signature": hex.EncodeToString(r.Signature), "signers": signers, "blamed": blamed})
	})
	if err != nil {
		return failCeremony(sio, cmd, err)
	}
	return exitOK
}

// checkParties refuses a keygen when keygen.parties is set (non-zero) and
// the roster does not hold exactly that many signers (this console
// included).
func checkParties(ctx context.Context, app *core.App, parties int) error {
	if parties == 0 {
		return nil
	}
	members, err := app.Roster(ctx)
	if err != nil {
		return err
	}
	if len(members) != parties {
		return fmt.Errorf("keygen.parties is %d but the roster has %d signers, this console included (cosigner group list): "+
			"add the missing cards (cosigner group add), or set keygen.parties to %d, or to 0 for the whole roster", parties, len(members), len(members))
	}
	return nil
}

// partiesGuard is the console screen's core with keygen.parties enforced
// on the keygens its form proposes.
type partiesGuard struct {
	*lateCore
	parties int
}

func (g partiesGuard) StartKeygen(ctx context.Context, t int) (*core.KeygenResult, error) {
	a, err := g.wait(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkParties(ctx, a, g.parties); err != nil {
		return nil, err
	}
	return a.StartKeygen(ctx, t)
}

// pickKeyID resolves a key id prefix (empty: the only key). Its errors
// say what is wrong with --key and list the keys there are.
func pickKeyID(ctx context.Context, c *console, prefix string) ([32]byte, error) {
	keys, err := sortedKeys(ctx, c)
	if err != nil {
		return [32]byte{}, err
	}
	return resolveKey(keys, prefix)
}

// resolveKey is pickKeyID over a list of keys sorted by id (this console's,
// or the running co-signer's read through its socket).
func resolveKey(keys []core.KeyInfo, prefix string) ([32]byte, error) {
	if len(keys) == 0 {
		return [32]byte{}, errors.New("this console holds no key yet: run cosigner keygen first (or propose one in the console)")
	}
	want := strings.ToLower(strings.TrimPrefix(prefix, "0x"))
	if strings.Trim(want, "0123456789abcdef") != "" || len(want) > 64 {
		return [32]byte{}, fmt.Errorf("--key %q is not a key id: give hex digits, a prefix of one of %s", clean(prefix), keyList(keys))
	}
	match := core.KeysWithPrefix(keyIDs(keys), want)
	switch {
	case len(match) == 1:
		return match[0], nil
	case len(match) == 0:
		return [32]byte{}, fmt.Errorf("no key %q: this console holds %s", want, keyList(keys))
	case prefix == "":
		return [32]byte{}, fmt.Errorf("this console holds %d keys: give --key with a prefix of one of %s", len(keys), keyList(keys))
	}
	return [32]byte{}, fmt.Errorf("%d keys start with %q: give --key with a longer prefix of one of %s", len(match), want, keyList(keys))
}

// keyIDs lists the keys' ids.
func keyIDs(keys []core.KeyInfo) [][32]byte {
	ids := make([][32]byte, len(keys))
	for i, k := range keys {
		ids[i] = k.KeyID
	}
	return ids
}

// keyList names keys for an error: "ID (t-of-n), ...", ids as cosigner
// keys prints them.
func keyList(keys []core.KeyInfo) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = fmt.Sprintf("%x (%d-of-%d)", k.KeyID[:], k.T, k.N)
	}
	return strings.Join(names, ", ")
}

// clean keeps a flag's value printable in an error message.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
