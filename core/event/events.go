package event

import (
	"fmt"
	"time"
)

// Direction of an MPC message.
type Direction uint8

// Directions.
const (
	In Direction = iota
	Out
)

func (d Direction) String() string {
	if d == In {
		return "in"
	}
	return "out"
}

// MarshalText writes the direction as "in" or "out".
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "in" or "out".
func (d *Direction) UnmarshalText(b []byte) error {
	switch string(b) {
	case "in":
		*d = In
	case "out":
		*d = Out
	default:
		return fmt.Errorf("event: direction %q is neither in nor out", b)
	}
	return nil
}

// Message is one tagged MPC message in or out: metadata only.
type Message struct {
	Time      time.Time `json:"time,omitzero"`
	Direction Direction `json:"direction"`
	Peer      string    `json:"peer"`     // signer name, or the account and device if unknown
	Ceremony  string    `json:"ceremony"` // short id
	Round     uint32    `json:"round"`
	Kind      string    `json:"kind"` // wire kind name: deal, partial, ...
	Size      int       `json:"size"`
	Digest    string    `json:"digest"` // short hex of SHA-256 of the envelope
	Note      string    `json:"note"`   // why it was dropped, if it was
	// Server is the canonical URL of the server an incoming message came
	// through ("" when not said, and on what this console sends: it goes
	// through every server it shares with the peer).
	Server string `json:"server,omitempty"`
}

func (Message) Must() bool { return false }

// Untagged counts Signal traffic without the MPC tag, dropped unread.
type Untagged struct {
	Total uint64 `json:"total"`
}

func (Untagged) Must() bool { return false }

// Progress is a ceremony round's state: "keygen 3f2a round 2/4 got alice,
// carol waiting bob 9:41 left".
type Progress struct {
	Ceremony string   `json:"ceremony"` // short id
	Kind     string   `json:"kind"`     // "keygen" or "sign"
	Round    string   `json:"round"`    // round name
	Step     int      `json:"step"`
	Total    int      `json:"total"`
	Got      []string `json:"got"`
	Waiting  []string `json:"waiting"`  // whose answer this console would see and has not
	Declined []string `json:"declined"` // sign: who declined (declines are broadcasts)
	// Sign on a console that did not ask: the partials go to Requester
	// only, so Unseen lists those whose approval this console cannot see.
	Requester string    `json:"requester"`
	Unseen    []string  `json:"unseen"`
	Deadline  time.Time `json:"deadline,omitzero"`
}

func (Progress) Must() bool { return false }

// ApprovalRequested asks the human to approve or decline.
type ApprovalRequested struct {
	ID          string    `json:"id"`   // full hex id of the request or ceremony
	Kind        string    `json:"kind"` // "sign" or "keygen"
	Requester   string    `json:"requester"`
	KeyID       string    `json:"key_id"`      // short id of the key (sign)
	Text        string    `json:"text"`        // the message as text when printable, else ""
	Hex         string    `json:"hex"`         // the message as hex (sign), or the parameters (keygen)
	SHA256      string    `json:"sha256"`      // hex SHA-256 of the message
	Description string    `json:"description"` // what the requester says it is (untrusted)
	Expires     time.Time `json:"expires"`
}

func (ApprovalRequested) Must() bool { return true }

// ApprovalResolved closes an approval: approved, declined or expired.
type ApprovalResolved struct {
	ID       string `json:"id"`
	Decision string `json:"decision"`
	// Rule names the approval rule that answered ("signing.rule[0]");
	// empty when a person did.
	Rule string `json:"rule,omitempty"`
}

func (ApprovalResolved) Must() bool { return true }

// KeygenDone reports a finished key generation.
type KeygenDone struct {
	Ceremony string `json:"ceremony"`
	KeyID    string `json:"key_id"`
	GroupKey string `json:"group_key"` // hex, compressed G1
	T        int    `json:"t"`
	N        int    `json:"n"`
}

func (KeygenDone) Must() bool { return true }

// KeygenFailed reports a key generation that stopped without a key: a
// signer declined, a round's deadline passed, or a party misbehaved.
type KeygenFailed struct {
	Ceremony string   `json:"ceremony"` // short id
	Reason   string   `json:"reason"`   // the engine's reason: declined, timeout, ...
	Round    string   `json:"round"`    // the round it stopped in
	By       string   `json:"by"`       // the console that stopped it: this one or a peer
	Blamed   []string `json:"blamed"`   // parties at fault (or missing on a timeout)
	Claimed  []string `json:"claimed"`  // parties a peer accused without proof this console checked
	Text     string   `json:"text"`     // the whole account, as the error reads
}

