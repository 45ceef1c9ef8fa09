package api

import (
	"context"
	"encoding/json"
	"time"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
)

// Backend is what the server needs of a running co-signer: its core App
// (which satisfies every method but the last two) and its connection.
type Backend interface {
	Roster(ctx context.Context) ([]roster.Member, error)
	AddCard(ctx context.Context, c roster.Card, verified bool) error
	VerifyCard(ctx context.Context, name string) error
	Keys(ctx context.Context) ([]core.KeyInfo, error)
	BeginKeygen(ctx context.Context, t int, approve bool) ([32]byte, error)
	WaitKeygen(ctx context.Context, id [32]byte) (*core.KeygenResult, error)
	BeginSignature(ctx context.Context, keyID [32]byte, msg []byte, description string, approve bool) ([32]byte, error)
	WaitSignature(ctx context.Context, id [32]byte) (*core.SignResult, error)
	Approvals(ctx context.Context) ([]core.Approval, error)
	// ApproveAs and DeclineAs answer, recording who did (by).
	ApproveAs(ctx context.Context, id [32]byte, by string) error
	DeclineAs(ctx context.Context, id [32]byte, reason, by string) error
	Signatures(ctx context.Context, limit int) ([]event.SignDone, error)
	AnswerChallenge(ctx context.Context, token, answer string) error
	// Backup writes a copy of the store to path (absolute).
	Backup(ctx context.Context, path string, replace bool) error
	// ExportKey writes this signer's share of a key to path (absolute, a
	// new file) as an EIP-2335 keystore under password.
	ExportKey(ctx context.Context, keyID [32]byte, path, password, kdf string) (*KeyExportResult, error)
	// AddDevice approves a new device's link request as the primary.
	AddDevice(ctx context.Context, url string) error

	// Identity is this signer's own card.
	Identity() roster.Card
	// Connection is the server connection's state now.
	Connection() event.Connection
	// Subscribe follows the events the console shows.
	Subscribe(backlog int) *event.Subscription
}

// Method names.
const (
	MethodHello        = "hello"
	MethodStatus       = "status"
	MethodMe           = "me"
	MethodRoster       = "roster"
	MethodRosterAdd    = "roster.add"
	MethodRosterVerify = "roster.verify"
	MethodKeys         = "keys"
	MethodKeygen       = "keygen"
	MethodSign         = "sign"
	MethodWait         = "wait"
	MethodApprovals    = "approvals"
	MethodApprove      = "approve"
	MethodDecline      = "decline"
	MethodSignatures   = "signatures"
	MethodChallenge    = "challenge"
	MethodBackup       = "backup"
	MethodKeyExport    = "key.export"
	MethodDeviceAdd    = "device.add"
	MethodSubscribe    = "subscribe"
	MethodUnsubscribe  = "unsubscribe"

	// NotifyEvent is the notification a subscriber gets for each event.
	NotifyEvent = "event"
)

// StatusResult answers status.
type StatusResult struct {
	APIVersion int              `json:"api_version"`
	Name       string           `json:"name"`
	Account    string           `json:"account"`
	Device     uint32           `json:"device"`
	Connection event.Connection `json:"connection"`
	Keys       int              `json:"keys"`
	Approvals  int              `json:"approvals"`
	// CanApprove: this socket may approve and decline (api.approve).
	CanApprove bool `json:"can_approve"`
	// Servers is each server's state, for a console on several (the
	// Connection above is then connected while any one is).
	Servers []ServerState `json:"servers,omitempty"`
}

// ServerState is one server of a console on several.
type ServerState struct {
	Name       string           `json:"name"` // the local label ([[servers]] name)
	URL        string           `json:"url"`  // canonical
	Connection event.Connection `json:"connection"`
	// Lagging names the peers this server has delivered nothing from for
	// a while, while another server has.
	Lagging []string `json:"lagging,omitempty"`
}

// ServersBackend is a Backend on several servers.
type ServersBackend interface {
	Servers() []ServerState
}

// MeResult answers me: this signer's card, as cosigner me --json prints it.
type MeResult struct {
	Card json.RawMessage `json:"card"` // roster.ParseCard reads it
}

// Signer is one roster entry.
type Signer struct {
	Name        string `json:"name"`
	Account     string `json:"account"`
	Device      uint32 `json:"device"`
	Fingerprint string `json:"fingerprint"`
	Verified    bool   `json:"verified"`
	// Blocked: its keys changed since it was added; verify it again.
	Blocked bool `json:"blocked"`
	Self    bool `json:"self"`
}

// RosterResult answers roster.
type RosterResult struct {
	Signers []Signer `json:"signers"`
}

// RosterAddParams adds a signer's card (as cosigner me --json prints it).
type RosterAddParams struct {
	Card     json.RawMessage `json:"card"`
	Verified bool            `json:"verified"`
}

// RosterVerifyParams records that a person compared name's fingerprint.
type RosterVerifyParams struct {
	Name string `json:"name"`
}

