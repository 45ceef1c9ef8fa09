package signalpb

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// fieldNumbers returns the field numbers present at the top level of an
// encoded message, in wire order.
func fieldNumbers(t *testing.T, b []byte) []protowire.Number {
	t.Helper()
	var nums []protowire.Number
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			t.Fatalf("bad field %d: %v", num, protowire.ParseError(m))
		}
		b = b[m:]
		nums = append(nums, num)
	}
	slices.Sort(nums)
	return nums
}

// TestFieldNumbersMatchSignal pins the field numbers of every message to the
// ones Signal uses (signal-wire.md sections 1.3, 6.1 and 6.3): a renumbered
// field would still round-trip through this package and silently break
// interoperability.
func TestFieldNumbersMatchSignal(t *testing.T) {
	t.Parallel()
	b := []byte{1}
	tests := []struct {
		name string
		msg  proto.Message
		want []protowire.Number
	}{
		{"request carries verb 1 path 2 body 3 id 4 headers 5",
			&WebSocketRequestMessage{Verb: proto.String("PUT"), Path: proto.String("/"), Body: b, Id: proto.Uint64(0), Headers: []string{"a:b"}},
			[]protowire.Number{1, 2, 3, 4, 5}},
		{"response carries id 1 status 2 message 3 body 4 headers 5",
			&WebSocketResponseMessage{Id: proto.Uint64(0), Status: proto.Uint32(200), Message: proto.String("OK"), Body: b, Headers: []string{"a:b"}},
			[]protowire.Number{1, 2, 3, 4, 5}},
		{"websocket message carries type 1 request 2 response 3",
			&WebSocketMessage{Type: WebSocketMessage_REQUEST.Enum(), Request: &WebSocketRequestMessage{}, Response: &WebSocketResponseMessage{}},
			[]protowire.Number{1, 2, 3}},
		{"envelope uses the current binary service id fields",
			&Envelope{
				Type: Envelope_CIPHERTEXT.Enum(), ClientTimestamp: proto.Uint64(1), SourceDevice: proto.Uint32(1), Content: b,
				ServerTimestamp: proto.Uint64(1), Ephemeral: proto.Bool(true), Urgent: proto.Bool(true), Story: proto.Bool(true),
				ReportSpamToken: b, SharedMrmKey: b, SourceServiceId: b, DestinationServiceId: b, ServerGuid: b, UpdatedPni: b,
			},
			[]protowire.Number{1, 5, 7, 8, 10, 12, 14, 16, 17, 18, 19, 20, 21, 22}},
		{"provisioning address is field 1",
			&ProvisioningAddress{Address: proto.String("x")}, []protowire.Number{1}},
		{"provision envelope carries publicKey 1 body 2",
			&ProvisionEnvelope{PublicKey: b, Body: b}, []protowire.Number{1, 2}},
		{"provision message uses the current numbering",
			&ProvisionMessage{
				AciIdentityKeyPublic: b, AciIdentityKeyPrivate: b, Number: proto.String("x"), ProvisioningCode: proto.String("x"),
				UserAgent: proto.String("x"), ProfileKey: b, ReadReceipts: proto.Bool(true), Aci: proto.String("x"),
				ProvisioningVersion: proto.Uint32(1), Pni: proto.String("x"), PniIdentityKeyPublic: b, PniIdentityKeyPrivate: b,
				MasterKey: b, EphemeralBackupKey: b, AccountEntropyPool: proto.String("x"), MediaRootBackupKey: b,
				AciBinary: b, PniBinary: b, AuthCredentialSalt: b,
			},
			[]protowire.Number{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			enc, err := proto.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := fieldNumbers(t, enc); !slices.Equal(got, tt.want) {
				t.Errorf("field numbers %v, want %v", got, tt.want)
			}
		})
	}
}

func TestZeroIDIsPresent(t *testing.T) {
	t.Parallel()
	enc, err := proto.Marshal(&WebSocketResponseMessage{Id: proto.Uint64(0), Status: proto.Uint32(200)})
	if err != nil {
		t.Fatal(err)
	}
	var got WebSocketResponseMessage
	if err := proto.Unmarshal(enc, &got); err != nil {
		t.Fatal(err)
	}
	if got.Id == nil || got.GetId() != 0 {
		t.Errorf("id 0 lost its presence: %v", got.Id)
	}
}

func TestEnvelopeUrgentDefaultsToTrue(t *testing.T) {
	t.Parallel()
	var e Envelope
	if err := proto.Unmarshal(nil, &e); err != nil {
		t.Fatal(err)
	}
	if !e.GetUrgent() {
		t.Error("urgent must default to true, as in Signal's proto")
	}
}
