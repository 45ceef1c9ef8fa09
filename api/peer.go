package api

import (
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// Peer is who is at the other end of a Unix socket, as the kernel says
// (SO_PEERCRED): the API records it with what a connection does. UID is -1
// where the system cannot tell.
type Peer struct {
	UID, GID, PID int
}

// User is the peer's user name, or its uid when it has none.
func (p Peer) User() string {
	if p.UID < 0 {
		return "unknown"
	}
	if u, err := user.LookupId(strconv.Itoa(p.UID)); err == nil {
		return u.Username
	}
	return strconv.Itoa(p.UID)
}

// String is how an answer given through the socket records its giver.
func (p Peer) String() string {
	if p.UID < 0 {
		return "socket (peer unknown)"
	}
	return fmt.Sprintf("socket uid=%d user=%s pid=%d", p.UID, byField(p.User()), p.PID)
}

// byField keeps a value one field of By: a name with spaces or control
// characters would break the fields apart (core.ParseBy) or forge one.
func byField(s string) string {
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '_'
		}
		return r
	}, s)
}
