package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/signal-mpc/cosigner/api"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/tui"
)

var challengeCommand = command{
	name:    "challenge",
	summary: "answer the server's challenge so this console's messages go out again",
	usage: `Usage: cosigner challenge --token TOKEN --code CODE [global flags]

A server may refuse an account's messages until a person answers a
challenge (HTTP 428): the console then shows a token (headless commands
print it and exit 5). On the project's relay, give the token to the relay's
operator, who runs 'cosigner relay challenge-code --data DIR TOKEN' and gives
you back a code; on Signal's service the code is the captcha token from
Signal's captcha page. This command sends the answer, then stays a moment
so that what this console held back goes out. In the console, press ! to
answer instead (this command needs the console stopped: they share the
store).

Flags:
  --token TOKEN        the challenge's token, as shown
  --code CODE          the answer (dashes, spaces and case do not matter on the relay)
  --connect-timeout D  give up when the server is not reachable within D (default 1m)
` + globalFlagsHelp,
	run: runChallenge,
}

func runChallenge(ctx context.Context, cmd command, args []string, sio stdio) int {
	var g globalFlags
	fs := newFlagSet(cmd.name, sio.err)
	g.register(fs)
	token := fs.String("token", "", "challenge token")
	code := fs.String("code", "", "answer")
	connect := fs.Duration("connect-timeout", time.Minute, "connect timeout")
	if c, ok := parseFlags(fs, cmd, args, sio); !ok {
		return c
	}
	if *token == "" || *code == "" {
		return usageError(cmd, sio, "give --token and --code")
	}
	cl, _, err := attached(ctx, g, sio)
	if err != nil {
		return fail(sio, cmd, err)
	}
	if cl != nil {
		defer cl.Close()
		if err = waitRemoteOnline(ctx, cl, *connect); err == nil {
			if err = cl.Call(ctx, api.MethodChallenge, api.ChallengeParams{Token: *token, Code: *code}, nil); err != nil {
				err = remoteError(err)
			}
		}
	} else {
		err = runConsoleWhile(ctx, g, sio, func(ctx context.Context, c *console) error {
			return answerChallenge(ctx, c, sio, cmd, *token, *code, *connect)
		})
	}
	switch {
	case err == nil:
		fmt.Fprintln(sio.out, "challenge answered")
		return exitOK
	case errors.Is(err, errNoConnection):
		sio.say(slog.LevelError, cmd.name, "%v", err)
		return exitNoConnection
	case errors.Is(err, device.ErrChallengeFailed):
		sio.say(slog.LevelError, cmd.name, "%v (check the token and the code)", err)
		return exitFailure
	}
	return fail(sio, cmd, err)
}

// answerChallenge answers the server's challenge in-process.
func answerChallenge(ctx context.Context, c *console, sio stdio, cmd command, token, code string, connect time.Duration) error {
	if err := waitOnline(ctx, c, connect); err != nil {
		return err
	}
	if err := c.App.AnswerChallenge(ctx, token, code); err != nil {
		return err
	}
	sio.say(slog.LevelInfo, cmd.name, "answer accepted; sending what was held back...")
	flushSends(ctx, c, sio)
	return nil
}

// challengedError ends a headless command whose messages the server refuses
// until a person answers its challenge.
type challengedError struct{ token string }

func (e *challengedError) Error() string {
	return fmt.Sprintf("the server refuses this console's messages until its challenge %s is answered: "+
		"ask the relay's operator for the code (cosigner relay challenge-code --data DIR %s), then run "+
		"cosigner challenge --token %s --code CODE", e.token, e.token, e.token)
}

// Is makes it a failure to reach the server (exit 5).
func (e *challengedError) Is(target error) bool { return target == errNoConnection }

// stopOnChallenge runs fn with a context that ends as soon as the server
// asks for a challenge: nothing this console sends leaves until a person
// answers it, so a headless command says so at once instead of waiting for
// its deadline. The challenge is then fn's error.
func stopOnChallenge(ctx context.Context, c *console, fn func(context.Context) error) error {
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sub := c.Bus.Subscribe(0)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		defer sub.Close()
		for {
			e, err := sub.Next(fctx)
			if err != nil {
				return
			}
			if ch, ok := e.(event.Challenge); ok {
				cancel(&challengedError{token: tui.Clean(ch.Token)}) // a server wrote it
				return
			}
		}
	}()
	err := fn(fctx)
	var ce *challengedError
	if cause := context.Cause(fctx); errors.As(cause, &ce) {
		err = ce
	}
	cancel(nil)
	<-watching
	return err
}
