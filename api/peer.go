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
	// A name with spaces or control characters would break the fields of
	// By apart (core.ParseBy).
	user := strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, p.User())
	return fmt.Sprintf("socket uid=%d user=%s pid=%d", p.UID, user, p.PID)
}
