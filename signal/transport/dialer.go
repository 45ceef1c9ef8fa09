// Package transport opens WebSockets to a Signal server: over HTTP/1.1
// upgrade, or over HTTP/2 extended CONNECT (RFC 8441) as Signal's current
// clients and its mock server use. The server, its CA and the mode come from
// configuration; nothing here knows a host.
package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/net/http2"
)

// Mode selects how WebSockets are opened.
type Mode uint8

// Modes.
const (
	// ModeAuto uses HTTP/2 extended CONNECT when the server offers it over
	// TLS, else an HTTP/1.1 upgrade; the first answer is remembered.
	ModeAuto Mode = iota
	// ModeHTTP1 always upgrades an HTTP/1.1 connection.
	ModeHTTP1
	// ModeHTTP2 always uses RFC 8441 over HTTP/2 (TLS only).
	ModeHTTP2
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeHTTP1:
		return "http1"
	case ModeHTTP2:
		return "http2"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode reads "auto", "http1" or "http2".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "auto":
		return ModeAuto, nil
	case "http1":
		return ModeHTTP1, nil
	case "http2":
		return ModeHTTP2, nil
	}
	return 0, fmt.Errorf("%w: mode %q, want auto, http1 or http2", ErrConfig, s)
}

// Config describes the server.
type Config struct {
	// URL is the server's base URL: https://host[:port], or http:// for a
	// relay on loopback.
	URL string
	// RootCAs verifies the server's certificate; nil means the system roots.
	RootCAs *x509.CertPool
	Mode    Mode
	// HandshakeTimeout bounds opening one WebSocket (default 30 s).
	HandshakeTimeout time.Duration
}

// Dialer opens WebSockets to one server. All HTTP/2 streams share one
// connection. It is safe for concurrent use.
type Dialer struct {
	base    *url.URL
	tlsConf *tls.Config
	mode    Mode
	timeout time.Duration
	h2      *http2.Transport

	mu     sync.Mutex
	chosen Mode // what ModeAuto settled on, ModeAuto until known
}

// NewDialer checks the configuration. It opens no connection.
func NewDialer(cfg Config) (*Dialer, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: server URL: %v", ErrConfig, err)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("%w: server URL %q: want https://host[:port] (http:// only for a local relay)", ErrConfig, cfg.URL)
	}
	if cfg.Mode > ModeHTTP2 {
		return nil, fmt.Errorf("%w: mode %d", ErrConfig, cfg.Mode)
	}
	if cfg.Mode == ModeHTTP2 && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: WebSockets over HTTP/2 need https", ErrConfig)
	}
	d := &Dialer{
		base:    u,
		mode:    cfg.Mode,
		timeout: cfg.HandshakeTimeout,
		tlsConf: &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12, ServerName: u.Hostname()},
	}
	if d.timeout <= 0 {
		d.timeout = 30 * time.Second
	}
	if u.Scheme == "https" {
		d.h2 = &http2.Transport{
			TLSClientConfig: h2TLS(d.tlsConf),
			// HTTP/2 pings find a dead connection even when the server
			// never answers WebSocket pings (Signal's mock does not).
			ReadIdleTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		}
	}
	return d, nil
}

// URL returns the server's base URL.
func (d *Dialer) URL() *url.URL { u := *d.base; return &u }

// Close drops idle HTTP/2 connections.
func (d *Dialer) Close() {
	if d.h2 != nil {
		d.h2.CloseIdleConnections()
	}
}

