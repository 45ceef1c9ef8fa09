package prekey

import (
	"testing"
	"time"
)

var testNow = time.UnixMilli(1_700_000_000_000)

func FuzzParseBundles(f *testing.F) {
	ik := newIdentity(f)
	f.Add(mustJSON(f, serverResponse(f, ik, map[uint32]*Keys{1: newKeys(f, ik, 1, 0)})))
	f.Add([]byte(`{"identityKey":"BQ","devices":[{}]}`))
	f.Add([]byte(`{"identityKey":"","devices":[{"deviceId":1,"registrationId":1,"signedPreKey":{"publicKey":"","signature":""}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := ParseBundles(body)
		if err == nil {
			for _, d := range b.Devices {
				if d.Bundle == nil || d.Bundle.SignedPreKey() == nil || d.Bundle.IdentityKey() == nil {
					t.Fatal("accepted an incomplete bundle")
				}
			}
		}
	})
}

func FuzzDecryptDeviceName(f *testing.F) {
	ik := newIdentity(f)
	enc, err := EncryptDeviceName(nil, "cosigner", ik.PublicKey().Serialize())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = DecryptDeviceName(s, ik)
	})
}

func FuzzUnmarshalKyberPreKey(f *testing.F) {
	k, err := NewKyberPreKey(nil, 1, newIdentity(f), false, testNow)
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := k.MarshalBinary()
	f.Add(raw)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := UnmarshalKyberPreKey(b)
		if err == nil {
			again, err := got.MarshalBinary()
			if err != nil || string(again) != string(b) {
				t.Fatal("accepted record does not re-encode to itself")
			}
		}
	})
}

func FuzzParseLinkResponse(f *testing.F) {
	f.Add([]byte(`{"uuid":"8c0f3a7e-5b1d-4e2a-9f6c-0123456789ab","pni":"PNI:8c0f3a7e-5b1d-4e2a-9f6c-0123456789ab","deviceId":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseLinkResponse(b)
		if err == nil && (len(r.ACI) != 36 || r.DeviceID < 2) {
			t.Fatalf("accepted %+v", r)
		}
	})
}
