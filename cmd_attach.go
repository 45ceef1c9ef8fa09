package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/tui"
)

// A console started on a data directory whose co-signer already runs (a
// daemon, or another console) attaches to it over the socket: the same
// screens and keys, several people at once. Closing it never stops the
// co-signer.

// redialEvery is how often a detached console looks for its co-signer.
const redialEvery = time.Second

// runConsoleAttached runs the console over the co-signer c serves.
func runConsoleAttached(ctx context.Context, e *env, c *api.Client, sio stdio) error {
	logf, err := os.OpenFile(e.cfg.Log.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logf.Close()
	e.log = newLogger(logf, e.cfg.Log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	remote := &api.Remote{}
	m := tui.New(ctx, remote, tui.WithLogger(e.log), tui.WithClipboard(sio.out),
		tui.WithGrace(e.cfg.Signing.ApprovalGrace.Duration), tui.WithThreshold(e.cfg.Keygen.Threshold),
		tui.WithIdentity(tui.Identity{Name: e.cfg.Device.Name, Server: e.cfg.Server.URL}))
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx), tea.WithOutput(unwrap(sio.out)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		attachLoop(ctx, e.socketPath(), c, remote, p.Send)
	}()
	_, err = p.Run()
	cancel()
	<-done
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) && ctx.Err() == nil {
		return err
	}
	return nil
}

// attachLoop feeds the screen from the co-signer, and when its process
// goes away says so and attaches again once one serves the socket.
func attachLoop(ctx context.Context, path string, c *api.Client, remote *api.Remote, send func(tea.Msg)) {
	for {
		if c != nil {
			remote.Attach(c)
			err := feedAttached(ctx, c, send)
			remote.Attach(nil)
			c.Close()
			if ctx.Err() != nil {
				return
			}
			send(event.Connection{State: "detached", Detail: "the cosigner this console is attached to stopped"})
			send(event.Error{Time: time.Now(), Text: fmt.Sprintf("the cosigner serving %s went away (%v); this console attaches again when it serves", path, err)})
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(redialEvery):
		}
		var err error
		if c, err = dialCosigner(ctx, path); err != nil {
			c = nil
		}
	}
}

// feedAttached sends the screen what the co-signer holds now (who it is,
// its roster, its signatures, what waits for approval, its connection),
// then every event, until the connection ends.
func feedAttached(ctx context.Context, c *api.Client, send func(tea.Msg)) error {
	// Subscribed first: nothing that happens while the rest is read is
	// missed (the screen merges what it gets twice by id).
	if err := c.Call(ctx, api.MethodSubscribe, nil, nil); err != nil {
		return err
	}
	var st api.StatusResult
	if err := c.Call(ctx, api.MethodStatus, nil, &st); err != nil {
		return err
	}
	send(tui.Identity{Name: st.Name, Account: st.Account, Device: st.Device})
	send(tui.Linked{Account: st.Account, Device: st.Device})
	var ro api.RosterResult
	if err := c.Call(ctx, api.MethodRoster, nil, &ro); err != nil {
		return err
	}
	var r tui.Roster
	for _, s := range ro.Signers {
		r.Signers = append(r.Signers, tui.Signer{Name: s.Name, Account: s.Account, Device: s.Device, Fingerprint: s.Fingerprint,
			Verified: s.Verified, Blocked: s.Blocked, Self: s.Self})
	}
	send(r)
	var sigs api.SignaturesResult
	if err := c.Call(ctx, api.MethodSignatures, api.SignaturesParams{Limit: screenHistory}, &sigs); err != nil {
		return err
	}
	for _, s := range sigs.Signatures {
		s.Restored = true
		send(s)
	}
	var ap api.ApprovalsResult
	if err := c.Call(ctx, api.MethodApprovals, nil, &ap); err != nil {
		return err
	}
	for _, a := range ap.Approvals {
		short := a.KeyID
		if len(short) > 8 {
			short = short[:8]
		}
		send(event.ApprovalRequested{ID: a.ID, Kind: a.Kind, Requester: a.Requester, KeyID: short, Text: a.Text, Hex: a.Hex,
			SHA256: a.SHA256, Description: a.Description, Expires: a.Expires})
	}
	send(st.Connection)
	for {
		select {
		case e, ok := <-c.Events():
			if !ok {
				return c.Err()
			}
			send(e)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
