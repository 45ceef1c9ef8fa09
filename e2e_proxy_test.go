package main

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
)

// misbehaving is a server in front of a relay that misbehaves the way a
// server in the middle can without breaking Signal's encryption: it
// answers an account's sends with 200 and drops them, or holds every
// message it delivers for a while. It speaks the WebSocket framing
// (WebSocket-Resources) and passes plain HTTP through.
type misbehaving struct {
	srv    *httptest.Server
	target *url.URL
	mu     sync.Mutex
	drop   string        // the account whose sends are dropped ("": none)
	delay  time.Duration // how long each delivery to a console is held
}

func newMisbehaving(t *testing.T, relayURL string) *misbehaving {
	t.Helper()
	u, err := url.Parse(relayURL)
	if err != nil {
		t.Fatal(err)
	}
	m := &misbehaving{target: u}
	rp := httputil.NewSingleHostReverseProxy(u)
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			m.socket(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *misbehaving) URL() string { return m.srv.URL }

// dropSendsOf makes the server drop every message the account sends.
func (m *misbehaving) dropSendsOf(account string) {
	m.mu.Lock()
	m.drop = account
	m.mu.Unlock()
}

// holdDeliveries makes the server hold each message it delivers for d.
func (m *misbehaving) holdDeliveries(d time.Duration) {
	m.mu.Lock()
	m.delay = d
	m.mu.Unlock()
}

// account is who authenticated a socket (the basic auth user is
// ACI.device).
func account(r *http.Request) string {
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Basic ")
	if !ok {
		return ""
	}
	b, err := base64.StdEncoding.DecodeString(auth)
	if err != nil {
		return ""
	}
	user, _, _ := strings.Cut(string(b), ":")
	acct, _, _ := strings.Cut(user, ".")
	return acct
}

func (m *misbehaving) socket(w http.ResponseWriter, r *http.Request) {
	header := http.Header{}
	for k, v := range r.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions":
			continue
		}
		header[k] = v
	}
	up := *m.target
	up.Scheme = "ws"
	up.Path, up.RawQuery = r.URL.Path, r.URL.RawQuery
	server, resp, err := websocket.DefaultDialer.DialContext(r.Context(), up.String(), header)
	if err != nil {
		status := http.StatusBadGateway
		if resp != nil {
			status = resp.StatusCode
		}
		http.Error(w, "upstream: "+err.Error(), status)
		return
	}
	defer server.Close()
	client, err := (&websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer client.Close()
	who := account(r)
	var clientMu sync.Mutex // writes to the client come from two goroutines
	toClient := func(kind int, b []byte) error {
		clientMu.Lock()
		defer clientMu.Unlock()
		return client.WriteMessage(kind, b)
	}
	done := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(done); client.Close(); server.Close() }) }
	// Console to relay: a dropped account's sends are answered here.
	go func() {
		defer stop()
		for {
			kind, b, err := client.ReadMessage()
			if err != nil {
				return
			}
			m.mu.Lock()
			drop := m.drop != "" && m.drop == who
			m.mu.Unlock()
			var msg signalpb.WebSocketMessage
			if drop && kind == websocket.BinaryMessage && proto.Unmarshal(b, &msg) == nil &&
				msg.GetType() == signalpb.WebSocketMessage_REQUEST && msg.GetRequest().GetVerb() == http.MethodPut &&
				strings.HasPrefix(msg.GetRequest().GetPath(), "/v1/messages/") {
				ok, _ := proto.Marshal(&signalpb.WebSocketMessage{Type: signalpb.WebSocketMessage_RESPONSE.Enum(),
					Response: &signalpb.WebSocketResponseMessage{Id: msg.GetRequest().Id, Status: proto.Uint32(200),
						Message: proto.String("OK"), Body: []byte(`{"needsSync":false}`)}})
				if toClient(websocket.BinaryMessage, ok) != nil {
					return
				}
				continue
			}
			if server.WriteMessage(kind, b) != nil {
				return
			}
		}
	}()
	// Relay to console: deliveries (the relay's requests) may be held, in
	// order; answers go at once.
	type held struct {
		kind int
		b    []byte
		at   time.Time
	}
	queue := make(chan held, 1024)
	go func() {
		for {
			select {
			case <-done:
				return
			case h := <-queue:
				select {
				case <-done:
					return
				case <-time.After(time.Until(h.at)):
				}
				if toClient(h.kind, h.b) != nil {
					stop()
					return
				}
			}
		}
	}()
	for {
		kind, b, err := server.ReadMessage()
		if err != nil {
			stop()
			return
		}
		m.mu.Lock()
		delay := m.delay
		m.mu.Unlock()
		var msg signalpb.WebSocketMessage
		if delay > 0 && kind == websocket.BinaryMessage && proto.Unmarshal(b, &msg) == nil &&
			msg.GetType() == signalpb.WebSocketMessage_REQUEST {
			select {
			case queue <- held{kind, b, time.Now().Add(delay)}:
			case <-done:
				return
			}
			continue
		}
		if toClient(kind, b) != nil {
			stop()
			return
		}
	}
}
