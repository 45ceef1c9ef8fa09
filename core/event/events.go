package event

import "time"

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

// Message is one tagged MPC message in or out: metadata only.
type Message struct {
	Time      time.Time
	Direction Direction
	Peer      string // signer name, or the account and device if unknown
	Ceremony  string // short id
	Round     uint32
	Kind      string // wire kind name: deal, partial, ...
	Size      int
	Digest    string // short hex of SHA-256 of the envelope
	Note      string // why it was dropped, if it was
}

func (Message) Must() bool { return false }

// Untagged counts Signal traffic without the MPC tag, dropped unread.
type Untagged struct{ Total uint64 }

func (Untagged) Must() bool { return false }

// Progress is a ceremony round's state: "keygen 3f2a round 2/4 got alice,
// carol waiting bob 9:41 left".
type Progress struct {
	Ceremony string // short id
	Kind     string // "keygen" or "sign"
	Round    string // round name
	Step     int
	Total    int
	Got      []string
	Waiting  []string // whose answer this console would see and has not
	Declined []string // sign: who declined (declines are broadcasts)
	// Sign on a console that did not ask: the partials go to Requester
	// only, so Unseen lists those whose approval this console cannot see.
	Requester string
	Unseen    []string
	Deadline  time.Time
}

func (Progress) Must() bool { return false }

// ApprovalRequested asks the human to approve or decline.
type ApprovalRequested struct {
	ID          string // full hex id of the request or ceremony
	Kind        string // "sign" or "keygen"
	Requester   string
	KeyID       string // short id of the key (sign)
	Text        string // the message as text when printable, else ""
	Hex         string // the message as hex (sign), or the parameters (keygen)
	SHA256      string // hex SHA-256 of the message
	Description string // what the requester says it is (untrusted)
	Expires     time.Time
}

func (ApprovalRequested) Must() bool { return true }

// ApprovalResolved closes an approval: approved, declined or expired.
type ApprovalResolved struct {
	ID       string
	Decision string
}

func (ApprovalResolved) Must() bool { return true }

// KeygenDone reports a finished key generation.
type KeygenDone struct {
	Ceremony string
	KeyID    string
	GroupKey string // hex, compressed G1
	T, N     int
}

func (KeygenDone) Must() bool { return true }

// KeygenFailed reports a key generation that stopped without a key: a
// signer declined, a round's deadline passed, or a party misbehaved.
type KeygenFailed struct {
	Ceremony string   // short id
	Reason   string   // the engine's reason: declined, timeout, ...
	Round    string   // the round it stopped in
	By       string   // the console that stopped it: this one or a peer
	Blamed   []string // parties at fault (or missing on a timeout)
	Claimed  []string // parties a peer accused without proof this console checked
	Text     string   // the whole account, as the error reads
}

func (KeygenFailed) Must() bool { return true }

// SignDone reports a finished signing request.
type SignDone struct {
	ID        string
	KeyID     string
	Message   string // hex
	Signature string // hex; empty if it failed
	Signers   []string
	Blamed    []string
	Verified  bool
	Failure   string // why it failed, if it did
	// Restored: it ended before this run (history replayed at start, not
	// news); Time is then when it was requested.
	Restored bool
	Time     time.Time
}

func (SignDone) Must() bool { return true }

// Error is something the human must see.
type Error struct {
	Time time.Time
	Text string
}

func (Error) Must() bool { return true }

// Challenge: the server refuses this console's messages until a person
// answers its challenge Token (a code from the relay's operator, or
// Signal's captcha).
type Challenge struct {
	Time  time.Time
	Token string
}

func (Challenge) Must() bool { return true }

// ChallengeAnswered: the server accepted the answer to Token.
type ChallengeAnswered struct {
	Time  time.Time
	Token string
}

func (ChallengeAnswered) Must() bool { return true }

// Connection is the Signal connection's state.
type Connection struct {
	State   string // connected, connecting, reconnecting, stopped
	RetryAt time.Time
	Detail  string
}

func (Connection) Must() bool { return false }
