package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/state/record"
	libstore "go.mau.fi/libsignal/state/store"

	"github.com/signal-mpc/cosigner/signal/prekey"
)

// The libsignal interfaces Protocol satisfies (what session.NewBuilder and
// session.NewCipher take).
var (
	_ libstore.IdentityKey  = (*Protocol)(nil)
	_ libstore.PreKey       = (*Protocol)(nil)
	_ libstore.SignedPreKey = (*Protocol)(nil)
	_ libstore.Session      = (*Protocol)(nil)
)

var (
	bucketPreKeys  = []byte("prekeys")
	bucketSigned   = []byte("signed")
	bucketKyber    = []byte("kyber")
	bucketSessions = []byte("sessions")
)

// Protocol is the libsignal store adapter for one local identity (ACI or
// PNI): its identity key pair and registration id, its prekeys, its
// sessions, and the shared pins of remote identities.
//
// libsignal mutates session records in place and has no locking: the
// caller must run at most one libsignal operation per remote address at a
// time (different addresses may run concurrently). Session records stay
// in memory after the first load; every StoreSession writes through. A
// record loaded by an operation that then failed (no StoreSession) is
// dropped and re-read from the file on the next load, so a failed or
// forged message never leaves half-updated state behind.
//
// StoreSession also undoes a flaw of libsignal v0.2.1's decryption
// (session.Cipher.DecryptWithRecord and DecryptWithState): it tries the
// current state and then each archived state in place, and a failed try
// has already advanced that state (new receiver chain, root key and sender
// chain) before its MAC check fails. When another state then succeeds and
// is promoted, the damaged states would be stored, and a peer that still
// uses one of them (after a simultaneous session initiation, both sides
// hold two states) could never be read again ("no valid sessions"). So
// when an operation changed the current state, every archived state is
// written back as it was in the file before the operation (matched by
// version and base key), and a state listed twice or equal to the current
// one is dropped (DecryptWithRecord leaves a promoted state that was the
// last archived one in the archived list too, sharing it with the current
// state), which is what libsignal's Java and Rust versions achieve by
// trying copies.
type Protocol struct {
	s     *Store
	kind  prekey.Identity
	ik    *identity.KeyPair
	regID uint32
}

// cachedSession is a live session record. out is set while an operation
// has it loaded and has not stored it back; cur is the record's current
// state when that operation loaded it.
type cachedSession struct {
	rec *record.Session
	cur *record.State
	out bool
}

// Protocol returns the libsignal adapter for the account's identity of the
// given kind. The account must be saved first.
func (s *Store) Protocol(ctx context.Context, kind prekey.Identity) (*Protocol, error) {
	a, err := s.Account(ctx)
	if err != nil {
		return nil, err
	}
	ik, reg, err := a.Identity(kind)
	if err != nil {
		return nil, err
	}
	return &Protocol{s: s, kind: kind, ik: ik, regID: reg}, nil
}

func (p *Protocol) path(b []byte) [][]byte { return p.s.path([]byte(p.kind.String()), b) }

// GetIdentityKeyPair returns the local identity key pair.
func (p *Protocol) GetIdentityKeyPair() *identity.KeyPair { return p.ik }

// GetLocalRegistrationID returns the local registration id.
func (p *Protocol) GetLocalRegistrationID() uint32 { return p.regID }

// SaveIdentity pins the identity key of a remote address on first use. A
// different key for a pinned address is refused with ErrIdentityChanged.
func (p *Protocol) SaveIdentity(ctx context.Context, addr *protocol.SignalAddress, key *identity.Key) error {
	return p.s.pin(ctx, addr.String(), key.Serialize(), false)
}

// IsTrustedIdentity reports whether key may be used for addr: true when
// nothing is pinned yet or the pin matches; false with ErrIdentityChanged
// (which libsignal passes on) when it differs.
func (p *Protocol) IsTrustedIdentity(ctx context.Context, addr *protocol.SignalAddress, key *identity.Key) (bool, error) {
	pinned, err := p.s.pinned(ctx, addr.String())
	if err != nil {
		return false, err
	}
	if pinned == nil || bytes.Equal(pinned, key.Serialize()) {
		return true, nil
	}
	return false, fmt.Errorf("%w: %s", ErrIdentityChanged, addr)
}

