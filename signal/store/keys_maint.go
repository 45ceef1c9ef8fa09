package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/signal-mpc/cosigner/signal/prekey"
)

// What the device's prekey upkeep needs beyond libsignal's store interfaces:
// the Kyber last-resort keys kept after rotations, and their removal once no
// message in flight can still use them.

// LastResortKeys returns every stored Kyber last-resort key of this
// identity: the current one and those kept after a rotation.
func (p *Protocol) LastResortKeys(ctx context.Context) ([]*prekey.KyberPreKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*prekey.KyberPreKey
	err := p.s.view(ctx, func(tx *bolt.Tx) error {
		return p.forEachKyber(tx, func(kk *prekey.KyberPreKey) {
			if kk.LastResort {
				out = append(out, kk)
			}
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// forEachKyber calls fn with every stored Kyber key of this identity.
func (p *Protocol) forEachKyber(tx *bolt.Tx, fn func(*prekey.KyberPreKey)) error {
	b, err := bucketPath(tx, false, p.path(bucketKyber))
	if err != nil || b == nil {
		return err
	}
	return b.ForEach(func(k, _ []byte) error {
		if len(k) != 4 {
			return fmt.Errorf("%w: kyber prekey key of %d bytes", ErrCorrupt, len(k))
		}
		v, err := p.s.getTx(tx, p.path(bucketKyber), k)
		if err != nil {
			return err
		}
		kk, err := prekey.UnmarshalKyberPreKey(v)
		if err != nil {
			return fmt.Errorf("%w: kyber prekey %d", ErrCorrupt, binary.BigEndian.Uint32(k))
		}
		fn(kk)
		return nil
	})
}

// RemoveKyberPreKey deletes a Kyber prekey of either kind. Unlike
// MarkKyberPreKeyUsed it removes a last-resort key too: one replaced by a
// rotation, after its grace period.
func (p *Protocol) RemoveKyberPreKey(ctx context.Context, id uint32) error {
	return p.s.del(ctx, p.path(bucketKyber), idKey(id))
}

// bucketReplaced marks one-time keys whose server copies a later upload
// replaced (the server keeps only the newest batch): no new session can
// use them, but a PreKey message sent before the replacement may still be
// on its way, so they are removed only a grace period later. Key: 'e' (EC)
// or 'k' (Kyber) and the id; value: when the replacement was uploaded, in
// Unix milliseconds.
var bucketReplaced = []byte("replaced")

// ReplacedKey is a one-time key waiting for removal.
type ReplacedKey struct {
	Kyber bool
	ID    uint32
	Since time.Time
}

func replacedKey(kyber bool, id uint32) []byte {
	kind := byte('e')
	if kyber {
		kind = 'k'
	}
	return append([]byte{kind}, idKey(id)...)
}

// OneTimeKeyIDs lists the ids of the stored one-time EC and Kyber keys
// (the Kyber last-resort keys excluded).
func (p *Protocol) OneTimeKeyIDs(ctx context.Context) (ec, kyber []uint32, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	err = p.s.view(ctx, func(tx *bolt.Tx) error {
		if b, err := bucketPath(tx, false, p.path(bucketPreKeys)); err != nil {
			return err
		} else if b != nil {
			if err := b.ForEach(func(k, _ []byte) error {
				if len(k) != 4 {
					return fmt.Errorf("%w: prekey key of %d bytes", ErrCorrupt, len(k))
				}
				ec = append(ec, binary.BigEndian.Uint32(k))
				return nil
			}); err != nil {
				return err
			}
		}
		return p.forEachKyber(tx, func(kk *prekey.KyberPreKey) {
			if !kk.LastResort {
				kyber = append(kyber, kk.ID)
			}
		})
	})
	if err != nil {
		return nil, nil, err
	}
	return ec, kyber, nil
}

// MarkReplaced records that the server no longer holds these one-time
// keys since at. Keys already marked keep their first mark.
func (p *Protocol) MarkReplaced(ctx context.Context, kyber bool, ids []uint32, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	return p.s.update(ctx, func(t *txn) error {
		for _, id := range ids {
			k := replacedKey(kyber, id)
			old, err := p.s.getTx(t.tx, p.path(bucketReplaced), k)
			if err != nil {
				return err
			}
			if old != nil {
				continue
			}
			if err := p.s.putTx(t, p.path(bucketReplaced), k, binary.BigEndian.AppendUint64(nil, uint64(at.UnixMilli()))); err != nil {
				return err
			}
		}
		return nil
	})
}

// Replaced lists the one-time keys waiting for removal.
func (p *Protocol) Replaced(ctx context.Context) ([]ReplacedKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []ReplacedKey
	err := p.s.view(ctx, func(tx *bolt.Tx) error {
		b, err := bucketPath(tx, false, p.path(bucketReplaced))
		if err != nil || b == nil {
			return err
		}
		return b.ForEach(func(k, _ []byte) error {
			if len(k) != 5 || (k[0] != 'e' && k[0] != 'k') {
				return fmt.Errorf("%w: replaced-key entry of %d bytes", ErrCorrupt, len(k))
			}
			v, err := p.s.getTx(tx, p.path(bucketReplaced), k)
			if err != nil {
				return err
			}
			if len(v) != 8 {
				return fmt.Errorf("%w: replaced-key time of %d bytes", ErrCorrupt, len(v))
			}
			out = append(out, ReplacedKey{Kyber: k[0] == 'k', ID: binary.BigEndian.Uint32(k[1:]),
				Since: time.UnixMilli(int64(binary.BigEndian.Uint64(v)))})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveReplaced deletes a replaced one-time key and its mark together (a
// key a session already used is gone already: only the mark goes).
func (p *Protocol) RemoveReplaced(ctx context.Context, k ReplacedKey) error {
	return p.s.update(ctx, func(t *txn) error {
		bucket := bucketPreKeys
		if k.Kyber {
			bucket = bucketKyber
		}
		if err := t.delete(p.path(bucket), idKey(k.ID)); err != nil {
			return err
		}
		return t.delete(p.path(bucketReplaced), replacedKey(k.Kyber, k.ID))
	})
}

// bucketServerKeys records which signed EC prekey and Kyber last-resort key
// the server last accepted for this identity (at link, then after each
// upload of a rotation), so that the upkeep uploads them only when they
// changed, not at every start. Key: keyServerKeys; value: the two ids.
var (
	bucketServerKeys = []byte("server")
	keyServerKeys    = []byte("signed+last-resort")
	// keyOneTimeStale marks, after a restore from a backup, that the
	// server may hold one-time keys whose private halves were lost with
	// the newer store: the whole set is replaced at the next upkeep.
	keyOneTimeStale = []byte("one-time stale")
)

// ServerKeys returns the ids of the signed prekey and the last-resort key
// the server last accepted; 0 and 0 when none was recorded (a store from
// before the record was kept). Key ids are never 0.
func (p *Protocol) ServerKeys(ctx context.Context) (signed, lastResort uint32, err error) {
	v, err := p.s.get(ctx, p.path(bucketServerKeys), keyServerKeys)
	if err != nil || v == nil {
		return 0, 0, err
	}
	if len(v) != 8 {
		return 0, 0, fmt.Errorf("%w: server key ids of %d bytes", ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:]), nil
}

// OneTimeStale reports whether the server's one-time keys of this
// identity must all be replaced (set by a restore from a backup).
func (p *Protocol) OneTimeStale(ctx context.Context) (bool, error) {
	v, err := p.s.get(ctx, p.path(bucketServerKeys), keyOneTimeStale)
	return v != nil, err
}

// ClearOneTimeStale records that the server's one-time keys were replaced.
func (p *Protocol) ClearOneTimeStale(ctx context.Context) error {
	return p.s.del(ctx, p.path(bucketServerKeys), keyOneTimeStale)
}

// SetServerKeys records that the server accepted the signed prekey and the
// last-resort key with these ids.
func (p *Protocol) SetServerKeys(ctx context.Context, signed, lastResort uint32) error {
	if signed == 0 || lastResort == 0 {
		return fmt.Errorf("%w: key id 0", ErrInvalidArgument)
	}
	return p.s.put(ctx, p.path(bucketServerKeys), keyServerKeys, binary.BigEndian.AppendUint32(idKey(signed), lastResort))
}
