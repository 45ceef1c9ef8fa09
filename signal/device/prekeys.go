package device

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.mau.fi/libsignal/state/record"

	"github.com/signal-mpc/cosigner/signal/prekey"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
)

// Prekey upkeep: peers start sessions from the keys the server hands out,
// so a linked device keeps one-time prekeys there (every fetch consumes
// one) and replaces its signed EC prekey and Kyber last-resort key on a
// schedule, as Signal's clients do (signal-wire.md section 4).

// Defaults of KeyConfig, close to what Signal's clients use.
const (
	DefaultKeyInterval       = time.Hour
	DefaultKeyLowWater       = 10
	DefaultKeyBatch          = prekey.MaxUploadKeys
	DefaultKeyRotateAfter    = 48 * time.Hour
	DefaultKeyGrace          = 30 * 24 * time.Hour
	DefaultKeyRequestTimeout = 30 * time.Second
)

// KeyConfig tunes the prekey upkeep Device.Run does. Zero fields take the
// defaults.
type KeyConfig struct {
	// Interval between checks of the server's key counts; the first check
	// is at start.
	Interval time.Duration
	// LowWater: one-time keys of a kind (EC or Kyber) are replenished when
	// the server holds fewer than this many (at most Batch).
	LowWater int
	// Batch is how many one-time keys of a kind a replenishment uploads (at
	// most prekey.MaxUploadKeys). The upload replaces the server's remaining
	// keys of that kind; they stay stored here for peers that fetched them.
	Batch int
	// RotateAfter is the age at which the signed EC prekey and the Kyber
	// last-resort key are replaced.
	RotateAfter time.Duration
	// Grace is how long a replaced signed or last-resort key is kept after
	// its successor was made, for messages already encrypted to it.
	Grace time.Duration
	// RequestTimeout bounds each request to the server (a request waits for
	// the connection while it is down).
	RequestTimeout time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (c KeyConfig) withDefaults() KeyConfig {
	if c.Interval <= 0 {
		c.Interval = DefaultKeyInterval
	}
	if c.Batch <= 0 || c.Batch > prekey.MaxUploadKeys {
		c.Batch = DefaultKeyBatch
	}
	if c.LowWater <= 0 {
		c.LowWater = DefaultKeyLowWater
	}
	// A mark above the batch would replenish on every check.
	c.LowWater = min(c.LowWater, c.Batch)
	if c.RotateAfter <= 0 {
		c.RotateAfter = DefaultKeyRotateAfter
	}
	if c.Grace <= 0 {
		c.Grace = DefaultKeyGrace
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultKeyRequestTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// keyUpkeep is the state of one maintainKeys loop; only that loop's
// goroutine touches it.
type keyUpkeep struct {
	d   *Device
	cfg KeyConfig
	api requester
	ids map[prekey.Identity]*identityUpkeep
}

// identityUpkeep is what the loop remembers of one identity between checks.
type identityUpkeep struct {
	// One-time keys stored but not yet accepted by the server (the upload
	// failed): they are uploaded again rather than making more, which would
	// only pile up unused keys in the store during an outage.
	pendingEC []*record.PreKey
	pendingPQ []*prekey.KyberPreKey
}

func newKeyUpkeep(d *Device, api requester) *keyUpkeep {
	return &keyUpkeep{d: d, cfg: d.cfg.Keys.withDefaults(), api: api, ids: map[prekey.Identity]*identityUpkeep{}}
}

// maintainKeys keeps this device's prekeys on the server until ctx ends
// (nil) or the server refuses the credentials (an error wrapping
// transport.ErrUnauthorized). Other failures are logged and retried at the
// next check.
func (d *Device) maintainKeys(ctx context.Context) error {
	return newKeyUpkeep(d, d.client).run(ctx)
}

func (u *keyUpkeep) run(ctx context.Context) error {
	t := time.NewTicker(u.cfg.Interval)
	defer t.Stop()
	for {
		err := u.check(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, transport.ErrUnauthorized):
			u.d.log.Error("prekey upkeep stopped", "err", err)
			return err
		case err != nil:
			u.d.log.Warn("prekey upkeep failed, retrying at the next check", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// check runs one round of upkeep for each identity the account has.
func (u *keyUpkeep) check(ctx context.Context) error {
	var errs []error
	for _, id := range []prekey.Identity{prekey.ACI, prekey.PNI} {
		err := u.checkIdentity(ctx, id)
		if errors.Is(err, transport.ErrUnauthorized) {
			return err
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkIdentity rotates aged keys of one identity and replenishes the
// one-time keys the server's counts show below the mark, uploading only
// what the server lacks: a start with nothing to do sends nothing. New
// keys are stored before they are uploaded, so the server never hands out
// a key this device does not hold. Replaced keys past their grace period
// are then deleted.
func (u *keyUpkeep) checkIdentity(ctx context.Context, id prekey.Identity) error {
	p, err := u.d.cfg.Store.Protocol(ctx, id)
	if errors.Is(err, store.ErrNoIdentity) {
		return nil // an account without a phone number has no PNI
	}
	if err != nil {
		return fmt.Errorf("device: prekeys (%s): %w", id, err)
	}
	st := u.ids[id]
	if st == nil {
		st = &identityUpkeep{}
		u.ids[id] = st
	}
	now := u.cfg.Now()
	next, err := p.NextKeyOptions(ctx)
	if err != nil {
		return fmt.Errorf("device: prekeys (%s): next ids: %w", id, err)
	}
	signed, err := p.LoadSignedPreKeys(ctx)
	if err != nil {
		return fmt.Errorf("device: prekeys (%s): signed prekeys: %w", id, err)
	}
	lastResorts, err := p.LastResortKeys(ctx)
	if err != nil {
		return fmt.Errorf("device: prekeys (%s): last-resort keys: %w", id, err)
	}
	signedAges := make([]keyAge, 0, len(signed)+1)
	for _, k := range signed {
		signedAges = append(signedAges, keyAge{id: k.ID(), created: time.UnixMilli(k.Timestamp())})
	}
	lrAges := make([]keyAge, 0, len(lastResorts)+1)
	for _, k := range lastResorts {
		lrAges = append(lrAges, keyAge{id: k.ID, created: time.UnixMilli(k.Timestamp)})
	}
	sortByAge(signedAges, next.SignedPreKeyID)
	sortByAge(lrAges, next.LastResortID)

	// Rotation.
	ik := p.GetIdentityKeyPair()
	rotated := &prekey.Keys{Identity: ik}
	if n := len(signedAges); n == 0 || now.Sub(signedAges[n-1].created) >= u.cfg.RotateAfter {
		if rotated.SignedPreKey, err = prekey.NewSignedPreKey(next.SignedPreKeyID, ik, now); err != nil {
			return fmt.Errorf("device: prekeys (%s): %w", id, err)
		}
	}
	if n := len(lrAges); n == 0 || now.Sub(lrAges[n-1].created) >= u.cfg.RotateAfter {
		if rotated.LastResort, err = prekey.NewKyberPreKey(nil, next.LastResortID, ik, true, now); err != nil {
			return fmt.Errorf("device: prekeys (%s): %w", id, err)
		}
	}
	if rotated.SignedPreKey != nil || rotated.LastResort != nil {
		if err := p.SaveKeys(ctx, rotated); err != nil {
			return fmt.Errorf("device: prekeys (%s): store new keys: %w", id, err)
		}
		if k := rotated.SignedPreKey; k != nil {
			signed = append(signed, k)
			signedAges = append(signedAges, keyAge{id: k.ID(), created: now})
		}
		if k := rotated.LastResort; k != nil {
			lastResorts = append(lastResorts, k)
			lrAges = append(lrAges, keyAge{id: k.ID, created: now})
		}
		// One-time and last-resort Kyber keys share one id space.
		if next, err = p.NextKeyOptions(ctx); err != nil {
			return fmt.Errorf("device: prekeys (%s): next ids: %w", id, err)
		}
	}
	// The server gets the current signed and last-resort keys when it does
	// not hold them yet: after a rotation, also one stored by an earlier
	// run whose upload failed.
	curSigned := signedByID(signed, signedAges[len(signedAges)-1].id)
	curLR := lastResortByID(lastResorts, lrAges[len(lrAges)-1].id)
	onServerSigned, onServerLR, err := p.ServerKeys(ctx)
	if err != nil {
		return fmt.Errorf("device: prekeys (%s): %w", id, err)
	}
	if curSigned.ID() != onServerSigned || curLR.ID != onServerLR {
		up := &prekey.Keys{Identity: ik}
		if curSigned.ID() != onServerSigned {
			up.SignedPreKey = curSigned
		}
		if curLR.ID != onServerLR {
			up.LastResort = curLR
		}
		if err := u.upload(ctx, id, up); err != nil {
			return fmt.Errorf("device: prekeys (%s): %w", id, err)
		}
		if err := p.SetServerKeys(ctx, curSigned.ID(), curLR.ID); err != nil {
			return fmt.Errorf("device: prekeys (%s): %w", id, err)
		}
	}

	// One-time keys, counted after any upload above: a server that takes
	// every upload as the whole set (Signal's mock server does) shows here
	// what it dropped.
	ecCount, pqCount, err := u.counts(ctx, id)
	if err != nil {
		return fmt.Errorf("device: prekeys (%s): %w", id, err)
	}
	// After a restore from a backup the server may hold one-time keys this
	// store never had: a fresh set of each kind replaces them all.
	stale, err := p.OneTimeStale(ctx)
	if err != nil {
		return fmt.Errorf("device: prekeys (%s): %w", id, err)
	}
	if stale {
		ecCount, pqCount = 0, 0
		st.pendingEC, st.pendingPQ = nil, nil
	}
	// Counts back above the mark mean a pending batch arrived after all (the
	// answer to its upload was lost); it needs no second upload.
	var errs []error
	fresh := &prekey.Keys{Identity: ik}
	if ecCount >= u.cfg.LowWater {
		if st.pendingEC != nil {
			errs = append(errs, u.markReplaced(ctx, p, false, ecIDs(st.pendingEC), now))
		}
		st.pendingEC = nil
	} else if st.pendingEC == nil {
		if fresh.PreKeys, err = prekey.NewPreKeys(next.PreKeyStart, u.cfg.Batch); err != nil {
			return fmt.Errorf("device: prekeys (%s): %w", id, err)
		}
	}
	if pqCount >= u.cfg.LowWater {
		if st.pendingPQ != nil {
			errs = append(errs, u.markReplaced(ctx, p, true, kyberIDs(st.pendingPQ), now))
		}
		st.pendingPQ = nil
	} else if st.pendingPQ == nil {
		if fresh.KyberPreKeys, err = prekey.NewKyberPreKeys(next.LastResortID, u.cfg.Batch, ik, now); err != nil {
			return fmt.Errorf("device: prekeys (%s): %w", id, err)
		}
	}
	if fresh.PreKeys != nil || fresh.KyberPreKeys != nil {
		if err := p.SaveKeys(ctx, fresh); err != nil {
			return fmt.Errorf("device: prekeys (%s): store new keys: %w", id, err)
		}
		if fresh.PreKeys != nil {
			st.pendingEC = fresh.PreKeys
		}
		if fresh.KyberPreKeys != nil {
			st.pendingPQ = fresh.KyberPreKeys
		}
	}
	if len(st.pendingEC) > 0 || len(st.pendingPQ) > 0 {
		up := &prekey.Keys{Identity: ik, PreKeys: st.pendingEC, KyberPreKeys: st.pendingPQ}
		if err := u.upload(ctx, id, up); err != nil {
			return fmt.Errorf("device: prekeys (%s): %w", id, err)
		}
		if len(up.PreKeys) > 0 {
			errs = append(errs, u.markReplaced(ctx, p, false, ecIDs(up.PreKeys), now))
		}
		if len(up.KyberPreKeys) > 0 {
			errs = append(errs, u.markReplaced(ctx, p, true, kyberIDs(up.KyberPreKeys), now))
		}
		st.pendingEC, st.pendingPQ = nil, nil
		if stale {
			if err := p.ClearOneTimeStale(ctx); err != nil {
				errs = append(errs, fmt.Errorf("device: prekeys (%s): %w", id, err))
			}
		}
	}
	u.d.log.Debug("prekeys checked", "identity", id.String(), "server_count", ecCount, "server_pq_count", pqCount)

	replaced, err := p.Replaced(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("device: prekeys (%s): replaced keys: %w", id, err))
	}
	for _, k := range replaced {
		if now.Sub(k.Since) < u.cfg.Grace {
			continue
		}
		if err := p.RemoveReplaced(ctx, k); err != nil {
			errs = append(errs, fmt.Errorf("device: prekeys (%s): remove replaced one-time key %d: %w", id, k.ID, err))
		}
	}
	// Reached only once the server holds the current signed and
	// last-resort keys (a failed upload returned above): the older ones
	// go a grace period after their successors were made.
	for _, old := range expired(signedAges, now, u.cfg.Grace) {
		if err := p.RemoveSignedPreKey(ctx, old); err != nil {
			errs = append(errs, fmt.Errorf("device: prekeys (%s): remove signed prekey %d: %w", id, old, err))
		}
	}
	for _, old := range expired(lrAges, now, u.cfg.Grace) {
		if err := p.RemoveKyberPreKey(ctx, old); err != nil {
			errs = append(errs, fmt.Errorf("device: prekeys (%s): remove last-resort key %d: %w", id, old, err))
		}
	}
	return errors.Join(errs...)
}

// markReplaced marks every stored one-time key of a kind outside batch,
// which the server now holds instead of them (an upload replaces the
// server's set): removed a grace period later (see store.ReplacedKey).
func (u *keyUpkeep) markReplaced(ctx context.Context, p *store.Protocol, kyber bool, batch []uint32, now time.Time) error {
	ec, pq, err := p.OneTimeKeyIDs(ctx)
	if err == nil {
		stored := ec
		if kyber {
			stored = pq
		}
		var old []uint32
		for _, id := range stored {
			if !slices.Contains(batch, id) {
				old = append(old, id)
			}
		}
		err = p.MarkReplaced(ctx, kyber, old, now)
	}
	if err != nil {
		return fmt.Errorf("device: prekeys: mark replaced one-time keys: %w", err)
	}
	return nil
}

func ecIDs(keys []*record.PreKey) []uint32 {
	ids := make([]uint32, len(keys))
	for i, k := range keys {
		ids[i] = k.ID().Value
	}
	return ids
}

func kyberIDs(keys []*prekey.KyberPreKey) []uint32 {
	ids := make([]uint32, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return ids
}

// counts asks the server how many one-time EC and Kyber keys it holds.
func (u *keyUpkeep) counts(ctx context.Context, id prekey.Identity) (ec, pq int, err error) {
	var c struct {
		Count   int `json:"count"`
		PQCount int `json:"pqCount"`
	}
	rctx, cancel := context.WithTimeout(ctx, u.cfg.RequestTimeout)
	defer cancel()
	if _, err := call(rctx, u.api, "prekey counts", http.MethodGet, "/v2/keys?identity="+id.String(), "", nil, &c); err != nil {
		return 0, 0, refused(err)
	}
	return c.Count, c.PQCount, nil
}

// upload puts keys on the server: the lists always present (empty when
// there are none), the signed and last-resort keys only when set.
func (u *keyUpkeep) upload(ctx context.Context, id prekey.Identity, k *prekey.Keys) error {
	body, err := k.UploadRequest()
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, u.cfg.RequestTimeout)
	defer cancel()
	if _, err = call(rctx, u.api, "upload prekeys", http.MethodPut, prekey.UploadPath(id), "", body, nil, http.StatusOK, http.StatusNoContent); err != nil {
		return refused(err)
	}
	// Routine: a debug line, not one at every start and every check.
	attrs := []any{"identity", id.String(), "one_time", len(k.PreKeys), "one_time_kyber", len(k.KyberPreKeys)}
	if k.SignedPreKey != nil {
		attrs = append(attrs, "signed", k.SignedPreKey.ID())
	}
	if k.LastResort != nil {
		attrs = append(attrs, "last_resort", k.LastResort.ID)
	}
	u.d.log.Debug("prekeys uploaded", attrs...)
	return nil
}

// refused marks a 401 or 403 answer as the end of this device's
// credentials, which stops the upkeep as it stops the connection.
func refused(err error) error {
	var se *StatusError
	if errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden) {
		return fmt.Errorf("%w: %w", transport.ErrUnauthorized, err)
	}
	return err
}

// keyAge is a signed or last-resort key's id and creation time.
type keyAge struct {
	id      uint32
	created time.Time
}

// sortByAge orders keys oldest first: by creation time, then (for a clock
// that stood still or stepped back) by how long ago the id was handed out,
// next being the id the store hands out next.
func sortByAge(keys []keyAge, next uint32) {
	since := func(id uint32) uint32 { // ids wrap from prekey.MaxKeyID to 1
		if id < next {
			return next - id
		}
		return next + prekey.MaxKeyID - id
	}
	slices.SortStableFunc(keys, func(a, b keyAge) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return int(int64(since(b.id)) - int64(since(a.id)))
	})
}

// expired returns the ids of replaced keys (all but the newest of keys,
// sorted oldest first) whose successor was made more than grace ago:
// until then a message encrypted to them may still be in flight.
func expired(keys []keyAge, now time.Time, grace time.Duration) []uint32 {
	var out []uint32
	for i := 0; i+1 < len(keys); i++ {
		if now.Sub(keys[i+1].created) > grace {
			out = append(out, keys[i].id)
		}
	}
	return out
}

func signedByID(keys []*record.SignedPreKey, id uint32) *record.SignedPreKey {
	for _, k := range keys {
		if k.ID() == id {
			return k
		}
	}
	return nil
}

func lastResortByID(keys []*prekey.KyberPreKey, id uint32) *prekey.KyberPreKey {
	for _, k := range keys {
		if k.ID == id {
			return k
		}
	}
	return nil
}
