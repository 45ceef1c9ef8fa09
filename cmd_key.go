package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/signal-mpc/cosigner/core/keystore"
	"github.com/signal-mpc/cosigner/signal/store"
)

var keyCommand = command{
	name:    "key",
	summary: "export this console's key share as an EIP-2335 keystore",
	usage: `Usage: cosigner key export --out FILE --password-file FILE [--key ID] [--kdf scrypt|pbkdf2] [global flags]

Write this console's secret share of a threshold key as an EIP-2335
keystore (the format Ethereum validator tooling reads), encrypted with the
password in --password-file. The keystore's public key is this signer's
public share, not the group key: one share alone signs nothing the group key
verifies. The file is written with mode 0600 and never overwritten.

Flags:
  --out FILE             the keystore file to create
  --password-file FILE   file holding the keystore password (first line)
  --key ID               key id (hex prefix) when this console holds several keys
  --kdf NAME             scrypt (default) or pbkdf2
` + globalFlagsHelp,
	run: runKey,
}

func runKey(ctx context.Context, cmd command, args []string, sio stdio) int {
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
	err = withStore(ctx, g, sio, func(e *env, st *store.Store) error {
		d, err := e.dialer() // no connection is made: only the engine runs
		if err != nil {
			return err
		}
		c, err := openConsole(ctx, consoleConfig{Name: e.cfg.Device.Name, Dialer: d, Store: st, Logger: e.log})
		if err != nil {
			return err
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.app.Run(runCtx) }() // the engine alone: no network
		defer func() { stop(); <-done }()
		var id [32]byte
		if *keyID != "" {
			if id, err = pickKeyID(ctx, c, *keyID); err != nil {
				return err
			}
		}
		secret, public, info, err := c.app.KeyShare(ctx, id)
		if err != nil {
			return err
		}
		defer clear(secret)
		ks, err := keystore.Encrypt(secret, public, password, keystore.Options{KDF: *kdf,
			Description: fmt.Sprintf("cosigner share %d of %d-of-%d key %x (group key %x)", info.Self, info.T, info.N, info.KeyID[:4], info.GroupKey)})
		if err != nil {
			return err
		}
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(ks); err != nil {
			f.Close()
			os.Remove(*out)
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return printJSON(sio, map[string]any{"keystore": *out, "public_share": hex.EncodeToString(public), "key_id": hex.EncodeToString(info.KeyID[:]), "index": info.Self})
	})
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}
