package provision

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"
)

// fuzzKey is a fixed link key so that seeds sealed to it stay valid.
func fuzzKey(f *testing.F) *LinkKey {
	k, err := NewLinkKey(bytes.NewReader(bytes.Repeat([]byte{0x42}, 32)))
	if err != nil {
		f.Fatal(err)
	}
	return k
}

func FuzzOpen(f *testing.F) {
	k := fuzzKey(f)
	f.Add(seal(f, k.PublicKey(), testProvision(f)))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x21, 0x05})
	f.Fuzz(func(t *testing.T, env []byte) {
		p, err := k.Open(env)
		if (p == nil) == (err == nil) {
			t.Fatalf("Open = %v, %v", p, err)
		}
		if err == nil && (p.ACIIdentity == nil || p.ACI == "" || p.ProvisioningCode == "") {
			t.Fatalf("accepted an incomplete provision: %v", p)
		}
	})
}

func FuzzParseMessage(f *testing.F) {
	m, err := testProvision(f).Message()
	if err != nil {
		f.Fatal(err)
	}
	b, _ := proto.Marshal(m)
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseMessage(b)
		if err == nil {
			// What was accepted survives the primary's encoding unchanged.
			m, err := p.Message()
			if err != nil {
				t.Fatalf("accepted provision does not re-encode: %v", err)
			}
			b2, _ := proto.Marshal(m)
			p2, err := ParseMessage(b2)
			if err != nil || p2.ACI != p.ACI || p2.PNI != p.PNI {
				t.Fatalf("re-encoded provision = %v, %v; want %v", p2, err, p)
			}
		}
	})
}

func FuzzParseLinkURL(f *testing.F) {
	k := fuzzKey(f)
	f.Add(LinkURL("AAAAAAAAAAAAAAAAAAAAAA==", k.PublicKey(), "backup5"))
	f.Add("tsdevice:/?uuid=x&pub_key=BQ")
	f.Fuzz(func(t *testing.T, s string) {
		addr, pub, err := ParseLinkURL(s)
		if err == nil {
			if addr == "" || len(pub) != PublicKeySize {
				t.Fatalf("accepted %q %x", addr, pub)
			}
			a2, p2, err := ParseLinkURL(LinkURL(addr, pub))
			if err != nil || a2 != addr || !bytes.Equal(p2, pub) {
				t.Fatalf("rebuilt URL parses to %q %x %v", a2, p2, err)
			}
		}
	})
}
