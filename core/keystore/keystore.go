// Package keystore writes and reads EIP-2335 keystores (BLS12-381 keys,
// version 4): a password-derived key (scrypt or PBKDF2-HMAC-SHA256)
// encrypts the secret with AES-128-CTR, and a SHA-256 checksum detects a
// wrong password. It lets a key share move into Ethereum tooling, as Obol's
// charon does with its shares.
package keystore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"golang.org/x/crypto/pbkdf2"
	"golang.org/x/crypto/scrypt"
	"golang.org/x/text/unicode/norm"

	"github.com/signal-mpc/cosigner/bls"
)

// Sentinel errors.
var (
	// ErrFormat: not a keystore this package reads (bad JSON, an unknown
	// or out-of-range module, a wrong field length).
	ErrFormat = errors.New("keystore: invalid keystore")
	// ErrPassword: the checksum does not match: a wrong password (or a
	// damaged ciphertext, which the checksum cannot tell apart).
	ErrPassword = errors.New("keystore: wrong password")
	// ErrKey: the keystore decrypts, but its secret is not a BLS secret key
	// in [1, r-1], or its public key is missing, invalid (KeyValidate) or
	// not the secret's.
	ErrKey = errors.New("keystore: not a valid BLS key")
)

// Defaults of EIP-2335.
const (
	DefaultScryptN = 1 << 18
	DefaultPBKDF2C = 1 << 18
	// Bounds on parameters read from a file, so a hostile keystore cannot
	// make the reader spend unbounded memory or time.
	maxScryptN  = 1 << 20
	maxScryptRP = 16
	maxPBKDF2C  = 1 << 24
)

type module struct {
	Function string          `json:"function"`
	Params   json.RawMessage `json:"params"`
	Message  string          `json:"message"`
}

type cryptoSection struct {
	KDF      module `json:"kdf"`
	Checksum module `json:"checksum"`
	Cipher   module `json:"cipher"`
}

// File is the JSON document.
type File struct {
	Crypto      cryptoSection `json:"crypto"`
	Description string        `json:"description,omitempty"`
	Pubkey      string        `json:"pubkey"`
	Path        string        `json:"path"`
	UUID        string        `json:"uuid"`
	Version     int           `json:"version"`
}

type scryptParams struct {
	DKLen int    `json:"dklen"`
	N     int    `json:"n"`
	P     int    `json:"p"`
	R     int    `json:"r"`
	Salt  string `json:"salt"`
}

type pbkdf2Params struct {
	DKLen int    `json:"dklen"`
	C     int    `json:"c"`
	PRF   string `json:"prf"`
	Salt  string `json:"salt"`
}

type cipherParams struct {
	IV string `json:"iv"`
}

// Options choose how Encrypt protects the secret.
type Options struct {
	KDF         string // "scrypt" (default) or "pbkdf2"
	ScryptN     int    // default DefaultScryptN
	PBKDF2C     int    // default DefaultPBKDF2C
	Description string
	Path        string    // EIP-2334 path; a threshold share has none, so "" is allowed
	Rand        io.Reader // default crypto/rand
}

// Encrypt writes a keystore for a 32-byte secret and its 48-byte public key.
func Encrypt(secret, pubkey []byte, password string, o Options) ([]byte, error) {
	if len(secret) != 32 || len(pubkey) != 48 {
		return nil, fmt.Errorf("%w: secret of %d bytes and public key of %d", ErrFormat, len(secret), len(pubkey))
	}
	rnd := o.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	var salt, iv [32]byte
	var id [16]byte
	for _, b := range [][]byte{salt[:], iv[:16], id[:]} {
		if _, err := io.ReadFull(rnd, b); err != nil {
			return nil, fmt.Errorf("keystore: randomness: %w", err)
		}
	}
	f := &File{Description: o.Description, Pubkey: hex.EncodeToString(pubkey), Path: o.Path, UUID: uuid4(id), Version: 4}
	switch o.KDF {
	case "", "scrypt":
		n := o.ScryptN
		if n == 0 {
			n = DefaultScryptN
		}
		p, _ := json.Marshal(scryptParams{DKLen: 32, N: n, P: 1, R: 8, Salt: hex.EncodeToString(salt[:])})
		f.Crypto.KDF = module{Function: "scrypt", Params: p}
	case "pbkdf2":
		c := o.PBKDF2C
		if c == 0 {
			c = DefaultPBKDF2C
		}
		p, _ := json.Marshal(pbkdf2Params{DKLen: 32, C: c, PRF: "hmac-sha256", Salt: hex.EncodeToString(salt[:])})
		f.Crypto.KDF = module{Function: "pbkdf2", Params: p}
	default:
		return nil, fmt.Errorf("%w: kdf %q", ErrFormat, o.KDF)
	}
	dk, err := deriveKey(f.Crypto.KDF, password)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	ct, err := ctr(dk[:16], iv[:16], secret)
	if err != nil {
		return nil, err
	}
	sum := checksum(dk, ct)
	cp, _ := json.Marshal(cipherParams{IV: hex.EncodeToString(iv[:16])})
	f.Crypto.Cipher = module{Function: "aes-128-ctr", Params: cp, Message: hex.EncodeToString(ct)}
	f.Crypto.Checksum = module{Function: "sha256", Params: json.RawMessage("{}"), Message: hex.EncodeToString(sum)}
	return json.MarshalIndent(f, "", "  ")
}

