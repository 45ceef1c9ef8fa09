package core

// Ended records: one per ended ceremony, the compact result that replaces
// a signing's full record (so that neither memory nor start-up grows with
// the history) and, chained and signed, the entry of the audit trail.

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// AuditContext is prefixed to what the console key signs in an audit
// entry, so that such a signature can never pass for an envelope's.
const AuditContext = "cosigner audit entry v1"

// ErrAuditBroken: the audit trail does not verify (AuditError says where).
var ErrAuditBroken = errors.New("core: the audit trail is broken")

// AuditError names the first entry of a trail that does not verify.
type AuditError struct {
	Seq    uint64
	Reason string
}

func (e *AuditError) Error() string {
	return fmt.Sprintf("audit entry %d: %s", e.Seq, e.Reason)
}

// Is makes an AuditError an ErrAuditBroken.
func (e *AuditError) Is(target error) bool { return target == ErrAuditBroken }

// EndOutcome is how a ceremony ended.
type EndOutcome uint8

// Outcomes.
const (
	EndSigned    EndOutcome = 1 // sign: the verified signature was made
	EndDeclined  EndOutcome = 2 // sign: declines made t approvals impossible
	EndExpired   EndOutcome = 3 // sign: it expired before t approvals
	EndFailed    EndOutcome = 4 // sign: failed otherwise (bad partials)
	EndAbandoned EndOutcome = 5 // retired at a restore from a backup
	EndGenerated EndOutcome = 6 // keygen: the key was made
	EndAborted   EndOutcome = 7 // keygen, reshare: it stopped without a key
	EndReshared  EndOutcome = 8 // reshare, refresh, import: the key moved to its next epoch (or was handed over)
	EndErased    EndOutcome = 9 // converted after its secrets were erased at a reshare: the outcome was not kept
)

var outcomeNames = map[EndOutcome]string{EndSigned: "signed", EndDeclined: "declined", EndExpired: "expired", EndFailed: "failed",
	EndAbandoned: "restored-abandoned", EndGenerated: "generated", EndAborted: "aborted", EndReshared: "reshared", EndErased: "erased"}