func (KeygenFailed) Must() bool { return true }

// SignDone reports a finished signing request.
type SignDone struct {
	ID        string   `json:"id"`
	KeyID     string   `json:"key_id"`
	Message   string   `json:"message"`   // hex
	Signature string   `json:"signature"` // hex; empty if it failed
	Signers   []string `json:"signers"`
	Blamed    []string `json:"blamed"`
	Verified  bool     `json:"verified"`
	Failure   string   `json:"failure"` // why it failed, if it did
	// Restored: it ended before this run (history replayed at start, not
	// news); Time is then when it was requested.
	Restored bool      `json:"restored"`
	Time     time.Time `json:"time,omitzero"`
	// Approvals: who answered, as this console knows it (its own answer,
	// with who gave it; the others' partials and declines it saw), in
	// party order. Empty for history from before it was recorded.
	Approvals []Approval `json:"approvals,omitempty"`
}

// Approval is one signer's answer to a signing request.
type Approval struct {
	Signer   string `json:"signer"`
	Decision string `json:"decision"` // approved, declined or expired
	// User, SSHClient and Rule say who gave this console's own answer: the
	// socket peer's user, the SSH client its process claimed, the rule
	// that approved it (core.ParseBy). Empty for the others' answers and
	// for one given on this console's own screen.
	User      string `json:"user"`
	SSHClient string `json:"ssh_client"`
	Rule      string `json:"rule"`
}

func (SignDone) Must() bool { return true }

// Error is something the human must see.
type Error struct {
	Time time.Time `json:"time,omitzero"`
	Text string    `json:"text"`
}

func (Error) Must() bool { return true }

// Challenge: the server refuses this console's messages until a person
// answers its challenge Token (a code from the relay's operator, or
// Signal's captcha).
type Challenge struct {
	Time  time.Time `json:"time,omitzero"`
	Token string    `json:"token"`
}

func (Challenge) Must() bool { return true }

// ChallengeAnswered: the server accepted the answer to Token.
type ChallengeAnswered struct {
	Time  time.Time `json:"time,omitzero"`
	Token string    `json:"token"`
}

func (ChallengeAnswered) Must() bool { return true }

// Connection is the Signal connection's state: one server's (Server, its
// local name) or, without a server, the console's as a whole (connected
// when any server is).
type Connection struct {
	State   string    `json:"state"` // connected, connecting, reconnecting, stopped
	RetryAt time.Time `json:"retry_at,omitzero"`
	Detail  string    `json:"detail"`
	Server  string    `json:"server,omitempty"`
}

func (Connection) Must() bool { return false }

// ReshareDone reports a finished reshare, refresh or import: the key (same
// id, same group key) is now held by a new group at Epoch. HandedOver: this
// console holds no share of the new epoch (it left the group) and erased
// its old one.
type ReshareDone struct {
	Ceremony   string `json:"ceremony"`
	What       string `json:"what"` // "reshare", "refresh" or "import"
	KeyID      string `json:"key_id"`
	GroupKey   string `json:"group_key"`
	Epoch      uint32 `json:"epoch"`
	T          int    `json:"t"`
	N          int    `json:"n"`
	HandedOver bool   `json:"handed_over,omitempty"`
}

func (ReshareDone) Must() bool { return true }

// ReshareFailed reports a reshare, refresh or import that stopped: the old
// group keeps the key as it was. Its fields read as KeygenFailed's.
type ReshareFailed struct {
	Ceremony string   `json:"ceremony"`
	Reason   string   `json:"reason"`
	Round    string   `json:"round"`
	By       string   `json:"by"`
	Blamed   []string `json:"blamed"`
	Claimed  []string `json:"claimed"`
	Text     string   `json:"text"`
}

func (ReshareFailed) Must() bool { return true }

// ServerLagging: Server (its local name) has delivered nothing from Peer
// for a while although another server has (Lagging), or it delivers from
// the peer again (!Lagging).
type ServerLagging struct {
	Time    time.Time `json:"time,omitzero"`
	Server  string    `json:"server"`
	Peer    string    `json:"peer"`
	Lagging bool      `json:"lagging"`
}

func (ServerLagging) Must() bool { return true }
