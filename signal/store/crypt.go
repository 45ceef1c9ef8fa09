package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/signal-mpc/cosigner/signal/internal/atomicfile"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
)

// KDFParams are the argon2id parameters of a passphrase store. They are
// written to the store's header when it is created and read back on open.
type KDFParams struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultKDF is RFC 9106's second recommended argon2id setting.
var DefaultKDF = KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

const (
	keySize  = chacha20poly1305.KeySize
	saltSize = 16
	// Limits on header parameters read from a file, so that a tampered header
	// cannot make Open allocate without bound.
	maxKDFTime   = 64
	maxKDFMemory = 1 << 20 // KiB: 1 GiB
)

func (p KDFParams) valid() error {
	if p.Time == 0 || p.Time > maxKDFTime || p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemory || p.Threads == 0 {
		return fmt.Errorf("%w: argon2id parameters t=%d m=%d p=%d", ErrInvalidArgument, p.Time, p.MemoryKiB, p.Threads)
	}
	return nil
}

func (p KDFParams) marshal(salt []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, p.Time)
	b = binary.BigEndian.AppendUint32(b, p.MemoryKiB)
	b = append(b, p.Threads)
	return append(b, salt...)
}

func unmarshalKDF(b []byte) (KDFParams, []byte, error) {
	if len(b) != 9+saltSize {
		return KDFParams{}, nil, fmt.Errorf("%w: header kdf field", ErrCorrupt)
	}
	p := KDFParams{Time: binary.BigEndian.Uint32(b[0:4]), MemoryKiB: binary.BigEndian.Uint32(b[4:8]), Threads: b[8]}
	if err := p.valid(); err != nil {
		return KDFParams{}, nil, fmt.Errorf("%w: header: %v", ErrCorrupt, err)
	}
	return p, b[9:], nil
}

func deriveKey(pass []byte, salt []byte, p KDFParams) []byte {
	return argon2.IDKey(pass, salt, p.Time, p.MemoryKiB, p.Threads, keySize)
}

// sealer encrypts values with XChaCha20-Poly1305; the associated data binds
// each value to its bucket path and key, so records cannot be swapped.
type sealer struct {
	aead interface {
		Seal(dst, nonce, plaintext, additionalData []byte) []byte
		Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
		NonceSize() int
		Overhead() int
	}
}

func newSealer(key []byte) (*sealer, error) {
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("store: cipher: %w", err)
	}
	return &sealer{aead: a}, nil
}

func (s *sealer) seal(ad, plain []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	out := make([]byte, n, n+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("store: nonce: %w", err)
	}
	return s.aead.Seal(out, out, plain, ad), nil
}

func (s *sealer) open(ad, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: short value", ErrCorrupt)
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: value does not authenticate", ErrCorrupt)
	}
	return plain, nil
}

// readKeyFile reads a 32-byte key file, tightening its mode to 0600.
func readKeyFile(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrKeyFile, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if len(key) != keySize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want %d", ErrKeyFile, path, len(key), keySize)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	return key, nil
}

// writeKeyFile writes a fresh random key atomically: a temporary file in the
// same folder (mode 0600), fsync, rename, fsync of the folder.
func writeKeyFile(path string) ([]byte, error) {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("store: key randomness: %w", err)
	}
	if err := atomicfile.Write(path, key); err != nil {
		return nil, fmt.Errorf("%w: write %s: %v", ErrKeyFile, path, err)
	}
	return key, nil
}
