package relay

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/signal-mpc/cosigner/signal/internal/boltfile"
	bolt "go.etcd.io/bbolt"
)

// Device ids: the primary is 1; Signal carries device ids in a byte and caps
// them at 127.
const (
	primaryDevice = 1
	maxDeviceID   = 127
	maxDevices    = 6 // per account, primary included
)

// Buckets of the store. Keys are binary; values are JSON records except
// where noted.
var (
	bucketMeta       = []byte("meta")       // "schema" -> version
	bucketAccounts   = []byte("accounts")   // aci(16) -> account
	bucketPNIs       = []byte("pnis")       // pni(16) -> aci(16), raw
	bucketDevices    = []byte("devices")    // aci(16) dev(1) -> device
	bucketTokens     = []byte("linktokens") // sha256(token)(32) -> linkToken
	bucketSigned     = []byte("signed")     // svc(17) dev(1) -> signedKey (EC signed prekey)
	bucketLastResort = []byte("lastresort") // svc(17) dev(1) -> signedKey (Kyber last resort)
	bucketECOneTime  = []byte("ec1")        // svc(17) dev(1) keyId(4) -> 33-byte key, raw
	bucketKEMOneTime = []byte("kem1")       // svc(17) dev(1) keyId(4) -> signedKey
	bucketQueue      = []byte("queue")      // aci(16) dev(1) seq(8) -> Envelope protobuf, raw

	allBuckets = [][]byte{bucketMeta, bucketAccounts, bucketPNIs, bucketDevices, bucketTokens,
		bucketSigned, bucketLastResort, bucketECOneTime, bucketKEMOneTime, bucketQueue}
)

const schemaVersion = 1

type account struct {
	ACI            uuid   `json:"aci"`
	PNI            *uuid  `json:"pni,omitempty"`
	ACIIdentityKey []byte `json:"aciIdentityKey"`
	PNIIdentityKey []byte `json:"pniIdentityKey,omitempty"`
	NextDeviceID   int    `json:"nextDeviceId"` // ids are never reused
	Created        int64  `json:"created"`      // ms
}

type device struct {
	ID                uint8           `json:"id"`
	Name              []byte          `json:"name,omitempty"` // opaque (an encrypted DeviceName)
	Salt              []byte          `json:"salt"`
	PasswordHash      []byte          `json:"passwordHash"`
	RegistrationID    int             `json:"registrationId"`
	PNIRegistrationID int             `json:"pniRegistrationId,omitempty"`
	Capabilities      map[string]bool `json:"capabilities,omitempty"`
	FetchesMessages   bool            `json:"fetchesMessages"`
	Created           int64           `json:"created"`  // ms
	LastSeen          int64           `json:"lastSeen"` // ms
}

type linkToken struct {
	ACI     uuid  `json:"aci"`
	Expires int64 `json:"expires"` // ms
}

// signedKey is a public key with its XEdDSA signature by the identity key
// (the signature is empty for EC one-time keys, which are not signed).
type signedKey struct {
	KeyID     uint32 `json:"keyId"`
	PublicKey []byte `json:"publicKey"`
	Signature []byte `json:"signature,omitempty"`
}

// identityKeys are the keys of one identity (ACI or PNI) of one device.
type identityKeys struct {
	Signed     *signedKey
	LastResort *signedKey
}

type store struct {
	db *bolt.DB
	// writes feeds the group-commit writer (runWriter): queue inserts and
	// deletions of many sockets share one transaction and one fsync.
	writes chan *writeReq
	lazy   chan *writeReq // writes that join others' commits (runWriter)
	// beforeCommit, when set (tests, before the relay runs), runs before
	// each group of the writer commits; an error fails the group.
	beforeCommit func() error
	// afterCommit, when set (tests), runs after each group of the writer
	// has committed; an error is reported as the group's failure, as when
	// a sync fails after the data reached the file.
	afterCommit func() error
	// committed, when set, is told how long each commit took (metrics).
	committed func(time.Duration)
	// lastSeq is the last queue sequence number the writer handed out,
	// committed or not: a failed commit rolls the bucket's sequence back,
	// and reusing a number that a device already got from memory
	// (chatSession.fresh) would make it skip the next envelope. Writer
	// goroutine only.
	lastSeq uint64

	// devCache keeps each account's committed device list: every send
	// reads two of them, and decoding them from the file was a tenth of
	// the relay's CPU. Writers invalidate after they commit (bumping
	// devGen); a reader caches what it read only if no writer finished in
	// between, so the cache never holds a list older than the file.
	devMu    sync.Mutex
	devCache map[uuid][]*device
	devGen   uint64
}

