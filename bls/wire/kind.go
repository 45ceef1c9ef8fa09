package wire

import "strconv"

// Kind says what an envelope's payload is. DKG kinds are 1..15 and signing
// kinds 16..31 so that a new kind in either protocol does not renumber the
// other. Values are part of the signed wire format: never reuse or renumber.
type Kind uint8

// DKG protocol kinds (threshold-bls.md section 4).
const (
	// KindProposal: round 0, the ceremony parameters (roster, threshold).
	KindProposal Kind = 1
	// KindAccept: a human accepted the proposal on their console.
	KindAccept Kind = 2
	// KindDeal: round 1, broadcast Feldman commitments and proof of knowledge.
	KindDeal Kind = 3
	// KindShare: round 1, the private share for one party (To != 0).
	KindShare Kind = 4
	// KindEcho: round 2, hash of the deals seen, plus complaints.
	KindEcho Kind = 5
	// KindDealReveal: round 2, re-broadcast of the round 1 deals seen, sent
	// when echoed hashes differ so the equivocating dealer can be shown.
	KindDealReveal Kind = 6
	// KindJustification: round 3, a dealer reveals the shares complained about.
	KindJustification Kind = 7
	// KindConfirm: round 4, key confirmation.
	KindConfirm Kind = 8
	// KindAbort: the ceremony is aborted, with evidence.
	KindAbort Kind = 9
)

// Key lifecycle kinds: resharing a group key to a new group (or the same,
// a refresh) and importing a key from a trusted dealer. The other rounds
// reuse the DKG kinds above (accept, share, echo, deal-reveal,
// justification, abort) with the same payloads; the ceremony id, hashed
// under its own domain, keeps the two protocols apart.
const (
	// KindReshareProposal: round 0 of a reshare or an import: the old
	// group's record (or the imported public key), the dealers, the new
	// group and its threshold.
	KindReshareProposal Kind = 10
	// KindReshareDeal: round 1, a dealer's Feldman commitments to its
	// sub-sharing (no proof of knowledge: the constant term is pinned to
	// a public value).
	KindReshareDeal Kind = 11
	// KindReshareConfirm: the last round, a new signer's key confirmation,
	// carrying the new commitments so that an old-only signer can check
	// the handover from the confirmations alone.
	KindReshareConfirm Kind = 12
)

// Signing protocol kinds (threshold-bls.md section 5).
const (
	// KindSignRequest: a request to sign a message with a group key.
	KindSignRequest Kind = 16
	// KindPartial: a party's partial signature.
	KindPartial Kind = 17
	// KindDecline: a party (its human, or a timeout) declined to sign.
	KindDecline Kind = 18
	// KindSignResult: the combined signature.
	KindSignResult Kind = 19
)

var kindNames = map[Kind]string{
	KindProposal:        "proposal",
	KindAccept:          "accept",
	KindDeal:            "deal",
	KindShare:           "share",
	KindEcho:            "echo",
	KindDealReveal:      "deal-reveal",
	KindJustification:   "justification",
	KindConfirm:         "confirm",
	KindAbort:           "abort",
	KindReshareProposal: "reshare-proposal",
	KindReshareDeal:     "reshare-deal",
	KindReshareConfirm:  "reshare-confirm",
	KindSignRequest:     "sign-request",
	KindPartial:         "partial",
	KindDecline:         "decline",
	KindSignResult:      "sign-result",
}

// Valid reports whether k is a kind this code knows.
func (k Kind) Valid() bool {
	_, ok := kindNames[k]
	return ok
}

// String returns the lower-case name used in logs and the UI, or "kind(N)"
// for an unknown kind so a bad value is still readable.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}
