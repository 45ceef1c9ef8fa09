package api

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxSSHClient bounds an SSH client claim: "[" IPv6 "%" zone "]:" port
// fits with room to spare.
const MaxSSHClient = 64

// HelloParams tells the server about the connecting process. SSHClient is
// the address ("ip:port", "[ipv6]:port") of the SSH client the process runs
// under, as its own environment says (SSHClientFromEnv): a claim of that
// process, recorded as such with the answers it gives; empty, no claim.
type HelloParams struct {
	SSHClient string `json:"ssh_client"`
}

// HelloResult answers hello.
type HelloResult struct {
	APIVersion int `json:"api_version"`
}

// CheckSSHClient accepts an SSH client claim only in the canonical form
// net/netip prints for an address and a non-zero port, at most
// MaxSSHClient bytes of printable ASCII without spaces: it is recorded in
// the approval's By ("ssh_client=ADDR"), which is read back field by field.
func CheckSSHClient(s string) error {
	if len(s) > MaxSSHClient {
		return fmt.Errorf("ssh_client is %d bytes, at most %d", len(s), MaxSSHClient)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return errors.New("ssh_client must be printable ASCII without spaces")
		}
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.String() != s {
		return errors.New(`ssh_client must be an address and a port, as "192.0.2.7:52722" or "[2001:db8::7]:52722"`)
	}
	return nil
}

// SSHClientFromEnv is the SSH client address of the process whose
// environment getenv reads: SSH_CONNECTION's first two fields (client
// address and port), else SSH_CLIENT's; "" when neither holds a valid one.
func SSHClientFromEnv(getenv func(string) string) string {
	for _, name := range []string{"SSH_CONNECTION", "SSH_CLIENT"} {
		f := strings.Fields(getenv(name))
		if len(f) < 2 {
			continue
		}
		addr, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		port, err := strconv.ParseUint(f[1], 10, 16)
		if err != nil {
			continue
		}
		if s := netip.AddrPortFrom(addr, uint16(port)).String(); CheckSSHClient(s) == nil {
			return s
		}
	}
	return ""
}

// Hello sends the hello of this connection with the SSH client claim
// sshClient (nothing is sent when it is empty). A server older than the
// method ignores the claim: its answers record no SSH client.
func (c *Client) Hello(ctx context.Context, sshClient string) error {
	if sshClient == "" {
		return nil
	}
	err := c.Call(ctx, MethodHello, HelloParams{SSHClient: sshClient}, nil)
	var rerr *Error
	if errors.As(err, &rerr) && rerr.Code == CodeNoMethod {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api: hello: %w", err)
	}
	return nil
}

// hello records the connection's claim, once per connection.
func (cn *conn) hello(p HelloParams) (any, *Error) {
	if p.SSHClient != "" {
		if err := CheckSSHClient(p.SSHClient); err != nil {
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: " + err.Error()}
		}
	}
	cn.hmu.Lock()
	defer cn.hmu.Unlock()
	if cn.helloed {
		return nil, &Error{Code: CodeRefused, Message: "hello was already sent on this connection"}
	}
	cn.helloed, cn.sshClient = true, p.SSHClient
	cn.s.log.Info("api: hello", "uid", cn.peer.UID, "pid", cn.peer.PID, "ssh_client", p.SSHClient)
	return HelloResult{APIVersion: Version}, nil
}

// by is who an answer given on this connection comes from: the peer's
// credentials and, after a hello that claimed one, its SSH client.
func (cn *conn) by() string {
	by := cn.peer.String()
	if ssh := cn.claim(); ssh != "" {
		by += " ssh_client=" + ssh
	}
	return by
}

// claim is the SSH client this connection's hello claimed ("" none).
func (cn *conn) claim() string {
	cn.hmu.Lock()
	defer cn.hmu.Unlock()
	return cn.sshClient
}
