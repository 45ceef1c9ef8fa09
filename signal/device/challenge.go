package device

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Rate-limit challenges. A server that wants proof before an account sends
// more (Signal's spam filter; the project's relay when an account ignores
// its Retry-After) answers a send with 428 and {"token", "options"}. The
// answer goes to PUT /v1/challenge as a captcha answer: with Signal's
// service the captcha token a person gets from Signal's captcha page, with
// the project's relay the code its operator gives for the token. Nothing
// here retries: a person has to act.

// ChallengeError is a 428 from the server: the account must answer the
// challenge Token (Options lists the kinds the server offers) before it
// sends again.
type ChallengeError struct {
	Token   string
	Options []string
}

func (e *ChallengeError) Error() string {
	return fmt.Sprintf("device: the server requires a challenge before more messages go out (token %s, options %s)",
		e.Token, strings.Join(e.Options, ", "))
}

// Is matches ErrChallengeRequired.
func (e *ChallengeError) Is(target error) bool { return target == ErrChallengeRequired }

// ChallengeToken returns the token to answer; core finds it through this
// method without importing this package.
func (e *ChallengeError) ChallengeToken() string { return e.Token }

// Bounds on what a 428 body may carry (it is shown to a person).
const (
	maxChallengeToken   = 256
	maxChallengeOptions = 8
)

// parseChallenge reads a 428 body. A body that does not parse is still a
// challenge, one whose token is unknown: the error says so.
func parseChallenge(body []byte) error {
	var m struct {
		Token   string   `json:"token"`
		Options []string `json:"options"`
	}
	if err := json.Unmarshal(body, &m); err != nil || m.Token == "" || len(m.Token) > maxChallengeToken ||
		strings.ContainsFunc(m.Token, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return fmt.Errorf("%w: without a usable token: %w", ErrChallengeRequired,
			&StatusError{Op: "send", Status: http.StatusPreconditionRequired, Body: quote(body)})
	}
	var opts []string
	for _, o := range m.Options[:min(len(m.Options), maxChallengeOptions)] {
		opts = append(opts, quote([]byte(o)))
	}
	return &ChallengeError{Token: m.Token, Options: opts}
}

// challengeAnswer is the body of PUT /v1/challenge for a captcha answer.
type challengeAnswer struct {
	Type    string `json:"type"`
	Token   string `json:"token"`
	Captcha string `json:"captcha"`
}

// AnswerChallenge answers the server's challenge token with answer: the
// relay operator's code, or a captcha token from Signal's captcha page.
// A refused answer is ErrChallengeFailed; a 429 says when to try again.
func (d *Device) AnswerChallenge(ctx context.Context, token, answer string) error {
	token, answer = strings.TrimSpace(token), strings.TrimSpace(answer)
	if token == "" || answer == "" {
		return fmt.Errorf("%w: a token and an answer are needed", ErrChallengeFailed)
	}
	resp, err := callRaw(ctx, d.client, "answer challenge", http.MethodPut, "/v1/challenge",
		challengeAnswer{Type: "captcha", Token: token, Captcha: answer})
	if err != nil {
		return err
	}
	switch resp.Status {
	case http.StatusOK, http.StatusNoContent:
		return nil
	case http.StatusPreconditionRequired:
		return fmt.Errorf("%w: the server did not accept the answer", ErrChallengeFailed)
	case http.StatusTooManyRequests, http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%w: too many answers, retry after %s s", ErrChallengeFailed, resp.Header("Retry-After"))
	default:
		return &StatusError{Op: "answer challenge", Status: resp.Status, Body: quote(resp.Body)}
	}
}