type writeReq struct {
	fn func(*bolt.Tx) error
	// ran, when set, is called by the writer after fn has run in the
	// transaction of group number g, before that transaction commits (and
	// again for a retry, which runs fn in a group of its own). Groups
	// commit one after the other in their numbers' order.
	ran  func(g uint64)
	done chan error
}

// maxGroup bounds the writes of one group commit.
const maxGroup = 1024

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: data dir: %w", ErrStore, err)
	}
	path := filepath.Join(dir, "relay.db")
	// The freelist is rebuilt on open instead of written with every commit:
	// fewer pages per transaction, same durability of the data.
	// An existing file is checked first and never re-created: bbolt
	// panics or faults on a damaged one.
	db, err := boltfile.Open(path, 0o600, bolt.Options{Timeout: 5 * time.Second,
		FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if errors.Is(err, boltfile.ErrDamaged) {
		return nil, fmt.Errorf("%w: %w: %s (%w)", ErrStore, ErrDamaged, path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrStore, path, err)
	}
	// The first read is guarded too: a damage the check missed is
	// reported, not a crash.
	err = boltfile.Update(db, func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get([]byte("schema"))
		switch {
		case v == nil:
			return meta.Put([]byte("schema"), []byte{schemaVersion})
		case len(v) != 1 || v[0] != schemaVersion:
			return fmt.Errorf("schema version %v, this relay knows %d", v, schemaVersion)
		}
		return nil
	})
	if errors.Is(err, boltfile.ErrDamaged) {
		db.Close()
		return nil, fmt.Errorf("%w: %w: %s (%w)", ErrStore, ErrDamaged, path, err)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: init %s: %w", ErrStore, path, err)
	}
	return &store{db: db, writes: make(chan *writeReq, maxGroup), lazy: make(chan *writeReq, maxGroup)}, nil
}

// runWriter commits grouped writes until ctx ends: it takes every write
// waiting, runs them in one transaction and commits, so a lone write waits
// only for its own commit and writes that pile up during a commit share
// the next one. A failing write is retried alone so that it fails alone.
//
// Lazy writes (deletions of delivered envelopes) start no group of their
// own: they join the next group of other writes, or commit on their own
// after lazyDelay. A busy relay then syncs once per batch of sends instead
// of once more for their deletions; a relay on a signer's server shares
// the disk with the console, and every sync lengthens the others'.
func (s *store) runWriter(ctx context.Context) {
	var g uint64
	var lazy []*writeReq
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	commit := func(group []*writeReq) {
		g++
		if err := s.commitGroup(g, group); err == nil {
			for _, w := range group {
				w.done <- nil
			}
			return
		}
		for _, w := range group {
			g++
			w.done <- s.commitGroup(g, []*writeReq{w})
		}
	}
	for {
		var group []*writeReq
		select {
		case w := <-s.writes:
			group = append(lazy, w)
		case w := <-s.lazy:
			if len(lazy) == 0 {
				timer.Reset(lazyDelay)
			}
			if lazy = append(lazy, w); len(lazy) < maxGroup {
				continue
			}
			group = lazy
		case <-timer.C:
			group = lazy
		case <-ctx.Done():
			if len(lazy) > 0 {
				commit(lazy) // what waits must not be dropped at shutdown
			}
			return
		}
		lazy = nil
		timer.Stop()
	more:
		for len(group) < maxGroup {
			select {
			case w := <-s.writes:
				group = append(group, w)
			case w := <-s.lazy:
				group = append(group, w)
			default:
				break more
			}
		}
		commit(group)
	}
}

// lazyDelay bounds how long a lazy write waits for a group to join.
const lazyDelay = 10 * time.Millisecond

// commitGroup runs the writes of group number g in one transaction, calls
// their ran hooks and commits.
func (s *store) commitGroup(g uint64, group []*writeReq) error {
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	for _, w := range group {
		if err := w.fn(tx); err != nil {
			tx.Rollback()
			return err
		}
	}
	for _, w := range group {
		if w.ran != nil {
			w.ran(g)
		}
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(); err != nil {
			tx.Rollback()
			return err
		}
	}
	start := time.Now()
	if err := tx.Commit(); err != nil {
		return err
	}
	if s.committed != nil {
		s.committed(time.Since(start))
	}
	if s.afterCommit != nil {
		return s.afterCommit()
	}
	return nil
}

