package core

// Keys at epochs: a key a reshare, refresh or import made is stored as its
// own record, and the secret parts of the epoch it replaced are erased in
// the same write. A keygen key that was never reshared is still rebuilt
// from its keygen record.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
)

// EpochKey is a key as a finished reshare left it with this console: the
// signed proposal and the new signers' confirmations (public: together
// they prove and rebuild the epoch's record, dkg.VerifyHandover), and this
// console's share of it, or none when it left the group (HandedOver).
type EpochKey struct {
	KeyID         [32]byte
	Ceremony      [32]byte // the reshare that made the epoch
	Proposal      []byte   // its signed proposal envelope
	Confirmations [][]byte // the n' signed key confirmations
	Self          uint32   // this console's index in the new group; 0 when handed over
	Share         []byte   // secret: its share's scalar; nil when handed over
	Created       time.Time
}

// HandedOver reports whether this console holds no share of the epoch.
func (k *EpochKey) HandedOver() bool { return k.Share == nil }

// EpochKeyStore is the part of a Store that keeps EpochKeys. Both stores of
// this package have it.
type EpochKeyStore interface {
	// PutEpochKey stores k (replacing the key's record of an earlier
	// epoch) and, in the same write, erases the secret parts of the
	// ceremonies erase names (their seed and inputs: the old epoch's share
	// could be derived from them); their public opening stays for the
	// history.
	PutEpochKey(ctx context.Context, k *EpochKey, erase [][32]byte) error
	EpochKeys(ctx context.Context) ([]*EpochKey, error)
}

// errNoEpochStore: the configured Store cannot keep keys of a later epoch.
var errNoEpochStore = errors.New("core: the store cannot keep reshared keys")

func (a *App) epochStore() (EpochKeyStore, error) {
	s, ok := a.cfg.Store.(EpochKeyStore)
	if !ok {
		return nil, errNoEpochStore
	}
	return s, nil
}

// erased reports whether r's secret parts were erased (InputErased).
func erased(r *CeremonyRecord) bool {
	return len(r.Inputs) == 1 && r.Inputs[0].Kind == InputErased
}

// rebuildEpochKey checks a stored EpochKey and rebuilds the key record
// and, unless handed over, this console's signing configuration.
func (a *App) rebuildEpochKey(ek *EpochKey) (*ceremony.Key, *ceremony.SignConfig, error) {
	prop, _, err := ceremony.DecodeReshareProposal(ek.Proposal)
	if err != nil {
		return nil, nil, err
	}
	res, err := dkg.VerifyHandover(prop, ek.Confirmations)
	if err != nil {
		return nil, nil, err
	}
	k := ceremony.NewReshareKey(prop, res)
	if k.ID != ek.KeyID {
		return nil, nil, fmt.Errorf("%w: epoch key record names another key", ErrCorrupt)
	}
	if ek.HandedOver() {
		return k, nil, nil
	}
	x, err := bls.SecretScalarFromBytes(ek.Share)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: epoch key share: %w", ErrCorrupt, err)
	}
	sh := &share.Share{Index: ek.Self, Value: *x}
	bls.WipeScalar(x)
	sk, err := bls.NewSecretKey(&sh.Value)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: epoch key share: %w", ErrCorrupt, err)
	}
	own := sk.PublicKey()
	sk.Wipe()
	pub, err := k.Group.PublicShare(ek.Self)
	if err != nil || !own.Equal(pub) {
		bls.WipeScalar(&sh.Value)
		return nil, nil, fmt.Errorf("%w: epoch key share does not match public share %d", ErrCorrupt, ek.Self)
	}
	return k, &ceremony.SignConfig{Key: k, Self: ek.Self, Share: sh, ConsoleKey: a.cfg.ConsoleKey}, nil
}

// restoreEpochKeys loads the keys reshares made, before any ceremony is
// replayed: their keygens and earlier reshares were erased and are not
// rebuilt.
func (a *App) restoreEpochKeys(ctx context.Context) error {
	s, ok := a.cfg.Store.(EpochKeyStore)
	if !ok {
		return nil
	}
	eks, err := s.EpochKeys(ctx)
	if err != nil {
		return fmt.Errorf("core: load keys: %w", err)
	}
	for _, ek := range eks {
		k, cfg, err := a.rebuildEpochKey(ek)
		if err != nil {
			a.log.Error("cannot restore key", "key", ceremony.ShortID(ek.KeyID), "err", err)
			continue
		}
		if cfg == nil {
			a.lifecycle().handedOver[k.ID] = k
			continue
		}
		a.keys[k.ID] = &keyState{key: k, share: cfg}
	}
	return nil
}

// Encoding of an EpochKey, with the envelopes' canonical codec.

const maxConfirmations = share.MaxParties