func (o EndOutcome) String() string {
	if s, ok := outcomeNames[o]; ok {
		return s
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Decision is this console's answer to a ceremony, as recorded.
type Decision struct {
	Accept bool
	By     string // Input.By: the API caller, a rule's name, or "" (this console's own screen or command)
	Time   time.Time
	Reason string // a decline's reason
}

// PeerHead is another signer's audit head, as that signer reported it.
type PeerHead struct {
	Signer string
	Count  uint64
	Hash   [32]byte
}

// AuditHead is the end of an audit trail: how many entries, and the hash
// of the last (zero when empty). A cut-off tail is found only against a
// head recorded elsewhere.
type AuditHead struct {
	Count uint64
	Hash  [32]byte
	// Signs counts the signing entries (the history's index).
	Signs uint64
}

// Ended is an ended ceremony: its compact result and its audit entry.
// Names are resolved when read, from the key's parties and the roster;
// RequesterName is the roster name when it ended, for the audit.
type Ended struct {
	Seq  uint64   // 1-based position in the trail
	Prev [32]byte // Hash of the entry before (zero for the first)

	Kind          CeremonyKind
	ID            [32]byte
	KeyID         [32]byte // sign: the key used; keygen: the key made
	Outcome       EndOutcome
	Reason        string
	Requester     uint32 // party index of the requester or proposer
	RequesterName string
	Message       []byte // sign; a keygen holds what it was to make in Description
	Description   string
	Created       time.Time
	EndedAt       time.Time
	Signature     []byte   // sign: the BLS signature
	Signers       []uint32 // sign: the parties combined; keygen: the parties
	Approved      []uint32 // parties whose approval (partial) this console saw
	Declined      []uint32
	Blamed        []uint32
	Decision      *Decision // this console's; nil when it never answered
	Final         [][]byte  // the envelopes that answer a late peer (answerFinished)
	PeerHeads     []PeerHead
	Converted     bool // made at the first start after an upgrade, from a record of an older format
	// Names are the parties' roster names when it ended (party j is
	// Names[j-1]): the key's signers may change at a reshare, and an
	// auditor reads who they were then.
	Names []string
	// AskedBy is who asked through this console's socket API (Input.By),
	// when this console asked.
	AskedBy string

	Seal []byte   // Ed25519 by the console key over AuditContext and the rest
	Hash [32]byte // SHA-256 of the whole encoding (not encoded)

	// useBy is the requester's Signal address when a signing rule
	// approved it (a RuleUse is kept with the record); not encoded.
	useBy string
}

// MessageSHA256 is the SHA-256 of the message.
func (e *Ended) MessageSHA256() [32]byte { return sha256.Sum256(e.Message) }

const (
	maxEndedReason = 1024
	maxPartyList   = 1024
	maxFinal       = 8
	maxPeerHeads   = 256
	maxSignerName  = 128
)

func encodeParties(ps []uint32) []byte {
	var b []byte
	for _, p := range ps {
		b = binary.BigEndian.AppendUint32(b, p)
	}
	return b
}

func decodeParties(b []byte) ([]uint32, bool) {
	if len(b)%4 != 0 || len(b)/4 > maxPartyList {
		return nil, false
	}
	var out []uint32
	for i := 0; i < len(b); i += 4 {
		p := binary.BigEndian.Uint32(b[i:])
		if p == 0 || (len(out) > 0 && p <= out[len(out)-1]) {
			return nil, false // canonical: ascending, no repeats
		}
		out = append(out, p)
	}
	return out, true
}

func sortedParties(ps []uint32) []uint32 {
	out := slices.Clone(ps)
	slices.Sort(out)
	return slices.Compact(out)
}

// body encodes every field but the seal.
func (e *Ended) body() ([]byte, error) {
	var w wire.Encoder
	w.Uint(1, e.Seq)
	if e.Prev != ([32]byte{}) {
		w.Bytes(2, e.Prev[:])
	} else {
		w.Bytes(2, nil)
	}
	w.Uint(3, uint64(e.Kind))
	w.Bytes(4, e.ID[:])
	if e.KeyID != ([32]byte{}) {
		w.Bytes(5, e.KeyID[:])
	} else {
		w.Bytes(5, nil)
	}
	w.Uint(6, uint64(e.Outcome))
	w.Bytes(7, []byte(e.Reason))
	w.Uint(8, uint64(e.Requester))
	w.Bytes(9, []byte(e.RequesterName))
	w.Bytes(10, e.Message)
	if len(e.Message) > 0 {
		sum := e.MessageSHA256()
		w.Bytes(11, sum[:])
	} else {
		w.Bytes(11, nil)
	}
	w.Bytes(12, []byte(e.Description))
	w.Uint(13, uint64(e.Created.UnixNano()))
	w.Uint(14, uint64(e.EndedAt.UnixNano()))
	w.Bytes(15, e.Signature)
	w.Bytes(16, encodeParties(sortedParties(e.Signers)))
	w.Bytes(17, encodeParties(sortedParties(e.Approved)))
	w.Bytes(18, encodeParties(sortedParties(e.Declined)))
	w.Bytes(19, encodeParties(sortedParties(e.Blamed)))
	if e.Decision != nil {
		var d wire.Encoder
		d.Uint(1, boolUint(e.Decision.Accept)+1) // 1 decline, 2 accept: never zero
		d.Bytes(2, []byte(e.Decision.By))
		if !e.Decision.Time.IsZero() {
			d.Uint(3, uint64(e.Decision.Time.UnixNano()))
		}
		d.Bytes(4, []byte(e.Decision.Reason))
		b, err := d.Finish()
		if err != nil {
			return nil, err
		}
		w.Bytes(20, b)
	} else {
		w.Bytes(20, nil)
	}
	w.Repeated(21, e.Final)
	heads := make([][]byte, 0, len(e.PeerHeads))
	for _, h := range e.PeerHeads {
		var d wire.Encoder
		d.Bytes(1, []byte(h.Signer))
		d.Uint(2, h.Count)
		if h.Hash != ([32]byte{}) {
			d.Bytes(3, h.Hash[:])
		}
		b, err := d.Finish()
		if err != nil {
			return nil, err
		}
		heads = append(heads, b)
	}
	w.Repeated(22, heads)
	w.Uint(23, boolUint(e.Converted))
	names := make([][]byte, len(e.Names))
	for i, n := range e.Names {
		names[i] = []byte(n)
	}
	w.Repeated(24, names)
	w.Bytes(25, []byte(e.AskedBy))
	return w.Finish()
}

// seal numbers e after head, signs it with key and returns its encoding;
// e.Seq, Prev, Seal and Hash are set.
func (e *Ended) seal(head AuditHead, key ed25519.PrivateKey) ([]byte, error) {
	e.Seq, e.Prev = head.Count+1, head.Hash
	body, err := e.body()
	if err != nil {
		return nil, fmt.Errorf("core: encode ended record: %w", err)
	}
	e.Seal = ed25519.Sign(key, append([]byte(AuditContext), body...))
	full := append(body, sealField(e.Seal)...)
	e.Hash = sha256.Sum256(full)
	return full, nil
}

// fieldSeal is the seal's field: the last, after the body it signs.
const fieldSeal = 26

// sealField encodes the seal as the field that ends a record.
func sealField(seal []byte) []byte {
	var w wire.Encoder
	w.Bytes(fieldSeal, seal)
	b, _ := w.Finish()
	return b
}

// DecodeEnded reads an ended record strictly (one encoding per value,
// bounded sizes). It does not check the seal: VerifyAudit does.
func DecodeEnded(b []byte) (*Ended, error) {
	if len(b) > maxRecord {
		return nil, fmt.Errorf("%w: ended record of %d bytes", ErrCorrupt, len(b))
	}
	d := wire.NewDecoder(b)
	seq, _ := d.Uint(1)
	prev, _ := d.Bytes(2, 32)
	kind, _ := d.Uint(3)
	id, _ := d.Fixed(4, 32)
	keyID, _ := d.Bytes(5, 32)
	outcome, _ := d.Uint(6)
	reason, _ := d.Bytes(7, maxEndedReason)
	requester, _ := d.Uint32(8)
	rname, _ := d.Bytes(9, maxSignerName)
	msg, _ := d.Bytes(10, tbls.MaxMessageSize)
	sum, _ := d.Bytes(11, 32)
	desc, _ := d.Bytes(12, maxEndedReason)
	created, _ := d.Uint(13)
	ended, _ := d.Uint(14)
	sig, _ := d.Bytes(15, 256)
	signers, _ := d.Bytes(16, 4*maxPartyList)
	approved, _ := d.Bytes(17, 4*maxPartyList)
	declined, _ := d.Bytes(18, 4*maxPartyList)
	blamed, _ := d.Bytes(19, 4*maxPartyList)
	decision, _ := d.Bytes(20, 2*maxBy)
	final, _ := d.Repeated(21, maxFinal, wire.MaxEnvelopeSize)
	heads, _ := d.Repeated(22, maxPeerHeads, 256)
	converted, _ := d.Uint(23)
	names, _ := d.Repeated(24, maxPartyList, maxSignerName)
	asked, _ := d.Bytes(25, maxBy)
	seal, _ := d.Bytes(fieldSeal, ed25519.SignatureSize)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: ended record: %w", ErrCorrupt, err)
	}
	bad := func(what string) (*Ended, error) {
		return nil, fmt.Errorf("%w: ended record: %s", ErrCorrupt, what)
	}
	if seq == 0 || (seq == 1) != (prev == nil) || (prev != nil && (len(prev) != 32 || allZero(prev))) {
		return bad("sequence")
	}
	if kind != uint64(KindKeygen) && kind != uint64(KindSign) && kind != uint64(KindReshare) {
		return bad("kind")
	}
	if keyID != nil && (len(keyID) != 32 || allZero(keyID)) {
		return bad("key id")
	}
	if _, ok := outcomeNames[EndOutcome(outcome)]; !ok || outcome > 0xff {
		return bad("outcome")
	}
	if want := sha256.Sum256(msg); (msg == nil) != (sum == nil) || (sum != nil && (len(sum) != 32 || [32]byte(sum) != want)) {
		return bad("message digest")
	}
	if converted > 1 || len(seal) != ed25519.SignatureSize {
		return bad("fields")
	}
	e := &Ended{Seq: seq, Kind: CeremonyKind(kind), Outcome: EndOutcome(outcome), Reason: string(reason), Requester: requester,
		RequesterName: string(rname), Message: msg, Description: string(desc), Signature: sig, Final: final,
		Converted: converted == 1, Seal: seal, Hash: sha256.Sum256(b)}
	copy(e.Prev[:], prev)
	copy(e.ID[:], id)
	copy(e.KeyID[:], keyID)
	e.Created, e.EndedAt = time.Unix(0, int64(created)), time.Unix(0, int64(ended))
	for _, n := range names {
		e.Names = append(e.Names, string(n))
	}
	e.AskedBy = string(asked)
	for _, f := range []struct {
		b   []byte
		dst *[]uint32
	}{{signers, &e.Signers}, {approved, &e.Approved}, {declined, &e.Declined}, {blamed, &e.Blamed}} {
		ps, ok := decodeParties(f.b)
		if !ok {
			return bad("party list")
		}
		*f.dst = ps
	}
	if decision != nil {
		dd := wire.NewDecoder(decision)
		accept, _ := dd.Uint(1)
		by, _ := dd.Bytes(2, maxBy)
		at, _ := dd.Uint(3)
		why, _ := dd.Bytes(4, maxEndedReason)
		if err := dd.Done(); err != nil || accept < 1 || accept > 2 {
			return bad("decision")
		}
		e.Decision = &Decision{Accept: accept == 2, By: string(by), Reason: string(why)}
		if at != 0 {
			e.Decision.Time = time.Unix(0, int64(at))
		}
	}
	for _, h := range heads {
		hd := wire.NewDecoder(h)
		name, _ := hd.Bytes(1, maxSignerName)
		count, _ := hd.Uint(2)
		hash, _ := hd.Bytes(3, 32)
		if err := hd.Done(); err != nil || (hash != nil && (len(hash) != 32 || allZero(hash))) {
			return bad("peer head")
		}
		ph := PeerHead{Signer: string(name), Count: count}
		copy(ph.Hash[:], hash)
		e.PeerHeads = append(e.PeerHeads, ph)
	}
	return e, nil
}

// VerifyAudit checks a trail read from its first entry: numbering, the
// chain of hashes and every seal under pub, and that it ends at head. The
// error (an *AuditError, ErrAuditBroken) names the first bad entry.
func VerifyAudit(entries []*Ended, head AuditHead, pub ed25519.PublicKey) error {
	var prev [32]byte
	for i, e := range entries {
		want := uint64(i + 1)
		if e.Seq != want {
			return &AuditError{Seq: want, Reason: fmt.Sprintf("missing: found entry %d in its place", e.Seq)}
		}
		if e.Prev != prev {
			return &AuditError{Seq: e.Seq, Reason: "it does not follow the entry before (changed or removed)"}
		}
		body, err := e.body()
		if err != nil {
			return &AuditError{Seq: e.Seq, Reason: err.Error()}
		}
		if !ed25519.Verify(pub, append([]byte(AuditContext), body...), e.Seal) {
			return &AuditError{Seq: e.Seq, Reason: "its signature does not verify"}
		}
		if sha256.Sum256(append(body, sealField(e.Seal)...)) != e.Hash {
			return &AuditError{Seq: e.Seq, Reason: "its hash does not match its contents"}
		}
		prev = e.Hash
	}
	if head.Count != uint64(len(entries)) || head.Hash != prev {
		return &AuditError{Seq: uint64(len(entries)) + 1, Reason: fmt.Sprintf("the head says %d entries ending in %x", head.Count, head.Hash[:4])}
	}
	return nil
}

func encodeHead(h AuditHead) []byte {
	var w wire.Encoder
	w.Uint(1, h.Count)
	if h.Hash != ([32]byte{}) {
		w.Bytes(2, h.Hash[:])
	}
	w.Uint(3, h.Signs)
	b, _ := w.Finish()
	return b
}

func decodeHead(b []byte) (AuditHead, error) {
	d := wire.NewDecoder(b)
	count, _ := d.Uint(1)
	hash, _ := d.Bytes(2, 32)
	signs, _ := d.Uint(3)
	if err := d.Done(); err != nil || (count == 0) != (hash == nil) || (hash != nil && (len(hash) != 32 || allZero(hash))) || signs > count {
		return AuditHead{}, fmt.Errorf("%w: audit head", ErrCorrupt)
	}
	h := AuditHead{Count: count, Signs: signs}
	copy(h.Hash[:], hash)
	return h, nil
}

// RuleUse is an approval a signing rule gave (max_per_hour survives a
// restart through these).
type RuleUse struct {
	Rule      string
	Requester string // the requester's Signal address (SignFacts.RequesterID)
	Time      time.Time
}

func encodeRuleUse(u RuleUse) []byte {
	var w wire.Encoder
	w.Bytes(1, []byte(u.Rule))
	w.Bytes(2, []byte(u.Requester))
	w.Uint(3, uint64(u.Time.UnixNano()))
	b, _ := w.Finish()
	return b
}

func decodeRuleUse(b []byte) (RuleUse, error) {
	d := wire.NewDecoder(b)
	rule, _ := d.Bytes(1, maxBy)
	who, _ := d.Bytes(2, 256)
	at, _ := d.Uint(3)
	if err := d.Done(); err != nil {
		return RuleUse{}, fmt.Errorf("%w: rule use: %w", ErrCorrupt, err)
	}
	return RuleUse{Rule: string(rule), Requester: string(who), Time: time.Unix(0, int64(at))}, nil
}

func seqKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func useKey(at time.Time, id [32]byte) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(max(at.UnixNano(), 0))), id[:]...)
}
