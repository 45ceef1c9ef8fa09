package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/core"
)

var reshareCommand = command{
	name:    "reshare",
	summary: "hand a key to a new group of signers or threshold (or refresh its shares); the key stays the same",
	usage: `Usage: cosigner reshare --threshold T --signers NAME,NAME,... [--key ID] [--dealers NAME,...] [global flags]

Propose to move a key this console holds a share of to a new group: the
signers named (roster names, comma-separated, this console's own name
included when it stays), of whom T must sign. The group public key and the
key id stay the same; only the shares change, at the key's next epoch. With
the same signers and threshold it is a refresh: new shares of the same key.
Every dealer and new signer shows the proposal and its human (or a
[[reshare.rule]]) accepts; the new signers' cards must be verified. When it
ends, every share of the old epoch is erased, and a signer that leaves shows
the key as handed over. A declined or failed reshare leaves the old group
fully working. Shares exported earlier (key export) stay valid for the old
epoch: only erasing them ends that. Prints
{"key_id","group_public_key","epoch","threshold","parties","handed_over"}.

Flags:
  --threshold T        signatures needed in the new group (also -t)
  --signers NAMES      the new group, roster names, comma-separated
  --key ID             key id (hex prefix) when this console holds several keys
  --dealers NAMES      the old signers that deal (default: the old signers that
                       stay, when they are at least the old threshold, else all)
  --timeout D          give up waiting after D (default 30m; the ceremony may go on)
  --connect-timeout D  give up when the server is not reachable within D (default 1m)
` + globalFlagsHelp + ceremonyExitHelp,
	run: runReshare,
}

