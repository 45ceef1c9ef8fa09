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
// a copy comes through the other servers within seconds or minutes; a
// later one is handled as the same bytes again (the ceremony's engine or
// its finished record drops it).
const copyTTL = 30 * time.Minute

// maxCopies bounds the entries kept, oldest dropped first: memory stays
// flat however long the console runs.
const maxCopies = 4096

type copySeen struct {
	servers []string // the servers this envelope came through; none: seen before a restart
	at      time.Time
}

// copyLog is the envelopes seen lately, in arrival order.
type copyLog struct {
	seen  map[[32]byte]*copySeen
	order [][32]byte // oldest first
}

// add records k, dropping the oldest entries past copyTTL or maxCopies.
func (l *copyLog) add(k [32]byte, c *copySeen) {
	if l.seen == nil {
		l.seen = map[[32]byte]*copySeen{}
	}
	if _, ok := l.seen[k]; !ok {
		l.order = append(l.order, k)
	}
	l.seen[k] = c
	cut := c.at.Add(-copyTTL)
	n := 0
	for n < len(l.order) && (len(l.order)-n > maxCopies || l.seen[l.order[n]].at.Before(cut)) {
		delete(l.seen, l.order[n])
		n++
	}
	l.order = l.order[n:] // append copies only the live part when it grows
}

// crossCopy reports whether raw, fresh from the network through from's
// server, is a copy of an envelope already handled that came through
// another server (and records this server). Loop goroutine only.
func (a *App) crossCopy(from Address, raw []byte) bool {
	if from.Server == "" {
		return false // one server, or a caller that does not say
	}
	k := sha256.Sum256(raw)
	c, ok := a.copies.seen[k]
	if !ok {
		a.copies.add(k, &copySeen{servers: []string{from.Server}, at: a.now()})
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
	a.copies.add(sha256.Sum256(raw), &copySeen{at: a.now()})
}
