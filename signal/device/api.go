package device

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/signal-mpc/cosigner/signal/wsr"
)

// requester sends one WebSocket-Resources request and waits for the answer.
type requester interface {
	Request(ctx context.Context, req *wsr.Request) (*wsr.Response, error)
}

// maxErrBody bounds what an error quotes of a response body.
const maxErrBody = 200

// call sends a JSON request on a socket and decodes a JSON answer. Statuses
// in ok are success; anything else is a *StatusError. auth, if set, is the
// request's own Authorization (unauthenticated sockets); requests on an
// authenticated socket inherit the socket's credentials.
func call(ctx context.Context, r requester, op, verb, path, auth string, body, out any, ok ...int) (int, error) {
	req := &wsr.Request{Verb: verb, Path: path}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("device: %s: encode: %w", op, err)
		}
		req.Body = b
		req.Headers = append(req.Headers, "Content-Type:application/json")
	}
	if auth != "" {
		req.Headers = append(req.Headers, "Authorization:"+auth)
	}
	resp, err := r.Request(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("device: %s: %w", op, err)
	}
	if len(ok) == 0 {
		ok = []int{http.StatusOK}
	}
	for _, s := range ok {
		if resp.Status == s {
			if out != nil && len(resp.Body) > 0 {
				if err := json.Unmarshal(resp.Body, out); err != nil {
					return resp.Status, fmt.Errorf("device: %s: decode answer: %w", op, err)
				}
			}
			return resp.Status, nil
		}
	}
	return resp.Status, &StatusError{Op: op, Status: resp.Status, Body: quote(resp.Body)}
}

// callRaw is call returning the raw body, for answers other statuses carry
// (409 and 410 bodies of a send).
func callRaw(ctx context.Context, r requester, op, verb, path string, body any) (*wsr.Response, error) {
	req := &wsr.Request{Verb: verb, Path: path}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("device: %s: encode: %w", op, err)
		}
		req.Body = b
		req.Headers = []string{"Content-Type:application/json"}
	}
	resp, err := r.Request(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("device: %s: %w", op, err)
	}
	return resp, nil
}

func quote(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, string(b))
	if len(s) > maxErrBody {
		s = s[:maxErrBody] + "..."
	}
	return s
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}
