package store

import (
	"crypto/ecdh"
	"encoding/binary"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/state/record"

	"github.com/signal-mpc/cosigner/signal/prekey"
)

// Prekey records are stored in this package's own encoding, not libsignal's
// JSON: libsignal v0.2.1's NewPreKeyFromBytes and NewSignedPreKeyFromBytes
// copy the first 32 bytes of the 33-byte serialized public key (type byte
// included), so a key pair read back through them has a wrong public key.
// Here only the private key is stored and the public key is derived again.
//
//	prekey:        private(32)
//	signed prekey: timestamp(8) private(32) signature(64)

func encodePreKey(r *record.PreKey) []byte {
	p := r.KeyPair().PrivateKey().Serialize()
	return p[:]
}

func decodePreKey(id uint32, b []byte) (*record.PreKey, error) {
	kp, err := keyPairFromPrivate(b)
	if err != nil {
		return nil, fmt.Errorf("%w: prekey %d", ErrCorrupt, id)
	}
	return record.NewPreKey(id, kp, prekey.Serializer().PreKeyRecord), nil
}

func encodeSignedPreKey(r *record.SignedPreKey) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(r.Timestamp()))
	p := r.KeyPair().PrivateKey().Serialize()
	sig := r.Signature()
	b = append(b, p[:]...)
	return append(b, sig[:]...)
}

func decodeSignedPreKey(id uint32, b []byte) (*record.SignedPreKey, error) {
	if len(b) != 8+32+64 {
		return nil, fmt.Errorf("%w: signed prekey %d", ErrCorrupt, id)
	}
	kp, err := keyPairFromPrivate(b[8:40])
	if err != nil {
		return nil, fmt.Errorf("%w: signed prekey %d", ErrCorrupt, id)
	}
	var sig [64]byte
	copy(sig[:], b[40:])
	ts := int64(binary.BigEndian.Uint64(b[:8]))
	return record.NewSignedPreKey(id, ts, kp, sig, prekey.Serializer().SignedPreKeyRecord), nil
}

func keyPairFromPrivate(b []byte) (*ecc.ECKeyPair, error) {
	priv, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return nil, err
	}
	var pub, sk [32]byte
	copy(pub[:], priv.PublicKey().Bytes())
	copy(sk[:], b)
	return ecc.NewECKeyPair(ecc.NewDjbECPublicKey(pub), ecc.NewDjbECPrivateKey(sk)), nil
}
