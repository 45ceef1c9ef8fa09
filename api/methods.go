package api

import (
	"context"
	"encoding/hex"
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
	// BeginReshare proposes a reshare or refresh (proposing accepts it);
	// ImportKeystore proposes to split the key of an EIP-2335 keystore.
	BeginReshare(ctx context.Context, req core.ReshareRequest) ([32]byte, error)
	ImportKeystore(ctx context.Context, keystoreJSON []byte, password string, t int) ([32]byte, error)
	WaitReshare(ctx context.Context, id [32]byte) (*core.ReshareResult, error)
	Approvals(ctx context.Context) ([]core.Approval, error)
	// ApproveAs and DeclineAs answer, recording who did (by).
	ApproveAs(ctx context.Context, id [32]byte, by string) error
	DeclineAs(ctx context.Context, id [32]byte, reason, by string) error
	Signatures(ctx context.Context, limit int) ([]event.SignDone, error)
	// Audit is the verified audit trail from since on, and its head.
	Audit(ctx context.Context, since time.Time) ([]core.AuditEntry, core.AuditHead, error)
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
	MethodAudit        = "audit"
	MethodChallenge    = "challenge"
	MethodBackup       = "backup"
	MethodKeyExport    = "key.export"
	MethodReshare      = "reshare"
	MethodKeyImport    = "key.import"
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
	Epoch          uint32 `json:"epoch"` // 0 from a keygen or import; each reshare adds one
	// HandedOver: a reshare moved the key to a group without this signer,
	// which erased its share (index 0).
	HandedOver bool `json:"handed_over,omitempty"`
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

// ReshareParams proposes a reshare (or a refresh: the same signers and
// threshold) of a key (an id prefix; empty: the only key) to the roster
// names in signers; dealers optionally names the old signers that deal.
type ReshareParams struct {
	Key       string   `json:"key"`
	Threshold int      `json:"threshold"`
	Signers   []string `json:"signers"`
	Dealers   []string `json:"dealers,omitempty"`
	Wait      bool     `json:"wait"`
}

// KeyImportParams proposes to split the whole key of an EIP-2335 keystore
// (its JSON text) into a threshold-of-n key of the roster. The co-signer
// never stores the key; a restart before the import ends abandons it.
type KeyImportParams struct {
	Keystore  string `json:"keystore"`
	Password  string `json:"password"`
	Threshold int    `json:"threshold"`
	Wait      bool   `json:"wait"`
}

// ReshareResult answers reshare and key.import (and wait for them): the
// id at once, the key at its new epoch once it ended.
type ReshareResult struct {
	ID             string `json:"id"`
	What           string `json:"what,omitempty"` // reshare, refresh or import
	KeyID          string `json:"key_id,omitempty"`
	GroupPublicKey string `json:"group_public_key,omitempty"`
	Epoch          uint32 `json:"epoch"`
	Threshold      int    `json:"threshold,omitempty"`
	Parties        int    `json:"parties,omitempty"`
	HandedOver     bool   `json:"handed_over,omitempty"`
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

// AuditParams asks for the audit trail's entries that ended at or after
// since (zero: all).
type AuditParams struct {
	Since time.Time `json:"since,omitzero"`
}

// AuditApproval is one signer's answer in an audit entry. User and
// SSHClient are what the API caller's record says (its peer credentials,
// and the SSH client it claimed); Rule names the approval rule (or
// signing.auto_approve) that answered. Empty for the other signers.
type AuditApproval struct {
	Signer    string `json:"signer"`
	Decision  string `json:"decision"`
	User      string `json:"user"`
	SSHClient string `json:"ssh_client"`
	Rule      string `json:"rule"`
	By        string `json:"by"` // as recorded
}

// AuditPeerHead is another signer's audit head as it reported it.
type AuditPeerHead struct {
	Signer string `json:"signer"`
	Count  uint64 `json:"count"`
	Hash   string `json:"hash"`
}

// AuditEntry is one ended ceremony in the audit trail.
type AuditEntry struct {
	Seq         uint64 `json:"seq"`
	Hash        string `json:"hash"`
	Prev        string `json:"prev"`
	Kind        string `json:"kind"` // "sign", "keygen" or "reshare"
	ID          string `json:"id"`
	KeyID       string `json:"key_id"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason"`
	Requester   string `json:"requester"`
	RequesterAt string `json:"requester_at_the_time"`
	// AskedBy is who asked through this signer's socket, when it asked
	// (its By: user=…, ssh_client=…).
	AskedBy     string          `json:"asked_by"`
	Message     string          `json:"message_hex"`
	SHA256      string          `json:"sha256"`
	Description string          `json:"description"`
	Created     time.Time       `json:"created"`
	Ended       time.Time       `json:"ended"`
	Signature   string          `json:"signature"`
	Signers     []string        `json:"signers"`
	Blamed      []string        `json:"blamed"`
	Approvals   []AuditApproval `json:"approvals"`
	PeerHeads   []AuditPeerHead `json:"peer_heads"`
	Converted   bool            `json:"converted"`
}

// AuditHead is the trail's head: its count of entries and the hash of its
// last entry. Keep it elsewhere: only against it is a cut-off tail or a
// rolled-back store found.
type AuditHead struct {
	Count uint64 `json:"count"`
	Hash  string `json:"hash"`
}

// AuditResult answers audit: the entries, verified, and the head.
type AuditResult struct {
	Entries []AuditEntry `json:"entries"`
	Head    AuditHead    `json:"head"`
}

// AuditResultOf is the API's form of a verified trail.
func AuditResultOf(entries []core.AuditEntry, head core.AuditHead) AuditResult {
	out := AuditResult{Entries: []AuditEntry{}, Head: AuditHead{Count: head.Count}}
	if head.Count > 0 {
		out.Head.Hash = hex.EncodeToString(head.Hash[:])
	}
	for _, e := range entries {
		kind := "sign"
		switch e.Kind {
		case core.KindKeygen:
			kind = "keygen"
		case core.KindReshare:
			kind = "reshare"
		}
		ae := AuditEntry{Seq: e.Seq, Hash: hex.EncodeToString(e.Hash[:]), Kind: kind, ID: hex.EncodeToString(e.ID[:]),
			Outcome: e.Outcome.String(), Reason: e.Reason, Requester: e.Requester, RequesterAt: e.RequesterName, AskedBy: e.AskedBy,
			Message: hex.EncodeToString(e.Message), Description: e.Description, Created: e.Created, Ended: e.EndedAt,
			Signature: hex.EncodeToString(e.Signature), Signers: nonNil(e.Signers), Blamed: nonNil(e.Blamed),
			Approvals: []AuditApproval{}, PeerHeads: []AuditPeerHead{}, Converted: e.Converted}
		if e.Prev != ([32]byte{}) {
			ae.Prev = hex.EncodeToString(e.Prev[:])
		}
		if e.KeyID != ([32]byte{}) {
			ae.KeyID = hex.EncodeToString(e.KeyID[:])
		}
		if len(e.Message) > 0 {
			sum := e.MessageSHA256()
			ae.SHA256 = hex.EncodeToString(sum[:])
		}
		for _, a := range e.Answers {
			user, ssh, rule := core.ParseBy(a.By)
			ae.Approvals = append(ae.Approvals, AuditApproval{Signer: a.Signer, Decision: a.Decision, User: user, SSHClient: ssh, Rule: rule, By: a.By})
		}
		for _, h := range e.PeerHeads {
			ae.PeerHeads = append(ae.PeerHeads, AuditPeerHead{Signer: h.Signer, Count: h.Count, Hash: hex.EncodeToString(h.Hash[:])})
		}
		out.Entries = append(out.Entries, ae)
	}
	return out
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
	case event.ReshareDone:
		return "reshare_done"
	case event.ReshareFailed:
		return "reshare_failed"
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
