package wsr

import "errors"

// Sentinel errors of the package. Callers branch on them with errors.Is.
var (
	// ErrMalformed: a frame is not a valid WebSocket-Resources message
	// (bad protobuf, unknown type, a required field missing, a bound exceeded).
	ErrMalformed = errors.New("wsr: malformed frame")
	// ErrClosed: the connection is closed or closing; the request was not
	// answered.
	ErrClosed = errors.New("wsr: connection closed")
)
