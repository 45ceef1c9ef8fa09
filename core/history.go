package core

// History: what an ended ceremony leaves (its ended record, ended.go), how
// a signing leaves memory once it has ended, and the reads that answer for
// it afterwards from the store.

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

// maxRecent bounds the ended signings kept in memory. Late messages are
// common right after a signing ends (the partial of the signer that was
// not needed), so an ended signing stays a little (up to ResendEvery, and
// while it is among the newest few) to answer them from memory; after that
// the store answers.
const maxRecent = 16

// recentEnd is an ended signing still in memory.
type recentEnd struct {
	id      [32]byte
	at      time.Time
	durable *atomic.Bool // its ended record is durable: the store answers for it
}

// keepRecent notes an ended signing; it leaves memory later (evictEnded).
func (a *App) keepRecent(id [32]byte) *atomic.Bool {
	d := &atomic.Bool{}
	a.recent = append(a.recent, recentEnd{id: id, at: a.now(), durable: d})
	return d
}

// evictEnded lets ended signings leave memory, oldest first, once their
// ended record is durable and they are older than ResendEvery or too many.
func (a *App) evictEnded(now time.Time) {
	n := 0
	for _, r := range a.recent {
		if !r.durable.Load() || (len(a.recent)-n <= maxRecent && now.Sub(r.at) < a.cfg.ResendEvery) {
			break
		}
		delete(a.signs, r.id)
		delete(a.records, r.id)
		n++
	}
	if n > 0 {
		a.recent = slices.Delete(a.recent, 0, n)
	}
}

