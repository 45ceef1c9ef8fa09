package store

import (
	"context"
	"encoding/binary"
	"fmt"

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
			if kk.LastResort {
				out = append(out, kk)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveKyberPreKey deletes a Kyber prekey of either kind. Unlike
// MarkKyberPreKeyUsed it removes a last-resort key too: one replaced by a
// rotation, after its grace period.
func (p *Protocol) RemoveKyberPreKey(ctx context.Context, id uint32) error {
	return p.s.del(ctx, p.path(bucketKyber), idKey(id))
}
