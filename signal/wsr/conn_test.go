package wsr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// pair is a server Conn and a client Conn joined over a real socket on
// 127.0.0.1, both running until the test ends.
type pair struct {
	server, client *Conn
	serverErr      chan error
	clientErr      chan error
	rawClient      *websocket.Conn
}

func newPair(t *testing.T, serverOpts, clientOpts Options) *pair {
	t.Helper()
	p := &pair{serverErr: make(chan error, 1), clientErr: make(chan error, 1)}
	ready := make(chan struct{})
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		p.server = New(ws, serverOpts)
		close(ready)
		p.serverErr <- p.server.Run(t.Context())
	}))
	t.Cleanup(srv.Close)
	ws, _, err := websocket.DefaultDialer.DialContext(t.Context(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	p.rawClient = ws
	p.client = New(ws, clientOpts)
	go func() { p.clientErr <- p.client.Run(t.Context()) }()
	t.Cleanup(func() { p.client.Close(websocket.CloseNormalClosure, ""); <-p.client.Done() })
	return p
}

func echo(_ context.Context, req *Request) *Response {
	return &Response{Status: 200, Body: []byte(req.Verb + " " + req.Path), Headers: []string{"X-Echo:" + req.Header("X-In")}}
}

func TestRequestsFlowBothWays(t *testing.T) {
	t.Parallel()
	p := newPair(t, Options{Handler: echo}, Options{Handler: echo})
	tests := []struct {
		name string
		from *Conn
	}{
		{"client asks the server", p.client},
		{"server asks the client", p.server},
	}
	for _, tt := range tests {
		resp, err := tt.from.Request(t.Context(), &Request{Verb: "PUT", Path: "/v1/x", Headers: []string{"X-In:hi"}})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if resp.Status != 200 || string(resp.Body) != "PUT /v1/x" || resp.Header("X-Echo") != "hi" {
			t.Errorf("%s: got %+v", tt.name, resp)
		}
	}
}

func TestFirstRequestHasIDZero(t *testing.T) {
	t.Parallel()
	ids := make(chan uint64, 1)
	p := newPair(t, Options{Handler: func(_ context.Context, r *Request) *Response {
		ids <- r.ID
		return &Response{Status: 204}
	}}, Options{})
	resp, err := p.client.Request(t.Context(), &Request{Verb: "GET", Path: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if id := <-ids; id != 0 || resp.ID != 0 || resp.Status != 204 {
		t.Errorf("request id %d, response id %d status %d; want 0, 0, 204", id, resp.ID, resp.Status)
	}
}

func TestConcurrentRequestsGetTheirOwnResponses(t *testing.T) {
	t.Parallel()
	p := newPair(t, Options{Handler: func(_ context.Context, r *Request) *Response {
		if strings.HasSuffix(r.Path, "0") { // answered late, after the others
			time.Sleep(20 * time.Millisecond)
		}
		return &Response{Status: 200, Body: []byte(r.Path)}
	}}, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			path := fmt.Sprintf("/n/%d", i)
			resp, err := p.client.Request(t.Context(), &Request{Verb: "GET", Path: path})
			switch {
			case err != nil:
				errs <- err
			case string(resp.Body) != path:
				errs <- fmt.Errorf("asked %s, got %s", path, resp.Body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNoHandlerAnswers404(t *testing.T) {
	t.Parallel()
	p := newPair(t, Options{}, Options{})
	resp, err := p.client.Request(t.Context(), &Request{Verb: "GET", Path: "/nothing"})
	if err != nil || resp.Status != 404 {
		t.Fatalf("got %+v, %v; want 404", resp, err)
	}
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

func TestCloseReachesThePeerWithItsCode(t *testing.T) {
	t.Parallel()
	p := newPair(t, Options{}, Options{})
	p.server.Close(4409, "Connected elsewhere")
	select {
	case err := <-p.clientErr:
		if closeCode(err) != 4409 {
			t.Errorf("client saw %v, want close code 4409", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client did not see the close")
	}
	<-p.server.Done()
	if _, err := p.server.Request(t.Context(), &Request{Verb: "GET", Path: "/"}); !errors.Is(err, ErrClosed) {
		t.Errorf("request on a closed conn: %v, want ErrClosed", err)
	}
}

func TestPendingRequestFailsWhenThePeerGoes(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	p := newPair(t, Options{Handler: func(ctx context.Context, _ *Request) *Response {
		<-block
		return &Response{Status: 200}
	}}, Options{})
	defer close(block)
	errc := make(chan error, 1)
	go func() {
		_, err := p.client.Request(t.Context(), &Request{Verb: "GET", Path: "/slow"})
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	p.rawClient.UnderlyingConn().Close() // the network drops
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("pending request: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending request never failed")
	}
}

func TestPeerMisbehaviour(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		send     func(ws *websocket.Conn) error
		wantCode int
	}{
		{"a text frame closes with 1003", func(ws *websocket.Conn) error {
			return ws.WriteMessage(websocket.TextMessage, []byte("hello"))
		}, websocket.CloseUnsupportedData},
		{"an oversized frame closes with 1009", func(ws *websocket.Conn) error {
			return ws.WriteMessage(websocket.BinaryMessage, make([]byte, 2048))
		}, websocket.CloseMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPair(t, Options{ReadLimit: 1024}, Options{})
			if err := tt.send(p.rawClient); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-p.clientErr:
				if closeCode(err) != tt.wantCode {
					t.Errorf("client saw %v, want close code %d", err, tt.wantCode)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("connection stayed open")
			}
		})
	}
}

func TestMalformedFrameIsDroppedAndTheConnectionLives(t *testing.T) {
	t.Parallel()
	p := newPair(t, Options{Handler: echo}, Options{})
	if err := p.rawClient.WriteMessage(websocket.BinaryMessage, []byte{0xff, 0x01}); err != nil {
		t.Fatal(err)
	}
	resp, err := p.client.Request(t.Context(), &Request{Verb: "GET", Path: "/still/here"})
	if err != nil || resp.Status != 200 {
		t.Fatalf("after a malformed frame: %+v, %v", resp, err)
	}
}

func TestContextEndClosesWithGoingAway(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	up := websocket.Upgrader{}
	serverDone := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		serverDone <- New(ws, Options{}).Run(ctx)
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.DialContext(t.Context(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	client := New(ws, Options{})
	clientErr := make(chan error, 1)
	go func() { clientErr <- client.Run(t.Context()) }()
	cancel()
	if err := <-clientErr; closeCode(err) != websocket.CloseGoingAway {
		t.Errorf("client saw %v, want 1001", err)
	}
	<-serverDone
}

func TestIdleTimeoutEndsASilentConnection(t *testing.T) {
	t.Parallel()
	p := newPair(t, Options{IdleTimeout: 50 * time.Millisecond}, Options{})
	select {
	case <-p.server.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("idle connection was not ended")
	}
}

func TestStartedRequestsGoOutInOrder(t *testing.T) {
	t.Parallel()
	got := make(chan string, 100)
	p := newPair(t, Options{Handler: func(_ context.Context, r *Request) *Response {
		got <- r.Path
		return &Response{Status: 200}
	}, MaxInFlight: 1}, Options{})
	var calls []*Call
	for i := range 100 {
		call, err := p.client.Start(t.Context(), &Request{Verb: "PUT", Path: fmt.Sprintf("/%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, call)
	}
	for i, call := range calls {
		if resp, err := call.Wait(t.Context()); err != nil || resp.Status != 200 {
			t.Fatalf("call %d: %+v %v", i, resp, err)
		}
		if path := <-got; path != fmt.Sprintf("/%d", i) {
			t.Fatalf("request %d arrived as %s", i, path)
		}
	}
}

func TestResponsesInFlightGoOutBeforeTheClose(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	p := newPair(t, Options{}, Options{Handler: func(context.Context, *Request) *Response {
		close(started)
		<-release
		return &Response{Status: 200}
	}})
	respc := make(chan *Response, 1)
	go func() {
		resp, _ := p.server.Request(context.Background(), &Request{Verb: "PUT", Path: "/api/v1/message"})
		respc <- resp
	}()
	<-started
	p.client.Close(websocket.CloseNormalClosure, "") // closing while the handler still runs
	time.Sleep(20 * time.Millisecond)
	close(release)
	select {
	case resp := <-respc:
		if resp == nil || resp.Status != 200 {
			t.Fatalf("the answer in flight was lost: %+v", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
}

func TestAnswersToOwnRequestsAreReadWhileHandlersAreBusy(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	p := newPair(t, Options{MaxInFlight: 1, Handler: func(ctx context.Context, _ *Request) *Response {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &Response{Status: 200}
	}}, Options{Handler: func(context.Context, *Request) *Response { return &Response{Status: 204} }})
	// The server's only handler is busy and more requests wait behind it.
	for i := range 4 {
		if _, err := p.client.Start(t.Context(), &Request{Verb: "PUT", Path: fmt.Sprintf("/%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := p.server.Request(ctx, &Request{Verb: "GET", Path: "/own"})
	if err != nil || resp.Status != 204 {
		t.Fatalf("the server's own request: %+v, %v (its answer must not wait for its busy handlers)", resp, err)
	}
}
