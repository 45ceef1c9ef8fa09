package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/roster"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/store"
)

// fail prints "cosigner CMD: err" and returns the failure exit code.
func fail(sio stdio, cmd command, err error) int {
	sio.say(slog.LevelError, cmd.name, "%v", err)
	return exitFailure
}

// withStore loads the environment and opens the store for fn.
func withStore(ctx context.Context, g globalFlags, sio stdio, fn func(e *env, st *store.Store) error) error {
	e, err := loadEnv(g, sio)
	if err != nil {
		return err
	}
	st, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(e, st)
}

var registerCommand = command{
	name:    "register",
	summary: "create an account on a self-hosted relay with this console as its first device",
	usage: `Usage: cosigner register [--token-file FILE] [--server NAME] [global flags]

On a self-hosted relay (cosigner relay), create a Signal-compatible account
whose first device is this console: no phone needed. The relay must allow it:
an operator-issued registration token, or open registration on loopback.
The console can then approve other consoles' link requests (add-device).
With several [[servers]], --server names the one to register on (default:
the first); each server's account, keys and sessions are its own.

Flags:
  --token-file FILE   file holding the relay operator's registration token
  --server NAME       the [[servers]] block to register on (default: the first)
` + globalFlagsHelp,
	run: runRegister,
}

func runRegister(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	tokenFile := fs.String("token-file", "", "registration token file")
	server := fs.String("server", "", "server name")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	var token string
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fail(sio, cmd, err)
		}
		token = strings.TrimSpace(string(b))
	}
	err := withStore(ctx, g, sio, func(e *env, all *store.Store) error {
		srv, st, err := e.serverStore(all, *server)
		if err != nil {
			return err
		}
		if ok, err := linked(ctx, st); err != nil || ok {
			return errors.Join(err, fmt.Errorf("this console already has an account on server %s", srv.Name))
		}
		acct, err := device.Register(ctx, srv.Dialer, st, token, e.cfg.Device.Name, nil)
		if err != nil {
			return err
		}
		return printJSON(sio, map[string]any{"account": acct.ACI, "device": acct.DeviceID})
	})
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}

var linkCommand = command{
	name:    "link",
	summary: "link this console to a Signal account as an extra device (QR code)",
	usage: `Usage: cosigner link [--name NAME] [--server NAME] [global flags]

Show a QR code (and the sgnl://linkdevice URL) to scan with the account's
phone (Signal > Settings > Linked devices), or to give to 'cosigner
add-device' on a console that is its account's primary. The code is renewed
every 90 seconds. Once linked, the console registers its keys.

The URL is printed on its own line on stdout each time it changes; when
linked, a JSON line {"account": ..., "device": ...} follows.

With several [[servers]], --server names the one to link on (default: the
first): run it once per server, each with that server's account.

Flags:
  --name NAME     device name shown in the account's device list (default: device.name)
  --server NAME   the [[servers]] block to link on (default: the first)
` + globalFlagsHelp,
	run: runLink,
}

func runLink(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	name := fs.String("name", "", "device name")
	server := fs.String("server", "", "server name")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	showQR := !g.headless && isTerminal(sio.out)
	err := withStore(ctx, g, sio, func(e *env, all *store.Store) error {
		srv, st, err := e.serverStore(all, *server)
		if err != nil {
			return err
		}
		if ok, err := linked(ctx, st); err != nil || ok {
			return errors.Join(err, fmt.Errorf("this console is already linked on server %s", srv.Name))
		}
		d := srv.Dialer
		n := *name
		if n == "" {
			n = e.cfg.Device.Name
		}
		show := linkOutput{out: sio.out, err: sio.err, qr: showQR}
		acct, err := device.Link(ctx, device.LinkConfig{Dialer: d, Store: st, Name: n, OnURL: show.url, OnStep: show.step})
		if err != nil {
			return err
		}
		return printJSON(sio, map[string]any{"account": acct.ACI, "device": acct.DeviceID})
	})
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}

