package prekey

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/util/optional"
)

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// ecKeyBytes is a random serialized Curve25519 public key.
func ecKeyBytes(t testing.TB) []byte { return append([]byte{KeyTypeDJB}, randomBytes(t, 32)...) }

func TestSessionMessagesSerializeAsLibsignalDoes(t *testing.T) {
	t.Parallel()
	lib := serialize.NewProtoBufSerializer()
	for _, counter := range []uint32{0, 1, 300, 1 << 20} {
		sm := &protocol.SignalMessageStructure{Version: 3, RatchetKey: ecKeyBytes(t), Counter: counter,
			PreviousCounter: counter / 2, CipherText: randomBytes(t, 160), Mac: randomBytes(t, protocol.MacLength)}
		ours, theirs := signalMessageSerializer{}.Serialize(sm), lib.SignalMessage.Serialize(sm)
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("signal message (counter %d) differs from libsignal's encoding", counter)
		}
		back, err := signalMessageSerializer{}.Deserialize(ours)
		if err != nil || back.Version != 3 || back.Counter != counter || back.PreviousCounter != counter/2 ||
			!bytes.Equal(back.RatchetKey, sm.RatchetKey) || !bytes.Equal(back.CipherText, sm.CipherText) || !bytes.Equal(back.Mac, sm.Mac) {
			t.Fatalf("signal message round trip: %+v, %v", back, err)
		}
		// Without a MAC (what libsignal serializes to compute the MAC).
		sm.Mac = nil
		if !bytes.Equal(signalMessageSerializer{}.Serialize(sm), lib.SignalMessage.Serialize(sm)) {
			t.Fatal("signal message without MAC differs")
		}
	}
	for _, id := range []*optional.Uint32{optional.NewEmptyUint32(), optional.NewOptionalUint32(7), nil} {
		pm := &protocol.PreKeySignalMessageStructure{Version: 3, RegistrationID: 1234, PreKeyID: id, SignedPreKeyID: 9,
			BaseKey: ecKeyBytes(t), IdentityKey: ecKeyBytes(t), Message: randomBytes(t, 200)}
		ours, theirs := preKeyMessageSerializer{}.Serialize(pm), lib.PreKeySignalMessage.Serialize(pm)
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("prekey message (prekey id %v) differs from libsignal's encoding", id)
		}
		back, err := preKeyMessageSerializer{}.Deserialize(ours)
		if err != nil || back.Version != 3 || back.RegistrationID != 1234 || back.SignedPreKeyID != 9 ||
			!bytes.Equal(back.Message, pm.Message) || !bytes.Equal(back.BaseKey, pm.BaseKey) {
			t.Fatalf("prekey message round trip: %+v, %v", back, err)
		}
		if want := id != nil && !id.IsEmpty; back.PreKeyID.IsEmpty == want {
			t.Fatalf("prekey id lost: %+v", back.PreKeyID)
		}
	}
}

func TestShortSessionMessagesAreErrorsNotPanics(t *testing.T) {
	t.Parallel()
	for _, b := range [][]byte{nil, {0x33}, bytes.Repeat([]byte{0x33}, protocol.MacLength)} {
		if _, err := (signalMessageSerializer{}).Deserialize(b); !errors.Is(err, ErrMessage) {
			t.Errorf("signal message of %d bytes: %v", len(b), err)
		}
	}
	for _, b := range [][]byte{nil, {0x33}} {
		if _, err := (preKeyMessageSerializer{}).Deserialize(b); !errors.Is(err, ErrMessage) {
			t.Errorf("prekey message of %d bytes: %v", len(b), err)
		}
	}
}

