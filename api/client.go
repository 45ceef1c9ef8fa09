package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/signal-mpc/cosigner/core/event"
)

// SocketName is the socket's file name in the data directory.
const SocketName = "cosigner.sock"

// ErrNoServer: nothing serves the socket (no daemon or console runs on
// this data directory).
var ErrNoServer = errors.New("api: no cosigner serves this data directory")

// Listen makes the API socket at path, readable and writable by its owner
// only. The caller holds the store's lock, so a socket file already there
// is a stale one (its process died) and is removed first.
func Listen(path string) (net.Listener, error) { return ListenGroup(path, -1) }

// ListenGroup is Listen for a socket that the members of group gid may use
// too (mode 0660; gid < 0: the owner only, 0600). The folder that holds it
// must let them through (0710, that group): SocketDir prepares one.
func ListenGroup(path string, gid int) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("api: remove stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api: listen: %w", err)
	}
	// Closing the listener removes the file; a crash leaves it, for the
	// next owner of the store to remove.
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("api: socket group: %w", err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api: socket mode: %w", err)
	}
	return ln, nil
}

// SocketDir makes dir (inside the data directory dataDir) a folder that
// the members of group gid can pass through but not list (0710), and lets
// them pass through dataDir the same way: everything else in it stays the
// owner's (files 0600, folders 0700).
func SocketDir(dataDir, dir string, gid int) error {
	if err := os.MkdirAll(dir, 0o710); err != nil {
		return fmt.Errorf("api: socket folder: %w", err)
	}
	for _, d := range []string{dataDir, dir} {
		if err := os.Chown(d, -1, gid); err != nil {
			return fmt.Errorf("api: socket folder group: %w", err)
		}
		if err := os.Chmod(d, 0o710); err != nil {
			return fmt.Errorf("api: socket folder mode: %w", err)
		}
	}
	return nil
}

// Client is one connection to the API.
type Client struct {
	c    net.Conn
	wmu  sync.Mutex
	mu   sync.Mutex
	next int64
	wait map[string]chan Response
	err  error // why the connection ended
	done chan struct{}
	// events carries the notifications of a subscription.
	events chan event.Event
}

// Dial connects to the socket at path. ErrNoServer when nothing serves it.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%w: %w", ErrNoServer, err)
		}
		return nil, fmt.Errorf("api: dial %s: %w", path, err)
	}
	cl := &Client{c: c, wait: map[string]chan Response{}, done: make(chan struct{}), events: make(chan event.Event, eventBacklog)}
	go cl.read()
	return cl, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.c.Close() }

// Done is closed when the connection ends; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the connection ended (nil while it is up).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Events are the notifications of Subscribe, decoded. The channel closes
// with the connection; events that find it full are dropped.
func (c *Client) Events() <-chan event.Event { return c.events }

func (c *Client) read() {
	r := bufio.NewReaderSize(c.c, 64<<10)
	var err error
	for {
		var line []byte
		if line, err = readLine(r); err != nil {
			break
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Result json.RawMessage `json:"result"`
			Error  *Error          `json:"error"`
		}
		if json.Unmarshal(line, &msg) != nil {
			err = fmt.Errorf("%w: a line that is not JSON", ErrProtocol)
			break
		}
		if msg.Method == NotifyEvent {
			if e, derr := DecodeEvent(msg.Params); derr == nil {
				select {
				case c.events <- e:
				default:
				}
			}
			continue
		}
		c.mu.Lock()
		ch := c.wait[string(msg.ID)]
		delete(c.wait, string(msg.ID))
		c.mu.Unlock()
		if ch != nil {
			ch <- Response{ID: msg.ID, Result: msg.Result, Error: msg.Error}
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("api: connection ended: %w", err)
	for id, ch := range c.wait {
		close(ch)
		delete(c.wait, id)
	}
	c.mu.Unlock()
	close(c.events)
	close(c.done)
	c.c.Close()
}

// Call makes one request and decodes its result into result (if not nil).
// An error answer is returned as *Error.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.next++
	id := strconv.FormatInt(c.next, 10)
	ch := make(chan Response, 1)
	c.wait[id] = ch
	c.mu.Unlock()
	req := Request{JSONRPC: "2.0", ID: json.RawMessage(id), Method: method}
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("api: %s params: %w", method, err)
		}
		req.Params = b
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	_, err = c.c.Write(append(b, '\n'))
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("api: %s: %w", method, err)
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return c.Err()
		}
		if resp.Error != nil {
			return resp.Error
		}
		if result != nil {
			if err := json.Unmarshal(resp.Result, result); err != nil {
				return fmt.Errorf("%w: %s result: %w", ErrProtocol, method, err)
			}
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.wait, id)
		c.mu.Unlock()
		return ctx.Err()
	}
}

// DecodeEvent reads an event notification's params back into the event.
func DecodeEvent(params json.RawMessage) (event.Event, error) {
	var p EventParams
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, fmt.Errorf("%w: event: %w", ErrProtocol, err)
	}
	var e event.Event
	var err error
	switch p.Type {
	case "message":
		e, err = decodeAs[event.Message](p.Event)
	case "untagged":
		e, err = decodeAs[event.Untagged](p.Event)
	case "progress":
		e, err = decodeAs[event.Progress](p.Event)
	case "approval_requested":
		e, err = decodeAs[event.ApprovalRequested](p.Event)
	case "approval_resolved":
		e, err = decodeAs[event.ApprovalResolved](p.Event)
	case "keygen_done":
		e, err = decodeAs[event.KeygenDone](p.Event)
	case "keygen_failed":
		e, err = decodeAs[event.KeygenFailed](p.Event)
	case "reshare_done":
		e, err = decodeAs[event.ReshareDone](p.Event)
	case "reshare_failed":
		e, err = decodeAs[event.ReshareFailed](p.Event)
	case "sign_done":
		e, err = decodeAs[event.SignDone](p.Event)
	case "error":
		e, err = decodeAs[event.Error](p.Event)
	case "challenge":
		e, err = decodeAs[event.Challenge](p.Event)
	case "challenge_answered":
		e, err = decodeAs[event.ChallengeAnswered](p.Event)
	case "connection":
		e, err = decodeAs[event.Connection](p.Event)
	case "server_lagging":
		e, err = decodeAs[event.ServerLagging](p.Event)
	default:
		return nil, fmt.Errorf("%w: unknown event type %q", ErrProtocol, p.Type)
	}
	return e, err
}

func decodeAs[T any](b json.RawMessage) (event.Event, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: event: %w", ErrProtocol, err)
	}
	return any(v).(event.Event), nil
}
