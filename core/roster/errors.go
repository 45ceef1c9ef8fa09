package roster

import "errors"

// Sentinel errors.
var (
	// ErrCard: a card is malformed, or its signature does not match.
	ErrCard = errors.New("roster: invalid card")
	// ErrKeyChanged: a card for a known signer carries other keys. The
	// signer is blocked until a human verifies the new card.
	ErrKeyChanged = errors.New("roster: signer's keys changed")
	// ErrUnknown: no such signer.
	ErrUnknown = errors.New("roster: unknown signer")
	// ErrNameTaken: another signer already has this name.
	ErrNameTaken = errors.New("roster: name taken")
	// ErrNotTrusted: a roster offered by a peer differs from the pinned
	// one, or includes a blocked signer.
	ErrNotTrusted = errors.New("roster: not trusted")
	// ErrStaleCard: a signer's card is older (a lower serial) than the
	// pinned one, which stays.
	ErrStaleCard = errors.New("roster: older card")
	// ErrCardConflict: a signer signed two different cards with the same
	// serial; neither replaces the other.
	ErrCardConflict = errors.New("roster: two different cards with one serial")
	// ErrAddressTaken: a card lists an address (or, when verified, the
	// console key) that another signer's pinned card holds.
	ErrAddressTaken = errors.New("roster: address of another signer")
	// ErrServerURL: a server URL cannot be made canonical.
	ErrServerURL = errors.New("roster: server URL")
)
