package prekey

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"go.mau.fi/libsignal/keys/identity"
)

// serverResponse renders keys as the server would answer GET /v2/keys: padded
// keys, unpadded signatures.
func serverResponse(t testing.TB, ik *identity.KeyPair, devices map[uint32]*Keys) map[string]any {
	t.Helper()
	var devs []any
	for id, k := range devices {
		spkSig := k.SignedPreKey.Signature()
		d := map[string]any{
			"deviceId":       id,
			"registrationId": k.RegistrationID,
			"signedPreKey": map[string]any{"keyId": k.SignedPreKey.ID(),
				"publicKey": b64(k.SignedPreKey.KeyPair().PublicKey().Serialize()),
				"signature": base64.RawStdEncoding.EncodeToString(spkSig[:])},
			"pqPreKey": map[string]any{"keyId": k.LastResort.ID, "publicKey": b64(k.LastResort.Public),
				"signature": base64.RawStdEncoding.EncodeToString(k.LastResort.Signature[:])},
		}
		if len(k.PreKeys) > 0 {
			d["preKey"] = map[string]any{"keyId": k.PreKeys[0].ID().Value, "publicKey": b64(k.PreKeys[0].KeyPair().PublicKey().Serialize())}
		}
		devs = append(devs, d)
	}
	return map[string]any{"identityKey": b64(ik.PublicKey().Serialize()), "devices": devs}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBundleResponseParsesIntoLibsignalBundles(t *testing.T) {
	t.Parallel()
	ik := newIdentity(t)
	k2, k3 := newKeys(t, ik, 1, 0), newKeys(t, ik, 0, 0)
	got, err := ParseBundles(mustJSON(t, serverResponse(t, ik, map[uint32]*Keys{2: k2, 3: k3})))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Devices) != 2 || string(got.IdentityKey.Serialize()) != string(ik.PublicKey().Serialize()) {
		t.Fatalf("got %d devices", len(got.Devices))
	}
	for _, d := range got.Devices {
		want := map[uint32]*Keys{2: k2, 3: k3}[d.DeviceID]
		b := d.Bundle
		if b.RegistrationID() != want.RegistrationID || b.DeviceID() != d.DeviceID || b.SignedPreKeyID() != want.SignedPreKey.ID() ||
			string(b.SignedPreKey().Serialize()) != string(want.SignedPreKey.KeyPair().PublicKey().Serialize()) {
			t.Errorf("device %d: bundle does not match the keys", d.DeviceID)
		}
		if hasPre := !b.PreKeyID().IsEmpty; hasPre != (len(want.PreKeys) > 0) {
			t.Errorf("device %d: one-time prekey present = %t", d.DeviceID, hasPre)
		}
		if !d.HasKyber || d.KyberPreKeyID != want.LastResort.ID || string(d.KyberPreKey) != string(want.LastResort.Public) {
			t.Errorf("device %d: kyber key", d.DeviceID)
		}
	}
}

