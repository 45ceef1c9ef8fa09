package keystore

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/signal-mpc/cosigner/bls"
)

// EIP-2335's test vectors (the specification's "Test Cases").
const (
	vectorPassword = "𝔱𝔢𝔰𝔱𝔭𝔞𝔰𝔰𝔴𝔬𝔯𝔡🔑"
	vectorSecret   = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
	vectorPBKDF2   = `{"crypto":{"kdf":{"function":"pbkdf2","params":{"dklen":32,"c":262144,"prf":"hmac-sha256","salt":"d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"},"message":""},"checksum":{"function":"sha256","params":{},"message":"8a9f5d9912ed7e75ea794bc5a89bca5f193721d30868ade6f73043c6ea6febf1"},"cipher":{"function":"aes-128-ctr","params":{"iv":"264daa3f303d7259501c93d997d84fe6"},"message":"cee03fde2af33149775b7223e7845e4fb2c8ae1792e5f99fe9ecf474cc8c16ad"}},"description":"This is a test keystore that uses PBKDF2 to secure the secret.","pubkey":"9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07","path":"m/12381/60/0/0","uuid":"64625def-3331-4eea-ab6f-782f3ed16a83","version":4}`
	vectorScrypt   = `{"crypto":{"kdf":{"function":"scrypt","params":{"dklen":32,"n":262144,"p":1,"r":8,"salt":"d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3"},"message":""},"checksum":{"function":"sha256","params":{},"message":"d2217fe5f3e9a1e34581ef8a78f7c9928e436d36dacc5e846690a5581e8ea484"},"cipher":{"function":"aes-128-ctr","params":{"iv":"264daa3f303d7259501c93d997d84fe6"},"message":"06ae90d55fe0a6e9c5c3bc5b170827b2e5cce3929ed3f116c2811e6366dfe20f"}},"description":"This is a test keystore that uses scrypt to secure the secret.","pubkey":"9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07","path":"m/12381/60/3141592653/589793238","uuid":"1d85ae20-35c5-4611-98e8-aa14a633906f","version":4}`
)

func TestPasswordIsNormalisedAsTheEIPSays(t *testing.T) {
	t.Parallel()
	if got := hex.EncodeToString(normalise(vectorPassword)); got != "7465737470617373776f7264f09f9491" {
		t.Fatalf("normalised password %s", got)
	}
	if got := string(normalise("pass\x00\x1f\u0085word\x7f")); got != "password" {
		t.Fatalf("control codes kept: %q", got)
	}
}

func TestEIPVectorsDecrypt(t *testing.T) {
	t.Parallel()
	for name, v := range map[string]string{"pbkdf2": vectorPBKDF2, "scrypt": vectorScrypt} {
		// DecryptKey is Decrypt, then the key checks an import needs: the
		// vector's secret is a key, and the vector's public key is its.
		sk, f, err := DecryptKey([]byte(v), vectorPassword)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if hex.EncodeToString(sk.Bytes()) != vectorSecret {
			t.Fatalf("%s: secret does not match the vector", name)
		}
		if f.Pubkey[:8] != "9612d7a7" || hex.EncodeToString(sk.PublicKey().Bytes()) != f.Pubkey {
			t.Fatalf("%s: file %+v", name, f)
		}
		if _, _, err := Decrypt([]byte(v), "wrong"); !errors.Is(err, ErrPassword) {
			t.Fatalf("%s: wrong password: %v", name, err)
		}
	}
}

func TestEncryptRoundTrips(t *testing.T) {
	t.Parallel()
	secret, _ := hex.DecodeString(vectorSecret)
	pub := bytes.Repeat([]byte{0x96}, 48)
	for _, o := range []Options{{KDF: "scrypt", ScryptN: 1 << 10}, {KDF: "pbkdf2", PBKDF2C: 1000}} {
		o.Description = "share 2 of a 2-of-3 key"
		b, err := Encrypt(secret, pub, "correct horse", o)
		if err != nil {
			t.Fatal(err)
		}
		got, f, err := Decrypt(b, "correct horse")
		if err != nil {
			t.Fatalf("%s: %v", o.KDF, err)
		}
		if !bytes.Equal(got, secret) || f.Description != o.Description || f.Version != 4 || len(f.UUID) != 36 {
			t.Fatalf("%s: round trip %+v", o.KDF, f)
		}
		if bytes.Contains(b, []byte(vectorSecret)) {
			t.Fatal("secret in the clear")
		}
	}
}

