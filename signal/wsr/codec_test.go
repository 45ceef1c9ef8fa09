package wsr

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
)

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reqFrame(r *signalpb.WebSocketRequestMessage) *signalpb.WebSocketMessage {
	return &signalpb.WebSocketMessage{Type: signalpb.WebSocketMessage_REQUEST.Enum(), Request: r}
}

func respFrame(r *signalpb.WebSocketResponseMessage) *signalpb.WebSocketMessage {
	return &signalpb.WebSocketMessage{Type: signalpb.WebSocketMessage_RESPONSE.Enum(), Response: r}
}

func TestDecodeFrameRefusesMalformed(t *testing.T) {
	t.Parallel()
	okReq := func() *signalpb.WebSocketRequestMessage {
		return &signalpb.WebSocketRequestMessage{Id: proto.Uint64(1), Verb: proto.String("GET"), Path: proto.String("/v1/keepalive")}
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"garbage is not a protobuf", []byte{0xff, 0xff, 0xff}},
		{"unknown type", mustMarshal(t, &signalpb.WebSocketMessage{Type: signalpb.WebSocketMessage_UNKNOWN.Enum()})},
		{"no type at all", mustMarshal(t, &signalpb.WebSocketMessage{Request: okReq()})},
		{"request type without a request", mustMarshal(t, &signalpb.WebSocketMessage{Type: signalpb.WebSocketMessage_REQUEST.Enum()})},
		{"request without an id", mustMarshal(t, reqFrame(&signalpb.WebSocketRequestMessage{Verb: proto.String("GET"), Path: proto.String("/")}))},
		{"request without a verb", mustMarshal(t, reqFrame(&signalpb.WebSocketRequestMessage{Id: proto.Uint64(1), Path: proto.String("/")}))},
		{"request with a relative path", mustMarshal(t, reqFrame(&signalpb.WebSocketRequestMessage{Id: proto.Uint64(1), Verb: proto.String("GET"), Path: proto.String("v1")}))},
		{"request with a huge path", mustMarshal(t, reqFrame(&signalpb.WebSocketRequestMessage{Id: proto.Uint64(1), Verb: proto.String("GET"), Path: proto.String("/" + strings.Repeat("a", MaxPathLen))}))},
		{"request with too many headers", func() []byte {
			r := okReq()
			for range MaxHeaders + 1 {
				r.Headers = append(r.Headers, "a:b")
			}
			return mustMarshal(t, reqFrame(r))
		}()},
		{"request with a huge header", func() []byte {
			r := okReq()
			r.Headers = []string{"a:" + strings.Repeat("b", MaxHeaderLen)}
			return mustMarshal(t, reqFrame(r))
		}()},
		{"response without an id", mustMarshal(t, respFrame(&signalpb.WebSocketResponseMessage{Status: proto.Uint32(200)}))},
		{"response without a status", mustMarshal(t, respFrame(&signalpb.WebSocketResponseMessage{Id: proto.Uint64(1)}))},
		{"response with status 99", mustMarshal(t, respFrame(&signalpb.WebSocketResponseMessage{Id: proto.Uint64(1), Status: proto.Uint32(99)}))},
		{"response with status 600", mustMarshal(t, respFrame(&signalpb.WebSocketResponseMessage{Id: proto.Uint64(1), Status: proto.Uint32(600)}))},
		{"frame over the size limit", make([]byte, MaxFrameSize+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := DecodeFrame(tt.in); !errors.Is(err, ErrMalformed) {
				t.Errorf("DecodeFrame: %v, want ErrMalformed", err)
			}
		})
	}
}

func TestFramesRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  *Request
		resp *Response
	}{
		{name: "request with id 0 keeps id 0", req: &Request{ID: 0, Verb: "PUT", Path: "/v1/address", Headers: []string{"X-Signal-Timestamp:1"}, Body: []byte{1, 2}}},
		{name: "request with the largest id", req: &Request{ID: ^uint64(0), Verb: "GET", Path: "/v1/keepalive"}},
		{name: "response with id 0", resp: &Response{ID: 0, Status: 200, Message: "OK", Body: []byte("{}")}},
		{name: "response gets the status text when it has no message", resp: &Response{ID: 7, Status: 404}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.req != nil {
				b, err := EncodeRequest(tt.req)
				if err != nil {
					t.Fatal(err)
				}
				f, err := DecodeFrame(b)
				if err != nil {
					t.Fatal(err)
				}
				got := f.Request
				if got == nil || got.ID != tt.req.ID || got.Verb != tt.req.Verb || got.Path != tt.req.Path ||
					!bytes.Equal(got.Body, tt.req.Body) || strings.Join(got.Headers, "|") != strings.Join(tt.req.Headers, "|") {
					t.Errorf("got %+v, want %+v", got, tt.req)
				}
				return
			}
			b, err := EncodeResponse(tt.resp)
			if err != nil {
				t.Fatal(err)
			}
			f, err := DecodeFrame(b)
			if err != nil {
				t.Fatal(err)
			}
			got := f.Response
			want := *tt.resp
			if want.Message == "" {
				want.Message = "Not Found"
			}
			if got == nil || got.ID != want.ID || got.Status != want.Status || got.Message != want.Message || !bytes.Equal(got.Body, want.Body) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line, wantName, wantValue string
		ok                              bool
	}{
		{"name and value", "Content-Type:application/json", "Content-Type", "application/json", true},
		{"spaces are trimmed", " X-Signal-Key : false ", "X-Signal-Key", "false", true},
		{"value may hold a colon", "Authorization:Basic a:b", "Authorization", "Basic a:b", true},
		{"no colon is no header", "garbage", "", "", false},
		{"no name is no header", ":value", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, v, ok := SplitHeader(tt.line)
			if n != tt.wantName || v != tt.wantValue || ok != tt.ok {
				t.Errorf("SplitHeader(%q) = %q, %q, %v", tt.line, n, v, ok)
			}
		})
	}
	r := &Request{Headers: []string{"content-type:application/json", "bad"}}
	if got := r.Header("Content-Type"); got != "application/json" {
		t.Errorf("Header lookup is not case-insensitive: %q", got)
	}
	if h := HTTPHeader(r.Headers); len(h) != 1 || h.Get("Content-Type") != "application/json" {
		t.Errorf("HTTPHeader = %v", h)
	}
}

// FuzzDecodeFrame: the frame decoder never panics, and whatever it accepts
// re-encodes to a frame that decodes to the same thing.
func FuzzDecodeFrame(f *testing.F) {
	seed, _ := EncodeRequest(&Request{ID: 0, Verb: "PUT", Path: "/api/v1/message", Headers: []string{"X-Signal-Timestamp:1"}, Body: []byte{1}})
	f.Add(seed)
	seed, _ = EncodeResponse(&Response{ID: 3, Status: 200, Body: []byte("{}")})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if (fr.Request == nil) == (fr.Response == nil) {
			t.Fatalf("exactly one of request and response must be set: %+v", fr)
		}
		var again []byte
		if fr.Request != nil {
			again, err = EncodeRequest(fr.Request)
		} else {
			again, err = EncodeResponse(fr.Response)
		}
		if err != nil {
			t.Fatal(err)
		}
		fr2, err := DecodeFrame(again)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if fr.Request != nil && (fr2.Request == nil || fr2.Request.ID != fr.Request.ID || fr2.Request.Path != fr.Request.Path) {
			t.Fatalf("request changed: %+v -> %+v", fr.Request, fr2.Request)
		}
		if fr.Response != nil && (fr2.Response == nil || fr2.Response.ID != fr.Response.ID || fr2.Response.Status != fr.Response.Status) {
			t.Fatalf("response changed: %+v -> %+v", fr.Response, fr2.Response)
		}
	})
}
