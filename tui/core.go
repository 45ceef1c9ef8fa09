package tui

import (
	"context"

	"github.com/signal-mpc/cosigner/core"
)

// Core is what the console calls on core; *core.App satisfies it. Every
// call runs inside a tea.Cmd, never in Update or View.
type Core interface {
	// StartKeygen proposes a t-of-n key generation with the roster and
	// waits until it ends.
	StartKeygen(ctx context.Context, t int) (*core.KeygenResult, error)
	// RequestSignature asks the group to sign msg with keyID (the only key
	// when zero) and waits for the verified signature.
	RequestSignature(ctx context.Context, keyID [32]byte, msg []byte, description string) (*core.SignResult, error)
	// Approve answers yes to a request or proposal.
	Approve(ctx context.Context, id [32]byte) error
	// Decline answers no.
	Decline(ctx context.Context, id [32]byte, reason string) error
	// Keys lists the generated keys.
	Keys(ctx context.Context) ([]core.KeyInfo, error)
	// AnswerChallenge answers the server's challenge token (a code from
	// the relay's operator, or Signal's captcha token).
	AnswerChallenge(ctx context.Context, token, answer string) error
}
