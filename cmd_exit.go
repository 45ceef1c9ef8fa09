package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// The headless ceremony commands' own failures, next to core's sentinels
// (core.ErrDeclined, ErrExpired, ErrBlamed).
var (
	// errNoConnection: the server could not be reached.
	errNoConnection = errors.New("no connection to the server")
	// errGaveUp: the command's --timeout passed before the ceremony ended.
	errGaveUp = errors.New("gave up waiting")
)

// ceremonyExitHelp documents ceremonyExit in the commands' help.
const ceremonyExitHelp = `
Exit status:
  0  done: the result is printed
  1  another failure (the message says what)
  2  bad command line
  3  not approved: a signer declined, or a deadline passed (a round's
     deadline, the request's expiry, keygen --timeout) before enough answered
  4  a signer cheated: it is named, with its signed messages as evidence, on
     every console; the ceremony stopped
  5  no connection: the server was not reachable within --connect-timeout,
     or the connection was down when the deadline passed, or the server
     refuses this console's messages until a challenge is answered (the
     message gives its token; see cosigner help challenge), or the server
     kept dropping this console for another one connected with the same
     device (a copied data folder: stop one of them)
`

// ceremonyExit maps how keygen or sign failed to its exit code. Blame wins:
// a request that also expired is about the cheater.
func ceremonyExit(err error) int {
	switch {
	case errors.Is(err, core.ErrBlamed):
		return exitBlamed
	case errors.Is(err, errNoConnection):
		return exitNoConnection
	case errors.Is(err, core.ErrDeclined), errors.Is(err, core.ErrExpired), errors.Is(err, errGaveUp):
		return exitNotApproved
	}
	return exitFailure
}

// failCeremony prints the error and returns its exit code.
func failCeremony(sio stdio, cmd command, err error) int {
	sio.say(slog.LevelError, cmd.name, "%v", err)
	return ceremonyExit(err)
}

// waitOnline waits until the console is connected to the server: nothing
// can be sent before, and without this a dead server looks like silent
// signers until the deadline.
func waitOnline(ctx context.Context, c *console, d time.Duration) error {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st := c.ServerStatus()
		switch {
		case st.State == transport.StateConnected:
			return nil
		case st.State == transport.StateStopped && st.Elsewhere > 0:
			return fmt.Errorf("%w: %w", errNoConnection, transport.ErrConnectedElsewhere)
		case st.State == transport.StateStopped && st.Err != "":
			return fmt.Errorf("the server refused this console (relink it: cosigner link): %s", st.Err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%w within %s%s: check server.url and that the server is running", errNoConnection, d, lastError(st))
		case <-tick.C:
		}
	}
}

// offlineAtDeadline adds errNoConnection to a deadline failure that found
// the console disconnected: the likely reason nobody answered.
func offlineAtDeadline(c *console, err error) error {
	if !errors.Is(err, core.ErrExpired) && !errors.Is(err, errGaveUp) {
		return err
	}
	if st := c.ServerStatus(); st.State != transport.StateConnected {
		return fmt.Errorf("%w; %w%s", err, errNoConnection, lastError(st))
	}
	return err
}

func lastError(st transport.Status) string {
	if st.Err == "" {
		return ""
	}
	return " (last error: " + st.Err + ")"
}

// flushSends gives the console's last messages (a key confirmation, an
// abort, a signature result) a moment to leave before the command stops
// the console: the others may still be waiting for them.
func flushSends(ctx context.Context, c *console, sio stdio) {
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.App.Flush(fctx); err != nil && ctx.Err() == nil {
		sio.say(slog.LevelWarn, "", "some messages could not be sent yet; the others may need this console to run again")
	}
}