var addDeviceCommand = command{
	name:    "add-device",
	summary: "approve a link request as the account's primary (the phone's role)",
	usage: `Usage: cosigner add-device URL [global flags]

On a console registered with 'cosigner register' (its account's primary),
link the console that shows URL (sgnl://linkdevice?...) to this account.

Flags:
` + globalFlagsHelp,
	run: runAddDevice,
}

func runAddDevice(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	pos, code, ok := parseFlagsArgs(fs, cmd, args, sio, 1)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(sio.err, "cosigner add-device: give the link URL (sgnl://linkdevice?...)")
		return exitUsage
	}
	cl, _, err := attached(ctx, g, sio)
	if err != nil {
		return fail(sio, cmd, err)
	}
	if cl != nil {
		defer cl.Close()
		if err := cl.Call(ctx, api.MethodDeviceAdd, api.DeviceAddParams{URL: pos[0]}, nil); err != nil {
			return fail(sio, cmd, remoteError(err))
		}
		fmt.Fprintln(sio.out, "device linked")
		return exitOK
	}
	err = withStore(ctx, g, sio, func(e *env, st *store.Store) error {
		p, err := device.PrimaryFromStore(ctx, st)
		if err != nil {
			return err
		}
		d, err := e.dialer()
		if err != nil {
			return err
		}
		if err := p.ApproveLink(ctx, d, pos[0], nil); err != nil {
			return err
		}
		fmt.Fprintln(sio.out, "device linked")
		return nil
	})
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}

// ownCard builds this console's signed card from the store: one address
// per configured server it has an account on.
func ownCard(ctx context.Context, e *env, st *store.Store) (roster.Card, error) {
	var addrs []roster.Address
	for _, s := range e.cfg.Servers() {
		sub, err := st.Server(s.Name)
		if err != nil {
			return roster.Card{}, err
		}
		acct, err := sub.Account(ctx)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return roster.Card{}, err
		}
		u, err := roster.CanonicalServer(s.URL)
		if err != nil {
			return roster.Card{}, fmt.Errorf("server %s: %w", s.Name, err)
		}
		addrs = append(addrs, roster.Address{Server: u, Account: acct.ACI, Device: acct.DeviceID,
			IdentityKey: acct.ACIIdentity.PublicKey().Serialize()})
	}
	if len(addrs) == 0 {
		return roster.Card{}, errors.New("this console is not linked yet: run cosigner link (or register)")
	}
	key, err := core.ConsoleKey(ctx, coreVault{Store: st})
	if err != nil {
		return roster.Card{}, err
	}
	return core.OwnCard(ctx, coreVault{Store: st}, e.cfg.Device.Name, key, addrs)
}

var meCommand = command{
	name:    "me",
	summary: "show this signer's card (account, device, keys, fingerprint)",
	usage: `Usage: cosigner me [--json] [global flags]

Print this console's card: its Signal account and device, Signal identity
key, console key (which signs its MPC messages) and the fingerprint humans
compare. Give the JSON card to the other signers ('cosigner group add').
The card's name is the configuration's device.name. On several servers, the
card lists one address per server and is signed by the console key; its
fingerprint is the console key's, so adding a server needs no new comparison.

Flags:
  --json   print the card as JSON
` + globalFlagsHelp,
	run: runMe,
}

func runMe(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	asJSON := fs.Bool("json", false, "JSON")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	err := withCard(ctx, g, sio, func(c roster.Card) error {
		if *asJSON {
			return printJSON(sio, c)
		}
		fmt.Fprintf(sio.out, "name         %s\naccount      %s\ndevice       %d\nfingerprint  %s\n", c.Name, c.Account, c.Device, c.Fingerprint())
		if len(c.Addresses) > 1 {
			for _, a := range c.Addresses {
				fmt.Fprintf(sio.out, "server       %s  %s.%d\n", a.Server, a.Account, a.Device)
			}
		}
		return nil
	})
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}