// group runs fn in a shared transaction of the writer and returns once it
// is committed (durable) or failed.
func (s *store) group(ctx context.Context, fn func(*bolt.Tx) error) error {
	return s.groupRan(ctx, fn, nil)
}

// groupRan is group with a ran hook (see writeReq).
func (s *store) groupRan(ctx context.Context, fn func(*bolt.Tx) error, ran func(g uint64)) error {
	return s.submit(ctx, s.writes, &writeReq{fn: fn, ran: ran, done: make(chan error, 1)})
}

// groupLazy is group for a write that may wait a little for other writes
// to share their commit (see runWriter).
func (s *store) groupLazy(ctx context.Context, fn func(*bolt.Tx) error) error {
	return s.submit(ctx, s.lazy, &writeReq{fn: fn, done: make(chan error, 1)})
}

func (s *store) submit(ctx context.Context, ch chan *writeReq, w *writeReq) error {
	select {
	case ch <- w:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		// The write may still commit; the caller treats it as failed (a
		// message then may be stored without a 200: the sender retries and
		// the recipient can get it twice, never zero times).
		return ctx.Err()
	}
}

func (s *store) close() error { return s.db.Close() }

func devKey(aci uuid, dev uint8) []byte { return append(append([]byte(nil), aci[:]...), dev) }

func svcDevKey(svc serviceID, dev uint8) []byte { return append(svc.key(), dev) }

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("%w: record %x: %w", ErrStore, key, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func txAccount(tx *bolt.Tx, aci uuid) (*account, error) {
	var a account
	ok, err := getJSON(tx.Bucket(bucketAccounts), aci[:], &a)
	if err != nil || !ok {
		return nil, err
	}
	return &a, nil
}

func txDevice(tx *bolt.Tx, aci uuid, dev uint8) (*device, error) {
	var d device
	ok, err := getJSON(tx.Bucket(bucketDevices), devKey(aci, dev), &d)
	if err != nil || !ok {
		return nil, err
	}
	return &d, nil
}

func txDevices(tx *bolt.Tx, aci uuid) ([]*device, error) {
	var out []*device
	c := tx.Bucket(bucketDevices).Cursor()
	for k, v := c.Seek(aci[:]); k != nil && bytes.HasPrefix(k, aci[:]); k, v = c.Next() {
		var d device
		if err := json.Unmarshal(v, &d); err != nil {
			return nil, fmt.Errorf("%w: device %x: %w", ErrStore, k, err)
		}
		out = append(out, &d)
	}
	return out, nil
}

// txResolve finds the account behind a service id (nil if none).
func txResolve(tx *bolt.Tx, svc serviceID) (*account, error) {
	if !svc.pni {
		return txAccount(tx, svc.uuid)
	}
	aci := tx.Bucket(bucketPNIs).Get(svc.uuid[:])
	if len(aci) != 16 {
		return nil, nil
	}
	return txAccount(tx, uuid(aci))
}

func (s *store) resolve(svc serviceID) (acc *account, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		acc, err = txResolve(tx, svc)
		return err
	})
	return acc, err
}

func (s *store) account(aci uuid) (acc *account, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		acc, err = txAccount(tx, aci)
		return err
	})
	return acc, err
}

func (s *store) device(aci uuid, dev uint8) (d *device, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		d, err = txDevice(tx, aci, dev)
		return err
	})
	return d, err
}

