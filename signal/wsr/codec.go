// Package wsr implements Signal's WebSocket-Resources framing: HTTP-like
// requests and responses carried as protobufs, one per binary WebSocket
// frame, in both directions over one socket (signal-wire.md section 6.1).
//
// The codec (DecodeFrame, EncodeRequest, EncodeResponse) is pure; Conn
// multiplexes requests both ways over a gorilla/websocket connection.
package wsr

import (
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
)

// Bounds on what a frame may carry. A frame over MaxFrameSize is refused by
// the WebSocket layer before it is decoded (close 1009).
const (
	MaxFrameSize  = 4 << 20 // bytes of one WebSocket message
	MaxHeaders    = 64      // header lines per request or response
	MaxHeaderLen  = 8 << 10 // bytes of one "Name:Value" line
	MaxPathLen    = 4 << 10 // bytes of a request path (with its query)
	MaxVerbLen    = 16      // bytes of a request verb
	MaxMessageLen = 1 << 10 // bytes of a response's status message
)

// Request is one WebSocket-Resources request.
type Request struct {
	ID      uint64
	Verb    string   // GET, PUT, ...
	Path    string   // with the query, e.g. /v2/keys?identity=aci
	Headers []string // "Name:Value" lines, as on the wire
	Body    []byte
}

// Header returns the value of the first header named name (case-insensitive),
// or "".
func (r *Request) Header(name string) string { return headerValue(r.Headers, name) }

// Response is one WebSocket-Resources response.
type Response struct {
	ID      uint64
	Status  int
	Message string
	Headers []string
	Body    []byte
}

// Header returns the value of the first header named name (case-insensitive),
// or "".
func (r *Response) Header(name string) string { return headerValue(r.Headers, name) }

// Frame is a decoded WebSocket message: exactly one of Request and Response
// is set.
type Frame struct {
	Request  *Request
	Response *Response
}

// DecodeFrame decodes and validates one binary WebSocket message. It never
// panics; every problem is reported as an error wrapping ErrMalformed.
func DecodeFrame(b []byte) (Frame, error) {
	if len(b) > MaxFrameSize {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(b), MaxFrameSize)
	}
	var m signalpb.WebSocketMessage
	if err := proto.Unmarshal(b, &m); err != nil {
		return Frame{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch m.GetType() {
	case signalpb.WebSocketMessage_REQUEST:
		r := m.GetRequest()
		switch {
		case r == nil:
			return Frame{}, fmt.Errorf("%w: request frame without a request", ErrMalformed)
		case r.Id == nil:
			return Frame{}, fmt.Errorf("%w: request without an id", ErrMalformed)
		case r.Verb == nil || r.GetVerb() == "" || len(r.GetVerb()) > MaxVerbLen:
			return Frame{}, fmt.Errorf("%w: request verb missing or too long", ErrMalformed)
		case r.Path == nil || !strings.HasPrefix(r.GetPath(), "/") || len(r.GetPath()) > MaxPathLen:
			return Frame{}, fmt.Errorf("%w: request path missing, relative or too long", ErrMalformed)
		}
		if err := checkHeaders(r.GetHeaders()); err != nil {
			return Frame{}, err
		}
		return Frame{Request: &Request{
			ID: r.GetId(), Verb: r.GetVerb(), Path: r.GetPath(), Headers: r.GetHeaders(), Body: r.GetBody(),
		}}, nil
	case signalpb.WebSocketMessage_RESPONSE:
		r := m.GetResponse()
		switch {
		case r == nil:
			return Frame{}, fmt.Errorf("%w: response frame without a response", ErrMalformed)
		case r.Id == nil:
			return Frame{}, fmt.Errorf("%w: response without an id", ErrMalformed)
		case r.Status == nil || r.GetStatus() < 100 || r.GetStatus() > 599:
			return Frame{}, fmt.Errorf("%w: response status missing or out of range", ErrMalformed)
		case len(r.GetMessage()) > MaxMessageLen:
			return Frame{}, fmt.Errorf("%w: response message too long", ErrMalformed)
		}
		if err := checkHeaders(r.GetHeaders()); err != nil {
			return Frame{}, err
		}
		return Frame{Response: &Response{
			ID: r.GetId(), Status: int(r.GetStatus()), Message: r.GetMessage(), Headers: r.GetHeaders(), Body: r.GetBody(),
		}}, nil
	default:
		return Frame{}, fmt.Errorf("%w: message type %d", ErrMalformed, m.GetType())
	}
}

func checkHeaders(h []string) error {
	if len(h) > MaxHeaders {
		return fmt.Errorf("%w: %d headers, limit %d", ErrMalformed, len(h), MaxHeaders)
	}
	for _, line := range h {
		if len(line) > MaxHeaderLen {
			return fmt.Errorf("%w: header line of %d bytes, limit %d", ErrMalformed, len(line), MaxHeaderLen)
		}
	}
	return nil
}

// EncodeRequest encodes a request as a WebSocketMessage.
func EncodeRequest(r *Request) ([]byte, error) {
	m := &signalpb.WebSocketMessage{
		Type: signalpb.WebSocketMessage_REQUEST.Enum(),
		Request: &signalpb.WebSocketRequestMessage{
			Id: proto.Uint64(r.ID), Verb: proto.String(r.Verb), Path: proto.String(r.Path),
			Headers: r.Headers, Body: r.Body,
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return b, nil
}

// EncodeResponse encodes a response as a WebSocketMessage. An empty Message
// is filled with the standard status text.
func EncodeResponse(r *Response) ([]byte, error) {
	msg := r.Message
	if msg == "" {
		msg = http.StatusText(r.Status)
	}
	m := &signalpb.WebSocketMessage{
		Type: signalpb.WebSocketMessage_RESPONSE.Enum(),
		Response: &signalpb.WebSocketResponseMessage{
			Id: proto.Uint64(r.ID), Status: proto.Uint32(uint32(r.Status)), Message: proto.String(msg),
			Headers: r.Headers, Body: r.Body,
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return b, nil
}

// SplitHeader splits a "Name:Value" line at its first colon and trims the
// spaces around both parts. ok is false when there is no colon or no name.
func SplitHeader(line string) (name, value string, ok bool) {
	name, value, ok = strings.Cut(line, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return "", "", false
	}
	return name, strings.TrimSpace(value), true
}

// HTTPHeader converts header lines to an http.Header; lines without a name
// are dropped.
func HTTPHeader(lines []string) http.Header {
	h := make(http.Header, len(lines))
	for _, line := range lines {
		if name, value, ok := SplitHeader(line); ok {
			h.Add(name, value)
		}
	}
	return h
}

// HeaderLines converts an http.Header to "Name:Value" lines.
func HeaderLines(h http.Header) []string {
	var lines []string
	for name, values := range h {
		for _, v := range values {
			lines = append(lines, name+":"+v)
		}
	}
	return lines
}

func headerValue(lines []string, name string) string {
	for _, line := range lines {
		if n, v, ok := SplitHeader(line); ok && strings.EqualFold(n, name) {
			return v
		}
	}
	return ""
}
