package relay

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/signal-mpc/cosigner/signal/wsr"
)

// apiError is a refusal with its HTTP status and an optional JSON body.
type apiError struct {
	status int
	msg    string // for the log and the default body; never a secret
	body   any    // JSON body sent instead of {"message": msg}
	header map[string]string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

func fail(status int, format string, a ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, a...)}
}

// handlerFunc is a handler that returns its refusal as an error; a non-api
// error is answered 500 and logged.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil {
			return
		}
		var ae *apiError
		switch {
		case errors.As(err, &ae):
		case r.Context().Err() != nil && errors.Is(err, r.Context().Err()):
			// The client went away (or the relay is stopping) while the
			// request waited, for a commit say: nobody is there to answer,
			// and it is no fault of the relay's.
			s.log.Debug("request abandoned", "method", r.Method, "path", r.URL.Path, "err", err)
			ae = fail(http.StatusServiceUnavailable, "request abandoned")
		case storageFull(err):
			// Writes fail until the operator makes room; nothing is
			// wrong with the request, so clients are told to come back
			// (Signal's server answers 503 when its storage refuses).
			s.log.Error("storage full: request refused", "method", r.Method, "path", r.URL.Path, "err", err)
			ae = fail(http.StatusServiceUnavailable, "the relay's storage is full; try again later")
			ae.header = map[string]string{"Retry-After": strconv.Itoa(int(storageFullRetry / time.Second))}
		default:
			s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			ae = fail(http.StatusInternalServerError, "internal error")
		}
		for k, v := range ae.header {
			w.Header().Set(k, v)
		}
		body := ae.body
		if body == nil {
			body = map[string]any{"code": ae.status, "message": ae.msg}
		}
		writeJSON(w, ae.status, body)
	}
}

// storageFullRetry is the Retry-After of a request refused because the
// disk is full.
const storageFullRetry = 60 * time.Second

// storageFull reports whether err comes from a disk or quota that is full.
func storageFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// decodeJSON reads a JSON body of at most maxBodySize bytes into v. Bad JSON
// is 400; a body over the limit is 413.
func decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodySize+1))
	if err != nil {
		return fail(http.StatusBadRequest, "read body")
	}
	if len(body) > maxBodySize {
		return fail(http.StatusRequestEntityTooLarge, "body too large")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fail(http.StatusBadRequest, "malformed JSON body")
	}
	if dec.More() {
		return fail(http.StatusBadRequest, "trailing data after the JSON body")
	}
	return nil
}

// decodeB64 accepts standard base64 with or without padding, as Signal does.
func decodeB64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// principal is an authenticated device.
type principal struct {
	aci uuid
	dev uint8
}

type ctxKey int

const (
	ctxPrincipal ctxKey = iota // *principal of an authenticated socket
	ctxViaSocket               // true for requests carried on a WebSocket
)

// authenticate returns the device making the request: the socket's device
// for a request on an authenticated socket, else the Basic credentials.
// Missing or wrong credentials are 401; wrong ones beyond the budget of
// their source or account are 429 (authlimit.go).
func (s *Server) authenticate(r *http.Request) (*principal, error) {
	if p, ok := r.Context().Value(ctxPrincipal).(*principal); ok {
		return p, nil
	}
	p, err := s.checkCredentials(r)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return nil, err
		}
		return nil, fail(http.StatusUnauthorized, "unauthorized")
	}
	return p, nil
}

// checkCredentials verifies "Basic <ACI>.<device>:<password>". A failure is
// counted against the request's source and account (authFailed): it is
// then either an *apiError (429) or another error (wrong credentials).
func (s *Server) checkCredentials(r *http.Request) (*principal, error) {
	user, password, err := basicAuth(r.Header)
	if errors.Is(err, errNoCredentials) {
		return nil, err // not a guess
	}
	if err != nil {
		return nil, s.countFailure(r, "", err)
	}
	aci, dev, err := parseLogin(user)
	if err != nil {
		return nil, s.countFailure(r, user, err)
	}
	d, err := s.store.device(aci, dev)
	if err != nil {
		return nil, err
	}
	if d == nil {
		hashPassword(dummySalt, password) // as long as a wrong password
		return nil, s.countFailure(r, user, errWrongCredentials)
	}
	if !checkPassword(d.Salt, d.PasswordHash, password) {
		return nil, s.countFailure(r, user, errWrongCredentials)
	}
	return &principal{aci: aci, dev: dev}, nil
}