// devices lists an account's devices. The list and its devices are shared:
// callers must not change them.
func (s *store) devices(aci uuid) (ds []*device, err error) {
	s.devMu.Lock()
	if ds, ok := s.devCache[aci]; ok {
		s.devMu.Unlock()
		return ds, nil
	}
	gen := s.devGen
	s.devMu.Unlock()
	err = s.db.View(func(tx *bolt.Tx) error {
		ds, err = txDevices(tx, aci)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.devMu.Lock()
	if s.devGen == gen {
		if s.devCache == nil {
			s.devCache = map[uuid][]*device{}
		}
		if len(s.devCache) >= maxCachedAccounts {
			clear(s.devCache) // bounded: accounts are few, this is a backstop
		}
		s.devCache[aci] = ds
	}
	s.devMu.Unlock()
	return ds, nil
}

// maxCachedAccounts bounds the device cache.
const maxCachedAccounts = 100_000

// devicesChanged invalidates an account's cached device list; called after
// every transaction that may have changed it (committed or not).
func (s *store) devicesChanged(aci uuid) {
	s.devMu.Lock()
	s.devGen++
	delete(s.devCache, aci)
	s.devMu.Unlock()
}

// txPutIdentityKeys stores the signed and last-resort keys given (nil ones
// are left as they are).
func txPutIdentityKeys(tx *bolt.Tx, svc serviceID, dev uint8, k identityKeys) error {
	key := svcDevKey(svc, dev)
	if k.Signed != nil {
		if err := putJSON(tx.Bucket(bucketSigned), key, k.Signed); err != nil {
			return err
		}
	}
	if k.LastResort != nil {
		if err := putJSON(tx.Bucket(bucketLastResort), key, k.LastResort); err != nil {
			return err
		}
	}
	return nil
}

// deletePrefix removes every key of b starting with prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// txClearDevice removes everything stored for a device id except its
// record: keys of both identities and its message queue.
func txClearDevice(tx *bolt.Tx, acc *account, dev uint8) error {
	svcs := []serviceID{{uuid: acc.ACI}}
	if acc.PNI != nil {
		svcs = append(svcs, serviceID{pni: true, uuid: *acc.PNI})
	}
	for _, svc := range svcs {
		key := svcDevKey(svc, dev)
		for _, b := range [][]byte{bucketSigned, bucketLastResort} {
			if err := tx.Bucket(b).Delete(key); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketECOneTime, bucketKEMOneTime} {
			if err := deletePrefix(tx.Bucket(b), key); err != nil {
				return err
			}
		}
	}
	return deletePrefix(tx.Bucket(bucketQueue), devKey(acc.ACI, dev))
}

// newAccount is what registration stores: the account, its primary device
// and the primary's signed keys.
type newAccount struct {
	acc     *account
	primary *device
	aciKeys identityKeys
	pniKeys identityKeys
}

// errAccountExists: a new account's id is taken (ids are random: in
// practice only by the same registration's own write, when a commit was
// reported failed after it reached the file).
var errAccountExists = errors.New("account exists")

// createAccount stores a new account in one transaction of the writer:
// all of it or none of it is committed.
func (s *store) createAccount(ctx context.Context, n newAccount) error {
	defer s.devicesChanged(n.acc.ACI)
	return s.group(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketAccounts).Get(n.acc.ACI[:]) != nil {
			return errAccountExists
		}
		if err := putJSON(tx.Bucket(bucketAccounts), n.acc.ACI[:], n.acc); err != nil {
			return err
		}
		if n.acc.PNI != nil {
			if err := tx.Bucket(bucketPNIs).Put(n.acc.PNI[:], n.acc.ACI[:]); err != nil {
				return err
			}
		}
		if err := putJSON(tx.Bucket(bucketDevices), devKey(n.acc.ACI, primaryDevice), n.primary); err != nil {
			return err
		}
		if err := txPutIdentityKeys(tx, serviceID{uuid: n.acc.ACI}, primaryDevice, n.aciKeys); err != nil {
			return err
		}
		if n.acc.PNI != nil {
			return txPutIdentityKeys(tx, serviceID{pni: true, uuid: *n.acc.PNI}, primaryDevice, n.pniKeys)
		}
		return nil
	})
}

// dropAccount removes whatever a failed registration of acc may have left
// (a commit whose sync failed may still be visible): the account, its PNI,
// its primary and the primary's keys. It is for accounts nobody was told
// about, so nothing else can have been stored under them.
func (s *store) dropAccount(ctx context.Context, acc *account) error {
	defer s.devicesChanged(acc.ACI)
	return s.group(ctx, func(tx *bolt.Tx) error {
		stored, err := txAccount(tx, acc.ACI)
		if err != nil || stored == nil || !bytes.Equal(stored.ACIIdentityKey, acc.ACIIdentityKey) || stored.Created != acc.Created {
			return err // nothing left, or not this registration's
		}
		if err := tx.Bucket(bucketAccounts).Delete(acc.ACI[:]); err != nil {
			return err
		}
		if acc.PNI != nil {
			if err := tx.Bucket(bucketPNIs).Delete(acc.PNI[:]); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketDevices).Delete(devKey(acc.ACI, primaryDevice)); err != nil {
			return err
		}
		return txClearDevice(tx, acc, primaryDevice)
	})
}

