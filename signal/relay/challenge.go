package relay

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/signal-mpc/cosigner/signal/internal/atomicfile"
)

// Rate-limit challenges (428). Signal's server answers a send with 428 and
// {"token", "options"} when it wants proof that a human or the genuine app
// is behind an account (a captcha, or a push only the app receives) before
// more messages go out; PUT /v1/challenge carries the proof. A self-hosted
// relay has no captcha service and sends no pushes, so the human in the
// loop is its operator: an account that keeps sending while it is refused
// with 429 (more refusals than Config.ChallengeAfter, forgiven at that many
// a minute) gets 428 for every send until it answers with a code that only
// the operator can make, an HMAC of the challenge's token under a key in
// the data folder (`cosigner relay challenge-code TOKEN`). The client sends
// the code as the "captcha" of a captcha answer, the shape Signal's clients
// already use. A client that waits as Retry-After says is refused at most
// once per send in flight per wait, far below the default tolerance.
//
// Challenges live in memory, as the rate limits do: a restarted relay
// forgets them.

// challengeKeyFile holds the operator's challenge key in the data folder.
const challengeKeyFile = "challenge.key"

// Challenge tokens and codes are 10 random or HMAC bytes in base32: 16
// characters a person can read out over a phone; codes are shown in groups
// of four and accepted with or without the dashes, in either case.
var challengeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

const (
	challengeBytes = 10
	challengeChars = 16
	// answerAttempts bounds an account's answers a minute (and in a burst).
	answerAttempts = 10
)

// challengeKeySize is the size of the operator's HMAC key.
const challengeKeySize = 32

// challenges is the relay's challenge state.
type challenges struct {
	key      []byte   // set by Run
	refusals *limiter // per account: 429s tolerated before a challenge; nil: never
	attempts *limiter // per account: answers
	mu       sync.Mutex
	pending  map[string]string // account -> its challenge's token
	issued   func()            // told of each new challenge (metrics); may be nil
}

// newChallenges tolerates after refusals (forgiven at after a minute) before
// it demands a challenge; after < 0 never demands one.
func newChallenges(after int, now func() time.Time) *challenges {
	c := &challenges{attempts: newLimiter(answerAttempts/60.0, answerAttempts, now), pending: map[string]string{}}
	if after >= 0 {
		c.refusals = newLimiter(float64(max(after, 1))/60, max(after, 1), now)
	}
	return c
}

// pendingFor returns the token of the account's open challenge.
func (c *challenges) pendingFor(acct string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tok, ok := c.pending[acct]
	return tok, ok
}

