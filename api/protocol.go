// Package api is cosigner's local API: newline-delimited JSON-RPC 2.0 on a
// Unix socket, as signal-cli's daemon speaks it, so that socat, a shell
// script or any JSON-RPC client can ask for signatures, answer approvals
// and follow what the console shows. docs/api.md is the reference.
//
// The server (Server) runs over a Backend: the running co-signer's core
// App with its connection status. The client (Client) is what an attached
// console and the headless commands use.
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the API's version; it grows when a method or a field changes
// meaning (new methods and fields keep it).
const Version = 1

// MaxLine bounds one request or response line: the largest request is a
// signing request with a 32 KiB message in hex.
const MaxLine = 1 << 20

// Standard JSON-RPC 2.0 error codes, and the API's own (-32000 and below).
const (
	CodeParse          = -32700 // the line is not JSON
	CodeInvalidRequest = -32600 // JSON, but not a JSON-RPC 2.0 request
	CodeNoMethod       = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603

	CodeUnknown    = -32001 // no such ceremony, request or signer
	CodeNotAllowed = -32002 // this socket may not do that (approve = false)
	CodeEnded      = -32003 // the request has already ended
	CodeNoKey      = -32004 // no such key, or several match
	CodeFailed     = -32005 // the ceremony failed: declined, expired, blamed (data says which)
	CodeStopped    = -32006 // the co-signer is stopping or its store failed
	CodeRefused    = -32007 // refused as the roster or the protocol says (a changed card, a bad threshold)
	CodeBroken     = -32008 // the audit trail does not verify (data: {"seq"} of the first bad entry)
)

// Request is one JSON-RPC 2.0 request. An absent ID makes it a
// notification, which gets no answer.
type Request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// Response is the answer to a request with an ID: Result or Error.
type Response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// Notification is what the server pushes to a subscriber.
type Notification struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// Error is a JSON-RPC error object. Data, when set, is a small JSON value
// that tells the cases apart (a failed ceremony's reason and parties).
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("api: %s (code %d)", e.Message, e.Code) }

// ErrProtocol: a line from the other side is not what JSON-RPC 2.0 allows.
var ErrProtocol = errors.New("api: protocol error")

var nullID = json.RawMessage("null")

// parseRequest decodes one line. A line that is not JSON is a CodeParse
// error, one that is not a request CodeInvalidRequest; the id is returned
// when it could be read (else null), so that the answer carries it.
func parseRequest(line []byte) (*Request, json.RawMessage, *Error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil || dec.More() {
		return nil, nullID, &Error{Code: CodeParse, Message: "parse error: a request is one JSON object on one line"}
	}
	id := nullID
	if v, ok := raw["id"]; ok {
		if !validID(v) {
			return nil, nullID, &Error{Code: CodeInvalidRequest, Message: "invalid request: id must be a string, a number or null"}
		}
		id = v
	}
	var r Request
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, id, &Error{Code: CodeInvalidRequest, Message: "invalid request: " + err.Error()}
	}
	if r.JSONRPC != "2.0" {
		return nil, id, &Error{Code: CodeInvalidRequest, Message: `invalid request: "jsonrpc" must be "2.0"`}
	}
	if r.Method == "" {
		return nil, id, &Error{Code: CodeInvalidRequest, Message: `invalid request: "method" is missing`}
	}
	if len(r.Params) > 0 && r.Params[0] != '{' && !bytes.Equal(r.Params, []byte("null")) {
		return nil, id, &Error{Code: CodeInvalidParams, Message: "invalid params: params are an object of named fields"}
	}
	if _, ok := raw["id"]; !ok {
		r.ID = nil
	} else {
		r.ID = id
	}
	return &r, id, nil
}

// validID: JSON-RPC ids are strings, numbers or null.
func validID(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return false
	}
	switch v[0] {
	case '"':
		var s string
		return json.Unmarshal(v, &s) == nil
	case 'n':
		return bytes.Equal(v, nullID)
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		return json.Unmarshal(v, &n) == nil
	}
	return false
}

// decodeParams reads params into v, refusing unknown fields and trailing
// data: a misspelt field is an error, not a default.
func decodeParams(params json.RawMessage, v any) *Error {
	if len(params) == 0 || bytes.Equal(params, []byte("null")) {
		params = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &Error{Code: CodeInvalidParams, Message: "invalid params: " + err.Error()}
	}
	return nil
}