// queueFull reports whether a device's queue holds max envelopes or more.
// It counts at most max keys, so a full queue costs a bounded walk.
func (s *store) queueFull(aci uuid, dev uint8, max int) (full bool, err error) {
	prefix := devKey(aci, dev)
	err = s.db.View(func(tx *bolt.Tx) error {
		n := 0
		c := tx.Bucket(bucketQueue).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if n++; n >= max {
				full = true
				return nil
			}
		}
		return nil
	})
	return full, err
}

// putLinkToken stores a new token and drops the expired ones, so tokens
// that are never used do not pile up.
func (s *store) putLinkToken(hash []byte, t linkToken, now time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		c := b.Cursor()
		for k, v := c.First(); k != nil; {
			var old linkToken
			if json.Unmarshal(v, &old) != nil || old.Expires <= now.UnixMilli() {
				next := bytes.Clone(k)
				if err := c.Delete(); err != nil {
					return err
				}
				k, v = c.Seek(next) // the first key after the deleted one
				continue
			}
			k, v = c.Next()
		}
		return putJSON(b, hash, t)
	})
}

func (s *store) linkTokenCount() (n int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketTokens).Stats().KeyN
		return nil
	})
	return n, err
}

// linkToken returns the unexpired token with this hash, or nil. Expired
// tokens met on the way are not removed here (read-only).
func (s *store) linkToken(hash []byte, now time.Time) (t *linkToken, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		var lt linkToken
		ok, err := getJSON(tx.Bucket(bucketTokens), hash, &lt)
		if err != nil || !ok || lt.Expires <= now.UnixMilli() {
			return err
		}
		t = &lt
		return nil
	})
	return t, err
}

// errLink* are the reasons linkDevice refuses; the handler maps them to HTTP.
var (
	errLinkToken      = errors.New("link token unknown, used or expired")
	errTooManyDevices = errors.New("too many devices")
)

// linkDevice consumes the token and adds the device under the next id, in
// one transaction; anything stored under that id before is cleared.
func (s *store) linkDevice(tokenHash []byte, now time.Time, d *device, aciKeys, pniKeys identityKeys) (acc *account, err error) {
	defer func() {
		if acc != nil {
			s.devicesChanged(acc.ACI)
		}
	}()
	err = s.db.Update(func(tx *bolt.Tx) error {
		var lt linkToken
		ok, err := getJSON(tx.Bucket(bucketTokens), tokenHash, &lt)
		if err != nil {
			return err
		}
		if !ok || lt.Expires <= now.UnixMilli() {
			return errLinkToken
		}
		acc, err = txAccount(tx, lt.ACI)
		if err != nil {
			return err
		}
		if acc == nil {
			return errLinkToken
		}
		devs, err := txDevices(tx, acc.ACI)
		if err != nil {
			return err
		}
		if len(devs) >= maxDevices || acc.NextDeviceID > maxDeviceID {
			return errTooManyDevices
		}
		d.ID = uint8(acc.NextDeviceID)
		acc.NextDeviceID++
		if err := tx.Bucket(bucketTokens).Delete(tokenHash); err != nil {
			return err
		}
		if err := txClearDevice(tx, acc, d.ID); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bucketAccounts), acc.ACI[:], acc); err != nil {
			return err
		}
		if err := putJSON(tx.Bucket(bucketDevices), devKey(acc.ACI, d.ID), d); err != nil {
			return err
		}
		if err := txPutIdentityKeys(tx, serviceID{uuid: acc.ACI}, d.ID, aciKeys); err != nil {
			return err
		}
		if acc.PNI != nil {
			return txPutIdentityKeys(tx, serviceID{pni: true, uuid: *acc.PNI}, d.ID, pniKeys)
		}
		return nil
	})
	return acc, err
}

