package core

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signal-mpc/cosigner/bls/wire"
)

// Vault is the encrypted, transactional key-value store core keeps its
// records in. The Signal device's store satisfies it (one file, one key for
// all of a console's secrets, one commit order for the device's session
// updates and core's records); core defines only what it needs.
type Vault interface {
	// Update runs fn in one write transaction, all of it or nothing, and
	// returns once it is durable.
	Update(ctx context.Context, fn func(tx VaultTx) error) error
	// Submit queues fn to run in a write transaction after every
	// transaction submitted before it (all of fn or nothing) and returns
	// without waiting for the commit (fn may have run already).
	// Transactions become durable in the order they were submitted.
	Submit(ctx context.Context, fn func(tx VaultTx) error) Pending
	// View runs fn in a read transaction over what is durable.
	View(ctx context.Context, fn func(tx VaultTx) error) error
}

// Pending is a transaction submitted to a Vault.
type Pending interface {
	// Done is closed once the transaction is durable or has failed.
	Done() <-chan struct{}
	// Wait returns nil once it is durable, or why it failed; a context
	// error when ctx ended first.
	Wait(ctx context.Context) error
}

// VaultTx is one transaction. Values are encrypted at rest and bound to
// their bucket and key; keys are not secret.
type VaultTx interface {
	Get(bucket string, key []byte) ([]byte, error) // nil, nil when absent
	Put(bucket string, key, value []byte) error
	Delete(bucket string, key []byte) error
	// Scan calls fn for every key with the prefix, in key order.
	Scan(bucket string, prefix []byte, fn func(key, value []byte) error) error
	// Range calls fn for every key from start on, in key order: reads of
	// the newest records of an index start near its end, not at its
	// beginning.
	Range(bucket string, start []byte, fn func(key, value []byte) error) error
}

const (
	bucketCeremonies = "core.ceremonies"
	bucketInputs     = "core.inputs"
	bucketKeys       = "core.keys"
	bucketOrphans    = "core.orphans"
	// Ended records (ended.go): by sequence number (the audit trail), a
	// ceremony's sequence number by its id, the signings' sequence numbers
	// in order (the history), the rule approvals by time (max_per_hour),
	// and the head.
	bucketEnded    = "core.ended"
	bucketEndedID  = "core.ended.id"
	bucketHistory  = "core.history"
	bucketRuleUses = "core.ruleuses"
	bucketAudit    = "core.audit"
	maxRecord      = 1 << 20
)

// VaultStore is the Store of a console: core's records in a Vault. Its
// writes are submitted and return at once; Durable waits for them. After a
// write failed, every later write and wait reports that failure: the App's
// state in memory is then ahead of the file, and only a restart (a new
// VaultStore replaying the file) is consistent again.
type VaultStore struct {
	v Vault

	mu      sync.Mutex
	pending []Pending // submitted, not yet seen complete, oldest first
	err     error     // the first failed write
}

// NewVaultStore returns a Store over v.
func NewVaultStore(v Vault) *VaultStore { return &VaultStore{v: v} }