// splitNames reads a comma-separated list of roster names.
func splitNames(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

func runReshare(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	var th int
	fs.IntVar(&th, "threshold", 0, "threshold")
	fs.IntVar(&th, "t", 0, "threshold")
	signers := fs.String("signers", "", "new group")
	dealers := fs.String("dealers", "", "dealers")
	keyID := fs.String("key", "", "key id")
	timeout := fs.Duration("timeout", 30*time.Minute, "timeout")
	connect := fs.Duration("connect-timeout", time.Minute, "connect timeout")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	req := core.ReshareRequest{Threshold: th, Signers: splitNames(*signers), Dealers: splitNames(*dealers)}
	if th < 1 || len(req.Signers) == 0 {
		return usageError(cmd, sio, "--threshold (1 or more) and --signers (roster names) are required")
	}
	if th > len(req.Signers) {
		return usageError(cmd, sio, "--threshold %d is more than the %d signers named", th, len(req.Signers))
	}
	cl, _, err := attached(ctx, g, sio)
	if err != nil {
		return fail(sio, cmd, err)
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	gaveUp := func(err error) error {
		if err != nil && ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w after --timeout %s: %w; the ceremony goes on", errGaveUp, *timeout, err)
		}
		return err
	}
	if cl != nil {
		defer cl.Close()
		err := func() error {
			if err := waitRemoteOnline(wctx, cl, *connect); err != nil {
				return err
			}
			sio.say(slog.LevelInfo, cmd.name, "proposing a %d-of-%d reshare through the running cosigner; waiting for the signers...", th, len(req.Signers))
			var r api.ReshareResult
			if err := cl.Call(wctx, api.MethodReshare, api.ReshareParams{Key: *keyID, Threshold: th, Signers: req.Signers, Dealers: req.Dealers, Wait: true}, &r); err != nil {
				return remoteError(err)
			}
			return printJSON(sio, map[string]any{"key_id": r.KeyID, "group_public_key": r.GroupPublicKey, "epoch": r.Epoch,
				"threshold": r.Threshold, "parties": r.Parties, "handed_over": r.HandedOver})
		}()
		if err = gaveUp(err); err != nil {
			return failCeremony(sio, cmd, err)
		}
		return exitOK
	}
	err = runCeremonyWhile(ctx, g, sio, func(ctx context.Context, c *console) error {
		if *keyID != "" {
			id, err := pickKeyID(ctx, c, *keyID)
			if err != nil {
				return err
			}
			req.KeyID = id
		}
		if err := waitOnline(ctx, c, *connect); err != nil {
			return err
		}
		sio.say(slog.LevelInfo, cmd.name, "proposing a %d-of-%d reshare; waiting for the signers...", th, len(req.Signers))
		defer flushSends(ctx, c, sio)
		r, err := c.App.StartReshare(wctx, req)
		if err = gaveUp(err); err != nil {
			return offlineAtDeadline(c, err)
		}
		return printJSON(sio, map[string]any{"key_id": hex.EncodeToString(r.KeyID[:]), "group_public_key": hex.EncodeToString(r.GroupKey),
			"epoch": r.Epoch, "threshold": r.T, "parties": r.N, "handed_over": r.HandedOver})
	})
	if err != nil {
		return failCeremony(sio, cmd, err)
	}
	return exitOK
}

// importWarning is what the importer is told, plainly, before the key is
// split.
const importWarning = `WARNING: this console held the whole key while it split it. It keeps none of it
(the key and its shares are never stored), but:
  - the keystore file you imported is still the whole key: anyone with it and its
    password signs alone. A refresh of the group does not help against it. Destroy
    it (and its backups) when the group works, or keep it as cold as the key was.
  - a validator key must stop signing everywhere else first: the same key signing
    in two places is slashed. The group keeps no slashing-protection database.
`

const keyImportUsage = `Usage: cosigner key import KEYSTORE --password-file F -t T [global flags]

Split the whole BLS key of an EIP-2335 keystore (for example an Ethereum
validator key) into a T-of-n key of the roster: this console deals once, as
a trusted dealer with Feldman commitments; every signer shows the key's
public key and its human (or a [[reshare.rule]]) accepts; each checks its
share against the commitments, and that the key is the keystore's. The key
keeps its public key (and so its id). A wrong password, a corrupt or
unsupported keystore, or a key that fails KeyValidate is refused, and
nothing is stored. The key is never stored: a restart before the import
ends abandons it (run it again).

Flags:
  --password-file F    file holding the keystore password (first line)
  -t T                 signatures needed
  --timeout D          give up waiting after D (default 30m)
  --connect-timeout D  give up when the server is not reachable within D (default 1m)
` + globalFlagsHelp

func runKeyImport(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet("key import", sio.err)
	g.register(fs)
	pwFile := fs.String("password-file", "", "password file")
	th := fs.Int("t", 0, "threshold")
	timeout := fs.Duration("timeout", 30*time.Minute, "timeout")
	connect := fs.Duration("connect-timeout", time.Minute, "connect timeout")
	// KEYSTORE comes first: the flags follow it.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && isHelpFlag(args[0]) {
			fmt.Fprint(sio.out, keyImportUsage)
			return exitOK
		}
		fmt.Fprint(sio.err, keyImportUsage)
		return exitUsage
	}
	path := args[0]
	if code, ok := parseFlags(fs, cmd, args[1:], sio); !ok {
		return code
	}
	if *pwFile == "" || *th < 1 {
		fmt.Fprintln(sio.err, "cosigner key import: --password-file and -t (1 or more) are required")
		return exitUsage
	}
	ks, err := os.ReadFile(path)
	if err != nil {
		return fail(sio, cmd, fmt.Errorf("read the keystore: %w", err))
	}
	pw, err := os.ReadFile(*pwFile)
	if err != nil {
		return fail(sio, cmd, fmt.Errorf("read the password file: %w", err))
	}
	password, _, _ := strings.Cut(string(pw), "\n")
	clear(pw)
	if password == "" {
		return fail(sio, cmd, errors.New("the password file is empty"))
	}
	fmt.Fprint(sio.err, importWarning)
	cl, _, err := attached(ctx, g, sio)
	if err != nil {
		return fail(sio, cmd, err)
	}
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if cl != nil {
		defer cl.Close()
		err := func() error {
			if err := waitRemoteOnline(wctx, cl, *connect); err != nil {
				return err
			}
			var r api.ReshareResult
			if err := cl.Call(wctx, api.MethodKeyImport, api.KeyImportParams{Keystore: string(ks), Password: password, Threshold: *th, Wait: true}, &r); err != nil {
				return remoteError(err)
			}
			return printJSON(sio, map[string]any{"key_id": r.KeyID, "group_public_key": r.GroupPublicKey, "threshold": r.Threshold, "parties": r.Parties})
		}()
		if err != nil {
			return failCeremony(sio, cmd, err)
		}
		return exitOK
	}
	err = runCeremonyWhile(ctx, g, sio, func(ctx context.Context, c *console) error {
		if err := waitOnline(ctx, c, *connect); err != nil {
			return err
		}
		id, err := c.App.ImportKeystore(wctx, ks, password, *th)
		clear(ks)
		if err != nil {
			return err
		}
		sio.say(slog.LevelInfo, "key import", "key split and dealt; waiting for every signer to confirm...")
		defer flushSends(ctx, c, sio)
		r, err := c.App.WaitReshare(wctx, id)
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
