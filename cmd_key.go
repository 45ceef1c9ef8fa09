package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/signal/store"
)

var keyCommand = command{
	name:    "key",
	summary: "export this console's key share as an EIP-2335 keystore, or import a whole key to split",
	usage: `Usage: cosigner key export --out FILE --password-file FILE [--key ID] [--kdf scrypt|pbkdf2] [global flags]
       cosigner key import KEYSTORE --password-file F -t T [global flags]   (cosigner key import --help)

Write this console's secret share of a threshold key as an EIP-2335
keystore (the format Ethereum validator tooling reads), encrypted with the
password in --password-file. The keystore's public key is this signer's
public share, not the group key: one share alone signs nothing the group key
verifies. The file is written with mode 0600 and never overwritten.
The exported share stays valid for the key's current epoch: a later reshare
or refresh does not erase it. Until the file is destroyed, it and t-1 other
shares of that epoch still sign.

Flags:
  --out FILE             the keystore file to create
  --password-file FILE   file holding the keystore password (first line)
  --key ID               key id (hex prefix) when this console holds several keys
  --kdf NAME             scrypt (default) or pbkdf2
` + globalFlagsHelp,
	run: runKey,
}

var keysCommand = command{
	name:    "keys",
	summary: "list this console's keys: id, group key, t-of-n, own share index",
	usage: `Usage: cosigner keys [--json] [global flags]

List the threshold keys this console holds a share of: the key id (give a
prefix of it to sign --key), the group public key (what signatures verify
under), t-of-n, and this signer's share index. Works offline.

Flags:
  --json   one JSON array: [{"key_id","group_public_key","threshold","parties","index","epoch","handed_over"}]
` + globalFlagsHelp,
	run: runKeys,
}

func runKeys(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	asJSON := fs.Bool("json", false, "JSON")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	err := withKeys(ctx, g, sio, func(keys []core.KeyInfo) error {
		if *asJSON {
			list := make([]map[string]any, 0, len(keys))
			for _, k := range keys {
				list = append(list, map[string]any{"key_id": hex.EncodeToString(k.KeyID[:]), "group_public_key": hex.EncodeToString(k.GroupKey),
					"threshold": k.T, "parties": k.N, "index": k.Self, "epoch": k.Epoch, "handed_over": k.HandedOver})
			}
			return printJSON(sio, list)
		}
		if len(keys) == 0 {
			fmt.Fprintln(sio.out, "no keys yet: run cosigner keygen (or propose one in the console)")
			return nil
		}
		for _, k := range keys {
			switch {
			case k.HandedOver:
				fmt.Fprintf(sio.out, "%x  %d-of-%d  handed over (no share here)  group key %x  epoch %d\n", k.KeyID[:], k.T, k.N, k.GroupKey, k.Epoch)
			case k.Epoch > 0:
				fmt.Fprintf(sio.out, "%x  %d-of-%d  share %d  group key %x  epoch %d\n", k.KeyID[:], k.T, k.N, k.Self, k.GroupKey, k.Epoch)
			default:
				fmt.Fprintf(sio.out, "%x  %d-of-%d  share %d  group key %x\n", k.KeyID[:], k.T, k.N, k.Self, k.GroupKey)
			}
		}
		return nil
	})
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}

// sortedKeys is the console's keys by id, for stable listings.
func sortedKeys(ctx context.Context, c *console) ([]core.KeyInfo, error) {
	keys, err := c.App.Keys(ctx)
	if err != nil {
		return nil, err
	}
	return byID(keys), nil
}

// byID sorts keys by id, for stable listings.
func byID(keys []core.KeyInfo) []core.KeyInfo {
	slices.SortFunc(keys, func(a, b core.KeyInfo) int { return bytes.Compare(a.KeyID[:], b.KeyID[:]) })
	return keys
}

// withEngine opens the console with only its engine running (no network)
// for fn.
func withEngine(ctx context.Context, g globalFlags, sio stdio, fn func(c *console) error) error {
	return withStore(ctx, g, sio, func(e *env, st *store.Store) error {
		d, err := e.dialer() // no connection is made: only the engine runs
		if err != nil {
			return err
		}
		c, err := openConsole(ctx, consoleConfig{Name: e.cfg.Device.Name, Dialer: d, Store: st, Logger: e.log, NoHistoryAtStart: true})
		if err != nil {
			return err
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.App.Run(runCtx) }() // the engine alone: no network
		defer func() { stop(); <-done }()
		return fn(c)
	})
}

func runKey(ctx context.Context, cmd command, args []string, sio stdio) int {
	if len(args) > 0 && isHelpFlag(args[0]) {
		fmt.Fprint(sio.out, cmd.usage)
		return exitOK
	}
	if len(args) > 0 && args[0] == "import" {
		return runKeyImport(ctx, cmd, args[1:], sio)
	}
	if len(args) == 0 || args[0] != "export" {
		fmt.Fprint(sio.err, cmd.usage)
		return exitUsage
	}
	var g globalFlags
	fs := newFlagSet("key export", sio.err)
	g.register(fs)
	out := fs.String("out", "", "keystore file")
	pwFile := fs.String("password-file", "", "password file")
	keyID := fs.String("key", "", "key id")
	kdf := fs.String("kdf", "scrypt", "kdf")
	if code, ok := parseFlags(fs, cmd, args[1:], sio); !ok {
		return code
	}
	if *out == "" || *pwFile == "" {
		fmt.Fprintln(sio.err, "cosigner key export: --out and --password-file are required")
		return exitUsage
	}
	pw, err := os.ReadFile(*pwFile)
	if err != nil {
		return fail(sio, cmd, err)
	}
	password, _, _ := strings.Cut(string(pw), "\n")
	if password == "" {
		return fail(sio, cmd, errors.New("the password file is empty"))
	}
	if *kdf != "scrypt" && *kdf != "pbkdf2" {
		return usageError(cmd, sio, "--kdf is scrypt or pbkdf2")
	}
	fmt.Fprintln(sio.err, "note: the exported share stays valid for the key's current epoch; a later reshare or refresh does not erase this file: destroy it yourself")
	cl, _, err := attached(ctx, g, sio)
	if err != nil {
		return fail(sio, cmd, err)
	}
	if cl != nil {
		// The running co-signer holds the share: it writes the keystore.
		defer cl.Close()
		abs, err := filepath.Abs(*out)
		if err != nil {
			return fail(sio, cmd, err)
		}
		var r api.KeyExportResult
		if err := cl.Call(ctx, api.MethodKeyExport, api.KeyExportParams{Key: *keyID, Path: abs, Password: password, KDF: *kdf}, &r); err != nil {
			return fail(sio, cmd, remoteError(err))
		}
		if err := printJSON(sio, map[string]any{"keystore": r.Keystore, "public_share": r.PublicShare, "key_id": r.KeyID, "index": r.Index}); err != nil {
			return fail(sio, cmd, err)
		}
		return exitOK
	}
	err = withEngine(ctx, g, sio, func(c *console) error {
		var id [32]byte
		var err error
		if *keyID != "" {
			if id, err = pickKeyID(ctx, c, *keyID); err != nil {
				return err
			}
		}
		r, err := c.ExportKey(ctx, id, *out, password, *kdf)
		if err != nil {
			return err
		}
		return printJSON(sio, map[string]any{"keystore": r.Keystore, "public_share": r.PublicShare, "key_id": r.KeyID, "index": r.Index})
	})
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}