// Decrypt reads a keystore and returns the secret (32 bytes) and the file.
func Decrypt(b []byte, password string) ([]byte, *File, error) {
	if len(b) > 64<<10 {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrFormat, len(b))
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if f.Version != 4 || f.Crypto.Checksum.Function != "sha256" || f.Crypto.Cipher.Function != "aes-128-ctr" {
		return nil, nil, fmt.Errorf("%w: version %d, checksum %q, cipher %q", ErrFormat, f.Version, f.Crypto.Checksum.Function, f.Crypto.Cipher.Function)
	}
	var cp cipherParams
	if err := json.Unmarshal(f.Crypto.Cipher.Params, &cp); err != nil {
		return nil, nil, fmt.Errorf("%w: cipher params: %v", ErrFormat, err)
	}
	iv, err1 := hex.DecodeString(cp.IV)
	ct, err2 := hex.DecodeString(f.Crypto.Cipher.Message)
	want, err3 := hex.DecodeString(f.Crypto.Checksum.Message)
	if err := errors.Join(err1, err2, err3); err != nil || len(iv) != 16 || len(ct) != 32 || len(want) != 32 {
		return nil, nil, fmt.Errorf("%w: cipher or checksum fields", ErrFormat)
	}
	dk, err := deriveKey(f.Crypto.KDF, password)
	if err != nil {
		return nil, nil, err
	}
	defer clear(dk)
	if subtle.ConstantTimeCompare(checksum(dk, ct), want) != 1 {
		return nil, nil, ErrPassword
	}
	secret, err := ctr(dk[:16], iv, ct)
	if err != nil {
		return nil, nil, err
	}
	return secret, &f, nil
}

// DecryptKey reads a keystore holding a whole BLS secret key (for example
// an Ethereum validator key, to import): it decrypts it, and checks that
// the secret is a key in [1, r-1] and that the keystore's public key
// passes KeyValidate and is the secret's (sk*G == pubkey), so that what a
// group will share is exactly the key the file names. The decrypted bytes
// are cleared; the caller wipes the key (SecretKey.Wipe) when done.
func DecryptKey(b []byte, password string) (*bls.SecretKey, *File, error) {
	secret, f, err := Decrypt(b, password)
	if err != nil {
		return nil, nil, err
	}
	defer clear(secret)
	pub, err := hex.DecodeString(strings.TrimPrefix(f.Pubkey, "0x"))
	if err != nil || len(pub) == 0 {
		return nil, nil, fmt.Errorf("%w: the keystore has no public key", ErrKey)
	}
	pk, err := bls.PublicKeyFromBytes(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: public key: %w", ErrKey, err)
	}
	sk, err := bls.SecretKeyFromBytes(secret)
	if err != nil {
		// The error names the range fault, never the value.
		return nil, nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if !sk.PublicKey().Equal(pk) {
		sk.Wipe()
		return nil, nil, fmt.Errorf("%w: the secret key is not the keystore's public key", ErrKey)
	}
	return sk, f, nil
}

// deriveKey runs the KDF module on the normalised password.
func deriveKey(m module, password string) ([]byte, error) {
	pw := normalise(password)
	switch m.Function {
	case "scrypt":
		var p scryptParams
		if err := strictJSON(m.Params, &p); err != nil {
			return nil, fmt.Errorf("%w: scrypt params: %v", ErrFormat, err)
		}
		salt, err := hex.DecodeString(p.Salt)
		if err != nil || p.DKLen != 32 || p.N < 2 || p.N > maxScryptN || p.N&(p.N-1) != 0 || p.R < 1 || p.R > maxScryptRP || p.P < 1 || p.P > maxScryptRP {
			return nil, fmt.Errorf("%w: scrypt params out of range", ErrFormat)
		}
		dk, err := scrypt.Key(pw, salt, p.N, p.R, p.P, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: scrypt: %v", ErrFormat, err)
		}
		return dk, nil
	case "pbkdf2":
		var p pbkdf2Params
		if err := strictJSON(m.Params, &p); err != nil {
			return nil, fmt.Errorf("%w: pbkdf2 params: %v", ErrFormat, err)
		}
		salt, err := hex.DecodeString(p.Salt)
		if err != nil || p.DKLen != 32 || p.PRF != "hmac-sha256" || p.C < 1 || p.C > maxPBKDF2C {
			return nil, fmt.Errorf("%w: pbkdf2 params out of range", ErrFormat)
		}
		return pbkdf2.Key(pw, salt, p.C, 32, sha256.New), nil
	}
	return nil, fmt.Errorf("%w: kdf %q", ErrFormat, m.Function)
}

func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// normalise is EIP-2335's password processing: NFKD, then the C0, C1 and
// DEL control codes removed, then UTF-8.
func normalise(password string) []byte {
	return []byte(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) { // C0, DEL and C1 exactly
			return -1
		}
		return r
	}, norm.NFKD.String(password)))
}

func checksum(dk, ct []byte) []byte {
	h := sha256.New()
	h.Write(dk[16:32])
	h.Write(ct)
	return h.Sum(nil)
}

func ctr(key, iv, in []byte) ([]byte, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keystore: aes: %w", err)
	}
	out := make([]byte, len(in))
	cipher.NewCTR(b, iv).XORKeyStream(out, in)
	return out, nil
}

func uuid4(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
