// Package store is the device's persistent state in one embedded
// transactional file (bbolt): account, identity keys, registration ids,
// prekeys (EC, signed, Kyber), sessions and pinned remote identities, with
// the go.mau.fi/libsignal store interfaces at the edge (Protocol).
//
// Every value is encrypted at rest with XChaCha20-Poly1305 under a key
// derived from a passphrase with argon2id (parameters in the header bucket)
// or, without a passphrase, a random key kept in a separate 0600 key file.
// The store file is 0600. Each write is one bbolt transaction, so a crash
// during a write leaves the previous state. Live session records are kept
// in memory and written through. A damaged file is never opened nor
// re-created (ErrDamaged); Backup makes a consistent copy, and a store
// opened from one resets what must not be reused (restoreReset). One file
// can hold a device per Signal server (Store.Server), the default one
// where every store kept its only one.
package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signal-mpc/cosigner/signal/internal/boltfile"
	bolt "go.etcd.io/bbolt"
)

// Options configure Open.
type Options struct {
	// Passphrase, when non-empty, keys the store through argon2id. When
	// empty, the store is keyed by the key file.
	Passphrase []byte
	// KeyFile is the key file of a store without a passphrase; default
	// path + ".key". Created (0600, atomically) with a new store.
	KeyFile string
	// KDF sets the argon2id parameters of a new passphrase store; zero means
	// DefaultKDF. An existing store uses the parameters in its header.
	KDF KDFParams
	// LockTimeout bounds the wait for another process's lock; default 1 s.
	LockTimeout time.Duration
	// NoSync skips the fsync of each commit: state then survives a crash of
	// the process but not of the machine. Off by default.
	NoSync bool
	// AfterRestore, when set, runs when a store restored from a backup
	// (Backup) is opened, in the transaction that resets it (restoreReset),
	// with the time of the backup: the application retires what it had
	// begun before the backup. The reset, this included, happens once.
	AfterRestore func(ctx context.Context, tx *AppTx, backup time.Time) error
}

// Store is an open store. Its methods are safe for concurrent use; see
// Protocol for the rule on sessions.
//
// One file holds a device per server (Server): the default server's
// buckets sit at the top of the file, as before servers were named, and
// another server's under servers/<name>. The application's records (App)
// are one set for all. Every device shares the file, its transactions and
// its one commit order.
type Store struct {
	*state
	// server names the device's server ("" for the default one); ns is
	// the bucket path its buckets sit under (nil for the default one).
	server string
	ns     [][]byte
}

// state is what the devices of one file share.
type state struct {
	db         *bolt.DB
	seal       *sealer
	restored   Restored  // what Open reset (restoreReset)
	restoredAt time.Time // when the store was last restored (RestoredAt)

	mu       sync.Mutex
	sessions map[string]*cachedSession // by kind + "/" + addr.String()
	pins     map[string][]byte         // pinned remote identity keys by addr.String()

	// failCommit, when set (tests), fails write transactions after their
	// changes, before commit, to prove they roll back.
	failCommit func() error

	// The group commit (commit.go): operations waiting for the next group,
	// whether a leader is running groups, and Close's wait for it.
	cmu     sync.Mutex
	queue   []*op
	leading bool
	closed  bool
	leaders sync.WaitGroup
	commits atomic.Uint64 // groups committed
	// observe, when set (ObserveCommits), is told each commit's duration.
	observe atomic.Pointer[func(time.Duration)]
	ops     atomic.Uint64 // operations that ran
}

// ObserveCommits has f told how long each commit that wrote took (for
// metrics); f must not block. Nil stops it.
func (s *Store) ObserveCommits(f func(time.Duration)) {
	if f == nil {
		s.observe.Store(nil)
		return
	}
	s.observe.Store(&f)
}

// Stats counts the group commit's work since Open.
type Stats struct {
	Operations uint64 // write operations run (Submit, Atomic and every write)
	Commits    uint64 // transactions committed: Operations / Commits is the mean group size
}

