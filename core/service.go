package core

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

// What a service needs beside the console's own calls: ceremonies started
// without waiting for them (a script gets the id at once and may wait
// later, or from another connection), the approval queue and the
// signature history as lists (a console that attaches later sees them).

// Approval is a request or proposal that waits for this console's human.
type Approval struct {
	ID          [32]byte
	Kind        string // "sign" or "keygen"
	Requester   string
	KeyID       [32]byte // sign
	Text        string   // the message as text when printable (sign), or what the keygen makes
	Hex         string   // the message as hex (sign)
	SHA256      string   // hex SHA-256 of the message (sign)
	Description string   // what the requester says it is (untrusted)
	Expires     time.Time
}

// Approvals lists what waits for this console's human, oldest first.
func (a *App) Approvals(ctx context.Context) ([]Approval, error) {
	var out []Approval
	err := a.do(ctx, func() {
		for id, st := range a.keygens {
			if !st.asked || (a.records[id] != nil && a.records[id].Finished) {
				continue
			}
			out = append(out, approvalOf(id, [32]byte{}, st.prompt))
		}
		for id, st := range a.signs {
			if !st.announced || st.done || st.prompt.ID == "" || st.s.Progress().Decision != ceremony.DecisionPending {
				continue
			}
			out = append(out, approvalOf(id, st.key.key.ID, st.prompt))
		}
		out = append(out, a.reshareApprovals()...)
	})
	slices.SortFunc(out, func(x, y Approval) int { return x.Expires.Compare(y.Expires) })
	return out, err
}

func approvalOf(id, keyID [32]byte, p event.ApprovalRequested) Approval {
	return Approval{ID: id, Kind: p.Kind, Requester: p.Requester, KeyID: keyID, Text: p.Text, Hex: p.Hex, SHA256: p.SHA256,
		Description: p.Description, Expires: p.Expires}
}

// Signatures lists the signing requests that ended, oldest first: at most
// limit of the newest (all when limit <= 0).
func (a *App) Signatures(ctx context.Context, limit int) ([]event.SignDone, error) {
	var out []event.SignDone
	var err error
	if e := a.do(ctx, func() { out, err = a.history(ctx, limit) }); e != nil {
		return nil, e
	}
	return out, err
}

// BeginKeygen proposes a t-of-n key generation with the whole roster and
// returns its id at once; WaitKeygen waits for its end. approve: proposing
// is this human's acceptance; without it the proposal waits in this
// console's approval queue too.
func (a *App) BeginKeygen(ctx context.Context, t int, approve bool) ([32]byte, error) {
	var id [32]byte
	var err error
	if e := a.do(ctx, func() { id, _, err = a.startKeygen(ctx, t, approve) }); e != nil {
		return [32]byte{}, e
	}
	return id, err
}

// BeginSignature asks the group to sign msg with keyID (the only key when
// zero) and returns the request's id at once; WaitSignature waits for the
// signature. approve: asking is this human's approval; without it the
// request waits in this console's approval queue too.
func (a *App) BeginSignature(ctx context.Context, keyID [32]byte, msg []byte, description string, approve bool) ([32]byte, error) {
	var id [32]byte
	var err error
	if e := a.do(ctx, func() { id, _, err = a.startSign(ctx, keyID, msg, description, approve) }); e != nil {
		return [32]byte{}, e
	}
	return id, err
}

// WaitKeygen waits until the key generation id ends (it may have already)
// and returns its key or why it failed.
func (a *App) WaitKeygen(ctx context.Context, id [32]byte) (*KeygenResult, error) {
	r, err := a.wait(ctx, id, KindKeygen)
	if err != nil {
		return nil, err
	}
	return r.keygen, r.err
}

// WaitSignature waits until the signing request id ends (it may have
// already) and returns its signature or why it failed.
func (a *App) WaitSignature(ctx context.Context, id [32]byte) (*SignResult, error) {
	r, err := a.wait(ctx, id, KindSign)
	if err != nil {
		return nil, err
	}
	return r.sign, r.err
}

// wait registers a waiter for a ceremony, or answers at once (once
// durable) for one that has ended.
func (a *App) wait(ctx context.Context, id [32]byte, kind CeremonyKind) (result, error) {
	wait := make(chan result, 1)
	var err error
	if e := a.do(ctx, func() {
		rec := a.records[id]
		if rec == nil {
			// Ended and left memory: its ended record answers, durable.
			var e *Ended
			if e, err = a.endedRecord(ctx, id); err != nil {
				return
			}
			if e == nil || e.Kind != kind {
				err = fmt.Errorf("%w: %s", ErrUnknown, ceremony.ShortID(id))
				return
			}
			wait <- a.resultOf(e)
			return
		}
		if rec.Kind != kind {
			err = fmt.Errorf("%w: %s", ErrUnknown, ceremony.ShortID(id))
			return
		}
		if !rec.Finished {
			a.waiters[id] = append(a.waiters[id], wait)
			return
		}
		r := a.ended(id)
		// What ended in this run may not be durable yet.
		a.whenDurable(func(derr error) {
			if derr != nil {
				r = result{err: derr}
			}
			wait <- r
		})
	}); e != nil {
		return result{}, e
	}
	if err != nil {
		return result{}, err
	}
	select {
	case r := <-wait:
		return r, nil
	case <-ctx.Done():
		return result{}, fmt.Errorf("%s still open: %w", ceremony.ShortID(id), ctx.Err())
	case <-a.stopped:
		return result{}, fmt.Errorf("%s: %w", ceremony.ShortID(id), a.stopErr())
	}
}

// ended is the result of a finished ceremony (loop).
func (a *App) ended(id [32]byte) result {
	if st, ok := a.keygens[id]; ok {
		key, _, err := st.s.Result()
		if err != nil {
			if st.s.Err() != nil {
				return result{err: a.keygenError(st.s)}
			}
			return result{err: err}
		}
		return result{keygen: &KeygenResult{Ceremony: id, KeyID: key.ID, GroupKey: key.Group.Key.Bytes(), T: key.T(), N: key.N()}}
	}
	st, ok := a.signs[id]
	if !ok {
		return result{err: fmt.Errorf("%w: %s", ErrUnknown, ceremony.ShortID(id))}
	}
	p, req, parties := st.s.Progress(), st.s.Request(), st.key.key.Parties
	if p.Outcome == ceremony.OutcomeSigned {
		res := st.s.Result()
		return result{sign: &SignResult{ID: id, KeyID: req.KeyID, GroupKey: st.key.key.Group.Key.Bytes(), Message: req.Message,
			Signature: res.Signature.Bytes(), Signers: a.names(parties, res.Signers), Blamed: a.names(parties, res.Blamed)}}
	}
	return result{err: &SignError{ID: id, Reason: p.Reason, Declined: a.names(parties, p.Declined), Blamed: a.names(parties, p.Blamed), Expired: p.Expired}}
}

// KeysWithPrefix returns the ids among ids whose lower-case hex starts
// with prefix: how the commands, the API and the approval rules name a key.
func KeysWithPrefix(ids [][32]byte, prefix string) [][32]byte {
	var out [][32]byte
	for _, id := range ids {
		if strings.HasPrefix(hex.EncodeToString(id[:]), prefix) {
			out = append(out, id)
		}
	}
	return out
}

// ParseID reads a ceremony or request id written as full hex.
func ParseID(s string) ([32]byte, error) {
	var id [32]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: an id is 64 hex digits", ErrUnknown)
	}
	copy(id[:], b)
	return id, nil
}
