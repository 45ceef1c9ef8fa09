package api

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerOf reads the credentials of a Unix socket's peer.
func peerOf(c net.Conn) Peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{UID: -1, GID: -1, PID: -1}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{UID: -1, GID: -1, PID: -1}
	}
	p := Peer{UID: -1, GID: -1, PID: -1}
	raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			p = Peer{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}
		}
	})
	return p
}
