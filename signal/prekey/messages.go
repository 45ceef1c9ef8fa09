package prekey

import (
	"errors"
	"fmt"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/util/optional"
	"google.golang.org/protobuf/proto"
)

// Our own serializers for the two session wire messages, in place of
// libsignal's protobuf ones, which produce the same bytes (the same
// generated protobuf types, the same version byte) but format every result
// into a debug string whether or not anything logs it: in a profile of a
// console under load that was a tenth of all CPU time. They also check
// lengths instead of panicking on an empty message, and the length and
// type of every key in a message: libsignal reads a key's type byte
// without a length check (an empty key panics) and takes a short or long
// one as some other key.

// ErrMessage is a session message that does not parse.
var ErrMessage = errors.New("prekey: malformed session message")

// versionByte is a message's first byte: the version in both halves
// (libsignal writes the ASCII digit, which is the same byte for version 3).
func versionByte(v int) byte { return byte(v<<4 | v&0x0f) }

type signalMessageSerializer struct{}

func (signalMessageSerializer) Serialize(m *protocol.SignalMessageStructure) []byte {
	body, err := proto.Marshal(&serialize.SignalMessage{
		RatchetKey:      m.RatchetKey,
		Counter:         &m.Counter,
		PreviousCounter: &m.PreviousCounter,
		Ciphertext:      m.CipherText,
	})
	if err != nil {
		return nil // libsignal's interface has no error; an empty message fails its MAC
	}
	out := make([]byte, 0, 1+len(body)+len(m.Mac))
	if m.Version != 0 {
		out = append(out, versionByte(m.Version))
	}
	out = append(out, body...)
	return append(out, m.Mac...)
}

func (signalMessageSerializer) Deserialize(b []byte) (*protocol.SignalMessageStructure, error) {
	if len(b) < 1+protocol.MacLength {
		return nil, fmt.Errorf("%w: %d bytes", ErrMessage, len(b))
	}
	var sm serialize.SignalMessage
	if err := proto.Unmarshal(b[1:len(b)-protocol.MacLength], &sm); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMessage, err)
	}
	if err := checkECKey("ratchet key", sm.GetRatchetKey()); err != nil {
		return nil, err
	}
	return &protocol.SignalMessageStructure{
		Version:         int(b[0] >> 4),
		RatchetKey:      sm.GetRatchetKey(),
		Counter:         sm.GetCounter(),
		PreviousCounter: sm.GetPreviousCounter(),
		CipherText:      sm.GetCiphertext(),
		Mac:             b[len(b)-protocol.MacLength:],
	}, nil
}

type preKeyMessageSerializer struct{}

func (preKeyMessageSerializer) Serialize(m *protocol.PreKeySignalMessageStructure) []byte {
	pm := &serialize.PreKeySignalMessage{
		RegistrationId: &m.RegistrationID,
		SignedPreKeyId: &m.SignedPreKeyID,
		BaseKey:        m.BaseKey,
		IdentityKey:    m.IdentityKey,
		Message:        m.Message,
	}
	if m.PreKeyID != nil && !m.PreKeyID.IsEmpty {
		pm.PreKeyId = &m.PreKeyID.Value
	}
	body, err := proto.Marshal(pm)
	if err != nil {
		return nil
	}
	return append([]byte{versionByte(m.Version)}, body...)
}

func (preKeyMessageSerializer) Deserialize(b []byte) (*protocol.PreKeySignalMessageStructure, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMessage, len(b))
	}
	var pm serialize.PreKeySignalMessage
	if err := proto.Unmarshal(b[1:], &pm); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMessage, err)
	}
	if err := checkECKey("base key", pm.GetBaseKey()); err != nil {
		return nil, err
	}
	if err := checkECKey("identity key", pm.GetIdentityKey()); err != nil {
		return nil, err
	}
	id := optional.NewEmptyUint32()
	if pm.GetPreKeyId() != 0 {
		id = optional.NewOptionalUint32(pm.GetPreKeyId())
	}
	return &protocol.PreKeySignalMessageStructure{
		Version:        int(b[0] >> 4),
		RegistrationID: pm.GetRegistrationId(),
		BaseKey:        pm.GetBaseKey(),
		IdentityKey:    pm.GetIdentityKey(),
		SignedPreKeyID: pm.GetSignedPreKeyId(),
		Message:        pm.GetMessage(),
		PreKeyID:       id,
	}, nil
}

// checkECKey checks a serialized Curve25519 public key from a message.
func checkECKey(name string, k []byte) error {
	if len(k) != ECPublicKeySize || k[0] != KeyTypeDJB {
		return fmt.Errorf("%w: %s of %d bytes", ErrMessage, name, len(k))
	}
	return nil
}