// deleteDevice removes a device with its keys and queue. It reports whether
// the device existed.
func (s *store) deleteDevice(aci uuid, dev uint8) (found bool, err error) {
	defer s.devicesChanged(aci)
	err = s.db.Update(func(tx *bolt.Tx) error {
		acc, err := txAccount(tx, aci)
		if err != nil || acc == nil {
			return err
		}
		k := devKey(aci, dev)
		if tx.Bucket(bucketDevices).Get(k) == nil {
			return nil
		}
		found = true
		if err := tx.Bucket(bucketDevices).Delete(k); err != nil {
			return err
		}
		return txClearDevice(tx, acc, dev)
	})
	return found, err
}

// touch sets a device's last-seen time (day resolution is enough, so the
// write is skipped when the stored value is from the same day).
func (s *store) touch(aci uuid, dev uint8, now time.Time) error {
	day := now.Truncate(24 * time.Hour).UnixMilli()
	defer s.devicesChanged(aci)
	return s.db.Update(func(tx *bolt.Tx) error {
		d, err := txDevice(tx, aci, dev)
		if err != nil || d == nil || d.LastSeen == day {
			return err
		}
		d.LastSeen = day
		return putJSON(tx.Bucket(bucketDevices), devKey(aci, dev), d)
	})
}

// setAttributes replaces a device's attributes (registration ids, name,
// capabilities), keeping its id, password and keys. It reports whether the
// device exists.
func (s *store) setAttributes(aci uuid, dev uint8, attrs *device) (found bool, err error) {
	defer s.devicesChanged(aci)
	err = s.db.Update(func(tx *bolt.Tx) error {
		d, err := txDevice(tx, aci, dev)
		if err != nil || d == nil {
			return err
		}
		found = true
		d.RegistrationID, d.PNIRegistrationID = attrs.RegistrationID, attrs.PNIRegistrationID
		d.Name, d.Capabilities, d.FetchesMessages = attrs.Name, attrs.Capabilities, attrs.FetchesMessages
		return putJSON(tx.Bucket(bucketDevices), devKey(aci, dev), d)
	})
	return found, err
}

// keyUpdate is a PUT /v2/keys body after validation: nil fields and nil
// lists leave what is stored; a non-nil list replaces the stored one-time
// keys of its kind.
type keyUpdate struct {
	ecOneTime  []signedKey
	kemOneTime []signedKey
	signed     *signedKey
	lastResort *signedKey
}

func keyIDBytes(id uint32) []byte { return binary.BigEndian.AppendUint32(nil, id) }

func (s *store) putKeys(svc serviceID, dev uint8, u keyUpdate) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		prefix := svcDevKey(svc, dev)
		if u.ecOneTime != nil {
			b := tx.Bucket(bucketECOneTime)
			if err := deletePrefix(b, prefix); err != nil {
				return err
			}
			for _, k := range u.ecOneTime {
				if err := b.Put(append(append([]byte(nil), prefix...), keyIDBytes(k.KeyID)...), k.PublicKey); err != nil {
					return err
				}
			}
		}
		if u.kemOneTime != nil {
			b := tx.Bucket(bucketKEMOneTime)
			if err := deletePrefix(b, prefix); err != nil {
				return err
			}
			for _, k := range u.kemOneTime {
				if err := putJSON(b, append(append([]byte(nil), prefix...), keyIDBytes(k.KeyID)...), k); err != nil {
					return err
				}
			}
		}
		return txPutIdentityKeys(tx, svc, dev, identityKeys{Signed: u.signed, LastResort: u.lastResort})
	})
}

func countPrefix(b *bolt.Bucket, prefix []byte) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

func (s *store) keyCounts(svc serviceID, dev uint8) (ec, kem int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		prefix := svcDevKey(svc, dev)
		ec = countPrefix(tx.Bucket(bucketECOneTime), prefix)
		kem = countPrefix(tx.Bucket(bucketKEMOneTime), prefix)
		return nil
	})
	return ec, kem, err
}

// bundle is the key material handed out for one device.
type bundle struct {
	device         *device
	signed         *signedKey
	ecOneTime      *signedKey // nil when exhausted
	kem            *signedKey // a one-time key, or the last-resort key
	registrationID int
}

// popFirst removes and returns the first entry under prefix.
func popFirst(b *bolt.Bucket, prefix []byte) (k, v []byte, err error) {
	c := b.Cursor()
	k, v = c.Seek(prefix)
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil, nil, nil
	}
	k, v = bytes.Clone(k), bytes.Clone(v)
	return k, v, c.Delete()
}

