package dkg

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors returned by the engine and the message decoders.
var (
	// ErrConfig: the engine's configuration is inconsistent.
	ErrConfig = errors.New("dkg: invalid configuration")
	// ErrProposal: a proposal is malformed or its parameters are invalid.
	ErrProposal = errors.New("dkg: invalid proposal")
	// ErrPayload: a message payload is malformed (the sender is known and
	// signed it, but it does not decode or has the wrong shape).
	ErrPayload = errors.New("dkg: malformed payload")
	// ErrWrongCeremony: the message belongs to another ceremony.
	ErrWrongCeremony = errors.New("dkg: message for another ceremony")
	// ErrUnexpected: the message cannot occur in this protocol (wrong kind,
	// round, or recipient for its kind). It is dropped.
	ErrUnexpected = errors.New("dkg: unexpected message")
	// ErrDuplicate: the exact same message was handled before; dropped.
	ErrDuplicate = errors.New("dkg: duplicate message")
	// ErrFinished: the ceremony is over (done or aborted); input dropped.
	ErrFinished = errors.New("dkg: ceremony finished")
	// ErrNotStarted: Start has not been called; the engine only buffers.
	ErrNotStarted = errors.New("dkg: not started")
	// ErrAborted is wrapped by every *AbortError.
	ErrAborted = errors.New("dkg: ceremony aborted")
	// ErrTimeout is wrapped by an *AbortError caused by a round deadline.
	ErrTimeout = errors.New("dkg: round timed out")
	// ErrRecordMismatch: a reshare proposal describes the old group
	// otherwise than the record this console stored for the key.
	ErrRecordMismatch = errors.New("dkg: reshare proposal does not match the key's record")
	// ErrNotConfirmed: a reshare's handover cannot be checked yet: not
	// every new signer's confirmation is at hand.
	ErrNotConfirmed = errors.New("dkg: reshare not confirmed by every new signer")
	// ErrMisbehaviour is wrapped by an *AbortError that blames parties with
	// transferable evidence (equivocation, invalid deal, bad justification,
	// bad key confirmation).
	ErrMisbehaviour = errors.New("dkg: party misbehaved")
)

// AbortReason says why a ceremony stopped. Values travel in Abort messages.
type AbortReason uint8

// Abort reasons.
const (
	// ReasonTimeout: a round's deadline passed; Blamed lists who was missing.
	ReasonTimeout AbortReason = 1
	// ReasonDeclined: a human declined the proposal.
	ReasonDeclined AbortReason = 2
	// ReasonInvalidDeal: a dealer's broadcast failed its checks (commitments,
	// proof of knowledge); the signed deal is the evidence.
	ReasonInvalidDeal AbortReason = 3
	// ReasonEquivocation: a party signed two different messages for the same
	// slot; both are the evidence.
	ReasonEquivocation AbortReason = 4
	// ReasonComplaints: a dealer drew t or more complaints.
	ReasonComplaints AbortReason = 5
	// ReasonBadJustification: an accused dealer revealed shares that do not
	// match its commitments, or not all of those complained about.
	ReasonBadJustification AbortReason = 6
	// ReasonInconsistentEcho: a party's echo hash disagrees with the deals
	// everyone holds, after the deals were exchanged.
	ReasonInconsistentEcho AbortReason = 7
	// ReasonBadConfirmation: a key confirmation names another key or its
	// proof does not verify against the sender's public share.
	ReasonBadConfirmation AbortReason = 8
	// ReasonRemote: another party aborted (its own reason is in the text).
	ReasonRemote AbortReason = 9
)

var reasonNames = map[AbortReason]string{
	ReasonTimeout:          "timeout",
	ReasonDeclined:         "declined",
	ReasonInvalidDeal:      "invalid deal",
	ReasonEquivocation:     "equivocation",
	ReasonComplaints:       "too many complaints",
	ReasonBadJustification: "bad justification",
	ReasonInconsistentEcho: "inconsistent echo",
	ReasonBadConfirmation:  "bad key confirmation",
	ReasonRemote:           "aborted by another party",
}

func (r AbortReason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// AbortError describes why the ceremony was aborted, whom it blames and the
// signed envelopes that prove it. Evidence holds complete signed envelopes:
// anyone with the roster's console keys can check them.
type AbortError struct {
	Reason AbortReason
	Round  Round
	Blamed []uint32 // party indices at fault (missing, cheating), ascending
	// Claimed lists the parties a remote abort accuses of misbehaviour that
	// its evidence does not prove to this console: the other party's word,
	// not this console's blame.
	Claimed  []uint32
	By       uint32   // the party that aborted (this one, or a remote party)
	Detail   string   // human-readable, never secret
	Evidence [][]byte // signed envelopes, if the reason has any
}

func (e *AbortError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dkg aborted in round %s: %s", e.Round, e.Reason)
	if len(e.Blamed) > 0 {
		ids := make([]string, len(e.Blamed))
		for i, p := range e.Blamed {
			ids[i] = fmt.Sprint(p)
		}
		fmt.Fprintf(&b, " (party %s)", strings.Join(ids, ", "))
	}
	if len(e.Claimed) > 0 {
		ids := make([]string, len(e.Claimed))
		for i, p := range e.Claimed {
			ids[i] = fmt.Sprint(p)
		}
		fmt.Fprintf(&b, " (party %d accuses party %s, unproven)", e.By, strings.Join(ids, ", "))
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// misbehaviour reports whether the reason accuses parties of cheating (as
// opposed to a timeout, a decline or an unreadable abort).
func (e *AbortError) misbehaviour() bool {
	switch e.Reason {
	case ReasonInvalidDeal, ReasonEquivocation, ReasonComplaints, ReasonBadJustification,
		ReasonInconsistentEcho, ReasonBadConfirmation:
		return true
	}
	return false
}

// Unwrap makes errors.Is match ErrAborted and the reason's class:
// ErrMisbehaviour only when someone is blamed on evidence this console
// holds (an unproven accusation is not).
func (e *AbortError) Unwrap() []error {
	errs := []error{ErrAborted}
	switch {
	case e.Reason == ReasonTimeout:
		errs = append(errs, ErrTimeout)
	case e.misbehaviour() && len(e.Blamed) > 0:
		errs = append(errs, ErrMisbehaviour)
	}
	return errs
}
