package store

import (
	"bytes"
	"context"
	"fmt"
)

// pinned returns the pinned identity key of addr (nil when none), caching
// the pins found.
func (s *Store) pinned(ctx context.Context, addr string) ([]byte, error) {
	s.mu.Lock()
	k, ok := s.pins[s.cacheKey(addr)]
	s.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := s.get(ctx, s.path(bucketIdentities), []byte(addr))
	if err != nil {
		return nil, err
	}
	// Absent pins are not cached (the network names addresses), and pins
	// read outside a transaction are not either: a group running at that
	// moment may be changing the pin, and the cache must never hold an
	// older state than the file.
	if k != nil && txFrom(ctx) != nil {
		s.mu.Lock()
		s.pins[s.cacheKey(addr)] = k
		s.mu.Unlock()
	}
	return k, nil
}

// pin stores key for addr when nothing is pinned (trust on first use). With
// replace it overwrites a different pin (a human verified the new key);
// without, a different pin is ErrIdentityChanged. The comparison and the
// write happen in one transaction.
func (s *Store) pin(ctx context.Context, addr string, key []byte, replace bool) error {
	if _, err := publicKey(key); err != nil {
		return fmt.Errorf("%w: identity key for %s", ErrInvalidArgument, addr)
	}
	if cur, err := s.pinned(ctx, addr); err != nil {
		return err
	} else if bytes.Equal(cur, key) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	path := s.path(bucketIdentities)
	err := s.update(ctx, func(t *txn) error {
		cur, err := s.getTx(t.tx, path, []byte(addr))
		if err != nil {
			return err
		}
		if bytes.Equal(cur, key) {
			return nil
		}
		if cur != nil && !replace {
			return fmt.Errorf("%w: %s", ErrIdentityChanged, addr)
		}
		return s.putTx(t, path, []byte(addr), key)
	})
	s.mu.Lock()
	delete(s.pins, s.cacheKey(addr)) // re-read on next use
	s.mu.Unlock()
	return err
}

// PinnedIdentity returns the serialized identity key pinned for a remote
// address (addr.String(), e.g. "<aci>:<device>"), or ErrNotFound.
func (s *Store) PinnedIdentity(ctx context.Context, addr string) ([]byte, error) {
	k, err := s.pinned(ctx, addr)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, fmt.Errorf("%w: identity of %s", ErrNotFound, addr)
	}
	return bytes.Clone(k), nil
}

// TrustIdentity pins key (serialized, 0x05 || 32 bytes) for addr, replacing
// a previous pin. Call it only after a human verified the new key; until
// then a changed key stays blocked with ErrIdentityChanged.
func (s *Store) TrustIdentity(ctx context.Context, addr string, key []byte) error {
	return s.pin(ctx, addr, key, true)
}