// countFailure records a failed authentication and returns the error to
// answer with: the 429 of authFailed, or why it failed.
func (s *Server) countFailure(r *http.Request, login string, reason error) error {
	if err := s.authFailed(r, login, reason); err != nil {
		return err
	}
	if errors.Is(reason, errWrongCredentials) {
		return reason
	}
	return fmt.Errorf("%w: %w", errWrongCredentials, reason)
}

// recorder collects a handler's response for a request carried on a socket.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// serveSocketRequest runs a request received on a socket through the same
// handlers as plain HTTP. p is the socket's device, or nil for an
// unauthenticated socket (then the request's own Authorization counts).
func (s *Server) serveSocketRequest(ctx context.Context, h http.Handler, p *principal, remoteAddr string, req *wsr.Request) *wsr.Response {
	ctx = context.WithValue(ctx, ctxViaSocket, true)
	if p != nil {
		ctx = context.WithValue(ctx, ctxPrincipal, p)
	}
	hr, err := http.NewRequestWithContext(ctx, req.Verb, "http://relay"+req.Path, bytes.NewReader(req.Body))
	if err != nil {
		return &wsr.Response{Status: http.StatusBadRequest}
	}
	hr.Header = wsr.HTTPHeader(req.Headers)
	hr.RequestURI = req.Path
	hr.RemoteAddr = remoteAddr // the socket's: failed logins are counted per source
	hr.ContentLength = int64(len(req.Body))
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, hr)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &wsr.Response{Status: rec.status, Headers: wsr.HeaderLines(rec.header), Body: rec.body.Bytes()}
}

// withTimestamp adds X-Signal-Timestamp to every response. It also counts
// the running handlers, so that Run closes the store only after the last.
func (s *Server) withTimestamp(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.sessions.Add(1)
		defer s.sessions.Done()
		w.Header().Set("X-Signal-Timestamp", strconv.FormatInt(s.now().UnixMilli(), 10))
		h.ServeHTTP(w, r)
	})
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	var root http.Handler
	rest := func(pattern string, h handlerFunc) { mux.Handle(pattern, s.handle(h)) }

	mux.HandleFunc("GET /v1/websocket/provisioning/{$}", s.serveProvisioningSocket)
	mux.HandleFunc("GET /v1/websocket/provisioning", s.serveProvisioningSocket)
	mux.HandleFunc("GET /v1/websocket/{$}", func(w http.ResponseWriter, r *http.Request) { s.serveChatSocket(w, r, root) })
	mux.HandleFunc("GET /v1/websocket", func(w http.ResponseWriter, r *http.Request) { s.serveChatSocket(w, r, root) })

	rest("GET /v1/keepalive", func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(200); return nil })
	rest("POST /v1/registration", s.handleRegister)
	rest("PUT /v1/provisioning/{address}", s.handleProvision)
	rest("GET /v1/devices/provisioning/code", s.handleLinkCode)
	rest("PUT /v1/devices/link", s.handleLink)
	rest("GET /v1/devices/wait_for_linked_device/{tokenIdentifier}", s.handleWaitForLinkedDevice)
	rest("GET /v1/devices", s.handleListDevices)
	rest("GET /v1/devices/{$}", s.handleListDevices)
	rest("DELETE /v1/devices/{id}", s.handleDeleteDevice)
	rest("GET /v1/accounts/whoami", s.handleWhoami)
	rest("PUT /v1/accounts/attributes", s.handleSetAttributes)
	rest("PUT /v2/keys", s.handlePutKeys)
	rest("GET /v2/keys", s.handleKeyCounts)
	rest("GET /v2/keys/{serviceId}/{deviceId}", s.handleFetchKeys)
	rest("PUT /v1/messages/{serviceId}", s.handleSend)
	rest("PUT /v1/challenge", s.handleChallenge)
	mux.Handle("/", s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return fail(http.StatusNotFound, "not found")
	}))
	root = s.withTimestamp(s.observed(mux))
	return root
}