// submit queues a write. The write does not take the caller's
// cancellation: once core has applied an input in memory, its record must
// reach the file.
func (s *VaultStore) submit(ctx context.Context, fn func(tx VaultTx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune()
	if s.err != nil {
		return s.err
	}
	s.pending = append(s.pending, s.v.Submit(context.WithoutCancel(ctx), fn))
	return nil
}

// prune drops the completed writes at the head of the queue, keeping the
// first failure. The caller holds mu.
func (s *VaultStore) prune() {
	n := 0
	for _, p := range s.pending {
		select {
		case <-p.Done():
		default:
			s.pending = s.pending[n:]
			return
		}
		if err := p.Wait(context.Background()); err != nil && s.err == nil {
			s.err = fmt.Errorf("%w: %w", ErrStoreFailed, err)
		}
		n++
	}
	s.pending = s.pending[:0]
}

// Durable returns a function that waits until every write made so far is
// durable, and reports the first failure.
func (s *VaultStore) Durable() func(ctx context.Context) error {
	s.mu.Lock()
	s.prune()
	waiting := slices.Clone(s.pending)
	s.mu.Unlock()
	return func(ctx context.Context) error {
		for _, p := range waiting {
			if err := p.Wait(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				break // recorded by prune below
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.prune()
		return s.err
	}
}

// The write functions run later, on the store's goroutine: they use only
// bytes encoded before submitting, never the caller's records, which the
// App goes on changing.

func (s *VaultStore) PutCeremony(ctx context.Context, r *CeremonyRecord) error {
	id := r.ID
	inputs := make([][]byte, len(r.Inputs))
	for i, in := range r.Inputs {
		inputs[i] = encodeInput(in)
	}
	rec := encodeCeremony(r, uint64(len(r.Inputs)))
	return s.submit(ctx, func(tx VaultTx) error {
		for i, in := range inputs {
			if err := tx.Put(bucketInputs, inputKey(id, uint64(i)), in); err != nil {
				return err
			}
		}
		return tx.Put(bucketCeremonies, id[:], rec)
	})
}

func (s *VaultStore) AppendInput(ctx context.Context, id [32]byte, in Input) error {
	enc := encodeInput(in)
	return s.submit(ctx, func(tx VaultTx) error {
		b, err := tx.Get(bucketCeremonies, id[:])
		if err != nil {
			return err
		}
		if b == nil {
			return fmt.Errorf("%w: ceremony %x", ErrNotFound, id[:4])
		}
		r, next, err := decodeCeremony(b)
		if err != nil {
			return err
		}
		if err := tx.Put(bucketInputs, inputKey(id, next), enc); err != nil {
			return err
		}
		return tx.Put(bucketCeremonies, id[:], encodeCeremony(r, next+1))
	})
}

// FinishCeremony records that ceremony id ended, in one transaction: its
// ended record, sealed with key as the next entry of the audit trail, and,
// for a signing, the removal of its full record and inputs (a keygen's
// record stays, marked finished: its key is rebuilt from it). A ceremony
// that has an ended record already is left as it is: at most one per
// ceremony, also across a crash and a replay.
func (s *VaultStore) FinishCeremony(ctx context.Context, id [32]byte, end *Ended, key ed25519.PrivateKey) error {
	e := *end // sealed on the store's goroutine: a copy of its own
	var use *RuleUse
	if e.Kind == KindSign && e.Decision != nil && e.Decision.Accept && strings.HasPrefix(e.Decision.By, "signing.rule[") && end.useBy != "" {
		use = &RuleUse{Rule: e.Decision.By, Requester: end.useBy, Time: e.Decision.Time}
	}
	return s.submit(ctx, func(tx VaultTx) error { return finishTx(tx, id, &e, key, use) })
}

func finishTx(tx VaultTx, id [32]byte, e *Ended, key ed25519.PrivateKey, use *RuleUse) error {
	if b, err := tx.Get(bucketEndedID, id[:]); err != nil || b != nil {
		return err
	}
	b, err := tx.Get(bucketCeremonies, id[:])
	if err != nil {
		return err
	}
	if b != nil {
		r, next, err := decodeCeremony(b)
		if err != nil {
			return err
		}
		if r.Kind == KindSign {
			if err := deleteCeremony(tx, id); err != nil {
				return err
			}
		} else if !r.Finished {
			r.Finished = true
			if err := tx.Put(bucketCeremonies, id[:], encodeCeremony(r, next)); err != nil {
				return err
			}
		}
	}
	head, err := readHead(tx)
	if err != nil {
		return err
	}
	enc, err := e.seal(head, key)
	if err != nil {
		return err
	}
	if err := tx.Put(bucketEnded, seqKey(e.Seq), enc); err != nil {
		return err
	}
	if err := tx.Put(bucketEndedID, id[:], seqKey(e.Seq)); err != nil {
		return err
	}
	head.Count, head.Hash = e.Seq, e.Hash
	if e.Kind == KindSign {
		head.Signs++
		if err := tx.Put(bucketHistory, seqKey(head.Signs), seqKey(e.Seq)); err != nil {
			return err
		}
	}
	if use != nil {
		if err := tx.Put(bucketRuleUses, useKey(use.Time, id), encodeRuleUse(*use)); err != nil {
			return err
		}
	}
	return tx.Put(bucketAudit, []byte("head"), encodeHead(head))
}

// deleteCeremony removes a ceremony's record and inputs.
func deleteCeremony(tx VaultTx, id [32]byte) error {
	var keys [][]byte
	if err := tx.Scan(bucketInputs, id[:], func(k, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
		return err
	}
	for _, k := range keys {
		if err := tx.Delete(bucketInputs, k); err != nil {
			return err
		}
	}
	return tx.Delete(bucketCeremonies, id[:])
}

func readHead(tx VaultTx) (AuditHead, error) {
	b, err := tx.Get(bucketAudit, []byte("head"))
	if err != nil || b == nil {
		return AuditHead{}, err
	}
	return decodeHead(b)
}

func readEnded(tx VaultTx, seq []byte) (*Ended, error) {
	b, err := tx.Get(bucketEnded, seq)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: ended record %x is missing", ErrCorrupt, seq)
	}
	return DecodeEnded(b)
}

// Ended returns the ended record of ceremony id, nil when it has none. It
// reads what is durable now without waiting for writes under way: the App
// keeps a ceremony in memory until its ended record is durable.
func (s *VaultStore) Ended(ctx context.Context, id [32]byte) (*Ended, error) {
	var out *Ended
	err := s.v.View(ctx, func(tx VaultTx) error {
		seq, err := tx.Get(bucketEndedID, id[:])
		if err != nil || seq == nil {
			return err
		}
		out, err = readEnded(tx, seq)
		return err
	})
	return out, err
}

// History returns the newest limit ended signings (all when limit <= 0),
// oldest first.
func (s *VaultStore) History(ctx context.Context, limit int) ([]*Ended, error) {
	var out []*Ended
	err := s.read(ctx, func(tx VaultTx) error {
		head, err := readHead(tx)
		if err != nil {
			return err
		}
		from := uint64(1)
		if limit > 0 && head.Signs > uint64(limit) {
			from = head.Signs - uint64(limit) + 1
		}
		return tx.Range(bucketHistory, seqKey(from), func(_, seq []byte) error {
			e, err := readEnded(tx, seq)
			if err == nil {
				out = append(out, e)
			}
			return err
		})
	})
	return out, err
}

// RuleUses returns the approvals the signing rules gave since since.
func (s *VaultStore) RuleUses(ctx context.Context, since time.Time) ([]RuleUse, error) {
	var out []RuleUse
	err := s.read(ctx, func(tx VaultTx) error {
		return tx.Range(bucketRuleUses, useKey(since, [32]byte{}), func(_, v []byte) error {
			u, err := decodeRuleUse(v)
			if err == nil {
				out = append(out, u)
			}
			return err
		})
	})
	return out, err
}

// AuditHead returns the head of the audit trail.
func (s *VaultStore) AuditHead(ctx context.Context) (AuditHead, error) {
	var h AuditHead
	err := s.read(ctx, func(tx VaultTx) error {
		var err error
		h, err = readHead(tx)
		return err
	})
	return h, err
}

// Audit returns the whole audit trail, in order, and its head, unverified
// (VerifyAudit).
func (s *VaultStore) Audit(ctx context.Context) ([]*Ended, AuditHead, error) {
	var out []*Ended
	var h AuditHead
	err := s.read(ctx, func(tx VaultTx) error {
		var err error
		if h, err = readHead(tx); err != nil {
			return err
		}
		return tx.Scan(bucketEnded, nil, func(_, v []byte) error {
			e, err := DecodeEnded(v)
			if err == nil {
				out = append(out, e)
			}
			return err
		})
	})
	return out, h, err
}

// read waits for the writes made so far, then reads what is durable.
func (s *VaultStore) read(ctx context.Context, fn func(tx VaultTx) error) error {
	if err := s.Durable()(ctx); err != nil {
		return err
	}
	return s.v.View(ctx, fn)
}

func (s *VaultStore) Ceremonies(ctx context.Context) ([]*CeremonyRecord, error) {
	var out []*CeremonyRecord
	err := s.read(ctx, func(tx VaultTx) error {
		return tx.Scan(bucketCeremonies, nil, func(_, v []byte) error {
			r, next, err := decodeCeremony(v)
			if err != nil {
				return err
			}
			if err := tx.Scan(bucketInputs, r.ID[:], func(_, iv []byte) error {
				in, err := decodeInput(iv)
				if err != nil {
					return err
				}
				r.Inputs = append(r.Inputs, in)
				return nil
			}); err != nil {
				return err
			}
			if uint64(len(r.Inputs)) != next {
				return fmt.Errorf("%w: ceremony %x has %d inputs, its record says %d", ErrCorrupt, r.ID[:4], len(r.Inputs), next)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	// Oldest first, so keys exist before the requests that use them.
	sortByCreated(out)
	return out, nil
}

func (s *VaultStore) PutKey(ctx context.Context, k KeyRecord) error {
	var e wire.Encoder
	e.Bytes(1, k.Ceremony[:])
	e.Bytes(2, k.KeyID[:])
	e.Uint(3, uint64(k.Created.Unix()))
	b, err := e.Finish()
	if err != nil {
		return err
	}
	return s.submit(ctx, func(tx VaultTx) error { return tx.Put(bucketKeys, k.KeyID[:], b) })
}

func (s *VaultStore) Keys(ctx context.Context) ([]KeyRecord, error) {
	var out []KeyRecord
	err := s.read(ctx, func(tx VaultTx) error {
		return tx.Scan(bucketKeys, nil, func(_, v []byte) error {
			d := wire.NewDecoder(v)
			c, _ := d.Fixed(1, 32)
			id, _ := d.Fixed(2, 32)
			created, _ := d.Uint(3)
			if err := d.Done(); err != nil {
				return fmt.Errorf("%w: key record: %w", ErrCorrupt, err)
			}
			var k KeyRecord
			copy(k.Ceremony[:], c)
			copy(k.KeyID[:], id)
			k.Created = time.Unix(int64(created), 0)
			out = append(out, k)
			return nil
		})
	})
	return out, err
}

func (s *VaultStore) PutOrphan(ctx context.Context, o Orphan) error {
	var e wire.Encoder
	e.Bytes(1, []byte(o.From.Account))
	e.Uint(2, uint64(o.From.Device))
	e.Bytes(3, o.Envelope)
	e.Uint(4, uint64(o.Received.UnixNano()))
	b, err := e.Finish()
	if err != nil {
		return err
	}
	key := orphanKey(o.Envelope)
	return s.submit(ctx, func(tx VaultTx) error { return tx.Put(bucketOrphans, key, b) })
}

func (s *VaultStore) DeleteOrphans(ctx context.Context, envs [][]byte) error {
	keys := make([][]byte, len(envs))
	for i, env := range envs {
		keys[i] = orphanKey(env)
	}
	return s.submit(ctx, func(tx VaultTx) error {
		for _, k := range keys {
			if err := tx.Delete(bucketOrphans, k); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *VaultStore) Orphans(ctx context.Context) ([]Orphan, error) {
	var out []Orphan
	err := s.read(ctx, func(tx VaultTx) error {
		return tx.Scan(bucketOrphans, nil, func(_, v []byte) error {
			o, err := decodeOrphan(v)
			if err != nil {
				return err
			}
			out = append(out, o)
			return nil
		})
	})
	sortOrphans(out)
	return out, err
}

func decodeOrphan(v []byte) (Orphan, error) {
	d := wire.NewDecoder(v)
	acct, _ := d.Bytes(1, 128)
	dev, _ := d.Uint32(2)
	env, _ := d.Bytes(3, wire.MaxEnvelopeSize)
	at, _ := d.Uint(4)
	if err := d.Done(); err != nil {
		return Orphan{}, fmt.Errorf("%w: orphan: %w", ErrCorrupt, err)
	}
	return Orphan{From: Address{Account: string(acct), Device: dev}, Envelope: env, Received: time.Unix(0, int64(at))}, nil
}

func orphanKey(env []byte) []byte {
	h := sha256.Sum256(env)
	return h[:]
}

func inputKey(id [32]byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{}, id[:]...), seq)
}

// Record encodings use the canonical codec of the MPC envelopes: one
// encoding per value, strict decoding.

func encodeCeremony(r *CeremonyRecord, next uint64) []byte {
	var e wire.Encoder
	e.Bytes(1, r.ID[:])
	e.Uint(2, uint64(r.Kind))
	e.Bytes(3, r.Opening)
	if r.Seed != ([32]byte{}) {
		e.Bytes(4, r.Seed[:])
	}
	if r.KeyID != ([32]byte{}) {
		e.Bytes(5, r.KeyID[:])
	}
	e.Uint(6, boolUint(r.Own))
	e.Uint(7, uint64(r.Created.UnixNano()))
	e.Uint(8, boolUint(r.Finished))
	e.Uint(9, next)
	if r.Head.Count != 0 {
		e.Uint(10, r.Head.Count)
		e.Bytes(11, r.Head.Hash[:])
	}
	e.Bytes(12, []byte(r.By))
	b, _ := e.Finish() // fields are in order: no error
	return b
}

func decodeCeremony(b []byte) (*CeremonyRecord, uint64, error) {
	if len(b) > maxRecord {
		return nil, 0, fmt.Errorf("%w: ceremony record of %d bytes", ErrCorrupt, len(b))
	}
	d := wire.NewDecoder(b)
	id, _ := d.Fixed(1, 32)
	kind, _ := d.Uint(2)
	opening, _ := d.Bytes(3, wire.MaxEnvelopeSize)
	seed, _ := d.Bytes(4, 32)
	keyID, _ := d.Bytes(5, 32)
	own, _ := d.Uint(6)
	created, _ := d.Uint(7)
	finished, _ := d.Uint(8)
	next, _ := d.Uint(9)
	headCount, _ := d.Uint(10)
	headHash, _ := d.Bytes(11, 32)
	by, _ := d.Bytes(12, maxBy)
	if err := d.Done(); err != nil {
		return nil, 0, fmt.Errorf("%w: ceremony record: %w", ErrCorrupt, err)
	}
	if (headCount == 0) != (headHash == nil) || (headHash != nil && len(headHash) != 32) {
		return nil, 0, fmt.Errorf("%w: ceremony record: audit head", ErrCorrupt)
	}
	if (kind != uint64(KindKeygen) && kind != uint64(KindSign) && kind != uint64(KindReshare)) || own > 1 || finished > 1 ||
		(seed != nil && (len(seed) != 32 || allZero(seed))) || (keyID != nil && (len(keyID) != 32 || allZero(keyID))) || len(opening) == 0 {
		return nil, 0, fmt.Errorf("%w: ceremony record fields", ErrCorrupt)
	}
	r := &CeremonyRecord{Kind: CeremonyKind(kind), Opening: opening, Own: own == 1, Finished: finished == 1, Created: time.Unix(0, int64(created))}
	copy(r.ID[:], id)
	copy(r.Seed[:], seed)
	copy(r.KeyID[:], keyID)
	r.Head.Count, r.By = headCount, string(by)
	copy(r.Head.Hash[:], headHash)
	return r, next, nil
}

func encodeInput(in Input) []byte {
	var e wire.Encoder
	e.Uint(1, uint64(in.Kind))
	e.Bytes(2, in.Envelope)
	e.Bytes(3, []byte(in.Text))
	if !in.Time.IsZero() {
		e.Uint(4, uint64(in.Time.UnixNano()))
	}
	e.Bytes(5, []byte(in.By))
	b, _ := e.Finish()
	return b
}

func decodeInput(b []byte) (Input, error) {
	d := wire.NewDecoder(b)
	kind, _ := d.Uint(1)
	env, _ := d.Bytes(2, wire.MaxEnvelopeSize)
	text, _ := d.Bytes(3, 1024)
	at, _ := d.Uint(4)
	by, _ := d.Bytes(5, maxBy)
	if err := d.Done(); err != nil {
		return Input{}, fmt.Errorf("%w: input record: %w", ErrCorrupt, err)
	}
	if kind < uint64(InputEnvelope) || kind > uint64(InputErased) {
		return Input{}, fmt.Errorf("%w: input kind %d", ErrCorrupt, kind)
	}
	in := Input{Kind: InputKind(kind), Envelope: env, Text: string(text), By: string(by)}
	if at != 0 {
		in.Time = time.Unix(0, int64(at))
	}
	return in, nil
}

// maxBy bounds Input.By.
const maxBy = 256

func boolUint(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// allZero reports an all-zero id: the encoder omits those, so a record
// carrying one is not canonical.
func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
