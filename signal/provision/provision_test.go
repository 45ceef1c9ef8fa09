package provision

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"

	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/util/keyhelper"
	"golang.org/x/crypto/hkdf"
	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
)

const (
	testACI = "8c0f3a7e-5b1d-4e2a-9f6c-0123456789ab"
	testPNI = "11111111-2222-4333-8444-555555555555"
)

func newIdentity(t testing.TB) *identity.KeyPair {
	t.Helper()
	k, err := keyhelper.GenerateIdentityKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testProvision(t testing.TB) *Provision {
	return &Provision{
		ACI:              testACI,
		PNI:              testPNI,
		Number:           "+15551234567",
		ProvisioningCode: testACI + ".1700000000000:abc",
		UserAgent:        "OWD",
		ReadReceipts:     true,
		Version:          1,
		ACIIdentity:      newIdentity(t),
		PNIIdentity:      newIdentity(t),
		ProfileKey:       bytes.Repeat([]byte{7}, 32),
		MasterKey:        bytes.Repeat([]byte{9}, 32),
	}
}

func seal(t testing.TB, pub []byte, p *Provision) []byte {
	t.Helper()
	m, err := p.Message()
	if err != nil {
		t.Fatal(err)
	}
	env, err := Seal(nil, pub, m)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func newKey(t testing.TB) *LinkKey {
	t.Helper()
	k, err := NewLinkKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sameIdentity(a, b *identity.KeyPair) bool {
	return bytes.Equal(a.PublicKey().Serialize(), b.PublicKey().Serialize()) &&
		a.PrivateKey().Serialize() == b.PrivateKey().Serialize()
}

func TestSealedProvisionOpensToTheSameAccountAndKeys(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	want := testProvision(t)
	got, err := k.Open(seal(t, k.PublicKey(), want))
	if err != nil {
		t.Fatal(err)
	}
	if got.ACI != want.ACI || got.PNI != want.PNI || got.Number != want.Number ||
		got.ProvisioningCode != want.ProvisioningCode || got.UserAgent != want.UserAgent ||
		got.ReadReceipts != want.ReadReceipts || got.Version != want.Version {
		t.Errorf("got %+v, want %+v", *got, *want)
	}
	if !sameIdentity(got.ACIIdentity, want.ACIIdentity) || !sameIdentity(got.PNIIdentity, want.PNIIdentity) {
		t.Error("identity key pairs differ after the round trip")
	}
	if !bytes.Equal(got.ProfileKey, want.ProfileKey) || !bytes.Equal(got.MasterKey, want.MasterKey) {
		t.Error("profile or master key differ")
	}
}

// TestEnvelopeLayoutMatchesTheWireDescription decrypts a sealed envelope with
// an independent HKDF (golang.org/x/crypto) following signal-wire.md 1.4 step
// by step, so a wrong info string, salt or layout cannot round-trip unnoticed.
func TestEnvelopeLayoutMatchesTheWireDescription(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	m, _ := testProvision(t).Message()
	plain, _ := proto.Marshal(m)
	raw, err := Seal(nil, k.PublicKey(), m)
	if err != nil {
		t.Fatal(err)
	}
	var env signalpb.ProvisionEnvelope
	if err := proto.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	if len(env.PublicKey) != 33 || env.PublicKey[0] != 0x05 {
		t.Fatalf("ephemeral key is %d bytes", len(env.PublicKey))
	}
	padded := (len(plain)/16 + 1) * 16
	if len(env.Body) != 1+16+padded+32 || env.Body[0] != 1 {
		t.Fatalf("body is %d bytes with version %d, want %d with version 1", len(env.Body), env.Body[0], 1+16+padded+32)
	}
	eph, _ := ecdh.X25519().NewPublicKey(env.PublicKey[1:])
	shared, err := k.priv.ECDH(eph)
	if err != nil {
		t.Fatal(err)
	}
	okm := make([]byte, 64)
	if _, err := io.ReadFull(hkdf.New(sha256.New, shared, make([]byte, 32), []byte("TextSecure Provisioning Message")), okm); err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, okm[32:])
	mac.Write(env.Body[:len(env.Body)-32])
	if !hmac.Equal(mac.Sum(nil), env.Body[len(env.Body)-32:]) {
		t.Fatal("independent HMAC does not verify")
	}
	block, _ := aes.NewCipher(okm[:32])
	ct := bytes.Clone(env.Body[17 : len(env.Body)-32])
	cipher.NewCBCDecrypter(block, env.Body[1:17]).CryptBlocks(ct, ct)
	pad := int(ct[len(ct)-1])
	if !bytes.Equal(ct[:len(ct)-pad], plain) {
		t.Fatal("independent decryption does not give the ProvisionMessage")
	}
}

// withBody re-marshals an envelope after f changed its body.
func withBody(t *testing.T, raw []byte, f func([]byte) []byte) []byte {
	t.Helper()
	var env signalpb.ProvisionEnvelope
	if err := proto.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	env.Body = f(bytes.Clone(env.Body))
	out, err := proto.Marshal(&env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDamagedEnvelopesAreRejectedWithTheirSentinel(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	good := seal(t, k.PublicKey(), testProvision(t))
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte {
			if i < 0 {
				i += len(b)
			}
			b[i] ^= 0x01
			return b
		}
	}
	otherKeyEnv := seal(t, newKey(t).PublicKey(), testProvision(t))
	tests := []struct {
		name string
		env  []byte
		want error
	}{
		{"a flipped IV bit fails the MAC", withBody(t, good, flip(1)), ErrBadMAC},
		{"a flipped ciphertext bit fails the MAC", withBody(t, good, flip(20)), ErrBadMAC},
		{"a flipped MAC bit fails the MAC", withBody(t, good, flip(-1)), ErrBadMAC},
		{"version 2 is unsupported", withBody(t, good, func(b []byte) []byte { b[0] = 2; return b }), ErrUnsupportedVersion},
		{"version 0 is unsupported", withBody(t, good, func(b []byte) []byte { b[0] = 0; return b }), ErrUnsupportedVersion},
		{"a body cut by one byte is truncated", withBody(t, good, func(b []byte) []byte { return b[:len(b)-1] }), ErrTruncated},
		{"a body of version and IV only is truncated", withBody(t, good, func(b []byte) []byte { return b[:17] }), ErrTruncated},
		{"an empty body is truncated", withBody(t, good, func([]byte) []byte { return []byte{} }), ErrTruncated},
		{"a body without its last block fails the MAC", withBody(t, good, func(b []byte) []byte {
			return append(b[:len(b)-48], b[len(b)-32:]...)
		}), ErrBadMAC},
		{"an envelope for another key fails the MAC", otherKeyEnv, ErrBadMAC},
		{"garbage is not an envelope", []byte{0xff, 0xff, 0xff}, ErrMalformedEnvelope},
		{"an empty envelope lacks its fields", nil, ErrMalformedEnvelope},
		{"an oversized envelope is refused", make([]byte, MaxEnvelopeSize+1), ErrMalformedEnvelope},
		{"a 32-byte ephemeral key is refused", mustMarshal(t, &signalpb.ProvisionEnvelope{PublicKey: make([]byte, 32), Body: []byte{1}}), ErrBadPublicKey},
		{"an ephemeral key of type 0x08 is refused", mustMarshal(t, &signalpb.ProvisionEnvelope{PublicKey: append([]byte{8}, make([]byte, 32)...), Body: make([]byte, 100)}), ErrBadPublicKey},
		{"a low-order ephemeral key is refused", mustMarshal(t, &signalpb.ProvisionEnvelope{PublicKey: append([]byte{5}, make([]byte, 32)...), Body: append([]byte{1}, make([]byte, 16+16+32)...)}), ErrBadPublicKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := k.Open(tt.env)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, %v; want %v", p, err, tt.want)
			}
		})
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sealPlain authenticates an arbitrary (possibly badly padded) CBC plaintext,
// as a broken sender would.
func sealPlain(t *testing.T, k *LinkKey, ct []byte) []byte {
	t.Helper()
	eph := newKey(t)
	pub, _ := parsePublic(k.PublicKey())
	cipherKey, macKey, err := deriveKeys(eph.priv, pub)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(cipherKey)
	body := append([]byte{1}, make([]byte, 16)...)
	enc := bytes.Clone(ct)
	cipher.NewCBCEncrypter(block, body[1:17]).CryptBlocks(enc, enc)
	body = append(body, enc...)
	mac := hmac.New(sha256.New, macKey)
	mac.Write(body)
	return mustMarshal(t, &signalpb.ProvisionEnvelope{PublicKey: eph.PublicKey(), Body: mac.Sum(body)})
}

func TestAuthenticatedButBadlyPaddedPlaintextIsRejected(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	block := func(last ...byte) []byte {
		b := bytes.Repeat([]byte{'x'}, 16)
		return append(b[:16-len(last)], last...)
	}
	tests := []struct {
		name string
		ct   []byte
		want error
	}{
		{"a zero pad byte", block(0), ErrBadPadding},
		{"a pad count above the block size", block(17), ErrBadPadding},
		{"pad bytes that disagree", block(1, 3, 3), ErrBadPadding},
		{"a full padding block decodes to an empty, invalid message", bytes.Repeat([]byte{16}, 16), ErrMalformedMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := k.Open(sealPlain(t, k, tt.ct)); !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestProvisionMessageFieldForms(t *testing.T) {
	t.Parallel()
	aci, pni := newIdentity(t), newIdentity(t)
	aciPub, aciPriv := serializePair(aci)
	pniPub, pniPriv := serializePair(pni)
	aciBin, _ := uuidBytes(testACI)
	pniBin, _ := uuidBytes(testPNI)
	base := func() *signalpb.ProvisionMessage {
		return &signalpb.ProvisionMessage{
			AciIdentityKeyPublic: aciPub, AciIdentityKeyPrivate: aciPriv,
			PniIdentityKeyPublic: pniPub, PniIdentityKeyPrivate: pniPriv,
			ProvisioningCode: proto.String("code"),
		}
	}
	upper := strings.ToUpper(testACI)
	tests := []struct {
		name     string
		edit     func(m *signalpb.ProvisionMessage)
		aci, pni string
		want     error
	}{
		{"binary ids are read when both are present", func(m *signalpb.ProvisionMessage) {
			m.AciBinary, m.PniBinary = aciBin, pniBin
			m.Aci = proto.String("ignored")
		}, testACI, testPNI, nil},
		{"string ids are read when the binary pair is absent", func(m *signalpb.ProvisionMessage) {
			m.Aci, m.Pni = proto.String(upper), proto.String(testPNI)
		}, testACI, testPNI, nil},
		{"a PNI: prefix on the string PNI is stripped", func(m *signalpb.ProvisionMessage) {
			m.Aci, m.Pni = proto.String(testACI), proto.String("PNI:"+testPNI)
		}, testACI, testPNI, nil},
		{"a lone aciBinary is used", func(m *signalpb.ProvisionMessage) {
			m.AciBinary = aciBin
			m.PniIdentityKeyPublic, m.PniIdentityKeyPrivate = nil, nil
		}, testACI, "", nil},
		{"no ACI at all is refused", func(m *signalpb.ProvisionMessage) {}, "", "", ErrMalformedMessage},
		{"a 15-byte aciBinary is refused", func(m *signalpb.ProvisionMessage) { m.AciBinary, m.PniBinary = aciBin[:15], pniBin }, "", "", ErrMalformedMessage},
		{"an ACI string that is no UUID is refused", func(m *signalpb.ProvisionMessage) { m.Aci = proto.String("+15551234567") }, "", "", ErrMalformedMessage},
		{"a missing provisioning code is refused", func(m *signalpb.ProvisionMessage) {
			m.Aci, m.ProvisioningCode = proto.String(testACI), nil
		}, "", "", ErrMalformedMessage},
		{"an ACI public key of another private key is refused", func(m *signalpb.ProvisionMessage) {
			m.Aci, m.Pni = proto.String(testACI), proto.String(testPNI)
			m.AciIdentityKeyPublic = pniPub
		}, "", "", ErrMalformedMessage},
		{"a missing ACI private key is refused", func(m *signalpb.ProvisionMessage) {
			m.Aci, m.Pni = proto.String(testACI), proto.String(testPNI)
			m.AciIdentityKeyPrivate = nil
		}, "", "", ErrMalformedMessage},
		{"half a PNI key pair is refused", func(m *signalpb.ProvisionMessage) {
			m.Aci, m.Pni = proto.String(testACI), proto.String(testPNI)
			m.PniIdentityKeyPrivate = nil
		}, "", "", ErrMalformedMessage},
		{"a PNI key pair without a PNI is refused", func(m *signalpb.ProvisionMessage) { m.Aci = proto.String(testACI) }, "", "", ErrMalformedMessage},
		{"a 31-byte profile key is refused", func(m *signalpb.ProvisionMessage) {
			m.Aci, m.Pni = proto.String(testACI), proto.String(testPNI)
			m.ProfileKey = make([]byte, 31)
		}, "", "", ErrMalformedMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := base()
			tt.edit(m)
			p, err := ParseMessage(mustMarshal(t, m))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseMessage error = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			if p.ACI != tt.aci || p.PNI != tt.pni {
				t.Errorf("ids = %q %q, want %q %q", p.ACI, p.PNI, tt.aci, tt.pni)
			}
			if !sameIdentity(p.ACIIdentity, aci) {
				t.Error("ACI identity differs")
			}
		})
	}
}

func TestProvisionNeverPrintsPrivateKeys(t *testing.T) {
	t.Parallel()
	p := testProvision(t)
	priv := p.ACIIdentity.PrivateKey().Serialize()
	for _, s := range []string{p.String(), p.GoString()} {
		if strings.Contains(s, base64.StdEncoding.EncodeToString(priv[:])) || strings.Contains(s, string(priv[:])) {
			t.Fatalf("%q shows the private key", s)
		}
	}
}

func TestLinkURLEscapesTheKeyAsDesktopDoes(t *testing.T) {
	t.Parallel()
	pub := append([]byte{5}, bytes.Repeat([]byte{0xfb, 0xff}, 16)...) // b64 full of + and /
	got := LinkURL("AAAAAAAAAAAAAAAAAAAAAA==", pub, "backup5", "x")
	b64 := base64.StdEncoding.EncodeToString(pub)
	if !strings.ContainsAny(b64, "+/=") {
		t.Fatal("test key does not exercise escaping")
	}
	want := "sgnl://linkdevice?uuid=AAAAAAAAAAAAAAAAAAAAAA%3D%3D&pub_key=" +
		strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(b64) + "&capabilities=backup5%2Cx"
	if got != want {
		t.Fatalf("LinkURL =\n%s\nwant\n%s", got, want)
	}
	// Phones read only uuid and pub_key; without capabilities the parameter
	// is left out so the QR code stays small enough for 80x24.
	if u := LinkURL("addr", pub); strings.Contains(u, "capabilities") {
		t.Errorf("no capabilities: %s", u)
	}
}

func TestLinkURLParsing(t *testing.T) {
	t.Parallel()
	pub := newKey(t).PublicKey()
	b64 := base64.StdEncoding.EncodeToString(pub)
	tests := []struct {
		name string
		url  string
		want error
	}{
		{"the URL this package builds", LinkURL("abc-_==", pub), nil},
		{"the legacy tsdevice form", "tsdevice:/?uuid=abc&pub_key=" + url.QueryEscape(b64), nil},
		{"an unescaped + is restored", "sgnl://linkdevice?uuid=abc&pub_key=" + b64, nil},
		{"an unpadded key", "sgnl://linkdevice?uuid=abc&pub_key=" + url.QueryEscape(strings.TrimRight(b64, "=")), nil},
		{"another scheme", "https://linkdevice?uuid=abc&pub_key=" + url.QueryEscape(b64), ErrBadLinkURL},
		{"no uuid", "sgnl://linkdevice?pub_key=" + url.QueryEscape(b64), ErrBadLinkURL},
		{"two keys", "sgnl://linkdevice?uuid=a&pub_key=" + url.QueryEscape(b64) + "&pub_key=" + url.QueryEscape(b64), ErrBadLinkURL},
		{"a 32-byte key", "sgnl://linkdevice?uuid=a&pub_key=" + url.QueryEscape(base64.StdEncoding.EncodeToString(pub[1:])), ErrBadLinkURL},
		{"a key that is not base64", "sgnl://linkdevice?uuid=a&pub_key=%%%", ErrBadLinkURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, got, err := ParseLinkURL(tt.url)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseLinkURL error = %v, want %v", err, tt.want)
			}
			if err == nil && (!bytes.Equal(got, pub) || addr == "") {
				t.Errorf("ParseLinkURL = %q %x, want key %x", addr, got, pub)
			}
		})
	}
}

// Servers send the provisioning address as base64url, Signal's without
// padding and older relays with it: either comes back from the link URL
// exactly as the server gave it (the primary sends to that address).
func TestLinkURLKeepsPaddedAndUnpaddedAddresses(t *testing.T) {
	t.Parallel()
	pub := newKey(t).PublicKey()
	for _, addr := range []string{"Zm9vYmFyYmF6cXV4cXV1eA", "Zm9vYmFyYmF6cXV4cXV1eA==", "-_8AAQIDBAUGBwgJCgsMDQ"} {
		got, key, err := ParseLinkURL(LinkURL(addr, pub))
		if err != nil || got != addr || !bytes.Equal(key, pub) {
			t.Errorf("address %q: ParseLinkURL = %q, %v", addr, got, err)
		}
		m, err := testProvision(t).Message()
		if err != nil {
			t.Fatal(err)
		}
		if got, _, err := SealToURL(nil, LinkURL(addr, pub), m); err != nil || got != addr {
			t.Errorf("address %q: SealToURL = %q, %v", addr, got, err)
		}
	}
}

func TestPrimaryAndNewDeviceLinkThroughTheURL(t *testing.T) {
	t.Parallel()
	k := newKey(t)
	link := LinkURL("Zm9vYmFyYmF6cXV4cXV1eA==", k.PublicKey(), "backup5")
	want := testProvision(t)
	m, err := want.Message()
	if err != nil {
		t.Fatal(err)
	}
	addr, env, err := SealToURL(nil, link, m)
	if err != nil {
		t.Fatal(err)
	}
	if addr != "Zm9vYmFyYmF6cXV4cXV1eA==" {
		t.Errorf("address %q", addr)
	}
	got, err := k.Open(env)
	if err != nil {
		t.Fatal(err)
	}
	if got.ACI != want.ACI {
		t.Fatalf("ACI %q, want %q", got.ACI, want.ACI)
	}
	if _, _, err := SealToURL(nil, "sgnl://linkdevice?uuid=x", m); !errors.Is(err, ErrBadLinkURL) {
		t.Errorf("URL without key: %v", err)
	}
}