func TestHostileKeystoresAreRefused(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"not json":      "{",
		"version 3":     `{"version":3}`,
		"huge scrypt n": `{"crypto":{"kdf":{"function":"scrypt","params":{"dklen":32,"n":1073741824,"p":1,"r":8,"salt":"00"},"message":""},"checksum":{"function":"sha256","params":{},"message":"8a9f5d9912ed7e75ea794bc5a89bca5f193721d30868ade6f73043c6ea6febf1"},"cipher":{"function":"aes-128-ctr","params":{"iv":"264daa3f303d7259501c93d997d84fe6"},"message":"cee03fde2af33149775b7223e7845e4fb2c8ae1792e5f99fe9ecf474cc8c16ad"}},"version":4}`,
		"unknown kdf":   `{"crypto":{"kdf":{"function":"argon2","params":{},"message":""},"checksum":{"function":"sha256","params":{},"message":"8a9f5d9912ed7e75ea794bc5a89bca5f193721d30868ade6f73043c6ea6febf1"},"cipher":{"function":"aes-128-ctr","params":{"iv":"264daa3f303d7259501c93d997d84fe6"},"message":"cee03fde2af33149775b7223e7845e4fb2c8ae1792e5f99fe9ecf474cc8c16ad"}},"version":4}`,
		"short cipher":  `{"crypto":{"kdf":{"function":"pbkdf2","params":{"dklen":32,"c":1,"prf":"hmac-sha256","salt":"00"},"message":""},"checksum":{"function":"sha256","params":{},"message":"00"},"cipher":{"function":"aes-128-ctr","params":{"iv":"00"},"message":"00"}},"version":4}`,
	}
	for name, v := range cases {
		if _, _, err := Decrypt([]byte(v), "x"); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// cheap reports whether a fuzzed keystore's KDF would run quickly: the
// fuzzer must explore the whole decryption, not spend its time in scrypt.
func cheap(b []byte) bool {
	var f File
	if json.Unmarshal(b, &f) != nil {
		return true // refused before any KDF runs
	}
	var p struct {
		N int `json:"n"`
		C int `json:"c"`
	}
	_ = json.Unmarshal(f.Crypto.KDF.Params, &p)
	return p.N <= 1<<6 && p.C <= 1<<6
}

func FuzzDecrypt(f *testing.F) {
	f.Add([]byte(vectorPBKDF2))
	secret, _ := hex.DecodeString(vectorSecret)
	for _, o := range []Options{{KDF: "scrypt", ScryptN: 16}, {KDF: "pbkdf2", PBKDF2C: 16}} {
		b, err := Encrypt(secret, make([]byte, 48), "x", o)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !cheap(b) {
			return
		}
		got, _, err := Decrypt(b, "x")
		if err == nil && len(got) != 32 {
			t.Fatalf("decrypted %d bytes", len(got))
		}
	})
}

// FuzzDecryptKey: whatever the file says, an import gets a key that
// matches the file's public key, or an error.
func FuzzDecryptKey(f *testing.F) {
	sk, err := bls.SecretKeyFromBytes(mustHex(f, vectorSecret))
	if err != nil {
		f.Fatal(err)
	}
	b, err := Encrypt(sk.Bytes(), sk.PublicKey().Bytes(), "x", Options{KDF: "pbkdf2", PBKDF2C: 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		if !cheap(b) {
			return
		}
		key, file, err := DecryptKey(b, "x")
		if err != nil {
			return
		}
		if hex.EncodeToString(key.PublicKey().Bytes()) != strings.TrimPrefix(file.Pubkey, "0x") {
			t.Fatal("a key that is not the file's public key was accepted")
		}
	})
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An export (as `cosigner key export` writes it: a share and its public
// share) imports back as the same key.
func TestExportedKeyDecryptsToTheSameKey(t *testing.T) {
	t.Parallel()
	sk, err := bls.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{KDF: "scrypt", ScryptN: 1 << 10}, {KDF: "pbkdf2", PBKDF2C: 1000}} {
		b, err := Encrypt(sk.Bytes(), sk.PublicKey().Bytes(), "pässwörd", o)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := DecryptKey(b, "pa\u0308sswo\u0308rd") // the same password, decomposed
		if err != nil {
			t.Fatalf("%s: %v", o.KDF, err)
		}
		if !bytes.Equal(got.Bytes(), sk.Bytes()) {
			t.Fatalf("%s: another key came back", o.KDF)
		}
	}
}

// damage flips a bit of the ciphertext: the checksum no longer matches.
func damage(t *testing.T, b []byte) []byte {
	t.Helper()
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	ct := mustHex(t, f.Crypto.Cipher.Message)
	ct[0] ^= 1
	f.Crypto.Cipher.Message = hex.EncodeToString(ct)
	out, _ := json.Marshal(f)
	return out
}

func TestKeystoresThatAreNotAValidKeyAreRefused(t *testing.T) {
	t.Parallel()
	sk, _ := bls.SecretKeyFromBytes(mustHex(t, vectorSecret))
	other, _ := bls.GenerateKey(nil)
	order := mustHex(t, "73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001")
	opts := Options{KDF: "pbkdf2", PBKDF2C: 16}
	withPubkey := func(secret []byte, pub string) []byte {
		b, err := Encrypt(secret, make([]byte, 48), "pw", opts)
		if err != nil {
			t.Fatal(err)
		}
		var f map[string]any
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		f["pubkey"] = pub
		b, _ = json.Marshal(f)
		return b
	}
	pk := hex.EncodeToString(sk.PublicKey().Bytes())
	tests := []struct {
		name string
		file []byte
		pw   string
		want error
	}{
		{"wrong password", withPubkey(sk.Bytes(), pk), "wrong", ErrPassword},
		{"another key's public key", withPubkey(sk.Bytes(), hex.EncodeToString(other.PublicKey().Bytes())), "pw", ErrKey},
		{"no public key", withPubkey(sk.Bytes(), ""), "pw", ErrKey},
		{"public key not a point", withPubkey(sk.Bytes(), strings.Repeat("ab", 48)), "pw", ErrKey},
		{"identity public key", withPubkey(sk.Bytes(), "c0"+strings.Repeat("00", 47)), "pw", ErrKey},
		{"zero secret", withPubkey(make([]byte, 32), pk), "pw", ErrKey},
		{"secret equal to the group order", withPubkey(order, pk), "pw", ErrKey},
		{"truncated checksum", bytes.Replace(withPubkey(sk.Bytes(), pk), []byte(`"message":"`), []byte(`"message":"0`), 1), "pw", ErrFormat},
		{"damaged ciphertext", damage(t, withPubkey(sk.Bytes(), pk)), "pw", ErrPassword},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key, _, err := DecryptKey(tc.file, tc.pw)
			if !errors.Is(err, tc.want) || key != nil {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), vectorSecret) {
				t.Fatal("the error shows the secret")
			}
		})
	}
}
