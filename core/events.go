package core

// Events to the console, and the names they carry.

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
)

func (a *App) publish(e event.Event) { a.cfg.Bus.Publish(e) }

func (a *App) logMessage(dir event.Direction, peer Address, env *wire.Envelope, raw []byte, note string) {
	m := event.Message{Time: a.now(), Direction: dir, Peer: a.name(peer), Size: len(raw), Note: note, Server: peer.Server}
	sum := sha256.Sum256(raw)
	m.Digest = hex.EncodeToString(sum[:4])
	if env != nil {
		m.Ceremony = ceremony.ShortID(env.Ceremony)
		m.Round = env.Round
		m.Kind = env.Kind.String()
	}
	a.publish(m)
}

func (a *App) name(addr Address) string {
	if n := a.cfg.Roster.NameOf(addr.Account, addr.Device); n != "" {
		return n
	}
	return addr.String()
}

func (a *App) names(parties []dkg.Party, idx []uint32) []string {
	out := make([]string, 0, len(idx))
	for _, j := range idx {
		out = append(out, a.name(partyAddr(parties, j)))
	}
	return out
}

func partyAddr(parties []dkg.Party, j uint32) Address {
	if j == 0 || int(j) > len(parties) {
		return Address{}
	}
	return Address{Account: parties[j-1].Account, Device: parties[j-1].Device}
}

func allIndices(n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = uint32(i + 1)
	}
	return out
}

func joinNames(ns []string) string {
	switch len(ns) {
	case 0:
		return ""
	case 1:
		return ns[0]
	}
	s := ""
	for i, n := range ns {
		switch {
		case i == 0:
			s = n
		case i == len(ns)-1:
			s += " and " + n
		default:
			s += ", " + n
		}
	}
	return s
}

// printable reports whether s can be shown as text: no control characters
// other than newline and tab (escape sequences would take over a terminal).
func printable(s string) bool {
	for _, r := range s {
		if r == '\n' || r == '\t' {
			continue
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029 || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return false
		}
	}
	return true
}
