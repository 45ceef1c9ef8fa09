package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/circl/kem/kyber/kyber1024"
	"github.com/gorilla/websocket"
	"go.mau.fi/libsignal/ecc"
	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

// testRelay is a relay running on 127.0.0.1:0 for one test.
type testRelay struct {
	srv    *Server
	base   string // http://127.0.0.1:port
	cancel context.CancelFunc
	done   chan error
	client *http.Client
	once   sync.Once
}

func startRelay(t *testing.T, cfg Config) *testRelay {
	t.Helper()
	return startRelayWith(t, cfg, nil)
}

// startRelayWith lets a test adjust the server before it runs.
func startRelayWith(t *testing.T, cfg Config, tweak func(*Server)) *testRelay {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(srv)
	}
	ctx, cancel := context.WithCancel(t.Context())
	tr := &testRelay{srv: srv, cancel: cancel, done: make(chan error, 1), client: &http.Client{Timeout: 10 * time.Second}}
	go func() { tr.done <- srv.Run(ctx) }()
	<-srv.Ready()
	if srv.Addr() == nil {
		t.Fatalf("relay did not start: %v", <-tr.done)
	}
	tr.base = srv.URL()
	t.Cleanup(func() { tr.stop(t) })
	return tr
}

// stop ends the relay and waits for Run to return (idempotent).
func (tr *testRelay) stop(t *testing.T) {
	t.Helper()
	tr.once.Do(func() {
		tr.cancel()
		select {
		case err := <-tr.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("relay did not stop")
		}
	})
}

// clientOrDefault is the HTTP client the helpers use for a relay that is
// not started by startRelay.
func (tr *testRelay) clientOrDefault() *http.Client {
	if tr.client != nil {
		return tr.client
	}
	return &http.Client{Timeout: 10 * time.Second}
}

func (tr *testRelay) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(tr.base, "http") + path
}

// identity is a Curve25519 identity key pair.
type identity struct{ kp *ecc.ECKeyPair }

func newIdentity(t testing.TB) identity {
	kp, err := ecc.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return identity{kp}
}

func (id identity) public() []byte { return id.kp.PublicKey().Serialize() }

func (id identity) sign(msg []byte) []byte {
	s := ecc.CalculateSignature(id.kp.PrivateKey(), msg)
	return s[:]
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func ecKey(t testing.TB) []byte {
	kp, err := ecc.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return kp.PublicKey().Serialize()
}

func kyberKey(t testing.TB) []byte {
	pk, _, err := kyber1024.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, kyber1024.PublicKeySize)
	pk.Pack(b)
	return append([]byte{kyberKeyType}, b...)
}

// keyJSON is a key for a request body, signed by signer when given.
func keyJSON(id int64, pub []byte, signer *identity) map[string]any {
	m := map[string]any{"keyId": id, "publicKey": b64(pub)}
	if signer != nil {
		m["signature"] = base64.RawStdEncoding.EncodeToString(signer.sign(pub))
	}
	return m
}

// testDevice is a device of an account, with what it needs to talk to the
// relay.
type testDevice struct {
	aci, pni      string
	id            int
	password      string
	aciID, pniID  identity
	regID, pniReg int
}

func (d *testDevice) auth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%s.%d:%s", d.aci, d.id, d.password)))
}

func newPasswordString() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

func newAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// do sends a plain HTTP request and returns the status and body.
func (tr *testRelay) do(t testing.TB, method, path, auth string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(enc)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, tr.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := tr.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// mustDo is do that fails the test unless the status is want.
func (tr *testRelay) mustDo(t testing.TB, want int, method, path, auth string, body any) []byte {
	t.Helper()
	status, out := tr.do(t, method, path, auth, body)
	if status != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, out)
	}
	return out
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func attrs(d *testDevice, withPNI bool) map[string]any {
	a := map[string]any{"fetchesMessages": true, "registrationId": d.regID, "capabilities": map[string]bool{"spqr": true}}
	if withPNI {
		a["pniRegistrationId"] = d.pniReg
	}
	return a
}

var regIDCounter struct {
	sync.Mutex
	n int
}

func nextRegID() int {
	regIDCounter.Lock()
	defer regIDCounter.Unlock()
	regIDCounter.n = regIDCounter.n%16000 + 1
	return regIDCounter.n
}

// register creates an account with a PNI; its primary is returned.
func (tr *testRelay) register(t testing.TB, token string) *testDevice {
	t.Helper()
	d := &testDevice{id: 1, password: newPasswordString(), aciID: newIdentity(t), pniID: newIdentity(t), regID: nextRegID(), pniReg: nextRegID()}
	body := map[string]any{
		"registrationToken":     token,
		"accountAttributes":     attrs(d, true),
		"aciIdentityKey":        b64(d.aciID.public()),
		"pniIdentityKey":        b64(d.pniID.public()),
		"aciSignedPreKey":       keyJSON(1, ecKey(t), &d.aciID),
		"pniSignedPreKey":       keyJSON(1, ecKey(t), &d.pniID),
		"aciPqLastResortPreKey": keyJSON(1, kyberKey(t), &d.aciID),
		"pniPqLastResortPreKey": keyJSON(1, kyberKey(t), &d.pniID),
	}
	out := tr.mustDo(t, 200, "POST", "/v1/registration", newAuth("new", d.password), body)
	r := decode[struct {
		UUID     string `json:"uuid"`
		PNI      string `json:"pni"`
		DeviceID int    `json:"deviceId"`
	}](t, out)
	d.aci, d.pni = r.UUID, r.PNI
	if r.DeviceID != 1 || d.aci == "" || d.pni == "" {
		t.Fatalf("registration answer %s", out)
	}
	return d
}