// Key is one generated key.
type Key struct {
	KeyID          string `json:"key_id"`
	GroupPublicKey string `json:"group_public_key"`
	Threshold      int    `json:"threshold"`
	Parties        int    `json:"parties"`
	Index          uint32 `json:"index"` // this signer's share index
}

// KeysResult answers keys.
type KeysResult struct {
	Keys []Key `json:"keys"`
}

// KeygenParams proposes a key generation to the whole roster.
type KeygenParams struct {
	Threshold int  `json:"threshold"`
	Wait      bool `json:"wait"` // answer once it ended, not at once
}

// KeygenResult answers keygen (and wait for a keygen): the id at once,
// the key once it is generated.
type KeygenResult struct {
	ID             string `json:"id"`
	KeyID          string `json:"key_id,omitempty"`
	GroupPublicKey string `json:"group_public_key,omitempty"`
	Threshold      int    `json:"threshold,omitempty"`
	Parties        int    `json:"parties,omitempty"`
}

// SignParams asks the group for a signature: the message as hex or as
// text (exactly one), the key (an id prefix; empty: the only key).
type SignParams struct {
	Hex         string `json:"hex"`
	Text        string `json:"text"`
	Key         string `json:"key"`
	Description string `json:"description"`
	Wait        bool   `json:"wait"`
}

// SignResult answers sign (and wait for a signing request).
type SignResult struct {
	ID             string   `json:"id"`
	GroupPublicKey string   `json:"group_public_key,omitempty"`
	MessageHex     string   `json:"message_hex,omitempty"`
	Signature      string   `json:"signature,omitempty"`
	Signers        []string `json:"signers,omitempty"`
	Blamed         []string `json:"blamed,omitempty"`
}

// IDParams names a ceremony or request by its full hex id.
type IDParams struct {
	ID string `json:"id"`
}

// DeclineParams declines a request or proposal.
type DeclineParams struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Approval is one entry of the approval queue.
type Approval struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	Requester   string    `json:"requester"`
	KeyID       string    `json:"key_id"`
	SHA256      string    `json:"sha256"`
	Text        string    `json:"text"`
	Hex         string    `json:"hex"`
	Description string    `json:"description"`
	Expires     time.Time `json:"expires"`
}

// ApprovalsResult answers approvals.
type ApprovalsResult struct {
	Approvals []Approval `json:"approvals"`
}

// SignaturesParams limits the history to the newest entries (0: all).
type SignaturesParams struct {
	Limit int `json:"limit"`
}

// SignaturesResult answers signatures.
type SignaturesResult struct {
	Signatures []event.SignDone `json:"signatures"`
}

// BackupParams asks for a copy of the store at path (absolute, on the
// co-signer's machine); an existing file is replaced only with replace.
type BackupParams struct {
	Path    string `json:"path"`
	Replace bool   `json:"replace"`
}

// KeyExportParams writes this signer's share of a key (an id prefix; empty:
// the only key) to path, a new file on the co-signer's machine, as an
// EIP-2335 keystore under password (kdf: scrypt, the default, or pbkdf2).
type KeyExportParams struct {
	Key      string `json:"key"`
	Path     string `json:"path"`
	Password string `json:"password"`
	KDF      string `json:"kdf"`
}

// KeyExportResult answers key.export.
type KeyExportResult struct {
	Keystore    string `json:"keystore"`
	PublicShare string `json:"public_share"`
	KeyID       string `json:"key_id"`
	Index       uint32 `json:"index"`
}

// DeviceAddParams approves a link request (the sgnl://linkdevice URL a new
// device shows) as this account's primary device.
type DeviceAddParams struct {
	URL string `json:"url"`
}

// ChallengeParams answers the server's challenge.
type ChallengeParams struct {
	Token string `json:"token"`
	Code  string `json:"code"`
}

// EventParams is one event notification: its type and its fields.
type EventParams struct {
	Type  string          `json:"type"`
	Event json.RawMessage `json:"event"`
}

// FailureData is the data of a CodeFailed error.
type FailureData struct {
	Declined bool     `json:"declined,omitempty"`
	Expired  bool     `json:"expired,omitempty"`
	Blamed   []string `json:"blamed,omitempty"`
	Claimed  []string `json:"claimed,omitempty"`
}

// eventType names an event for notifications.
func eventType(e event.Event) string {
	switch e.(type) {
	case event.Message:
		return "message"
	case event.Untagged:
		return "untagged"
	case event.Progress:
		return "progress"
	case event.ApprovalRequested:
		return "approval_requested"
	case event.ApprovalResolved:
		return "approval_resolved"
	case event.KeygenDone:
		return "keygen_done"
	case event.KeygenFailed:
		return "keygen_failed"
	case event.SignDone:
		return "sign_done"
	case event.Error:
		return "error"
	case event.Challenge:
		return "challenge"
	case event.ChallengeAnswered:
		return "challenge_answered"
	case event.Connection:
		return "connection"
	case event.ServerLagging:
		return "server_lagging"
	}
	return ""
}
