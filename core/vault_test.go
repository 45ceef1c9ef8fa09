package core

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core/roster"
)

// memVault is a Vault in memory with real transactions: a failed Update
// changes nothing. (The device store is the real one; this keeps core's
// tests free of it.)
type memVault struct {
	mu   sync.Mutex
	data map[string]map[string][]byte
	fail error // when set, Update fails after running fn

	qmu    sync.Mutex
	held   bool
	queued []func()
}

func newMemVault() *memVault { return &memVault{data: map[string]map[string][]byte{}} }

type memTx struct {
	data map[string]map[string][]byte
}

func (t *memTx) Get(b string, k []byte) ([]byte, error) {
	return bytes.Clone(t.data[b][string(k)]), nil
}

func (t *memTx) Put(b string, k, v []byte) error {
	if t.data[b] == nil {
		t.data[b] = map[string][]byte{}
	}
	t.data[b][string(k)] = bytes.Clone(v)
	return nil
}

func (t *memTx) Delete(b string, k []byte) error {
	delete(t.data[b], string(k))
	return nil
}

func (t *memTx) Scan(b string, prefix []byte, fn func(k, v []byte) error) error {
	var keys []string
	for k := range t.data[b] {
		if bytes.HasPrefix([]byte(k), prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), bytes.Clone(t.data[b][k])); err != nil {
			return err
		}
	}
	return nil
}

func (t *memTx) Range(b string, start []byte, fn func(k, v []byte) error) error {
	var keys []string
	for k := range t.data[b] {
		if k >= string(start) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), bytes.Clone(t.data[b][k])); err != nil {
			return err
		}
	}
	return nil
}

func (v *memVault) snapshot() map[string]map[string][]byte {
	c := map[string]map[string][]byte{}
	for b, m := range v.data {
		c[b] = map[string][]byte{}
		for k, x := range m {
			c[b][k] = bytes.Clone(x)
		}
	}
	return c
}

func (v *memVault) Update(_ context.Context, fn func(VaultTx) error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	tx := &memTx{data: v.snapshot()}
	if err := fn(tx); err != nil {
		return err
	}
	if v.fail != nil {
		return v.fail
	}
	v.data = tx.data
	return nil
}

// Submit runs fn at once, or queues it while the vault is held (hold,
// release), which stands for a commit that has not reached the disk yet.
func (v *memVault) Submit(ctx context.Context, fn func(VaultTx) error) Pending {
	p := &memPending{done: make(chan struct{})}
	run := func() {
		p.err = v.Update(ctx, fn)
		close(p.done)
	}
	v.qmu.Lock()
	defer v.qmu.Unlock()
	if v.held {
		v.queued = append(v.queued, run)
		return p
	}
	run()
	return p
}

// hold makes later submissions wait (not durable) until release.
func (v *memVault) hold() {
	v.qmu.Lock()
	v.held = true
	v.qmu.Unlock()
}

// release runs the held submissions in order.
func (v *memVault) release() {
	v.qmu.Lock()
	defer v.qmu.Unlock()
	for _, run := range v.queued {
		run()
	}
	v.queued, v.held = nil, false
}

type memPending struct {
	done chan struct{}
	err  error
}

func (p *memPending) Done() <-chan struct{} { return p.done }

func (p *memPending) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *memVault) View(_ context.Context, fn func(VaultTx) error) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return fn(&memTx{data: v.snapshot()})
}

func TestVaultStoreKeepsRecordsAcrossReopen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	v := newMemVault()
	s := NewVaultStore(v)
	r := &CeremonyRecord{ID: [32]byte{1}, Kind: KindKeygen, Opening: []byte("proposal"), Seed: [32]byte{9}, Own: true, Created: time.Unix(100, 5)}
	if err := s.PutCeremony(ctx, r); err != nil {
		t.Fatal(err)
	}
	in := []Input{{Kind: InputEnvelope, Envelope: []byte("deal")}, {Kind: InputDecline, Text: "no"}, {Kind: InputExpire, Time: time.Unix(200, 0)}}
	for _, x := range in {
		if err := s.AppendInput(ctx, r.ID, x); err != nil {
			t.Fatal(err)
		}
	}
	s2 := &CeremonyRecord{ID: [32]byte{2}, Kind: KindSign, Opening: []byte("request"), KeyID: [32]byte{3}, Created: time.Unix(50, 0)}
	s.PutCeremony(ctx, s2)
	_, key, _ := ed25519.GenerateKey(nil)
	s.FinishCeremony(ctx, s2.ID, &Ended{Kind: KindSign, ID: s2.ID, KeyID: s2.KeyID, Outcome: EndExpired, Created: s2.Created, EndedAt: time.Unix(60, 0)}, key)
	if err := s.Durable()(ctx); err != nil {
		t.Fatal(err)
	}
	bad := NewVaultStore(v)
	if err := bad.AppendInput(ctx, [32]byte{7}, in[0]); err != nil {
		t.Fatalf("a write is queued, not checked at once: %v", err)
	}
	if err := bad.Durable()(ctx); !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("input for an unknown ceremony: %v", err)
	}

	got, err := NewVaultStore(v).Ceremonies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != r.ID {
		t.Fatalf("ceremonies %+v: want the keygen only, the ended signing compacted", got)
	}
	if e, err := s.Ended(ctx, s2.ID); err != nil || e == nil || e.Outcome != EndExpired || e.Seq != 1 {
		t.Fatalf("ended record %+v, %v", e, err)
	}
	g := got[0]
	if g.Seed != r.Seed || !g.Own || !bytes.Equal(g.Opening, r.Opening) || !g.Created.Equal(r.Created) || len(g.Inputs) != 3 {
		t.Fatalf("record %+v", g)
	}
	if g.Inputs[1].Text != "no" || !g.Inputs[2].Time.Equal(in[2].Time) || !bytes.Equal(g.Inputs[0].Envelope, []byte("deal")) {
		t.Fatalf("inputs %+v", g.Inputs)
	}

	s.PutKey(ctx, KeyRecord{Ceremony: r.ID, KeyID: [32]byte{4}, Created: time.Unix(300, 0)})
	keys, _ := s.Keys(ctx)
	if len(keys) != 1 || keys[0].KeyID != [32]byte{4} || keys[0].Ceremony != r.ID {
		t.Fatalf("keys %+v", keys)
	}
	o := Orphan{From: Address{Account: "acct", Device: 3}, Envelope: []byte("early partial"), Received: time.Unix(0, 42)}
	s.PutOrphan(ctx, o)
	os, _ := s.Orphans(ctx)
	if len(os) != 1 || os[0].From != o.From || !bytes.Equal(os[0].Envelope, o.Envelope) {
		t.Fatalf("orphans %+v", os)
	}
	s.DeleteOrphans(ctx, [][]byte{o.Envelope})
	if os, _ := s.Orphans(ctx); len(os) != 0 {
		t.Fatalf("orphan not deleted: %+v", os)
	}
}

