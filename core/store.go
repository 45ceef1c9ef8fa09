package core

import (
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signal-mpc/cosigner/bls/tbls"
)

// Sentinel errors of stores.
var (
	// ErrNotFound: no such record.
	ErrNotFound = errors.New("core: not found")
	// ErrCorrupt: a stored record does not decode.
	ErrCorrupt = errors.New("core: corrupt record")
	// ErrStoreFailed: a record could not be written. The App stops: its
	// state in memory is ahead of the file, and a restart replays the file.
	// Envelopes it was handling are not acknowledged and come again.
	ErrStoreFailed = errors.New("core: store failed")
)

func sortByCreated(rs []*CeremonyRecord) {
	slices.SortStableFunc(rs, func(a, b *CeremonyRecord) int { return a.Created.Compare(b.Created) })
}

func sortOrphans(os []Orphan) {
	slices.SortStableFunc(os, func(a, b Orphan) int { return a.Received.Compare(b.Received) })
}

// CeremonyKind says which ceremony a record holds.
type CeremonyKind uint8

// Ceremony kinds.
const (
	KindKeygen CeremonyKind = 1
	KindSign   CeremonyKind = 2
	// KindReshare: a reshare, refresh or import (reshare.go); KeyID names
	// the key.
	KindReshare CeremonyKind = 3
)

// CeremonyRecord is what is needed to rebuild a ceremony after a restart:
// its first envelope (the proposal or the request), the secret seed of a
// keygen, and every input accepted since, in order. Replaying the inputs
// into a rebuilt session gives the same state and the same outgoing bytes.
type CeremonyRecord struct {
	ID       [32]byte
	Kind     CeremonyKind
	Opening  []byte   // the signed proposal or request envelope
	Seed     [32]byte // keygen only; secret
	KeyID    [32]byte // sign only
	Own      bool     // this console opened it (proposer or requester)
	Created  time.Time
	Inputs   []Input
	Finished bool
	// Head is the audit head this console's answer carries (sign): read
	// when the request opened here, kept so that a replayed answer is the
	// same bytes (ceremony.SignConfig.Head).
	Head tbls.Head
	// By is who asked, when this console asked through the socket API
	// (see Input.By); empty for its own screen or command and for peers'.
	By string
}

// InputKind is the kind of one recorded input.
type InputKind uint8

// Input kinds.
const (
	InputEnvelope InputKind = 1 // a peer's envelope, accepted
	InputAccept   InputKind = 2 // the human accepted (keygen) or approved (sign)
	InputDecline  InputKind = 3 // the human declined; Text is the reason
	InputTimeout  InputKind = 4 // a keygen round deadline passed
	InputExpire   InputKind = 5 // a signing request expired at Time
	// InputRestored: the store was restored from a backup made at Time
	// while the ceremony ran; it is finished and never resumed
	// (AbandonBeforeRestore).
	InputRestored InputKind = 6
	// InputDisputed: after this keygen finished here, a peer's abort
	// (Envelope) proved a party cheated in it: the key is not used.
	InputDisputed InputKind = 7
	// InputErased: the ceremony's secret parts (seed and inputs) were
	// erased when its key moved to a later epoch (keys.go); it is the
	// record's only input and the ceremony is never rebuilt.
	InputErased InputKind = 8
)

// Input is one recorded input of a ceremony.
type Input struct {
	Kind     InputKind
	Envelope []byte
	Text     string
	Time     time.Time
	// By is who gave an answer (InputAccept, InputDecline) when it came
	// through the socket API: the caller's uid, user and pid as the kernel
	// reported them. Empty: this console's own screen or command.
	By string
}

// KeyRecord is a generated key with this console's secret share.
type KeyRecord struct {
	Ceremony [32]byte // the keygen that made it; its record rebuilds the key
	KeyID    [32]byte
	Created  time.Time
}

// Orphan is an envelope for a ceremony this console does not know yet (a
// partial that overtook its request), kept until the ceremony appears.
type Orphan struct {
	From     Address
	Envelope []byte
	Received time.Time
}

