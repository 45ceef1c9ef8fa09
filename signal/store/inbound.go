package store

import (
	"context"
	"encoding/binary"
	"fmt"
)

var bucketInbound = []byte("inbound")

// maxInbound bounds one inbound record (an MPC envelope is at most 64 KiB).
const maxInbound = 1 << 20

// Inbound is a decrypted message kept until the application has taken it:
// stored in the same transaction as the session update that decrypted it
// (Store.Atomic), so a redelivered envelope is served from here instead of
// being decrypted twice (a ratchet cannot decrypt one message twice).
type Inbound struct {
	Account string
	Device  uint32
	Body    []byte
}

// PutInbound keeps a decrypted message under key (the envelope's server
// guid, or a hash of the envelope).
func (s *Store) PutInbound(ctx context.Context, key []byte, in Inbound) error {
	if len(in.Account) > 255 || len(in.Body) > maxInbound {
		return fmt.Errorf("%w: inbound record too large", ErrInvalidArgument)
	}
	v := make([]byte, 0, 1+len(in.Account)+4+len(in.Body))
	v = append(v, byte(len(in.Account)))
	v = append(v, in.Account...)
	v = binary.BigEndian.AppendUint32(v, in.Device)
	v = append(v, in.Body...)
	return s.put(ctx, [][]byte{bucketInbound}, key, v)
}

// GetInbound returns the message kept under key, or ok == false.
func (s *Store) GetInbound(ctx context.Context, key []byte) (Inbound, bool, error) {
	v, err := s.get(ctx, [][]byte{bucketInbound}, key)
	if err != nil || v == nil {
		return Inbound{}, false, err
	}
	if len(v) < 1 || len(v) < 1+int(v[0])+4 {
		return Inbound{}, false, fmt.Errorf("%w: inbound record", ErrCorrupt)
	}
	n := int(v[0])
	return Inbound{Account: string(v[1 : 1+n]), Device: binary.BigEndian.Uint32(v[1+n:]), Body: v[1+n+4:]}, true, nil
}

// DeleteInbound forgets the message kept under key.
func (s *Store) DeleteInbound(ctx context.Context, key []byte) error {
	return s.del(ctx, [][]byte{bucketInbound}, key)
}
