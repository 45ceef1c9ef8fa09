package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

var bucketInbound = []byte("inbound")

// maxInbound bounds one inbound record (an MPC envelope is at most 64 KiB).
const maxInbound = 1 << 20

// Inbound is a decrypted message kept until the application has taken it:
// stored in the same transaction as the session update that decrypted it
// (Store.Atomic), so a redelivered envelope is served from here instead of
// being decrypted twice (a ratchet cannot decrypt one message twice).
type Inbound struct {
	Account  string
	Device   uint32
	Body     []byte
	Received time.Time // when it was first decrypted; PruneInbound drops old ones
}

// PutInbound keeps a decrypted message under key (the envelope's server
// guid, or a hash of the envelope).
func (s *Store) PutInbound(ctx context.Context, key []byte, in Inbound) error {
	if len(in.Account) > 255 || len(in.Body) > maxInbound {
		return fmt.Errorf("%w: inbound record too large", ErrInvalidArgument)
	}
	v := make([]byte, 0, 8+1+len(in.Account)+4+len(in.Body))
	v = binary.BigEndian.AppendUint64(v, uint64(in.Received.UnixNano()))
	v = append(v, byte(len(in.Account)))
	v = append(v, in.Account...)
	v = binary.BigEndian.AppendUint32(v, in.Device)
	v = append(v, in.Body...)
	return s.put(ctx, s.path(bucketInbound), key, v)
}

// GetInbound returns the message kept under key, or ok == false.
func (s *Store) GetInbound(ctx context.Context, key []byte) (Inbound, bool, error) {
	v, err := s.get(ctx, s.path(bucketInbound), key)
	if err != nil || v == nil {
		return Inbound{}, false, err
	}
	in, err := decodeInbound(v)
	return in, err == nil, err
}

func decodeInbound(v []byte) (Inbound, error) {
	if len(v) < 9 || len(v) < 9+int(v[8])+4 {
		return Inbound{}, fmt.Errorf("%w: inbound record", ErrCorrupt)
	}
	at := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
	v = v[8:]
	n := int(v[0])
	return Inbound{Account: string(v[1 : 1+n]), Device: binary.BigEndian.Uint32(v[1+n:]), Body: v[1+n+4:], Received: at}, nil
}

// PruneInbound forgets the kept messages received before cutoff: long
// enough ago that the server cannot be about to deliver them again.
func (s *Store) PruneInbound(ctx context.Context, cutoff time.Time) (int, error) {
	keys, err := s.keys(ctx, s.path(bucketInbound))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		v, err := s.get(ctx, s.path(bucketInbound), k)
		if err != nil || v == nil {
			continue
		}
		in, err := decodeInbound(v)
		if err == nil && !in.Received.Before(cutoff) {
			continue
		}
		if err := s.del(ctx, s.path(bucketInbound), k); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// DeleteInbound forgets the message kept under key.
func (s *Store) DeleteInbound(ctx context.Context, key []byte) error {
	return s.del(ctx, s.path(bucketInbound), key)
}