// LoadPreKey loads a one-time EC prekey; ErrNotFound when absent.
func (p *Protocol) LoadPreKey(ctx context.Context, id uint32) (*record.PreKey, error) {
	b, err := p.s.get(ctx, p.path(bucketPreKeys), idKey(id))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: prekey %d", ErrNotFound, id)
	}
	return decodePreKey(id, b)
}

// StorePreKey stores a one-time EC prekey.
func (p *Protocol) StorePreKey(ctx context.Context, id uint32, r *record.PreKey) error {
	if r == nil {
		return fmt.Errorf("%w: nil prekey", ErrInvalidArgument)
	}
	return p.s.put(ctx, p.path(bucketPreKeys), idKey(id), encodePreKey(r))
}

// ContainsPreKey reports whether a one-time EC prekey is stored.
func (p *Protocol) ContainsPreKey(ctx context.Context, id uint32) (bool, error) {
	b, err := p.s.get(ctx, p.path(bucketPreKeys), idKey(id))
	return b != nil, err
}

// RemovePreKey deletes a one-time EC prekey (after its first use).
func (p *Protocol) RemovePreKey(ctx context.Context, id uint32) error {
	return p.s.del(ctx, p.path(bucketPreKeys), idKey(id))
}

// LoadSignedPreKey loads a signed EC prekey; ErrNotFound when absent.
func (p *Protocol) LoadSignedPreKey(ctx context.Context, id uint32) (*record.SignedPreKey, error) {
	b, err := p.s.get(ctx, p.path(bucketSigned), idKey(id))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: signed prekey %d", ErrNotFound, id)
	}
	return decodeSignedPreKey(id, b)
}

