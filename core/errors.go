package core

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

// How a ceremony ended without its result. The error a keygen or signing
// waiter gets is a *KeygenError or *SignError, which wraps at most one of
// these; callers (the headless commands' exit codes) branch with errors.Is.
var (
	// ErrDeclined: a signer declined the proposal or the request (or too
	// many did for t signatures to remain possible).
	ErrDeclined = errors.New("core: declined")
	// ErrExpired: a deadline passed before enough signers answered (a
	// request's expiry, a key generation round's deadline).
	ErrExpired = errors.New("core: expired before enough answers")
	// ErrBlamed: a party misbehaved and is blamed, with its signed messages
	// as evidence. It wins over the other two: a request that failed with a
	// cheater among its signers is about the cheater.
	ErrBlamed = errors.New("core: a party was blamed")
)

// KeygenError is a key generation that aborted. Names are the roster's.
type KeygenError struct {
	Ceremony [32]byte
	Reason   dkg.AbortReason
	Round    dkg.Round
	Blamed   []string // the parties at fault (cheating, or missing on a timeout)
	// Claimed are parties a peer's abort accuses of cheating without
	// evidence that proves it to this console: the peer's word only.
	Claimed []string
	By      string // the console that stopped it: this one or a peer
	Remote  bool   // By is a peer (a cheating accusation in Blamed was proven here)
	// Abort is the engine's account, with the signed evidence itself.
	Abort *dkg.AbortError
	// Detail is the engine's detail with the parties' names for their
	// indices ("party 2" reads "bob"); empty: Abort.Detail as it is.
	Detail string
	// What names the ceremony: "" a keygen; "reshare", "refresh" or
	// "import" for the key lifecycle (reshare.go).
	What string
}

func (e *KeygenError) Error() string {
	var b strings.Builder
	what := e.What
	if what == "" {
		what = "keygen"
	}
	fmt.Fprintf(&b, "%s %s aborted in round %s by %s: %s", what, ceremony.ShortID(e.Ceremony), e.Round, e.By, e.Reason)
	if len(e.Blamed) > 0 {
		fmt.Fprintf(&b, ", blaming %s", joinNames(e.Blamed))
	}
	if len(e.Claimed) > 0 {
		fmt.Fprintf(&b, ", accusing %s without proof", joinNames(e.Claimed))
	}
	if n := len(e.Abort.Evidence); n > 0 {
		fmt.Fprintf(&b, " (%d signed messages as evidence)", n)
	}
	detail := e.Detail
	if detail == "" {
		detail = e.Abort.Detail
	}
	if detail != "" {
		// A peer wrote the detail of a remote abort: keep escape sequences
		// off the terminal the headless commands print it to.
		b.WriteString(": ")
		b.WriteString(cleanText(detail))
	}
	return b.String()
}

// Unwrap matches the engine's error and sentinels (dkg.ErrMisbehaviour,
// dkg.ErrTimeout) and core's class of the ending.
func (e *KeygenError) Unwrap() []error {
	errs := []error{e.Abort}
	switch {
	case errors.Is(e.Abort, dkg.ErrMisbehaviour):
		errs = append(errs, ErrBlamed)
	case e.Reason == dkg.ReasonTimeout:
		errs = append(errs, ErrExpired)
	case e.Reason == dkg.ReasonDeclined:
		errs = append(errs, ErrDeclined)
	}
	return errs
}

// keygenError names the parties of a session's abort.
func (a *App) keygenError(s *ceremony.KeygenSession) error {
	var ab *dkg.AbortError
	if !errors.As(s.Err(), &ab) {
		return s.Err()
	}
	parties := s.Proposal().Parties
	return &KeygenError{Ceremony: s.ID(), Reason: ab.Reason, Round: ab.Round, Blamed: a.names(parties, ab.Blamed),
		Claimed: a.names(parties, ab.Claimed), By: a.name(partyAddr(parties, ab.By)), Remote: ab.By != s.Self(), Abort: ab,
		Detail: nameParties(ab.Detail, func(j uint32) (string, bool) {
			if j == 0 || int(j) > len(parties) {
				return "", false
			}
			return a.name(partyAddr(parties, j)), true
		})}
}

// keygenFailed is the event of a keygen that stopped with err: names and
// reasons only.
func keygenFailed(id [32]byte, err error) event.KeygenFailed {
	e := event.KeygenFailed{Ceremony: ceremony.ShortID(id), Reason: "failed", Text: err.Error()}
	var kerr *KeygenError
	if errors.As(err, &kerr) {
		e.Reason, e.Round, e.By = kerr.Reason.String(), kerr.Round.String(), kerr.By
		e.Blamed, e.Claimed = slices.Clone(kerr.Blamed), slices.Clone(kerr.Claimed)
	}
	return e
}

// partyNames finds the party indices in the engine's details: "party 2",
// or a list such as "party 2, 3".
var partyNames = regexp.MustCompile(`\bparty (\d{1,4}(?:, \d{1,4})*)\b`)

// nameParties replaces the party indices in an engine's detail with the
// names name gives ("party 2, 3" reads "bob and carol"). A list with an
// index name does not know stays as it was.
func nameParties(detail string, name func(uint32) (string, bool)) string {
	return partyNames.ReplaceAllStringFunc(detail, func(m string) string {
		var names []string
		for _, f := range strings.Split(partyNames.FindStringSubmatch(m)[1], ", ") {
			j, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return m
			}
			n, ok := name(uint32(j))
			if !ok {
				return m
			}
			names = append(names, n)
		}
		return joinNames(names)
	})
}

// SignError is a signing request that failed. Names are the roster's.
type SignError struct {
	ID       [32]byte
	Reason   string   // the session's account of it
	Declined []string // parties that declined (or let it expire unanswered)
	Blamed   []string // parties whose partial or result was bad
	Expired  bool     // the expiry came before t valid partials
}

func (e *SignError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "signing request %s failed: %s", ceremony.ShortID(e.ID), e.Reason)
	if len(e.Blamed) > 0 {
		fmt.Fprintf(&b, "; blamed: %s", joinNames(e.Blamed))
	}
	if len(e.Declined) > 0 {
		fmt.Fprintf(&b, "; declined: %s", joinNames(e.Declined))
	}
	return b.String()
}

func (e *SignError) Unwrap() error {
	switch {
	case len(e.Blamed) > 0:
		return ErrBlamed
	case e.Expired:
		return ErrExpired
	case len(e.Declined) > 0:
		return ErrDeclined
	}
	return nil
}

// cleanText replaces what a terminal would interpret (see printable).
func cleanText(s string) string {
	if printable(s) && !strings.ContainsAny(s, "\n\t") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if !printable(string(r)) || r == '\n' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}

// Sentinel errors of the key lifecycle.
var (
	// ErrReshare: a reshare or import cannot be proposed as asked (names
	// not in the roster or not verified, thresholds, dealers).
	ErrReshare = errors.New("core: invalid reshare")
	// ErrReshareOpen: the key already has a reshare running here.
	ErrReshareOpen = errors.New("core: a reshare of this key is already running")
)