func TestAFailedWriteStopsTheStoreAndLeavesTheFileAsItWas(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	v := newMemVault()
	s := NewVaultStore(v)
	r := &CeremonyRecord{ID: [32]byte{1}, Kind: KindSign, Opening: []byte("x"), KeyID: [32]byte{2}, Created: time.Unix(1, 0)}
	s.PutCeremony(ctx, r)
	v.fail = errors.New("disk full")
	s.AppendInput(ctx, r.ID, Input{Kind: InputAccept})
	if err := s.Durable()(ctx); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("failed write: Durable = %v, want ErrStoreFailed", err)
	}
	v.fail = nil
	// Later writes are refused: the caller's state is ahead of the file.
	if err := s.AppendInput(ctx, r.ID, Input{Kind: InputAccept}); !errors.Is(err, ErrStoreFailed) {
		t.Fatalf("write after a failure: %v", err)
	}
	// A restart reads the file as it was before the failed write.
	again := NewVaultStore(v)
	got, _ := again.Ceremonies(ctx)
	if len(got) != 1 || len(got[0].Inputs) != 0 {
		t.Fatalf("a failed append left an input behind: %+v", got)
	}
	if err := again.AppendInput(ctx, r.ID, Input{Kind: InputAccept}); err != nil {
		t.Fatal(err)
	}
	got, _ = again.Ceremonies(ctx)
	if len(got[0].Inputs) != 1 {
		t.Fatalf("inputs %d", len(got[0].Inputs))
	}
}

func TestDurableWaitsForEveryWriteMadeBeforeIt(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	v := newMemVault()
	s := NewVaultStore(v)
	v.hold()
	r := &CeremonyRecord{ID: [32]byte{1}, Kind: KindSign, Opening: []byte("x"), KeyID: [32]byte{2}, Created: time.Unix(1, 0)}
	if err := s.PutCeremony(ctx, r); err != nil {
		t.Fatal(err)
	}
	s.AppendInput(ctx, r.ID, Input{Kind: InputAccept})
	wait := s.Durable()
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Durable before the writes reached the vault: %v", err)
	}
	v.release()
	if err := wait(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := NewVaultStore(v).Ceremonies(ctx)
	if len(got) != 1 || len(got[0].Inputs) != 1 {
		t.Fatalf("after Durable: %+v", got)
	}
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add(encodeCeremony(&CeremonyRecord{ID: [32]byte{1}, Kind: KindKeygen, Opening: []byte("p"), Seed: [32]byte{2}, Created: time.Unix(1, 0)}, 3))
	f.Add(encodeInput(Input{Kind: InputDecline, Text: "no", Time: time.Unix(5, 0)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, next, err := decodeCeremony(b); err == nil {
			if again := encodeCeremony(r, next); !bytes.Equal(again, b) {
				t.Fatalf("ceremony record not canonical")
			}
		}
		if in, err := decodeInput(b); err == nil {
			if again := encodeInput(in); !bytes.Equal(again, b) {
				t.Fatalf("input record not canonical")
			}
		}
		_, _ = decodeOrphan(b)
	})
}

func TestConsoleKeyAndRosterPersist(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	v := newMemVault()
	k1, err := ConsoleKey(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := ConsoleKey(ctx, v)
	if !k1.Equal(k2) {
		t.Fatal("console key changed between calls")
	}
	r, err := LoadRoster(ctx, v)
	if err != nil || len(r.Members()) != 0 {
		t.Fatalf("empty roster: %v", err)
	}
	c := roster.Card{Name: "alice", Account: "acct-a", Device: 2, IdentityKey: append([]byte{5}, make([]byte, 32)...), ConsoleKey: k1.Public().(ed25519.PublicKey)}
	if err := r.Add(c, true); err != nil {
		t.Fatal(err)
	}
	changed := c
	changed.ConsoleKey = make([]byte, 32)
	r.Add(changed, false) // pending
	if err := SaveRoster(ctx, v, r); err != nil {
		t.Fatal(err)
	}
	got, err := LoadRoster(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := got.Lookup("alice")
	if !ok || !m.Verified || !m.Blocked() {
		t.Fatalf("reloaded member %+v", m)
	}
}
