package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/signal-mpc/cosigner/core/event"
)

// Server challenges. A Signal server may refuse an account's sends until a
// person answers a challenge (428: a captcha on Signal's service, a code
// from the operator on the project's relay). core cannot answer it itself;
// it tells the console once per challenge (event.Challenge) and passes the
// person's answer on. Sends keep being retried meanwhile, and open
// ceremonies re-send their round, so nothing is lost while the person acts.

// ErrNoChallenges: the Messenger cannot answer server challenges.
var ErrNoChallenges = errors.New("core: this connection cannot answer server challenges")

// Challenger is a Messenger that can answer its server's challenges.
type Challenger interface {
	AnswerChallenge(ctx context.Context, token, answer string) error
}

// challengeError is a Messenger's error that asks for a challenge: core
// finds it with errors.As, without knowing the Messenger's types.
type challengeError interface {
	error
	ChallengeToken() string
}

// noteSendError publishes the challenge a failed send asks for, once per
// token (every lane of every peer fails alike until it is answered).
func (a *App) noteSendError(err error) {
	var ce challengeError
	if !errors.As(err, &ce) {
		return
	}
	tok := ce.ChallengeToken()
	a.mu.Lock()
	seen := tok == a.challenge
	a.challenge = tok
	a.mu.Unlock()
	if !seen {
		a.log.Warn("the server requires a challenge before more messages go out", "token", tok)
		a.cfg.Bus.Publish(event.Challenge{Time: a.cfg.Now(), Token: tok})
	}
}

// AnswerChallenge passes a person's answer to the server's challenge on.
// Errors are the Messenger's (a refused answer among them) or
// ErrNoChallenges.
func (a *App) AnswerChallenge(ctx context.Context, token, answer string) error {
	c, ok := a.cfg.Messenger.(Challenger)
	if !ok {
		return ErrNoChallenges
	}
	if err := c.AnswerChallenge(ctx, token, answer); err != nil {
		return fmt.Errorf("answer challenge: %w", err)
	}
	a.mu.Lock()
	if a.challenge == token {
		a.challenge = ""
	}
	a.mu.Unlock()
	a.log.Info("server challenge answered", "token", token)
	a.cfg.Bus.Publish(event.ChallengeAnswered{Time: a.cfg.Now(), Token: token})
	// What the refusals held back goes out now, not at the next retry or
	// periodic re-send (the person took minutes: retries have given up).
	// The answer itself succeeded whatever this wait gives.
	_ = a.do(ctx, a.resendOpen)
	return nil
}
