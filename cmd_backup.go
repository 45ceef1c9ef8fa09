package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/node"
	"github.com/signal-mpc/cosigner/signal/store"
)

var backupCommand = command{
	name:    "backup",
	summary: "write a consistent, still encrypted copy of this console's store",
	usage: `Usage: cosigner backup [--force] [global flags] FILE

Write a consistent copy of this console's store (its Signal account and
sessions, its key shares, ceremonies and roster) to FILE, mode 0600, whole
or not at all. The copy stays encrypted under the store's key, which is not
in it: keep the key file (store.key_file, by default DATA/store.key) or the
passphrase safe, apart from the copy; without it the copy opens for nobody.
While a daemon or a console runs on this data directory, it writes the
copy (FILE is then taken on its machine, as an absolute path).

To restore, stop the console and put the copy in place of DATA/device.db,
with the same key file or passphrase. The console opened from a copy starts
its Signal sessions afresh and no longer takes part in the ceremonies that
were running when the copy was made (see README, "Backup and restore").

Flags:
  --force   replace FILE if it exists (by default an existing FILE is an error)
` + globalFlagsHelp,
	run: runBackup,
}

func runBackup(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	flags := newFlagSet(cmd.name, sio.err)
	g.register(flags)
	force := flags.Bool("force", false, "replace FILE if it exists")
	pos, code, ok := parseFlagsArgs(flags, cmd, args, sio, 1)
	if !ok {
		return code
	}
	if len(pos) != 1 || pos[0] == "" {
		return usageError(cmd, sio, "name the FILE to write")
	}
	path := pos[0]
	cl, e, err := attached(ctx, g, sio)
	if err != nil {
		return fail(sio, cmd, err)
	}
	if cl != nil {
		// The running co-signer owns the store: it writes the copy.
		defer cl.Close()
		abs, err := filepath.Abs(path)
		if err != nil {
			return fail(sio, cmd, err)
		}
		if err := cl.Call(ctx, api.MethodBackup, api.BackupParams{Path: abs, Replace: *force}, nil); err != nil {
			return fail(sio, cmd, remoteError(err))
		}
		backupWritten(sio, e, abs)
		return exitOK
	}
	err = withStore(ctx, g, sio, func(e *env, st *store.Store) error {
		// --force must not put the copy over the store or its key.
		if err := node.BackupStore(ctx, st, path, *force, e.ownFiles()); err != nil {
			return err
		}
		backupWritten(sio, e, path)
		return nil
	})
	if errors.Is(err, fs.ErrExist) {
		return fail(sio, cmd, fmt.Errorf("%s exists (--force replaces it)", path))
	}
	if err != nil {
		return fail(sio, cmd, err)
	}
	return exitOK
}

// backupWritten tells where the copy is and that its key is not in it.
func backupWritten(sio stdio, e *env, path string) {
	secret := "the key file " + e.cfg.Store.KeyFile
	if v := e.cfg.Store.PassphraseEnv; v != "" {
		secret = "the passphrase (in $" + v + ")"
	}
	fmt.Fprintf(sio.err, "cosigner backup: wrote %s, encrypted under this store's key; the key is not in it: "+
		"back up %s separately, apart from the copy\n", path, secret)
}
