package transport

import "errors"

// Sentinel errors.
var (
	// ErrConfig: the transport configuration is unusable (bad URL, scheme
	// or mode).
	ErrConfig = errors.New("transport: invalid configuration")
	// ErrNoExtendedConnect: the server does not offer RFC 8441 WebSockets
	// over HTTP/2 (no h2 in ALPN, or no SETTINGS_ENABLE_CONNECT_PROTOCOL).
	ErrNoExtendedConnect = errors.New("transport: server does not support WebSockets over HTTP/2")
	// ErrClosed: the stream or client was closed.
	ErrClosed = errors.New("transport: closed")
	// ErrConnectedElsewhere: the server closed the socket because the same
	// device (account and device id) connected again from somewhere else
	// (close code 4409): two consoles run on copies of one data folder.
	ErrConnectedElsewhere = errors.New("another console is connected with this same device (a copied data folder?): stop one of them")
	// ErrNotTLS: the URL says https but the server answered in plain HTTP
	// (a relay started without a certificate).
	ErrNotTLS = errors.New("transport: the server does not speak TLS")
)

// timeoutError is returned by reads and writes whose deadline passed; it
// satisfies net.Error so gorilla/websocket and callers see a timeout.
type timeoutError struct{}

func (timeoutError) Error() string   { return "transport: i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