// Stats returns the counters.
func (s *Store) Stats() Stats { return Stats{Operations: s.ops.Load(), Commits: s.commits.Load()} }

var (
	bucketHeader     = []byte("header")
	bucketAccount    = []byte("account")
	bucketIdentities = []byte("identities")
	bucketServers    = []byte("servers")
	keyFormat        = []byte("format")
	keyKDF           = []byte("kdf")
	keyKeyFile       = []byte("keyfile")
	keyCheck         = []byte("check")
	checkPlain       = []byte("cosigner store v1")
	formatVersion    = []byte{1}
)

// Open opens or creates the store at path. Errors wrap ErrWrongPassphrase,
// ErrPassphraseRequired, ErrKeyFile, ErrLocked, ErrCorrupt or ErrDamaged.
// Only a missing file is created: an existing one (even an empty one) is
// checked, and a damaged one is left as it is.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.KeyFile == "" {
		o.KeyFile = path + ".key"
	}
	if o.KDF == (KDFParams{}) {
		o.KDF = DefaultKDF
	}
	if err := o.KDF.valid(); err != nil {
		return nil, err
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	// The freelist is not written at each commit (bbolt rebuilds it when it
	// opens the file), which saves a page write per commit; the map form
	// frees and allocates pages in constant time.
	// An existing file is checked before bbolt maps it, and never
	// re-created: bbolt panics or faults on a damaged file, and made a new
	// empty store of an empty one, which looked like a console never
	// linked (and linking it again would lose the key shares for good).
	db, err := boltfile.Open(path, 0o600, bolt.Options{Timeout: o.LockTimeout, NoSync: o.NoSync,
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	switch {
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	case errors.Is(err, boltfile.ErrDamaged):
		return nil, damaged(path, err)
	case err != nil:
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Store{state: &state{db: db, sessions: map[string]*cachedSession{}, pins: map[string][]byte{}}}
	if err := s.init(ctx, path, o); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// damaged is the error of a damaged store file: why, for whoever looks
// closer, after what to do.
func damaged(path string, err error) error {
	return fmt.Errorf("%w: %s (%w)", ErrDamaged, path, err)
}

// init reads or writes the header and sets up the cipher.
func (s *Store) init(ctx context.Context, path string, o Options) error {
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("store: chmod: %w", err)
	}
	var kdf, check []byte
	var keyFile bool
	err := boltfile.View(s.db, func(tx *bolt.Tx) error {
		h := tx.Bucket(bucketHeader)
		if h == nil {
			// A creation that stopped before the header leaves no
			// bucket at all; records without a header are damage.
			if name, _ := tx.Cursor().First(); name != nil {
				return fmt.Errorf("%w: bucket %q but no header", boltfile.ErrDamaged, name)
			}
			return nil
		}
		if !bytes.Equal(h.Get(keyFormat), formatVersion) {
			return fmt.Errorf("%w: unknown format", ErrCorrupt)
		}
		kdf, check = bytes.Clone(h.Get(keyKDF)), bytes.Clone(h.Get(keyCheck))
		keyFile = h.Get(keyKeyFile) != nil
		if check == nil || (kdf == nil) == !keyFile {
			return fmt.Errorf("%w: incomplete header", ErrCorrupt)
		}
		return nil
	})
	if errors.Is(err, boltfile.ErrDamaged) {
		return damaged(path, err)
	}
	if err != nil {
		return err
	}
	if check == nil {
		return s.create(ctx, o)
	}
	var key []byte
	switch {
	case keyFile && len(o.Passphrase) > 0:
		return fmt.Errorf("%w: this store is keyed by a key file", ErrWrongPassphrase)
	case keyFile:
		if key, err = readKeyFile(o.KeyFile); err != nil {
			return err
		}
	case len(o.Passphrase) == 0:
		return ErrPassphraseRequired
	default:
		p, salt, err := unmarshalKDF(kdf)
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		key = deriveKey(o.Passphrase, salt, p)
	}
	if s.seal, err = newSealer(key); err != nil {
		return err
	}
	if _, err := s.seal.open(ad(bucketHeader, keyCheck), check); err != nil {
		if keyFile {
			return fmt.Errorf("%w: the key file does not open this store", ErrKeyFile)
		}
		return ErrWrongPassphrase
	}
	return s.restoreReset(ctx, path, o)
}

// create writes the header of a new store (and its key file, first).
func (s *Store) create(ctx context.Context, o Options) error {
	var key, kdf []byte
	if len(o.Passphrase) > 0 {
		salt := make([]byte, saltSize)
		if _, err := rand.Read(salt); err != nil {
			return fmt.Errorf("store: salt: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		key, kdf = deriveKey(o.Passphrase, salt, o.KDF), o.KDF.marshal(salt)
	} else {
		var err error
		key, err = readKeyFile(o.KeyFile) // left by a creation that crashed before the header
		if errors.Is(err, ErrKeyFile) {
			if _, statErr := os.Stat(o.KeyFile); errors.Is(statErr, fs.ErrNotExist) {
				key, err = writeKeyFile(o.KeyFile)
			}
		}
		if err != nil {
			return err
		}
	}
	var err error
	if s.seal, err = newSealer(key); err != nil {
		return err
	}
	check, err := s.seal.seal(ad(bucketHeader, keyCheck), checkPlain)
	if err != nil {
		return err
	}
	// The header is written before the store is in use: directly, not
	// through the group commit.
	return s.db.Update(func(tx *bolt.Tx) error {
		h, err := tx.CreateBucket(bucketHeader)
		if err != nil {
			return err
		}
		if err := h.Put(keyFormat, formatVersion); err != nil {
			return err
		}
		if kdf != nil {
			err = h.Put(keyKDF, kdf)
		} else {
			err = h.Put(keyKeyFile, []byte{1})
		}
		if err != nil {
			return err
		}
		return h.Put(keyCheck, check)
	})
}

// Server returns the store of the device on the named server: the same
// file, its buckets under servers/<name>. DefaultServer (or "") is this
// file's top-level device, the one every store had before servers were
// named. A name is 1..64 letters, digits, '-', '_' or '.'.
func (s *Store) Server(name string) (*Store, error) {
	if name == "" || name == DefaultServer {
		return &Store{state: s.state}, nil
	}
	if len(name) > 64 || strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) >= 0 {
		return nil, fmt.Errorf("%w: server name %q", ErrInvalidArgument, name)
	}
	return &Store{state: s.state, server: name, ns: [][]byte{bucketServers, []byte(name)}}, nil
}

// DefaultServer names the server whose device has the file's top-level
// buckets.
const DefaultServer = "default"

// path is the bucket path of this device's bucket b (nested ones after).
func (s *Store) path(b ...[]byte) [][]byte {
	return append(append([][]byte(nil), s.ns...), b...)
}

// cacheKey keys this device's in-memory records: the default server's
// keys are what they were before servers were named.
func (s *Store) cacheKey(k string) string {
	if s.server == "" {
		return k
	}
	return "servers/" + s.server + "/" + k
}

// Close waits for the writes already submitted, then closes the file
// (for every server's device: they share it). Writes submitted afterwards
// fail with ErrClosed.
func (s *Store) Close() error {
	s.cmu.Lock()
	again := s.closed
	s.closed = true
	s.cmu.Unlock()
	if again {
		return nil // as bbolt's Close: closing twice is no error
	}
	s.leaders.Wait()
	// Clean: the next open reads the freelist and skips the page walk
	// (boltfile.CloseClean), so a start does not grow with the history.
	return boltfile.CloseClean(s.db)
}

// update runs fn in a write transaction and waits until it is durable: all
// of it or nothing. Inside an operation (ctx carries its transaction) fn
// runs in that transaction and commits with it.
func (s *Store) update(ctx context.Context, fn func(t *txn) error) error {
	if t := txFrom(ctx); t != nil {
		return fn(t)
	}
	return s.submitWait(ctx, func(ctx context.Context) error { return fn(txFrom(ctx)) })
}

// view runs fn in a read transaction, or in the operation's write
// transaction when ctx carries one (a second transaction on the leader's
// goroutine would deadlock bbolt, and would not see the uncommitted
// writes).
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if t := txFrom(ctx); t != nil {
		return fn(t.tx)
	}
	return s.db.View(fn)
}

type txKey struct{}

func txFrom(ctx context.Context) *txn {
	t, _ := ctx.Value(txKey{}).(*txn)
	return t
}

// InTransaction reports whether ctx carries a store operation's
// transaction (it is inside Atomic or a Submit function).
func InTransaction(ctx context.Context) bool { return txFrom(ctx) != nil }

// Atomic runs fn so that every store write it makes (through the ctx it is
// given) commits together or not at all, and waits until that is durable.
// The device uses it to make a decryption's session update and the
// decrypted message one durable step: a crash never leaves a ratchet
// advanced past a message that is lost. When fn fails its writes are
// undone and the in-memory session and identity caches are dropped, since
// they may hold state that never committed. Inside another operation, fn
// simply runs in its transaction.
func (s *Store) Atomic(ctx context.Context, fn func(ctx context.Context) error) error {
	if txFrom(ctx) != nil {
		return fn(ctx)
	}
	return s.submitWait(ctx, fn)
}

// ad is the associated data of a value: its bucket path and key.
func ad(path ...[]byte) []byte {
	var b []byte
	for _, p := range path {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

func adKey(path [][]byte, key []byte) []byte {
	all := make([][]byte, 0, len(path)+1)
	return ad(append(append(all, path...), key)...)
}

// bucketPath descends (creating when create) through nested buckets.
func bucketPath(tx *bolt.Tx, create bool, path [][]byte) (*bolt.Bucket, error) {
	var b *bolt.Bucket
	for i, name := range path {
		var next *bolt.Bucket
		var err error
		switch {
		case i == 0 && create:
			next, err = tx.CreateBucketIfNotExists(name)
		case i == 0:
			next = tx.Bucket(name)
		case create:
			next, err = b.CreateBucketIfNotExists(name)
		default:
			next = b.Bucket(name)
		}
		if err != nil {
			return nil, err
		}
		if next == nil {
			return nil, nil
		}
		b = next
	}
	return b, nil
}

// putTx encrypts and stores value under key in the bucket at path.
func (s *Store) putTx(t *txn, path [][]byte, key, value []byte) error {
	sealed, err := s.seal.seal(adKey(path, key), value)
	if err != nil {
		return err
	}
	return t.put(path, key, sealed)
}

// getTx returns the decrypted value, or nil when absent.
func (s *Store) getTx(tx *bolt.Tx, path [][]byte, key []byte) ([]byte, error) {
	b, err := bucketPath(tx, false, path)
	if err != nil || b == nil {
		return nil, err
	}
	v := b.Get(key)
	if v == nil {
		return nil, nil
	}
	plain, err := s.seal.open(adKey(path, key), v)
	if err != nil {
		return nil, fmt.Errorf("%w (bucket %s)", err, path[len(path)-1])
	}
	return plain, nil
}

func (s *Store) put(ctx context.Context, path [][]byte, key, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(ctx, func(t *txn) error { return s.putTx(t, path, key, value) })
}

func (s *Store) get(ctx context.Context, path [][]byte, key []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		out, err = s.getTx(tx, path, key)
		return err
	})
	return out, err
}

func (s *Store) del(ctx context.Context, path [][]byte, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(ctx, func(t *txn) error { return t.delete(path, key) })
}

// keys lists the keys of the bucket at path.
func (s *Store) keys(ctx context.Context, path [][]byte) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out [][]byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b, err := bucketPath(tx, false, path)
		if err != nil || b == nil {
			return err
		}
		return b.ForEach(func(k, _ []byte) error {
			out = append(out, bytes.Clone(k))
			return nil
		})
	})
	return out, err
}

func idKey(id uint32) []byte { return binary.BigEndian.AppendUint32(nil, id) }
