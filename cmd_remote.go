package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/roster"
	"github.com/signal-mpc/cosigner/signal/store"
)

// The headless commands go through the socket API of the co-signer that
// runs on their data directory (a daemon or a console): it owns the store.
// With none running they work in-process.

// attached connects to the socket of the co-signer running on g's data
// directory; nil when none runs (the command then opens the store itself).
func attached(ctx context.Context, g globalFlags, sio stdio) (*api.Client, *env, error) {
	e, err := loadEnv(g, sio)
	if err != nil {
		return nil, nil, err
	}
	cl, err := dialCosigner(ctx, e.socketPath())
	if errors.Is(err, api.ErrNoServer) {
		return nil, e, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return cl, e, nil
}

// dialCosigner connects to the running co-signer's socket and says hello
// with this process's SSH client, if it runs under SSH: the co-signer
// records it, as this process's claim, with the answers given here.
func dialCosigner(ctx context.Context, path string) (*api.Client, error) {
	cl, err := api.Dial(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := cl.Hello(ctx, api.SSHClientFromEnv(os.Getenv)); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// remoteError gives an API error the meaning the commands' exit codes
// read (ceremonyExit).
func remoteError(err error) error {
	var rerr *api.Error
	if !errors.As(err, &rerr) {
		return err
	}
	switch rerr.Code {
	case api.CodeFailed:
		var d api.FailureData
		_ = json.Unmarshal(rerr.Data, &d)
		switch {
		case len(d.Blamed) > 0 && !d.Expired:
			return fmt.Errorf("%w: %s", core.ErrBlamed, rerr.Message)
		case d.Expired:
			return fmt.Errorf("%w: %s", core.ErrExpired, rerr.Message)
		case d.Declined:
			return fmt.Errorf("%w: %s", core.ErrDeclined, rerr.Message)
		}
	case api.CodeStopped:
		return fmt.Errorf("%w: %s", core.ErrStopped, rerr.Message)
	}
	return errors.New(rerr.Message)
}

// waitRemoteOnline waits until the running co-signer is connected to its
// server, as waitOnline does in-process.
func waitRemoteOnline(ctx context.Context, cl *api.Client, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var st api.StatusResult
		if err := cl.Call(ctx, api.MethodStatus, nil, &st); err != nil {
			return remoteError(err)
		}
		if st.Connection.State == "connected" {
			return nil
		}
		if time.Now().After(deadline) {
			last := ""
			if st.Connection.Detail != "" {
				last = " (last error: " + st.Connection.Detail + ")"
			}
			return fmt.Errorf("%w within %s%s: the running cosigner is %s", errNoConnection, d, last, st.Connection.State)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// signRemote asks the running co-signer for a signature and prints it as
// cosigner sign does.
func signRemote(ctx context.Context, cl *api.Client, sio stdio, cmd command, msg []byte, key, desc string, connect time.Duration) error {
	// The key is resolved here, before anything is said to be sent: a bad
	// --key gets the same error as without a running co-signer.
	r0 := &api.Remote{}
	r0.Attach(cl)
	keys, err := r0.Keys(ctx)
	if err != nil {
		return err
	}
	keyID, err := resolveKey(byID(keys), key)
	if err != nil {
		return err
	}
	if err := waitRemoteOnline(ctx, cl, connect); err != nil {
		return err
	}
	sio.say(slog.LevelInfo, cmd.name, "request sent through the running cosigner; waiting for approvals...")
	var r api.SignResult
	if err := cl.Call(ctx, api.MethodSign, api.SignParams{Hex: fmt.Sprintf("%x", msg), Key: fmt.Sprintf("%x", keyID), Description: desc, Wait: true}, &r); err != nil {
		return remoteError(err)
	}
	signers, blamed := slices.Clone(r.Signers), append([]string{}, r.Blamed...)
	slices.Sort(signers)
	slices.Sort(blamed)
	return printJSON(sio, map[string]any{"group_public_key": r.GroupPublicKey, "message_hex": r.MessageHex,
		"signature": r.Signature, "signers": signers, "blamed": blamed})
}

// keygenRemote proposes a key generation through the running co-signer.
func keygenRemote(ctx context.Context, cl *api.Client, sio stdio, cmd command, t, parties int, connect time.Duration) error {
	if parties != 0 {
		var r api.RosterResult
		if err := cl.Call(ctx, api.MethodRoster, nil, &r); err != nil {
			return remoteError(err)
		}
		if len(r.Signers) != parties {
			return fmt.Errorf("keygen.parties is %d, but the roster holds %d signers (this console included): add or remove signers, or change keygen.parties (0: the whole roster)", parties, len(r.Signers))
		}
	}
	if err := waitRemoteOnline(ctx, cl, connect); err != nil {
		return err
	}
	sio.say(slog.LevelInfo, cmd.name, "proposing a %d-of-n key through the running cosigner; waiting for every signer to accept...", t)
	var r api.KeygenResult
	if err := cl.Call(ctx, api.MethodKeygen, api.KeygenParams{Threshold: t, Wait: true}, &r); err != nil {
		return remoteError(err)
	}
	return printJSON(sio, map[string]any{"key_id": r.KeyID, "group_public_key": r.GroupPublicKey, "threshold": r.Threshold, "parties": r.Parties})
}

// withCard calls fn with this signer's card: from the running co-signer,
// or from the store.
func withCard(ctx context.Context, g globalFlags, sio stdio, fn func(roster.Card) error) error {
	cl, _, err := attached(ctx, g, sio)
	if err != nil {
		return err
	}
	if cl != nil {
		defer cl.Close()
		var me api.MeResult
		if err := cl.Call(ctx, api.MethodMe, nil, &me); err != nil {
			return remoteError(err)
		}
		c, err := roster.ParseCard(me.Card)
		if err != nil {
			return fmt.Errorf("%w: the running cosigner's card: %w", api.ErrProtocol, err)
		}
		return fn(*c)
	}
	return withStore(ctx, g, sio, func(e *env, st *store.Store) error {
		c, err := ownCard(ctx, e, st)
		if err != nil {
			return err
		}
		return fn(c)
	})
}

// withKeys calls fn with the keys, sorted by id: from the running
// co-signer, or from the store.
func withKeys(ctx context.Context, g globalFlags, sio stdio, fn func([]core.KeyInfo) error) error {
	cl, _, err := attached(ctx, g, sio)
	if err != nil {
		return err
	}
	if cl != nil {
		defer cl.Close()
		r := &api.Remote{}
		r.Attach(cl)
		keys, err := r.Keys(ctx)
		if err != nil {
			return err
		}
		return fn(byID(keys))
	}
	return withEngine(ctx, g, sio, func(c *console) error {
		keys, err := sortedKeys(ctx, c)
		if err != nil {
			return err
		}
		return fn(keys)
	})
}

// groupRemote is cosigner group through the running co-signer.
func groupRemote(ctx context.Context, cl *api.Client, sio stdio, sub string, pos []string, verified bool) error {
	switch sub {
	case "add":
		raw := []byte(pos[0])
		if !strings.HasPrefix(strings.TrimSpace(pos[0]), "{") {
			var err error
			if raw, err = os.ReadFile(pos[0]); err != nil {
				return err
			}
		}
		c, err := roster.ParseCard(raw)
		if err != nil {
			return err
		}
		if err := cl.Call(ctx, api.MethodRosterAdd, api.RosterAddParams{Card: json.RawMessage(raw), Verified: verified}, nil); err != nil {
			return err
		}
		fmt.Fprintf(sio.out, "added %s, fingerprint %s\n", c.Name, c.Fingerprint())
	case "list":
		var r api.RosterResult
		if err := cl.Call(ctx, api.MethodRoster, nil, &r); err != nil {
			return err
		}
		for _, m := range r.Signers {
			fmt.Fprintln(sio.out, rosterLine(m.Name, m.Fingerprint, m.Verified, m.Blocked))
		}
	case "verify":
		if err := cl.Call(ctx, api.MethodRosterVerify, api.RosterVerifyParams{Name: pos[0]}, nil); err != nil {
			return err
		}
		fmt.Fprintf(sio.out, "%s verified\n", pos[0])
	}
	return nil
}