// fetchBundles returns the keys of the account's devices (all of them when
// dev is 0), consuming one EC and one Kyber one-time key of each. Devices
// without a signed key or a last-resort key are left out. acc is nil when
// the service id names no account.
func (s *store) fetchBundles(svc serviceID, dev uint8) (acc *account, out []bundle, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		acc, err = txResolve(tx, svc)
		if err != nil || acc == nil {
			return err
		}
		devs, err := txDevices(tx, acc.ACI)
		if err != nil {
			return err
		}
		for _, d := range devs {
			if dev != 0 && d.ID != dev {
				continue
			}
			key := svcDevKey(svc, d.ID)
			var b bundle
			b.device = d
			b.registrationID = d.RegistrationID
			if svc.pni {
				b.registrationID = d.PNIRegistrationID
			}
			var signed, lastResort signedKey
			okS, err := getJSON(tx.Bucket(bucketSigned), key, &signed)
			if err != nil {
				return err
			}
			okL, err := getJSON(tx.Bucket(bucketLastResort), key, &lastResort)
			if err != nil {
				return err
			}
			if !okS || !okL {
				continue
			}
			b.signed = &signed
			k, v, err := popFirst(tx.Bucket(bucketECOneTime), key)
			if err != nil {
				return err
			}
			if k != nil {
				b.ecOneTime = &signedKey{KeyID: binary.BigEndian.Uint32(k[len(k)-4:]), PublicKey: v}
			}
			k, v, err = popFirst(tx.Bucket(bucketKEMOneTime), key)
			if err != nil {
				return err
			}
			b.kem = &lastResort
			if k != nil {
				var kem signedKey
				if err := json.Unmarshal(v, &kem); err != nil {
					return fmt.Errorf("%w: kyber key: %w", ErrStore, err)
				}
				b.kem = &kem
			}
			out = append(out, b)
		}
		return nil
	})
	return acc, out, err
}

// queued is one envelope for one device.
type queued struct {
	aci      uuid
	dev      uint8
	envelope []byte
}

func queueKey(aci uuid, dev uint8, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(devKey(aci, dev), seq)
}

// enqueue stores envelopes durably before returning; queue order is the
// order of commits, because sequence numbers come from the one bucket
// sequence inside the (serialized) write transaction. ran, when set, gets
// the queue keys of items once they are written in the transaction of
// group g, before it commits (see writeReq; a retry calls it again with
// new keys).
func (s *store) enqueue(ctx context.Context, items []queued, ran func(g uint64, keys [][]byte)) error {
	var keys [][]byte
	fn := func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketQueue)
		keys = nil
		for _, it := range items {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			if seq <= s.lastSeq {
				seq = s.lastSeq + 1
				if err := b.SetSequence(seq); err != nil {
					return err
				}
			}
			s.lastSeq = seq
			k := queueKey(it.aci, it.dev, seq)
			if err := b.Put(k, it.envelope); err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return nil
	}
	var hook func(uint64)
	if ran != nil {
		hook = func(g uint64) { ran(g, keys) }
	}
	return s.groupRan(ctx, fn, hook)
}

type queueItem struct {
	key      []byte
	envelope []byte
}

// queueAfter returns up to n envelopes of a device whose keys come after
// `after` (from the start when after is nil), oldest first.
func (s *store) queueAfter(aci uuid, dev uint8, after []byte, n int) (items []queueItem, err error) {
	prefix := devKey(aci, dev)
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketQueue).Cursor()
		var k, v []byte
		if after == nil {
			k, v = c.Seek(prefix)
		} else {
			k, v = c.Seek(after)
			if k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && len(items) < n; k, v = c.Next() {
			items = append(items, queueItem{key: bytes.Clone(k), envelope: bytes.Clone(v)})
		}
		return nil
	})
	return items, err
}

// ack deletes delivered envelopes; concurrent calls (the sockets of
// several devices) share a transaction, a lazy one (runWriter): a
// deletion lost to a crash only means a duplicate delivery.
func (s *store) ack(ctx context.Context, keys [][]byte) error {
	return s.groupLazy(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketQueue)
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *store) queueLen(aci uuid, dev uint8) (n int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		n = countPrefix(tx.Bucket(bucketQueue), devKey(aci, dev))
		return nil
	})
	return n, err
}