// refused counts a 429 for the account; when it has used up its refusals,
// it returns the token of a new challenge, else "".
func (c *challenges) refused(acct string) (string, error) {
	if c.refusals == nil {
		return "", nil
	}
	if ok, _ := c.refusals.allow(acct); ok {
		return "", nil
	}
	b := make([]byte, challengeBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("challenge token: %w", err)
	}
	tok := challengeEncoding.EncodeToString(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.pending[acct]; ok { // a concurrent send issued one first
		return old, nil
	}
	c.pending[acct] = tok
	if c.issued != nil {
		c.issued()
	}
	return tok, nil
}

// answer checks an answer to the account's challenge. A right code for the
// account's open challenge (or when none is open any more, say another
// device of the account answered first) is nil; anything else is 428.
func (c *challenges) answer(acct, token, code string) error {
	want, err := challengeCode(c.key, token)
	if err != nil || !hmac.Equal([]byte(normalizeCode(code)), []byte(normalizeCode(want))) {
		return fail(http.StatusPreconditionRequired, "wrong challenge answer")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if open, ok := c.pending[acct]; ok && open != normalizeCode(token) {
		return fail(http.StatusPreconditionRequired, "not this account's challenge")
	}
	delete(c.pending, acct)
	if c.refusals != nil {
		c.refusals.forget(acct)
	}
	return nil
}

// challengeRequired is the 428 of a send while a challenge is open.
func challengeRequired(token string) *apiError {
	e := fail(http.StatusPreconditionRequired, "challenge required")
	e.body = map[string]any{"token": token, "options": []string{"captcha"}}
	return e
}

// normalizeCode drops the dashes and spaces people add and upper-cases.
func normalizeCode(s string) string {
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(s))
}

// challengeCode is the answer to token under key, in groups of four.
func challengeCode(key []byte, token string) (string, error) {
	token = normalizeCode(token)
	if b, err := challengeEncoding.DecodeString(token); err != nil || len(b) != challengeBytes {
		return "", fmt.Errorf("%w: a challenge token is %d base32 characters", ErrChallengeToken, challengeChars)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("cosigner relay challenge v1\n"))
	mac.Write([]byte(token))
	code := challengeEncoding.EncodeToString(mac.Sum(nil)[:challengeBytes])
	return code[:4] + "-" + code[4:8] + "-" + code[8:12] + "-" + code[12:], nil
}

// ChallengeCode is the code that answers a challenge token of the relay
// whose data folder is dataDir: what an operator gives the owner of a
// challenged account. It reads only the key file, so it works while the
// relay runs.
func ChallengeCode(dataDir, token string) (string, error) {
	key, err := readChallengeKey(filepath.Join(dataDir, challengeKeyFile))
	if err != nil {
		return "", err
	}
	return challengeCode(key, token)
}

// loadChallengeKey reads the data folder's challenge key, creating it on
// the relay's first start.
func loadChallengeKey(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, challengeKeyFile)
	key, err := readChallengeKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key = make([]byte, challengeKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("%w: challenge key: %w", ErrStore, err)
	}
	if err := atomicfile.Write(path, key); err != nil {
		return nil, fmt.Errorf("%w: write %s: %w", ErrStore, path, err)
	}
	return key, nil
}

func readChallengeKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist (has this relay run with this data folder?): %w", ErrStore, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	if len(key) != challengeKeySize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want %d", ErrStore, path, len(key), challengeKeySize)
	}
	return key, nil
}

// challengeAnswer is the body of PUT /v1/challenge (Signal's
// AnswerChallengeRequest). Only captcha answers are taken; a push answer's
// "challenge" field is never read, since this relay sends no pushes.
type challengeAnswer struct {
	Type    string `json:"type"`
	Token   string `json:"token"`
	Captcha string `json:"captcha"`
}

// handleChallenge is PUT /v1/challenge: 200 when the answer opens the
// account's sends again, 428 when it is wrong, 429 after too many tries.
func (s *Server) handleChallenge(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	var body challengeAnswer
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	switch body.Type {
	case "captcha":
	case "rateLimitPushChallenge":
		return fail(http.StatusBadRequest, "this relay sends no push challenges: answer with the operator's code as a captcha")
	default:
		return fail(http.StatusBadRequest, "unknown challenge type")
	}
	if body.Token == "" || body.Captcha == "" {
		return fail(http.StatusBadRequest, "a captcha answer needs a token and a captcha")
	}
	acct := string(p.aci[:])
	if ok, wait := s.challenges.attempts.allow(acct); !ok {
		return tooManyRequests(wait)
	}
	if err := s.challenges.answer(acct, body.Token, body.Captcha); err != nil {
		s.log.Info("wrong challenge answer", "account", p.aci.String())
		return err
	}
	// The operator vouched for the account: it starts again with a full
	// send budget, so what it held back goes out now instead of being
	// refused again (and counted toward the next challenge).
	s.limiter.forget(acct)
	s.log.Info("challenge answered", "account", p.aci.String())
	writeJSON(w, http.StatusOK, map[string]any{})
	return nil
}

// tooManyRequests is a 429 with the seconds to wait.
func tooManyRequests(wait time.Duration) *apiError {
	e := fail(http.StatusTooManyRequests, "rate limited")
	e.header = map[string]string{"Retry-After": strconv.Itoa(max(int(math.Ceil(wait.Seconds())), 1))}
	return e
}