// decisionOf is this console's answer in a record (nil when none).
func decisionOf(rec *CeremonyRecord) *Decision {
	var d *Decision
	if rec.Own {
		d = &Decision{Accept: true, Time: rec.Created, By: rec.By}
	}
	for _, in := range rec.Inputs {
		switch in.Kind {
		case InputAccept:
			d = &Decision{Accept: true, By: in.By, Time: in.Time}
		case InputDecline:
			d = &Decision{By: in.By, Time: in.Time, Reason: clip(in.Text, maxEndedReason)}
		}
	}
	return d
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// endedOf builds the ended record of a ceremony whose session ended (or
// that was abandoned at a restore); nil when it cannot say.
func (a *App) endedOf(id [32]byte, rec *CeremonyRecord, converted bool) *Ended {
	e := &Ended{Kind: rec.Kind, ID: id, Created: rec.Created, EndedAt: a.now(), Decision: decisionOf(rec), Converted: converted, AskedBy: rec.By}
	if converted {
		// Ended when its last input came (the record says no more).
		e.EndedAt = rec.Created
		for _, in := range rec.Inputs {
			if in.Time.After(e.EndedAt) {
				e.EndedAt = in.Time
			}
		}
	}
	if abandoned(rec) {
		e.Outcome, e.Reason, e.Converted = EndAbandoned, restoredText, false
		e.EndedAt = rec.Inputs[len(rec.Inputs)-1].Time
		fromOpening(e, rec)
		return e
	}
	if st, ok := a.lifecycle().reshares[id]; ok {
		prop := st.s.Proposal()
		a.endedReshare(e, prop, st.s.Participants(), st.res != nil, st.err)
		return e
	}
	if w, ok := a.lifecycle().watch()[id]; ok {
		a.endedReshare(e, w.prop, w.prop.Participants(), w.done, nil)
		e.Description += " (handed over: this console is not in the new group)"
		return e
	}
	if converted && rec.Finished && (rec.Kind != KindSign && erased(rec) || rec.Kind == KindKeygen && a.keygens[id] == nil) {
		return endedUnbuilt(e, rec)
	}
	if rec.Kind == KindReshare {
		// Not running here (it could not be resumed): what its proposal says.
		if prop, _, err := ceremony.DecodeReshareProposal(rec.Opening); err == nil {
			a.endedReshare(e, prop, prop.Participants(), false, nil)
		} else {
			e.Kind, e.KeyID, e.Outcome = KindReshare, rec.KeyID, EndAborted
		}
		return e
	}
	if st, ok := a.keygens[id]; ok {
		prop := st.s.Proposal()
		e.Names = a.allNames(prop.Parties)
		e.Requester = prop.Initiator
		e.RequesterName = clip(a.cfg.Roster.NameOf(prop.Parties[prop.Initiator-1].Account, prop.Parties[prop.Initiator-1].Device), maxSignerName)
		e.Description = fmt.Sprintf("generate a %d-of-%d key", prop.Threshold, prop.N())
		e.Signers = allIndices(prop.N())
		if key, _, err := st.s.Result(); err == nil {
			e.Outcome, e.KeyID = EndGenerated, key.ID
		} else {
			e.Outcome = EndAborted
			if st.s.Err() != nil {
				err = a.keygenError(st.s)
			}
			e.Reason = clip(err.Error(), maxEndedReason)
		}
		return e
	}
	st, ok := a.signs[id]
	if !ok {
		if converted && rec.Finished {
			return endedUnbuilt(e, rec)
		}
		return nil
	}
	req, p, parties := st.s.Request(), st.s.Progress(), st.key.key.Parties
	e.Names = a.allNames(parties)
	e.PeerHeads = a.peerHeads(st)
	who := partyAddr(parties, p.Requester)
	e.KeyID, e.Requester, e.RequesterName = req.KeyID, p.Requester, clip(a.cfg.Roster.NameOf(who.Account, who.Device), maxSignerName)
	e.Message, e.Description, e.Reason = req.Message, req.Description, clip(p.Reason, maxEndedReason)
	e.Approved, e.Declined, e.Blamed = p.Approved, p.Declined, p.Blamed
	switch {
	case p.Outcome == ceremony.OutcomeSigned:
		res := st.s.Result()
		e.Outcome, e.Signature, e.Signers, e.Blamed = EndSigned, res.Signature.Bytes(), res.Signers, res.Blamed
		for _, o := range st.s.Final() {
			if o.To == 0 {
				e.Final = append(e.Final, o.Envelope)
			}
		}
	case p.Expired:
		e.Outcome = EndExpired
	case len(p.Declined) > 0:
		e.Outcome = EndDeclined
	default:
		e.Outcome = EndFailed
	}
	if d := e.Decision; d != nil && d.Accept && strings.HasPrefix(d.By, "signing.rule[") {
		e.useBy = who.String()
	}
	return e
}

// fromOpening fills what a record's opening envelope says (who asked; a
// signing's key and message).
func fromOpening(e *Ended, rec *CeremonyRecord) {
	env, err := wire.Decode(rec.Opening)
	if err != nil {
		return
	}
	e.Requester = env.From
	if rec.Kind == KindSign {
		if req, err := tbls.DecodeRequest(env.Payload); err == nil {
			e.KeyID, e.Message, e.Description = req.KeyID, req.Message, req.Description
		}
	}
}

// endedUnbuilt is the ended record of a finished ceremony whose session is
// not rebuilt (its key is gone or at a later epoch, or its secrets were
// erased at a reshare): what its record itself says, so that it still
// enters the trail and leaves the start-up replay.
func endedUnbuilt(e *Ended, rec *CeremonyRecord) *Ended {
	fromOpening(e, rec)
	if rec.Kind != KindSign {
		e.KeyID = rec.KeyID
	}
	e.Outcome, e.Reason = EndFailed, "not rebuilt when converted: its key is gone or at a later epoch; the outcome was not kept"
	if erased(rec) {
		e.Outcome, e.Reason = EndErased, "its secrets were erased at a reshare of its key; the outcome was not kept"
	}
	return e
}

// allNames is the roster name of every party, in party order.
func (a *App) allNames(parties []dkg.Party) []string {
	return clipNames(a.names(parties, allIndices(len(parties))))
}

func clipNames(names []string) []string {
	for i, n := range names {
		names[i] = clip(n, maxSignerName)
	}
	return names
}

// endedReshare fills e for a reshare, refresh or import (or the handover
// an old signer outside it watched): done, or stopped with err.
func (a *App) endedReshare(e *Ended, prop *dkg.ReshareProposal, parts []dkg.Party, done bool, err error) {
	e.Kind, e.KeyID, e.Requester = KindReshare, prop.KeyID, prop.Initiator
	e.Names = a.allNames(parts)
	if int(prop.Initiator) <= len(e.Names) && prop.Initiator > 0 {
		e.RequesterName = e.Names[prop.Initiator-1]
	}
	e.Description = clip(fmt.Sprintf("%s to %d-of-%d with %s", reshareWhat(prop), prop.Threshold, prop.N(),
		joinNames(a.names(prop.Parties, allIndices(prop.N())))), maxEndedReason)
	e.Signers = allIndices(prop.N())
	switch {
	case done:
		e.Outcome = EndReshared
	default:
		e.Outcome = EndAborted
		if err != nil {
			e.Reason = clip(err.Error(), maxEndedReason)
		}
	}
}

// keyOf is the key a record names: a key in use, or one made by a keygen
// this console holds (a disputed key is no longer in use); nil when none.
func (a *App) keyOf(keyID [32]byte) *ceremony.Key {
	if k, ok := a.keys[keyID]; ok {
		return k.key
	}
	for _, st := range a.keygens {
		if key, _, err := st.s.Result(); err == nil && key.ID == keyID {
			return key
		}
	}
	return nil
}

// endedRecord looks up a ceremony that has left memory (loop).
func (a *App) endedRecord(ctx context.Context, id [32]byte) (*Ended, error) {
	e, err := a.cfg.Store.Ended(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("core: look up ended ceremony %s: %w", ceremony.ShortID(id), err)
	}
	return e, nil
}

// partyNames names party indices of an ended record: the names it kept
// from when it ended, else those of its key's current parties, else
// "party N" (the key is gone).
func (a *App) partyNames(e *Ended, key *ceremony.Key, idx []uint32) []string {
	out := make([]string, 0, len(idx))
	for _, j := range idx {
		switch {
		case j >= 1 && int(j) <= len(e.Names):
			out = append(out, e.Names[j-1])
		case len(e.Names) == 0 && key != nil && j >= 1 && int(j) <= len(key.Parties):
			out = append(out, a.names(key.Parties, []uint32{j})...)
		default:
			out = append(out, fmt.Sprintf("party %d", j))
		}
	}
	return out
}

// resultOf is what a waiter gets for a ceremony that has left memory.
func (a *App) resultOf(e *Ended) result {
	key := a.keyOf(e.KeyID)
	if e.Kind == KindKeygen {
		if e.Outcome != EndGenerated || key == nil {
			return result{err: fmt.Errorf("key generation %s: %s: %s", ceremony.ShortID(e.ID), e.Outcome, e.Reason)}
		}
		return result{keygen: &KeygenResult{Ceremony: e.ID, KeyID: key.ID, GroupKey: key.Group.Key.Bytes(), T: key.T(), N: key.N()}}
	}
	if e.Outcome == EndSigned {
		r := &SignResult{ID: e.ID, KeyID: e.KeyID, Message: e.Message, Signature: e.Signature,
			Signers: a.partyNames(e, key, e.Signers), Blamed: a.partyNames(e, key, e.Blamed)}
		if key != nil {
			r.GroupKey = key.Group.Key.Bytes()
		}
		return result{sign: r}
	}
	return result{err: &SignError{ID: e.ID, Reason: e.Reason, Declined: a.partyNames(e, key, e.Declined), Blamed: a.partyNames(e, key, e.Blamed),
		Expired: e.Outcome == EndExpired}}
}

// signDoneOf is the history event of an ended signing.
func (a *App) signDoneOf(e *Ended) event.SignDone {
	key := a.keyOf(e.KeyID)
	ev := event.SignDone{ID: hex.EncodeToString(e.ID[:]), KeyID: ceremony.ShortID(e.KeyID), Message: hex.EncodeToString(e.Message),
		Blamed: a.partyNames(e, key, e.Blamed), Time: e.Created}
	if e.Outcome == EndSigned {
		ev.Signature, ev.Signers, ev.Verified = hex.EncodeToString(e.Signature), a.partyNames(e, key, e.Signers), true
	} else {
		ev.Failure = e.Reason
	}
	for _, ans := range a.auditEntry(e).Answers {
		ap := event.Approval{Signer: ans.Signer, Decision: ans.Decision}
		ap.User, ap.SSHClient, ap.Rule = ParseBy(ans.By)
		ev.Approvals = append(ev.Approvals, ap)
	}
	return ev
}

// history is the ended signing requests as events, oldest first (loop):
// at most limit of the newest (all when limit <= 0).
func (a *App) history(ctx context.Context, limit int) ([]event.SignDone, error) {
	recs, err := a.cfg.Store.History(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("core: read history: %w", err)
	}
	slices.SortStableFunc(recs, func(x, y *Ended) int { return x.Created.Compare(y.Created) })
	out := make([]event.SignDone, 0, len(recs))
	for _, e := range recs {
		out = append(out, a.signDoneOf(e))
	}
	return out, nil
}

// answerEnded answers a peer that still sends messages of a signing that
// has left memory, from its ended record (see answerFinished).
func (a *App) answerEnded(from Address, env *wire.Envelope, raw []byte, e *Ended) {
	if env.Kind == wire.KindAbort || len(e.Final) == 0 {
		return
	}
	key := a.keyOf(e.KeyID)
	if key == nil {
		return
	}
	final := make([]ceremony.Outgoing, 0, len(e.Final))
	for _, f := range e.Final {
		final = append(final, ceremony.Outgoing{Envelope: f})
	}
	a.answerWith(from, env, raw, key.Parties, final)
}

// convertFinished writes the ended records of the finished ceremonies a
// store of an older format holds (and of those abandoned at a restore), in
// the order they were created, and lets the signings among them leave
// memory (restore).
func (a *App) convertFinished(ctx context.Context, recs []*CeremonyRecord) error {
	var todo []*CeremonyRecord
	for _, r := range recs {
		if !r.Finished {
			continue
		}
		e, err := a.cfg.Store.Ended(ctx, r.ID)
		if err != nil {
			return fmt.Errorf("core: look up ended ceremony: %w", err)
		}
		if e == nil {
			todo = append(todo, r)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	sortByCreated(todo)
	for _, r := range todo {
		e := a.endedOf(r.ID, r, true)
		if e == nil {
			continue // not rebuilt (its key is gone): kept as it is
		}
		if err := a.cfg.Store.FinishCeremony(ctx, r.ID, e, a.cfg.ConsoleKey); err != nil {
			return fmt.Errorf("core: convert ceremony %s: %w", ceremony.ShortID(r.ID), err)
		}
	}
	if err := a.cfg.Store.Durable()(ctx); err != nil {
		return fmt.Errorf("core: convert ceremonies: %w", err)
	}
	for _, r := range todo {
		if r.Kind == KindSign {
			delete(a.signs, r.ID)
			delete(a.records, r.ID)
		}
	}
	a.log.Info("converted the finished ceremonies of an older store format", "count", len(todo))
	return nil
}

// AuditAnswer is one signer's answer in an audit entry.
type AuditAnswer struct {
	Signer   string // roster name (or "party N" when the key is gone)
	Decision string // "approved" or "declined" ("accepted" for a keygen)
	// By is who gave this console's own answer (Input.By): an API
	// caller's "socket uid=.. user=.. pid=.." (and the SSH client it
	// claimed), a rule's name, or "" for its screen or command. Empty for
	// the other signers: they say it in their own trails.
	By string
}

// AuditEntry is an ended record with its parties named.
type AuditEntry struct {
	*Ended
	Requester string // the requester's name now (RequesterName is the name when it ended)
	Signers   []string
	Blamed    []string
	Answers   []AuditAnswer // this console's first, then the others' as seen here
}

// auditEntry names the parties of e (loop).
func (a *App) auditEntry(e *Ended) AuditEntry {
	key := a.keyOf(e.KeyID)
	var parties []uint32
	self := uint32(0)
	switch {
	case len(e.Names) > 0:
		// The parties when it ended (a reshare may have changed them).
		parties = allIndices(len(e.Names))
		self = uint32(slices.Index(e.Names, a.name(a.self)) + 1)
	case key != nil:
		for j, p := range key.Parties {
			if p.Account == a.self.Account && p.Device == a.self.Device {
				self = uint32(j + 1)
			}
		}
		parties = allIndices(key.N())
	}
	out := AuditEntry{Ended: e, Signers: a.partyNames(e, key, e.Signers), Blamed: a.partyNames(e, key, e.Blamed)}
	if e.Requester != 0 {
		out.Requester = e.RequesterName
		if len(e.Names) > 0 || key != nil {
			out.Requester = a.partyNames(e, key, []uint32{e.Requester})[0]
		}
	}
	yes, no := "approved", "declined"
	if e.Kind == KindKeygen {
		yes = "accepted"
	}
	if d := e.Decision; d != nil {
		ans := AuditAnswer{Signer: a.name(a.self), Decision: no, By: d.By}
		if d.Accept {
			ans.Decision = yes
		}
		out.Answers = append(out.Answers, ans)
	}
	for _, j := range parties {
		if j == self {
			continue
		}
		switch {
		case slices.Contains(e.Approved, j):
			out.Answers = append(out.Answers, AuditAnswer{Signer: a.partyNames(e, key, []uint32{j})[0], Decision: yes})
		case slices.Contains(e.Declined, j):
			out.Answers = append(out.Answers, AuditAnswer{Signer: a.partyNames(e, key, []uint32{j})[0], Decision: no})
		}
	}
	return out
}

// Audit returns this console's audit trail from since on (every entry
// when zero), verified from its first entry (numbering, hash chain,
// seals), with its parties named, and its head. A trail that does not
// verify is an error wrapping ErrAuditBroken that names the first bad
// entry.
func (a *App) Audit(ctx context.Context, since time.Time) ([]AuditEntry, AuditHead, error) {
	// Once the App runs (its start may convert records); read beside the
	// loop, not in it: a long trail must not hold it up.
	if err := a.do(ctx, func() {}); err != nil {
		return nil, AuditHead{}, err
	}
	entries, head, err := a.cfg.Store.Audit(ctx)
	if err != nil {
		return nil, AuditHead{}, fmt.Errorf("core: read audit trail: %w", err)
	}
	pub, _ := a.cfg.ConsoleKey.Public().(ed25519.PublicKey)
	if err := VerifyAudit(entries, head, pub); err != nil {
		return nil, head, err
	}
	if !since.IsZero() {
		entries = slices.DeleteFunc(entries, func(e *Ended) bool { return e.EndedAt.Before(since) })
	}
	out := make([]AuditEntry, 0, len(entries))
	err = a.do(ctx, func() {
		for _, e := range entries {
			out = append(out, a.auditEntry(e))
		}
	})
	return out, head, err
}
