package core

// Copies: a console on several servers gets each MPC message once per
// server the sender shares with it. The first copy is handled; a copy of
// the same bytes through another server is acknowledged and dropped with
// no answer of its own, while the same bytes again through the same
// server are the peer re-sending (it still waits for something) and are
// handled as ever.

import (
	"crypto/sha256"
	"slices"
	"time"
)

// copyTTL is how long the servers an envelope came through are kept:
// longer than any ceremony waits for a late copy to matter.
const copyTTL = 2 * time.Hour

// maxCopies bounds the entries kept (oldest pruned first).
const maxCopies = 1 << 16

type copySeen struct {
	servers []string // the servers this envelope came through; none: seen before a restart
	at      time.Time
}

// crossCopy reports whether raw, fresh from the network through from's
// server, is a copy of an envelope already handled that came through
// another server (and records this server). Loop goroutine only.
func (a *App) crossCopy(from Address, raw []byte) bool {
	if from.Server == "" {
		return false // one server, or a caller that does not say
	}
	if a.copies == nil {
		a.copies = map[[32]byte]*copySeen{}
	}
	k := sha256.Sum256(raw)
	c, ok := a.copies[k]
	if !ok {
		a.pruneCopies()
		a.copies[k] = &copySeen{servers: []string{from.Server}, at: a.now()}
		return false
	}
	if slices.Contains(c.servers, from.Server) {
		return false // the peer re-sent it through this server
	}
	c.servers = append(c.servers, from.Server)
	return true
}

// seenBefore marks raw as handled before a restart (through a server not
// recorded): its first copy after the restart is dropped, whichever server
// brings it.
func (a *App) seenBefore(raw []byte) {
	if a.copies == nil {
		a.copies = map[[32]byte]*copySeen{}
	}
	a.copies[sha256.Sum256(raw)] = &copySeen{at: a.now()}
}

func (a *App) pruneCopies() {
	if len(a.copies) < maxCopies {
		return
	}
	cut := a.now().Add(-copyTTL)
	for k, c := range a.copies {
		if c.at.Before(cut) {
			delete(a.copies, k)
		}
	}
	for k := range a.copies { // still full: drop arbitrary ones
		if len(a.copies) < maxCopies {
			break
		}
		delete(a.copies, k)
	}
}
