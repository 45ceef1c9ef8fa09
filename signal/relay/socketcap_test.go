package relay

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// dialFrom opens a socket on path from the loopback address ip, with the
// credentials of d (none when nil); it returns the socket or the status
// of the refused upgrade.
func (tr *testRelay) dialFrom(t *testing.T, ip, path string, d *testDevice, disableMessages bool) (*websocket.Conn, int) {
	t.Helper()
	dialer := &websocket.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext,
		HandshakeTimeout: 5 * time.Second}
	h := http.Header{}
	if d != nil {
		h.Set("Authorization", d.auth())
	}
	if disableMessages {
		h.Set("X-Signal-Disable-Messages", "true")
	}
	ws, resp, err := dialer.DialContext(t.Context(), tr.wsURL(path), h)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial %s from %s: %v", path, ip, err)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { ws.Close() })
	return ws, http.StatusSwitchingProtocols
}

// Sockets without credentials have caps of their own, in all and per
// source, and whatever fills the relay, a device's message socket gets in.
func TestUnauthenticatedSocketsCannotKeepDevicesOut(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{MaxSockets: 3, MaxUnauthSockets: 2, MaxUnauthSocketsPerSource: 1})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	const chat, prov = "/v1/websocket/", "/v1/websocket/provisioning/"
	first, status := tr.dialFrom(t, "127.0.0.2", chat, nil, false)
	if first == nil {
		t.Fatalf("first unauthenticated socket: %d", status)
	}
	steps := []struct {
		name, from, path string
		dev              *testDevice
		noMessages       bool
		want             int
	}{
		{"a second from the same source is over its cap", "127.0.0.2", prov, nil, false, 503},
		{"one from another source", "127.0.0.3", prov, nil, false, 101},
		{"a third source is over the cap of all unauthenticated sockets", "127.0.0.4", chat, nil, false, 503},
		{"an authenticated socket without messages takes the last slot", "127.0.0.5", chat, bob, true, 101},
		{"another is over MaxSockets", "127.0.0.5", chat, bob, true, 503},
		{"a device's message socket always gets in", "127.0.0.2", chat, alice, false, 101},
		{"another device's too", "127.0.0.4", chat, bob, false, 101},
	}
	for _, st := range steps {
		if _, status := tr.dialFrom(t, st.from, st.path, st.dev, st.noMessages); status != st.want {
			t.Fatalf("%s: %d, want %d", st.name, status, st.want)
		}
	}
	// The source's slot comes back once its socket is gone.
	first.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ws, _ := tr.dialFrom(t, "127.0.0.2", prov, nil, false); ws != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no socket for the source after its first closed")
		}
	}
}

// An unauthenticated socket reads small messages only: a large one closes
// it (1009) instead of being buffered.
func TestAnUnauthenticatedSocketRefusesALargeMessage(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	ws, status := tr.dialFrom(t, "127.0.0.1", "/v1/websocket/", nil, false)
	if ws == nil {
		t.Fatalf("dial: %d", status)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{0}, unauthReadLimit+1)); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("after a large message: %v, want close 1009", err)
	}
}