// libsignal reads a key's type byte without checking its length (an empty
// key panics) and takes a key of any other length as some key: a message
// whose keys are not 33 bytes of type 5 does not parse.
func TestSessionMessagesWithMalformedKeysAreErrorsNotPanics(t *testing.T) {
	t.Parallel()
	good := ecKeyBytes(t)
	for _, tc := range []struct {
		name string
		key  []byte
	}{
		{"empty", []byte{}},
		{"absent", nil},
		{"type byte only", []byte{KeyTypeDJB}},
		{"one byte short", good[:ECPublicKeySize-1]},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"another type", append([]byte{KeyTypeKyber1024}, good[1:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sm := signalMessageSerializer{}.Serialize(&protocol.SignalMessageStructure{Version: 3, RatchetKey: tc.key,
				CipherText: []byte("ct"), Mac: randomBytes(t, protocol.MacLength)})
			if _, err := protocol.NewSignalMessageFromBytes(sm, signalMessageSerializer{}); !errors.Is(err, ErrMessage) {
				t.Errorf("signal message with the ratchet key %s: %v", tc.name, err)
			}
			goodSM := signalMessageSerializer{}.Serialize(&protocol.SignalMessageStructure{Version: 3, RatchetKey: good,
				CipherText: []byte("ct"), Mac: randomBytes(t, protocol.MacLength)})
			for name, pm := range map[string]*protocol.PreKeySignalMessageStructure{
				"base key":                   {Version: 3, BaseKey: tc.key, IdentityKey: good, Message: goodSM},
				"identity key":               {Version: 3, BaseKey: good, IdentityKey: tc.key, Message: goodSM},
				"ratchet key of its message": {Version: 3, BaseKey: good, IdentityKey: good, Message: sm},
			} {
				b := preKeyMessageSerializer{}.Serialize(pm)
				if _, err := protocol.NewPreKeySignalMessageFromBytes(b, preKeyMessageSerializer{}, signalMessageSerializer{}); !errors.Is(err, ErrMessage) {
					t.Errorf("prekey message with the %s %s: %v", name, tc.name, err)
				}
			}
		})
	}
}

func FuzzSessionMessages(f *testing.F) {
	sm := &protocol.SignalMessageStructure{Version: 3, RatchetKey: bytes.Repeat([]byte{5}, 33), Counter: 4, CipherText: []byte("ct"),
		Mac: bytes.Repeat([]byte{1}, protocol.MacLength)}
	f.Add(signalMessageSerializer{}.Serialize(sm))
	f.Add(preKeyMessageSerializer{}.Serialize(&protocol.PreKeySignalMessageStructure{Version: 3, RegistrationID: 1,
		PreKeyID: optional.NewOptionalUint32(2), BaseKey: sm.RatchetKey, IdentityKey: sm.RatchetKey, Message: signalMessageSerializer{}.Serialize(sm)}))
	f.Add(preKeyMessageSerializer{}.Serialize(&protocol.PreKeySignalMessageStructure{Version: 3, BaseKey: []byte{}, IdentityKey: []byte{}, Message: []byte{}}))
	f.Add([]byte{0x33})
	f.Fuzz(func(t *testing.T, b []byte) {
		// What the receive path does with a message's bytes before any
		// session is involved: an error, never a panic.
		_, _ = protocol.NewSignalMessageFromBytes(b, signalMessageSerializer{})
		_, _ = protocol.NewPreKeySignalMessageFromBytes(b, preKeyMessageSerializer{}, signalMessageSerializer{})
		// Protobuf allows several encodings of one message, so a
		// re-encoding need not equal the input; it must parse again.
		if m, err := (signalMessageSerializer{}).Deserialize(b); err == nil && m.Version != 0 {
			if _, err := (signalMessageSerializer{}).Deserialize(signalMessageSerializer{}.Serialize(m)); err != nil {
				t.Fatalf("re-encoded signal message does not parse: %v", err)
			}
		}
		if m, err := (preKeyMessageSerializer{}).Deserialize(b); err == nil {
			if _, err := (preKeyMessageSerializer{}).Deserialize(preKeyMessageSerializer{}.Serialize(m)); err != nil {
				t.Fatalf("re-encoded prekey message does not parse: %v", err)
			}
		}
	})
}

// libsignal's own protobuf serializers (ours replace two of them; the
// others, such as the sender key distribution message's, are still
// libsignal's) answer input under 2 bytes with an error since v0.2.2;
// v0.2.1 panicked on it.
func TestLibsignalSerializersRejectShortMessages(t *testing.T) {
	t.Parallel()
	lib := serialize.NewProtoBufSerializer()
	for _, b := range [][]byte{nil, {}, {0x33}} {
		if _, err := lib.PreKeySignalMessage.Deserialize(b); err == nil {
			t.Errorf("libsignal's prekey message serializer took %d bytes", len(b))
		}
		if _, err := lib.SenderKeyDistributionMessage.Deserialize(b); err == nil {
			t.Errorf("libsignal's sender key distribution message serializer took %d bytes", len(b))
		}
	}
}