// LoadSignedPreKeys loads every signed EC prekey.
func (p *Protocol) LoadSignedPreKeys(ctx context.Context) ([]*record.SignedPreKey, error) {
	var out []*record.SignedPreKey
	err := p.s.view(ctx, func(tx *bolt.Tx) error {
		b, err := bucketPath(tx, false, p.path(bucketSigned))
		if err != nil || b == nil {
			return err
		}
		return b.ForEach(func(k, _ []byte) error {
			v, err := p.s.getTx(tx, p.path(bucketSigned), k)
			if err != nil {
				return err
			}
			r, err := decodeSignedPreKey(binary.BigEndian.Uint32(k), v)
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// StoreSignedPreKey stores a signed EC prekey.
func (p *Protocol) StoreSignedPreKey(ctx context.Context, id uint32, r *record.SignedPreKey) error {
	if r == nil {
		return fmt.Errorf("%w: nil signed prekey", ErrInvalidArgument)
	}
	return p.s.put(ctx, p.path(bucketSigned), idKey(id), encodeSignedPreKey(r))
}

// ContainsSignedPreKey reports whether a signed EC prekey is stored.
func (p *Protocol) ContainsSignedPreKey(ctx context.Context, id uint32) (bool, error) {
	b, err := p.s.get(ctx, p.path(bucketSigned), idKey(id))
	return b != nil, err
}

// RemoveSignedPreKey deletes a signed EC prekey (after rotation).
func (p *Protocol) RemoveSignedPreKey(ctx context.Context, id uint32) error {
	return p.s.del(ctx, p.path(bucketSigned), idKey(id))
}

// StoreKyberPreKey stores a Kyber prekey (one-time or last resort).
func (p *Protocol) StoreKyberPreKey(ctx context.Context, k *prekey.KyberPreKey) error {
	if k == nil {
		return fmt.Errorf("%w: nil kyber prekey", ErrInvalidArgument)
	}
	b, err := k.MarshalBinary()
	if err != nil {
		return err
	}
	return p.s.put(ctx, p.path(bucketKyber), idKey(k.ID), b)
}

// LoadKyberPreKey loads a Kyber prekey; ErrNotFound when absent.
func (p *Protocol) LoadKyberPreKey(ctx context.Context, id uint32) (*prekey.KyberPreKey, error) {
	b, err := p.s.get(ctx, p.path(bucketKyber), idKey(id))
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: kyber prekey %d", ErrNotFound, id)
	}
	k, err := prekey.UnmarshalKyberPreKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: kyber prekey %d", ErrCorrupt, id)
	}
	return k, nil
}

// MarkKyberPreKeyUsed deletes a one-time Kyber prekey after its use; a
// last-resort key stays.
func (p *Protocol) MarkKyberPreKeyUsed(ctx context.Context, id uint32) error {
	k, err := p.LoadKyberPreKey(ctx, id)
	if err != nil {
		return err
	}
	if k.LastResort {
		return nil
	}
	return p.s.del(ctx, p.path(bucketKyber), idKey(id))
}

// SaveKeys stores every key of k (signed, last resort, one-time EC and
// Kyber) in one transaction: all or none.
func (p *Protocol) SaveKeys(ctx context.Context, k *prekey.Keys) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.s.update(ctx, func(tx *txn) error {
		if k.SignedPreKey != nil {
			if err := p.s.putTx(tx, p.path(bucketSigned), idKey(k.SignedPreKey.ID()), encodeSignedPreKey(k.SignedPreKey)); err != nil {
				return err
			}
			if err := p.advance(tx, keyNextSigned, k.SignedPreKey.ID()); err != nil {
				return err
			}
		}
		kybers := k.KyberPreKeys
		if k.LastResort != nil {
			kybers = append([]*prekey.KyberPreKey{k.LastResort}, kybers...)
		}
		for _, kk := range kybers {
			b, err := kk.MarshalBinary()
			if err != nil {
				return err
			}
			if err := p.s.putTx(tx, p.path(bucketKyber), idKey(kk.ID), b); err != nil {
				return err
			}
			if err := p.advance(tx, keyNextKyber, kk.ID); err != nil {
				return err
			}
		}
		for _, pk := range k.PreKeys {
			if err := p.s.putTx(tx, p.path(bucketPreKeys), idKey(pk.ID().Value), encodePreKey(pk)); err != nil {
				return err
			}
			if err := p.advance(tx, keyNextPre, pk.ID().Value); err != nil {
				return err
			}
		}
		return nil
	})
}

func (p *Protocol) cacheKey(addr *protocol.SignalAddress) string {
	return p.s.cacheKey(p.kind.String() + "/" + addr.String())
}

// readSession reads a record from the file: a fresh record when none.
func (p *Protocol) readSession(ctx context.Context, addr *protocol.SignalAddress) (*record.Session, error) {
	b, err := p.s.get(ctx, p.path(bucketSessions), []byte(addr.String()))
	if err != nil {
		return nil, err
	}
	ser := prekey.Serializer()
	if b == nil {
		return record.NewSession(ser.Session, ser.State), nil
	}
	return decodeSession(b, addr)
}

// decodeSession decodes a session record. libsignal's decoder panics on
// some malformed records (ecc.DecodePoint of an empty key); the bytes are
// authenticated, but a panic is still turned into ErrCorrupt.
func decodeSession(b []byte, addr *protocol.SignalAddress) (r *record.Session, err error) {
	defer func() {
		if recover() != nil {
			r, err = nil, fmt.Errorf("%w: session %s", ErrCorrupt, addr)
		}
	}()
	ser := prekey.Serializer()
	r, err = record.NewSessionFromBytes(b, ser.Session, ser.State)
	if err != nil {
		return nil, fmt.Errorf("%w: session %s", ErrCorrupt, addr)
	}
	return r, nil
}

// clean returns the live record of addr, re-reading it when absent or left
// out by a failed operation; out marks it loaded by an operation.
func (p *Protocol) clean(ctx context.Context, addr *protocol.SignalAddress, out bool) (*record.Session, error) {
	k := p.cacheKey(addr)
	p.s.mu.Lock()
	if c := p.s.sessions[k]; c != nil && !c.out {
		c.out = out
		if out {
			c.cur = c.rec.SessionState()
		}
		p.s.mu.Unlock()
		return c.rec, nil
	}
	p.s.mu.Unlock()
	r, err := p.readSession(ctx, addr)
	if err != nil {
		return nil, err
	}
	p.s.mu.Lock()
	if r.IsFresh() {
		// Nothing stored: keep nothing, so that addresses named by the network
		// cannot grow the cache. StoreSession adds the record.
		delete(p.s.sessions, k)
	} else {
		p.s.sessions[k] = &cachedSession{rec: r, cur: r.SessionState(), out: out}
	}
	p.s.mu.Unlock()
	return r, nil
}

// LoadSession returns the session record of addr, a fresh empty record
// (never nil) when there is none.
func (p *Protocol) LoadSession(ctx context.Context, addr *protocol.SignalAddress) (*record.Session, error) {
	return p.clean(ctx, addr, true)
}

// ContainsSession reports whether addr has a usable session (one with a
// sender chain): false before the first message.
func (p *Protocol) ContainsSession(ctx context.Context, addr *protocol.SignalAddress) (bool, error) {
	r, err := p.clean(ctx, addr, false)
	if err != nil {
		return false, err
	}
	return r.SessionState().HasSenderChain(), nil
}

// StoreSession writes the record through to the file, then keeps it live.
// When the operation that loaded the record changed its current state
// (promoted an archived state, or archived the current one), the archived
// states are first restored from the file (see Protocol).
func (p *Protocol) StoreSession(ctx context.Context, addr *protocol.SignalAddress, r *record.Session) error {
	if r == nil {
		return fmt.Errorf("%w: nil session", ErrInvalidArgument)
	}
	k := p.cacheKey(addr)
	p.s.mu.Lock()
	c := p.s.sessions[k]
	changed := c != nil && c.rec == r && c.cur != r.SessionState()
	p.s.mu.Unlock()
	var b []byte
	if changed {
		var err error
		if b, err = p.restoreArchived(ctx, addr, r); err != nil {
			p.s.mu.Lock()
			delete(p.s.sessions, k)
			p.s.mu.Unlock()
			return fmt.Errorf("store: session %s: %w", addr, err)
		}
	} else {
		b = r.Serialize()
	}
	if err := p.s.put(ctx, p.path(bucketSessions), []byte(addr.String()), b); err != nil {
		p.s.mu.Lock()
		delete(p.s.sessions, k)
		p.s.mu.Unlock()
		return fmt.Errorf("store: session %s: %w", addr, err)
	}
	if changed || r.IsFresh() {
		// A record created in memory stays "fresh" (libsignal then overwrites
		// instead of archiving its state on the next session setup); one read
		// from the file is not. A restored record must be the one written,
		// with no state shared between its current and archived lists. Keep
		// the form a restart would see.
		var err error
		if r, err = decodeSession(b, addr); err != nil {
			p.s.mu.Lock()
			delete(p.s.sessions, k)
			p.s.mu.Unlock()
			return err
		}
	}
	p.s.mu.Lock()
	p.s.sessions[k] = &cachedSession{rec: r, cur: r.SessionState()}
	p.s.mu.Unlock()
	return nil
}

// restoreArchived encodes r with its archived states as the file holds
// them: each archived state that the file holds (as its current or an
// archived state, same version and base key) is replaced by the file's
// copy, and duplicates and copies of the current state are dropped.
func (p *Protocol) restoreArchived(ctx context.Context, addr *protocol.SignalAddress, r *record.Session) ([]byte, error) {
	old, err := p.s.get(ctx, p.path(bucketSessions), []byte(addr.String()))
	if err != nil {
		return nil, err
	}
	ser := prekey.Serializer()
	stored := map[string]*record.StateStructure{}
	if old != nil {
		st, err := ser.Session.Deserialize(old)
		if err != nil || st.SessionState == nil {
			return nil, fmt.Errorf("%w: session %s", ErrCorrupt, addr)
		}
		for _, s := range append([]*record.StateStructure{st.SessionState}, st.PreviousStates...) {
			if id := stateID(s); id != "" && stored[id] == nil {
				stored[id] = s
			}
		}
	}
	live := r.Structure()
	out := &record.SessionStructure{SessionState: live.SessionState, PreviousStates: []*record.StateStructure{}}
	seen := map[string]bool{stateID(live.SessionState): true}
	for _, s := range live.PreviousStates {
		if id := stateID(s); id != "" {
			if seen[id] {
				continue
			}
			seen[id] = true
			if f := stored[id]; f != nil {
				s = f
			}
		}
		out.PreviousStates = append(out.PreviousStates, s)
	}
	return ser.Session.Serialize(out), nil
}

// stateID names a session state: its version and base key ("" when it has
// none, as a state never set up).
func stateID(s *record.StateStructure) string {
	if s == nil || len(s.SenderBaseKey) == 0 {
		return ""
	}
	return strconv.Itoa(s.SessionVersion) + ":" + string(s.SenderBaseKey)
}

// GetSubDeviceSessions lists the device ids with a stored session for name.
func (p *Protocol) GetSubDeviceSessions(ctx context.Context, name string) ([]uint32, error) {
	keys, err := p.s.keys(ctx, p.path(bucketSessions))
	if err != nil {
		return nil, err
	}
	var out []uint32
	prefix := name + protocol.ADDRESS_SEPARATOR
	for _, k := range keys {
		rest, ok := strings.CutPrefix(string(k), prefix)
		if !ok {
			continue
		}
		if id, err := strconv.ParseUint(rest, 10, 32); err == nil {
			out = append(out, uint32(id))
		}
	}
	return out, nil
}

// DeleteSession removes the session of addr.
func (p *Protocol) DeleteSession(ctx context.Context, addr *protocol.SignalAddress) error {
	err := p.s.del(ctx, p.path(bucketSessions), []byte(addr.String()))
	p.s.mu.Lock()
	delete(p.s.sessions, p.cacheKey(addr))
	p.s.mu.Unlock()
	return err
}

// DeleteAllSessions removes every session of this identity.
func (p *Protocol) DeleteAllSessions(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := p.s.update(ctx, func(t *txn) error {
		// Key by key rather than DeleteBucket, so that the undo log of the
		// group commit can restore them if the operation fails.
		b, err := bucketPath(t.tx, false, p.path(bucketSessions))
		if err != nil || b == nil {
			return err
		}
		var keys [][]byte
		if err := b.ForEach(func(k, _ []byte) error { keys = append(keys, bytes.Clone(k)); return nil }); err != nil {
			return err
		}
		for _, k := range keys {
			if err := t.delete(p.path(bucketSessions), k); err != nil {
				return err
			}
		}
		return nil
	})
	prefix := p.s.cacheKey(p.kind.String() + "/")
	p.s.mu.Lock()
	for k := range p.s.sessions {
		if strings.HasPrefix(k, prefix) {
			delete(p.s.sessions, k)
		}
	}
	p.s.mu.Unlock()
	return err
}

var (
	bucketNext    = []byte("next")
	keyNextPre    = []byte("prekey")
	keyNextSigned = []byte("signed")
	keyNextKyber  = []byte("kyber")
)

// NextKeyOptions returns prekey.Options whose ids continue after every key
// SaveKeys has stored for this identity (1 before the first), so that
// replenished or rotated keys never reuse an id, across restarts too.
func (p *Protocol) NextKeyOptions(ctx context.Context) (prekey.Options, error) {
	var o prekey.Options
	if err := ctx.Err(); err != nil {
		return o, err
	}
	err := p.s.view(ctx, func(tx *bolt.Tx) error {
		for _, f := range []struct {
			key []byte
			dst *uint32
		}{{keyNextPre, &o.PreKeyStart}, {keyNextSigned, &o.SignedPreKeyID}, {keyNextKyber, &o.LastResortID}} {
			v, err := p.s.getTx(tx, p.path(bucketNext), f.key)
			if err != nil {
				return err
			}
			*f.dst = 1
			if v != nil {
				if len(v) != 4 {
					return fmt.Errorf("%w: next id", ErrCorrupt)
				}
				*f.dst = binary.BigEndian.Uint32(v)
			}
		}
		return nil
	})
	// One-time Kyber keys follow the last-resort key (prekey.NewKeys default).
	return o, err
}

// advance raises the stored next id of key past id (with wrap-around, the
// most recent id wins).
func (p *Protocol) advance(tx *txn, key []byte, id uint32) error {
	return p.s.putTx(tx, p.path(bucketNext), key, idKey(prekey.NextID(id)))
}