var groupCommand = command{
	name:    "group",
	summary: "manage the roster of signers: add, list, verify",
	usage: `Usage: cosigner group add CARD [--verified] | group list | group verify NAME  [global flags]

  add CARD      add a signer's card (the JSON of 'cosigner me --json', or a file
                holding it). Keys are trusted on first use; a card whose keys
                changed blocks its signer until verified.
  list          list the signers with their fingerprints and whether verified
  verify NAME   record that you compared NAME's fingerprint with theirs (out of
                band); accepts a changed card

Flags:
  --verified    with add: the fingerprint was already compared
` + globalFlagsHelp,
	run: runGroup,
}

func runGroup(ctx context.Context, cmd command, args []string, sio stdio) int {
	switch {
	case len(args) == 0:
		return usageError(cmd, sio, "give a subcommand: add, list or verify")
	case isHelpFlag(args[0]):
		fmt.Fprint(sio.out, cmd.usage)
		return exitOK
	}
	sub, rest := args[0], args[1:]
	// The positional arguments each subcommand takes.
	want, known := map[string]int{"add": 1, "list": 0, "verify": 1}[sub]
	if !known {
		return usageError(cmd, sio, "unknown subcommand %q: add, list or verify", sub)
	}
	var g globalFlags
	fs := newFlagSet(cmd.name+" "+sub, sio.err)
	g.register(fs)
	verified := fs.Bool("verified", false, "already verified")
	pos, code, ok := parseFlagsArgs(fs, cmd, rest, sio, want)
	if !ok {
		return code
	}
	if len(pos) != want {
		return usageError(cmd, sio, "%s takes %s", sub, map[string]string{"add": "one card (JSON, or a file holding it)", "verify": "a signer's name"}[sub])
	}
	if cl, _, err := attached(ctx, g, sio); err != nil {
		return fail(sio, cmd, err)
	} else if cl != nil {
		defer cl.Close()
		if err := groupRemote(ctx, cl, sio, sub, pos, *verified); err != nil {
			return fail(sio, cmd, remoteError(err))
		}
		return exitOK
	}
	err := withStore(ctx, g, sio, func(e *env, st *store.Store) error {
		v := coreVault{Store: st}
		r, err := core.LoadRoster(ctx, v)
		if err != nil {
			return err
		}
		// The roster always holds this console's own card.
		if own, err := ownCard(ctx, e, st); err == nil {
			if err := r.Add(own, true); err != nil && !errors.Is(err, roster.ErrNameTaken) {
				return fmt.Errorf("own card: %w", err)
			}
		}
		switch sub {
		case "add":
			raw := []byte(pos[0])
			if !strings.HasPrefix(strings.TrimSpace(pos[0]), "{") {
				if raw, err = os.ReadFile(pos[0]); err != nil {
					return err
				}
			}
			c, err := roster.ParseCard(raw)
			if err != nil {
				return err
			}
			addErr := r.Add(*c, *verified)
			if addErr != nil && !errors.Is(addErr, roster.ErrKeyChanged) {
				return addErr
			}
			if err := core.SaveRoster(ctx, v, r); err != nil {
				return err
			}
			if addErr != nil {
				return addErr
			}
			fmt.Fprintf(sio.out, "added %s, fingerprint %s\n", c.Name, c.Fingerprint())
		case "list":
			for _, m := range r.Members() {
				fmt.Fprintln(sio.out, rosterLine(m.Card.Name, m.Card.Fingerprint(), m.Verified, m.Blocked()))
			}
		case "verify":
			if err := r.Verify(pos[0]); err != nil {
				return err
			}
			if err := core.SaveRoster(ctx, v, r); err != nil {
				return err
			}
			fmt.Fprintf(sio.out, "%s verified\n", pos[0])
		}
		return nil
	})
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}

func printJSON(sio stdio, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(sio.out, string(b))
	return err
}

// rosterLine is one signer as cosigner group list prints it.
func rosterLine(name, fingerprint string, verified, blocked bool) string {
	state := "not verified"
	switch {
	case blocked:
		state = "KEYS CHANGED: blocked until verified"
	case verified:
		state = "verified"
	}
	return fmt.Sprintf("%-16s %s  %s", name, fingerprint, state)
}