// Store is core's persistence. Every write is atomic. A write may return
// before it is durable: it is then ordered after every earlier write and
// seen by every later read, and Durable waits for it. The App applies an
// input in memory, writes its record, and lets nothing depend on it leave
// the process (a message sent, an envelope acknowledged) before Durable
// says so. Implementations must encrypt the secrets they hold (seeds; key
// shares are re-derived from the keygen record and its seed).
type Store interface {
	// Durable returns a function that waits until every write made before
	// the call is durable: nil, a context error, or the failure (wrapping
	// ErrStoreFailed) that stopped a write.
	Durable() func(ctx context.Context) error
	PutCeremony(ctx context.Context, r *CeremonyRecord) error
	AppendInput(ctx context.Context, id [32]byte, in Input) error
	// FinishCeremony records that a ceremony ended: end (sealed with key
	// as the next audit entry) and, for a signing, the removal of its full
	// record and inputs, in one write; at most once per ceremony.
	FinishCeremony(ctx context.Context, id [32]byte, end *Ended, key ed25519.PrivateKey) error
	// Ceremonies returns what must be rebuilt at start: every keygen, and
	// every signing without an ended record (open ones, and finished ones
	// of an older format, converted at start).
	Ceremonies(ctx context.Context) ([]*CeremonyRecord, error)
	// Ended returns a ceremony's ended record (nil when none) from what is
	// durable, without waiting for the writes under way.
	Ended(ctx context.Context, id [32]byte) (*Ended, error)
	// History returns the newest limit ended signings (all when limit <=
	// 0), oldest first.
	History(ctx context.Context, limit int) ([]*Ended, error)
	// RuleUses returns the signing rules' approvals since a time.
	RuleUses(ctx context.Context, since time.Time) ([]RuleUse, error)
	// Audit returns the audit trail and its head, unverified.
	Audit(ctx context.Context) ([]*Ended, AuditHead, error)
	AuditHead(ctx context.Context) (AuditHead, error)
	PutKey(ctx context.Context, k KeyRecord) error
	Keys(ctx context.Context) ([]KeyRecord, error)
	PutOrphan(ctx context.Context, o Orphan) error
	DeleteOrphans(ctx context.Context, envelopes [][]byte) error
	Orphans(ctx context.Context) ([]Orphan, error)
}

// MemoryStore is a Store in memory, for tests and throwaway consoles. It
// loses everything when the process ends.
type MemoryStore struct{ *VaultStore }

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{NewVaultStore(newMemoryVault())} }

// memoryVault is a Vault in memory: one transaction at a time, each
// applied whole or not at all.
type memoryVault struct {
	mu   sync.Mutex
	data map[string]map[string][]byte
}

func newMemoryVault() *memoryVault { return &memoryVault{data: map[string]map[string][]byte{}} }

// memoryTx writes into a copy-on-write overlay of the touched buckets.
type memoryTx struct {
	v       *memoryVault
	written map[string]map[string][]byte // nil value: deleted
}

func (t *memoryTx) Get(b string, k []byte) ([]byte, error) {
	if w, ok := t.written[b][string(k)]; ok {
		return slices.Clone(w), nil
	}
	return slices.Clone(t.v.data[b][string(k)]), nil
}

func (t *memoryTx) Put(b string, k, v []byte) error {
	if t.written == nil {
		return errors.New("core: write in a read transaction")
	}
	if t.written[b] == nil {
		t.written[b] = map[string][]byte{}
	}
	t.written[b][string(k)] = slices.Clone(v)
	if v == nil {
		t.written[b][string(k)] = []byte{}
	}
	return nil
}

func (t *memoryTx) Delete(b string, k []byte) error {
	if t.written == nil {
		return errors.New("core: write in a read transaction")
	}
	if t.written[b] == nil {
		t.written[b] = map[string][]byte{}
	}
	t.written[b][string(k)] = nil
	return nil
}

func (t *memoryTx) keys(b string) []string {
	var keys []string
	for k := range t.v.data[b] {
		if w, ok := t.written[b][k]; !ok || w != nil {
			keys = append(keys, k)
		}
	}
	for k, w := range t.written[b] {
		if _, ok := t.v.data[b][k]; !ok && w != nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func (t *memoryTx) Scan(b string, prefix []byte, fn func(k, v []byte) error) error {
	for _, k := range t.keys(b) {
		if !strings.HasPrefix(k, string(prefix)) {
			continue
		}
		v, _ := t.Get(b, []byte(k))
		if err := fn([]byte(k), v); err != nil {
			return err
		}
	}
	return nil
}

func (t *memoryTx) Range(b string, start []byte, fn func(k, v []byte) error) error {
	for _, k := range t.keys(b) {
		if k < string(start) {
			continue
		}
		v, _ := t.Get(b, []byte(k))
		if err := fn([]byte(k), v); err != nil {
			return err
		}
	}
	return nil
}

func (v *memoryVault) Update(_ context.Context, fn func(VaultTx) error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	tx := &memoryTx{v: v, written: map[string]map[string][]byte{}}
	if err := fn(tx); err != nil {
		return err
	}
	for b, kv := range tx.written {
		if v.data[b] == nil {
			v.data[b] = map[string][]byte{}
		}
		for k, val := range kv {
			if val == nil {
				delete(v.data[b], k)
			} else {
				v.data[b][k] = val
			}
		}
	}
	return nil
}

func (v *memoryVault) Submit(ctx context.Context, fn func(VaultTx) error) Pending {
	return donePending{v.Update(ctx, fn)}
}

func (v *memoryVault) View(_ context.Context, fn func(VaultTx) error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return fn(&memoryTx{v: v})
}

// donePending is a transaction that has completed.
type donePending struct{ err error }

var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (donePending) Done() <-chan struct{}        { return closedDone }
func (p donePending) Wait(context.Context) error { return p.err }
