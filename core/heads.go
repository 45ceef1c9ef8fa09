package core

// Audit heads in signing answers: each signer's partial or decline carries
// its audit head (count and hash of its trail), so that the peers hold
// each other's (a cut-off tail or a rolled-back store shows against them),
// and each ended record keeps the heads the peers' answers carried.

import (
	"context"
	"slices"

	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/core/ceremony"
)

// refreshHead reads this console's audit head (loop). It is read again
// once a second (onTick) rather than after every ending: a head a little
// behind is still an entry of the trail, which is all a peer's copy must
// name, and reading it waits for the store's pending writes.
func (a *App) refreshHead(ctx context.Context) {
	h, err := a.cfg.Store.AuditHead(ctx)
	if err != nil {
		a.log.Warn("read the audit head", "err", err)
		return
	}
	a.head = tbls.Head{Count: h.Count, Hash: h.Hash}
}

// signConfig is k's signing configuration for one request: its answer
// carries stored, the head kept with the request when it was first
// opened (a restart replays the same bytes), or this console's head now.
func (a *App) signConfig(k *keyState, stored *tbls.Head) ceremony.SignConfig {
	if stored != nil {
		return k.share.WithHead(*stored)
	}
	return k.share.WithHead(a.head)
}

// peerHeads lists the audit heads the other signers' answers carried, in
// party order, named.
func (a *App) peerHeads(st *signState) []PeerHead {
	heads := st.s.PeerHeads()
	idx := make([]uint32, 0, len(heads))
	for j := range heads {
		idx = append(idx, j)
	}
	slices.Sort(idx)
	out := make([]PeerHead, 0, len(idx))
	for _, j := range idx {
		name := a.names(st.key.key.Parties, []uint32{j})
		out = append(out, PeerHead{Signer: clip(name[0], maxSignerName), Count: heads[j].Count, Hash: heads[j].Hash})
	}
	return out
}

type callerKey struct{}

// WithCaller returns ctx saying who calls (an Input.By: the socket API's
// "socket uid=… user=… pid=…"): a ceremony begun under it records who
// asked for it.
func WithCaller(ctx context.Context, by string) context.Context {
	return context.WithValue(ctx, callerKey{}, clip(by, maxBy))
}

func callerOf(ctx context.Context) string {
	by, _ := ctx.Value(callerKey{}).(string)
	return by
}