func TestMalformedBundleResponsesAreRejected(t *testing.T) {
	t.Parallel()
	ik := newIdentity(t)
	k := newKeys(t, ik, 1, 0)
	other := newKeys(t, newIdentity(t), 0, 0)
	good := func() map[string]any { return serverResponse(t, ik, map[uint32]*Keys{2: k}) }
	dev := func(m map[string]any) map[string]any { return m["devices"].([]any)[0].(map[string]any) }
	tests := []struct {
		name string
		edit func(m map[string]any)
		raw  string
		want error
	}{
		{name: "not json", raw: "{", want: ErrMalformedBundle},
		{name: "a bare array", raw: "[]", want: ErrMalformedBundle},
		{name: "an empty identity key", edit: func(m map[string]any) { m["identityKey"] = "" }, want: ErrMalformedBundle},
		{name: "a 32-byte identity key", edit: func(m map[string]any) { m["identityKey"] = b64(make([]byte, 32)) }, want: ErrMalformedBundle},
		{name: "an identity key with a trailing byte", edit: func(m map[string]any) { m["identityKey"] = b64(append(ik.PublicKey().Serialize(), 0)) }, want: ErrMalformedBundle},
		{name: "an identity key of type 0x08", edit: func(m map[string]any) {
			b := ik.PublicKey().Serialize()
			b[0] = 8
			m["identityKey"] = b64(b)
		}, want: ErrMalformedBundle},
		{name: "no devices", edit: func(m map[string]any) { m["devices"] = []any{} }, want: ErrMalformedBundle},
		{name: "a repeated device", edit: func(m map[string]any) { m["devices"] = []any{dev(m), dev(m)} }, want: ErrMalformedBundle},
		{name: "device id 0", edit: func(m map[string]any) { dev(m)["deviceId"] = 0 }, want: ErrMalformedBundle},
		{name: "device id 200", edit: func(m map[string]any) { dev(m)["deviceId"] = 200 }, want: ErrMalformedBundle},
		{name: "a negative device id", edit: func(m map[string]any) { dev(m)["deviceId"] = -1 }, want: ErrMalformedBundle},
		{name: "registration id 0", edit: func(m map[string]any) { dev(m)["registrationId"] = 0 }, want: ErrMalformedBundle},
		{name: "no signed prekey", edit: func(m map[string]any) { delete(dev(m), "signedPreKey") }, want: ErrMalformedBundle},
		{name: "an empty signed prekey", edit: func(m map[string]any) { dev(m)["signedPreKey"].(map[string]any)["publicKey"] = "" }, want: ErrMalformedBundle},
		{name: "a short signature", edit: func(m map[string]any) { dev(m)["signedPreKey"].(map[string]any)["signature"] = b64(make([]byte, 63)) }, want: ErrMalformedBundle},
		{name: "a signature of another identity", edit: func(m map[string]any) {
			s := other.SignedPreKey.Signature()
			dev(m)["signedPreKey"].(map[string]any)["signature"] = b64(s[:])
		}, want: ErrBadSignature},
		{name: "an empty one-time prekey", edit: func(m map[string]any) { dev(m)["preKey"].(map[string]any)["publicKey"] = "" }, want: ErrMalformedBundle},
		{name: "a kyber key typed as ML-KEM", edit: func(m map[string]any) {
			b := append([]byte{0x0a}, k.LastResort.Public[1:]...)
			dev(m)["pqPreKey"].(map[string]any)["publicKey"] = b64(b)
		}, want: ErrMalformedBundle},
		{name: "a kyber signature of another identity", edit: func(m map[string]any) {
			dev(m)["pqPreKey"].(map[string]any)["signature"] = b64(other.LastResort.Signature[:])
		}, want: ErrBadSignature},
		{name: "a key id above 2^31-1", edit: func(m map[string]any) { dev(m)["signedPreKey"].(map[string]any)["keyId"] = uint32(1 << 31) }, want: ErrMalformedBundle},
		{name: "one-time prekey id 0 is dropped, not used", edit: func(m map[string]any) { dev(m)["preKey"].(map[string]any)["keyId"] = 0 }},
		{name: "a null one-time prekey is fine", edit: func(m map[string]any) { dev(m)["preKey"] = nil }},
		{name: "an oversized body", raw: `{"identityKey":"` + strings.Repeat("A", maxResponseSize) + `"}`, want: ErrMalformedBundle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := []byte(tt.raw)
			if tt.edit != nil {
				m := good()
				tt.edit(m)
				body = mustJSON(t, m)
			}
			got, err := ParseBundles(body)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseBundles error = %v, want %v", err, tt.want)
			}
			if err == nil && strings.Contains(tt.name, "dropped") && !got.Devices[0].Bundle.PreKeyID().IsEmpty {
				t.Error("one-time prekey id 0 kept")
			}
		})
	}
}
