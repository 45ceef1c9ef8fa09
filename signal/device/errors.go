package device

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors.
var (
	// ErrNotLinked: the store holds no account yet.
	ErrNotLinked = errors.New("device: not linked")
	// ErrHTTP wraps every unexpected status from the server; *StatusError
	// carries the status.
	ErrHTTP = errors.New("device: server error")
	// ErrSend: a message could not be sent after the allowed retries.
	ErrSend = errors.New("device: send failed")
	// ErrPadding: a decrypted plaintext is not padded as Signal pads.
	ErrPadding = errors.New("device: bad padding")
	// ErrNotHandled, returned (wrapped) by a DeliverFunc, means the
	// application could not take the message now (its store failed): the
	// envelope is not acknowledged and the server delivers it again.
	ErrNotHandled = errors.New("device: message not handled")
	// ErrUntagged: an envelope without the MPC tag (other Signal traffic).
	ErrUntagged = errors.New("device: not an MPC message")
	// ErrEnvelope: a delivered envelope does not parse or lacks fields.
	ErrEnvelope = errors.New("device: malformed envelope")
	// ErrRateLimited: the server refused a send for now (429);
	// *RateLimitError says how long to wait.
	ErrRateLimited = errors.New("device: rate limited by the server")
	// ErrChallengeRequired: the server wants a challenge answered (428)
	// before this account sends again; *ChallengeError carries its token.
	ErrChallengeRequired = errors.New("device: the server requires a challenge")
	// ErrChallengeFailed: the server did not accept a challenge's answer.
	ErrChallengeFailed = errors.New("device: challenge answer refused")
	// ErrIdentityChanged: a peer's Signal identity key differs from the one
	// pinned; its messages are refused until a human trusts the new key.
	ErrIdentityChanged = errors.New("device: peer identity key changed")
)

// RateLimitError is a 429: the server takes this account's sends again
// after Wait (its Retry-After; a second when it gave none or nonsense).
type RateLimitError struct{ Wait time.Duration }

func (e *RateLimitError) Error() string {
	return "device: rate limited by the server, retry after " + e.Wait.String()
}

// Is matches ErrRateLimited.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// RetryAfter is how long to wait before sending again; core finds it
// through this method without importing this package.
func (e *RateLimitError) RetryAfter() time.Duration { return e.Wait }

// maxRetryAfter caps a server's Retry-After: a send waits at most this
// long for its next try (the ceremonies' own re-sends cover the rest).
const maxRetryAfter = 10 * time.Minute

// retryAfter reads a Retry-After header in seconds (the form Signal's
// server uses; an HTTP date is not).
func retryAfter(h string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(h))
	switch {
	case err != nil || secs < 1:
		return time.Second
	case secs > int(maxRetryAfter/time.Second):
		return maxRetryAfter
	}
	return time.Duration(secs) * time.Second
}

// StatusError is an unexpected HTTP status from the server.
type StatusError struct {
	Op     string
	Status int
	Body   string // truncated, for diagnostics; never holds secrets
}

func (e *StatusError) Error() string {
	return "device: " + e.Op + ": server answered " + itoa(e.Status) + " " + e.Body
}

func (e *StatusError) Unwrap() error { return ErrHTTP }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