// Mode returns the configured mode, or for ModeAuto what it settled on
// (ModeAuto until the first WebSocket opened).
func (d *Dialer) Mode() Mode {
	if d.mode != ModeAuto {
		return d.mode
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.chosen
}

// Dial opens a WebSocket at path (with its query) with the given headers
// (Authorization, User-Agent, ...). A refusal by the server is an error
// that names the HTTP status.
func (d *Dialer) Dial(ctx context.Context, path string, header http.Header) (*websocket.Conn, error) {
	mode := d.mode
	if mode == ModeAuto {
		d.mu.Lock()
		mode = d.chosen
		d.mu.Unlock()
		if mode == ModeAuto && d.base.Scheme != "https" {
			mode = ModeHTTP1
		}
	}
	switch mode {
	case ModeHTTP1:
		return d.dialHTTP1(ctx, path, header)
	case ModeHTTP2:
		return d.dialHTTP2(ctx, path, header)
	}
	ws, err := d.dialHTTP2(ctx, path, header)
	if errors.Is(err, ErrNoExtendedConnect) {
		ws, err = d.dialHTTP1(ctx, path, header)
		if err == nil {
			d.settle(ModeHTTP1)
		}
		return ws, err
	}
	if err == nil {
		d.settle(ModeHTTP2)
	}
	return ws, err
}

func (d *Dialer) settle(m Mode) {
	d.mu.Lock()
	d.chosen = m
	d.mu.Unlock()
}

func (d *Dialer) wsURL(path string) (string, error) {
	ref, err := url.Parse(path)
	if err != nil || ref.Scheme != "" || ref.Host != "" || !strings.HasPrefix(ref.Path, "/") {
		return "", fmt.Errorf("%w: websocket path %q", ErrConfig, path)
	}
	u := *d.base
	u.Scheme = map[string]string{"https": "wss", "http": "ws"}[d.base.Scheme]
	u.Path, u.RawQuery = ref.Path, ref.RawQuery
	return u.String(), nil
}

func (d *Dialer) dialHTTP1(ctx context.Context, path string, header http.Header) (*websocket.Conn, error) {
	target, err := d.wsURL(path)
	if err != nil {
		return nil, err
	}
	wd := websocket.Dialer{TLSClientConfig: d.tlsConf.Clone(), HandshakeTimeout: d.timeout}
	ws, resp, err := wd.DialContext(ctx, target, header)
	return ws, d.handshakeError(path, resp, err)
}

func (d *Dialer) dialHTTP2(ctx context.Context, path string, header http.Header) (*websocket.Conn, error) {
	target, err := d.wsURL(path)
	if err != nil {
		return nil, err
	}
	authority := d.base.Host
	wd := websocket.Dialer{
		HandshakeTimeout: d.timeout,
		NetDialTLSContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			// gorilla cancels the dial context as soon as Dial returns; the
			// stream must outlive it, so it gets a context of its own.
			return newH2Stream(d.h2, "https", authority, streamAddr("local"), streamAddr(addr)), nil
		},
	}
	ws, resp, err := wd.DialContext(ctx, target, header)
	return ws, d.handshakeError(path, resp, err)
}

// handshakeError names the HTTP status of a refused handshake, and says
// what to do when an https:// URL reached a plain-HTTP server.
func (d *Dialer) handshakeError(path string, resp *http.Response, err error) error {
	if err == nil {
		return nil
	}
	if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
		return &HandshakeError{Path: path, Status: resp.StatusCode}
	}
	var rh tls.RecordHeaderError
	// The HTTP/2 stream reports the TLS failure as text only.
	if errors.As(err, &rh) || strings.Contains(err.Error(), "first record does not look like a TLS handshake") {
		plain := *d.base
		plain.Scheme = "http"
		return fmt.Errorf("%w: the server at %s answers in plain HTTP: use %s for a relay started without --tls-cert (or give the relay a certificate): %w",
			ErrNotTLS, d.base.Redacted(), plain.Redacted(), err)
	}
	return fmt.Errorf("transport: open websocket %s: %w", path, err)
}

// HandshakeError is a WebSocket the server refused with an HTTP status
// (401 for bad credentials, 403, 404, ...).
type HandshakeError struct {
	Path   string
	Status int
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("transport: server refused websocket %s: %d %s", e.Path, e.Status, http.StatusText(e.Status))
}

// streamAddr is the net.Addr of an HTTP/2 stream (it has no socket of its
// own).
type streamAddr string

func (a streamAddr) Network() string { return "h2-stream" }
func (a streamAddr) String() string  { return string(a) }

// h2TLS offers both protocols in ALPN so that a server without HTTP/2
// completes the handshake (TLS 1.3 servers abort on an ALPN mismatch) and
// the HTTP/2 transport reports the mismatch, which Auto mode falls back on.
func h2TLS(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}