// linkBody builds a valid PUT /v1/devices/link body for a new device of
// primary's account.
func linkBodyFor(t testing.TB, primary, d *testDevice, code string) map[string]any {
	return map[string]any{
		"verificationCode":      code,
		"accountAttributes":     attrs(d, true),
		"aciSignedPreKey":       keyJSON(7, ecKey(t), &primary.aciID),
		"pniSignedPreKey":       keyJSON(7, ecKey(t), &primary.pniID),
		"aciPqLastResortPreKey": keyJSON(8, kyberKey(t), &primary.aciID),
		"pniPqLastResortPreKey": keyJSON(8, kyberKey(t), &primary.pniID),
	}
}

func (tr *testRelay) linkCode(t testing.TB, primary *testDevice) string {
	t.Helper()
	out := tr.mustDo(t, 200, "GET", "/v1/devices/provisioning/code", primary.auth(), nil)
	return decode[struct {
		VerificationCode string `json:"verificationCode"`
	}](t, out).VerificationCode
}

// link adds a device to primary's account.
func (tr *testRelay) link(t testing.TB, primary *testDevice) *testDevice {
	t.Helper()
	d := &testDevice{aci: primary.aci, pni: primary.pni, password: newPasswordString(),
		aciID: primary.aciID, pniID: primary.pniID, regID: nextRegID(), pniReg: nextRegID()}
	out := tr.mustDo(t, 200, "PUT", "/v1/devices/link", newAuth(primary.aci, d.password), linkBodyFor(t, primary, d, tr.linkCode(t, primary)))
	r := decode[struct {
		UUID     string `json:"uuid"`
		DeviceID int    `json:"deviceId"`
	}](t, out)
	if r.UUID != primary.aci || r.DeviceID < 2 {
		t.Fatalf("link answer %s", out)
	}
	d.id = r.DeviceID
	return d
}

// socket is a raw protocol client on /v1/websocket/: it records what the
// relay pushes and answers with the status of its policy.
type socket struct {
	conn     *wsr.Conn
	pushed   chan *wsr.Request // PUT /api/v1/message and /api/v1/queue/empty
	status   func(req *wsr.Request) int
	runErr   chan error
	closedWS *websocket.Conn
}

func (tr *testRelay) dial(t testing.TB, d *testDevice, status func(*wsr.Request) int) (*socket, error) {
	t.Helper()
	h := http.Header{}
	if d != nil {
		h.Set("Authorization", d.auth())
	}
	ws, resp, err := websocket.DefaultDialer.DialContext(context.Background(), tr.wsURL("/v1/websocket/"), h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (status %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	s := &socket{pushed: make(chan *wsr.Request, 1000), runErr: make(chan error, 1), status: status, closedWS: ws}
	if s.status == nil {
		s.status = func(*wsr.Request) int { return 200 }
	}
	s.conn = wsr.New(ws, wsr.Options{Handler: func(_ context.Context, req *wsr.Request) *wsr.Response {
		st := s.status(req)
		s.pushed <- req
		return &wsr.Response{Status: st}
	}, MaxInFlight: 1}) // one at a time: pushes are recorded in arrival order
	go func() { s.runErr <- s.conn.Run(context.Background()) }()
	if tb, ok := t.(*testing.T); ok {
		tb.Cleanup(func() { s.conn.Close(websocket.CloseNormalClosure, ""); <-s.conn.Done() })
	}
	return s, nil
}

func (tr *testRelay) mustDial(t testing.TB, d *testDevice, status func(*wsr.Request) int) *socket {
	t.Helper()
	s, err := tr.dial(t, d, status)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// next returns the next pushed request, failing after a timeout.
func (s *socket) next(t testing.TB) *wsr.Request {
	t.Helper()
	select {
	case r := <-s.pushed:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("nothing pushed within 5 s")
		return nil
	}
}

// nextEnvelope skips queue-empty markers and returns the next envelope.
func (s *socket) nextEnvelope(t testing.TB) *signalpb.Envelope {
	t.Helper()
	for {
		r := s.next(t)
		if r.Path == "/api/v1/queue/empty" {
			continue
		}
		if r.Verb != "PUT" || r.Path != "/api/v1/message" {
			t.Fatalf("unexpected push %s %s", r.Verb, r.Path)
		}
		var env signalpb.Envelope
		if err := proto.Unmarshal(r.Body, &env); err != nil {
			t.Fatal(err)
		}
		return &env
	}
}

// expectQuiet fails if anything but a queue-empty marker is pushed within d.
func (s *socket) expectQuiet(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case r := <-s.pushed:
			if r.Path != "/api/v1/queue/empty" {
				t.Fatalf("unexpected push %s %s", r.Verb, r.Path)
			}
		case <-deadline:
			return
		}
	}
}

// request sends a REST request over the socket.
func (s *socket) request(t testing.TB, verb, path string, body any) *wsr.Response {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := s.conn.Request(ctx, &wsr.Request{Verb: verb, Path: path, Body: b, Headers: []string{"Content-Type:application/json"}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// closeCode waits for the socket to end and returns the relay's close code.
func (s *socket) closeCode(t testing.TB) int {
	t.Helper()
	select {
	case err := <-s.runErr:
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		return -1
	case <-time.After(5 * time.Second):
		t.Fatal("socket not closed within 5 s")
		return 0
	}
}

// message is one entry of a send body.
func message(dev, regID int, content []byte) map[string]any {
	return map[string]any{"type": 1, "destinationDeviceId": dev, "destinationRegistrationId": regID, "content": b64(content)}
}

func sendBodyOf(entries ...map[string]any) map[string]any {
	return map[string]any{"messages": entries, "timestamp": 1700000000000, "online": false, "urgent": true}
}
