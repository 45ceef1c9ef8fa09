package core

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
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
	FinishCeremony(ctx context.Context, id [32]byte) error
	Ceremonies(ctx context.Context) ([]*CeremonyRecord, error)
	PutKey(ctx context.Context, k KeyRecord) error
	Keys(ctx context.Context) ([]KeyRecord, error)
	PutOrphan(ctx context.Context, o Orphan) error
	DeleteOrphans(ctx context.Context, envelopes [][]byte) error
	Orphans(ctx context.Context) ([]Orphan, error)
}

// MemoryStore is a Store in memory, for tests and the demo's throwaway
// consoles. It loses everything when the process ends.
type MemoryStore struct {
	mu         sync.Mutex
	ceremonies map[[32]byte]*CeremonyRecord
	order      [][32]byte
	keys       []KeyRecord
	orphans    []Orphan
	epochKeys  map[[32]byte]*EpochKey // keys.go
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{ceremonies: map[[32]byte]*CeremonyRecord{}}
}

// Durable returns at once: a MemoryStore's writes are done when they return.
func (m *MemoryStore) Durable() func(ctx context.Context) error {
	return func(context.Context) error { return nil }
}

func cloneRecord(r *CeremonyRecord) *CeremonyRecord {
	c := *r
	c.Opening = slices.Clone(r.Opening)
	c.Inputs = slices.Clone(r.Inputs)
	return &c
}

func (m *MemoryStore) PutCeremony(_ context.Context, r *CeremonyRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.ceremonies[r.ID]; !ok {
		m.order = append(m.order, r.ID)
	}
	m.ceremonies[r.ID] = cloneRecord(r)
	return nil
}

func (m *MemoryStore) AppendInput(_ context.Context, id [32]byte, in Input) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.ceremonies[id]
	if !ok {
		return ErrNotFound
	}
	in.Envelope = slices.Clone(in.Envelope)
	r.Inputs = append(r.Inputs, in)
	return nil
}

func (m *MemoryStore) FinishCeremony(_ context.Context, id [32]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.ceremonies[id]
	if !ok {
		return ErrNotFound
	}
	r.Finished = true
	return nil
}

func (m *MemoryStore) Ceremonies(context.Context) ([]*CeremonyRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*CeremonyRecord, 0, len(m.order))
	for _, id := range m.order {
		out = append(out, cloneRecord(m.ceremonies[id]))
	}
	return out, nil
}

func (m *MemoryStore) PutKey(_ context.Context, k KeyRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.keys {
		if x.KeyID == k.KeyID {
			return nil
		}
	}
	m.keys = append(m.keys, k)
	return nil
}

func (m *MemoryStore) Keys(context.Context) ([]KeyRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.keys), nil
}

func (m *MemoryStore) PutOrphan(_ context.Context, o Orphan) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	o.Envelope = slices.Clone(o.Envelope)
	m.orphans = append(m.orphans, o)
	return nil
}

func (m *MemoryStore) DeleteOrphans(_ context.Context, envs [][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.orphans = slices.DeleteFunc(m.orphans, func(o Orphan) bool {
		return slices.ContainsFunc(envs, func(e []byte) bool { return string(e) == string(o.Envelope) })
	})
	return nil
}

func (m *MemoryStore) Orphans(context.Context) ([]Orphan, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.orphans), nil
}