func encodeEpochKey(k *EpochKey) ([]byte, error) {
	var e wire.Encoder
	e.Bytes(1, k.KeyID[:])
	e.Bytes(2, k.Ceremony[:])
	e.Bytes(3, k.Proposal)
	e.Repeated(4, k.Confirmations)
	e.Uint(5, uint64(k.Self))
	e.Bytes(6, k.Share)
	e.Uint(7, uint64(k.Created.UnixNano()))
	return e.Finish()
}

func decodeEpochKey(b []byte) (*EpochKey, error) {
	if len(b) > maxRecord {
		return nil, fmt.Errorf("%w: key record of %d bytes", ErrCorrupt, len(b))
	}
	d := wire.NewDecoder(b)
	id, _ := d.Fixed(1, 32)
	cer, _ := d.Fixed(2, 32)
	prop, _ := d.Bytes(3, wire.MaxEnvelopeSize)
	confs, _ := d.Repeated(4, maxConfirmations, wire.MaxEnvelopeSize)
	self, _ := d.Uint32(5)
	sh, _ := d.Bytes(6, 32)
	created, _ := d.Uint(7)
	if err := d.Done(); err != nil {
		return nil, fmt.Errorf("%w: key record: %w", ErrCorrupt, err)
	}
	if len(prop) == 0 || len(confs) == 0 || (sh == nil) != (self == 0) {
		return nil, fmt.Errorf("%w: key record fields", ErrCorrupt)
	}
	k := &EpochKey{Proposal: prop, Confirmations: confs, Self: self, Share: sh, Created: time.Unix(0, int64(created))}
	copy(k.KeyID[:], id)
	copy(k.Ceremony[:], cer)
	return k, nil
}

const bucketEpochKeys = "core.epochkeys"

// PutEpochKey implements EpochKeyStore: one transaction stores the key and
// erases the old epoch's secrets.
func (s *VaultStore) PutEpochKey(ctx context.Context, k *EpochKey, erase [][32]byte) error {
	b, err := encodeEpochKey(k)
	if err != nil {
		return err
	}
	id := k.KeyID
	erase = slices.Clone(erase)
	return s.submit(ctx, func(tx VaultTx) error {
		if err := tx.Put(bucketEpochKeys, id[:], b); err != nil {
			return err
		}
		for _, cid := range erase {
			v, err := tx.Get(bucketCeremonies, cid[:])
			if err != nil {
				return err
			}
			if v == nil {
				continue
			}
			r, next, err := decodeCeremony(v)
			if err != nil {
				return err
			}
			for i := range next {
				if err := tx.Delete(bucketInputs, inputKey(cid, i)); err != nil {
					return err
				}
			}
			if err := tx.Put(bucketInputs, inputKey(cid, 0), encodeInput(Input{Kind: InputErased})); err != nil {
				return err
			}
			r.Seed, r.Finished = [32]byte{}, true
			if err := tx.Put(bucketCeremonies, cid[:], encodeCeremony(r, 1)); err != nil {
				return err
			}
		}
		return nil
	})
}

// EpochKeys implements EpochKeyStore.
func (s *VaultStore) EpochKeys(ctx context.Context) ([]*EpochKey, error) {
	var out []*EpochKey
	err := s.read(ctx, func(tx VaultTx) error {
		return tx.Scan(bucketEpochKeys, nil, func(_, v []byte) error {
			k, err := decodeEpochKey(v)
			if err != nil {
				return err
			}
			out = append(out, k)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *EpochKey) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// handedOverKeys lists the keys this console handed over (loop).
func (a *App) handedOverKeys() []KeyInfo {
	var out []KeyInfo
	for id, k := range a.lifecycle().handedOver {
		out = append(out, KeyInfo{KeyID: id, GroupKey: k.Group.Key.Bytes(), T: k.T(), N: k.N(), Epoch: k.Epoch, HandedOver: true})
	}
	return out
}

// endAtOldEpoch finishes a stored signing request made at an epoch its key
// has left (the store may have kept the switch but not yet the request's
// end): it is not rebuilt, and its partials are refused.
func (a *App) endAtOldEpoch(ctx context.Context, r *CeremonyRecord) error {
	if !r.Finished {
		r.Finished = true
		e := &Ended{Kind: KindSign, ID: r.ID, KeyID: r.KeyID, Created: r.Created, EndedAt: a.now(), Decision: decisionOf(r),
			Outcome: EndFailed, Reason: "its key moved to a new epoch before it was signed"}
		if env, err := wire.Decode(r.Opening); err == nil {
			e.Requester = env.From
			if req, err := tbls.DecodeRequest(env.Payload); err == nil {
				e.Message, e.Description = req.Message, req.Description
			}
		}
		if err := a.cfg.Store.FinishCeremony(ctx, r.ID, e, a.cfg.ConsoleKey); err != nil {
			return err
		}
	}
	return nil
}
