package relay

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

func TestProvisioningRelaysTheEnvelopeToTheWaitingDevice(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	primary := tr.register(t, "")

	ws, _, err := websocket.DefaultDialer.DialContext(t.Context(), tr.wsURL("/v1/websocket/provisioning/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pushed := make(chan *wsr.Request, 4)
	conn := wsr.New(ws, wsr.Options{Handler: func(_ context.Context, r *wsr.Request) *wsr.Response {
		pushed <- r
		return &wsr.Response{Status: 200}
	}})
	runErr := make(chan error, 1)
	go func() { runErr <- conn.Run(context.Background()) }()

	first := <-pushed
	if first.Verb != "PUT" || first.Path != "/v1/address" || first.Header("X-Signal-Timestamp") == "" {
		t.Fatalf("first push %s %s %v", first.Verb, first.Path, first.Headers)
	}
	var addr signalpb.ProvisioningAddress
	if err := proto.Unmarshal(first.Body, &addr); err != nil {
		t.Fatal(err)
	}
	if a := addr.GetAddress(); len(a) != 22 || strings.Contains(a, "=") {
		t.Fatalf("address %q: want 22 characters of unpadded base64url, as Signal's server sends", a)
	}

	keep, err := conn.Request(t.Context(), &wsr.Request{Verb: "GET", Path: "/v1/keepalive/provisioning"})
	if err != nil || keep.Status != 200 {
		t.Fatalf("keepalive: %+v %v", keep, err)
	}

	env, _ := proto.Marshal(&signalpb.ProvisionEnvelope{PublicKey: ecKey(t), Body: []byte("ciphertext")})
	path := "/v1/provisioning/" + addr.GetAddress()
	tests := []struct {
		name string
		auth string
		body any
		want int
	}{
		{"no credentials is 401", "", map[string]string{"body": b64(env)}, 401},
		{"a body that is not base64 is 400", primary.auth(), map[string]string{"body": "***"}, 400},
		{"a body that is not a ProvisionEnvelope is 400", primary.auth(), map[string]string{"body": b64([]byte{0xff})}, 400},
		{"an unknown address is 404", primary.auth(), map[string]string{"body": b64(env)}, 404},
	}
	for _, tt := range tests {
		p := path
		if tt.want == 404 {
			p = "/v1/provisioning/nobody-waits-here"
		}
		if status, body := tr.do(t, "PUT", p, tt.auth, tt.body); status != tt.want {
			t.Errorf("%s: status %d (%s)", tt.name, status, body)
		}
	}

	tr.mustDo(t, 204, "PUT", path, primary.auth(), map[string]string{"body": b64(env)})
	msg := <-pushed
	if msg.Verb != "PUT" || msg.Path != "/v1/message" || !bytes.Equal(msg.Body, env) {
		t.Fatalf("second push %s %s, body equal %v", msg.Verb, msg.Path, bytes.Equal(msg.Body, env))
	}
	select {
	case err := <-runErr:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
			t.Errorf("provisioning socket ended with %v, want close 1000", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("provisioning socket not closed after the envelope")
	}
	if status, _ := tr.do(t, "PUT", path, primary.auth(), map[string]string{"body": b64(env)}); status != 404 {
		t.Errorf("second envelope to a used address: %d, want 404", status)
	}
}

func TestProvisioningSocketClosesAfterItsLifetime(t *testing.T) {
	t.Parallel()
	tr := startRelayWith(t, Config{}, func(s *Server) { s.provisioningLifetime = 200 * time.Millisecond })
	ws, _, err := websocket.DefaultDialer.DialContext(t.Context(), tr.wsURL("/v1/websocket/provisioning/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	conn := wsr.New(ws, wsr.Options{Handler: func(context.Context, *wsr.Request) *wsr.Response { return &wsr.Response{Status: 200} }})
	var ce *websocket.CloseError
	if err := conn.Run(t.Context()); !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure || ce.Text != "Timeout" {
		t.Fatalf("socket ended with %v, want close 1000 Timeout", err)
	}
	// The address is forgotten with its socket.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		tr.srv.mu.Lock()
		n := len(tr.srv.provisioning)
		tr.srv.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d provisioning sessions left", n)
		}
	}
}

func TestLinkDevice(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	primary := tr.register(t, "")
	other := tr.register(t, "")
	code := tr.linkCode(t, primary)

	newDev := func() *testDevice {
		return &testDevice{password: newPasswordString(), regID: nextRegID(), pniReg: nextRegID()}
	}
	tests := []struct {
		name   string
		auth   func(d *testDevice) string
		mutate func(b map[string]any)
		want   int
	}{
		{"no credentials is 401", func(*testDevice) string { return "" }, nil, 401},
		{"a short password is 422", func(*testDevice) string { return newAuth(primary.aci, "short") }, nil, 422},
		{"an unknown code is 403", nil, func(b map[string]any) { b["verificationCode"] = "nope" }, 403},
		{"an ACI signed prekey signed by another key is 422", nil, func(b map[string]any) {
			b["aciSignedPreKey"] = keyJSON(7, ecKey(t), &other.aciID)
		}, 422},
		{"a Kyber last-resort key signed by another key is 422", nil, func(b map[string]any) {
			b["aciPqLastResortPreKey"] = keyJSON(8, kyberKey(t), &other.aciID)
		}, 422},
		{"a PNI key signed with the ACI identity is 422", nil, func(b map[string]any) {
			b["pniSignedPreKey"] = keyJSON(7, ecKey(t), &primary.aciID)
		}, 422},
		{"a Kyber key with the wrong type byte is 422", nil, func(b map[string]any) {
			k := kyberKey(t)
			k[0] = 0x0a
			b["aciPqLastResortPreKey"] = keyJSON(8, k, &primary.aciID)
		}, 422},
		{"an EC key where a Kyber key belongs is 422", nil, func(b map[string]any) {
			b["aciPqLastResortPreKey"] = keyJSON(8, ecKey(t), &primary.aciID)
		}, 422},
		{"missing PNI keys are 422", nil, func(b map[string]any) { delete(b, "pniPqLastResortPreKey") }, 422},
		{"a missing spqr capability is 409", nil, func(b map[string]any) {
			b["accountAttributes"].(map[string]any)["capabilities"] = map[string]bool{"storage": true}
		}, 409},
		{"registration id 0 is 422", nil, func(b map[string]any) {
			b["accountAttributes"].(map[string]any)["registrationId"] = 0
		}, 422},
		{"a missing PNI registration id is 422", nil, func(b map[string]any) {
			delete(b["accountAttributes"].(map[string]any), "pniRegistrationId")
		}, 422},
		{"malformed JSON is 400", nil, func(b map[string]any) { b["verificationCode"] = 12 }, 400},
	}
	for _, tt := range tests {
		d := newDev()
		body := linkBodyFor(t, primary, d, code)
		if tt.mutate != nil {
			tt.mutate(body)
		}
		auth := newAuth(primary.aci, d.password)
		if tt.auth != nil {
			auth = tt.auth(d)
		}
		if status, out := tr.do(t, "PUT", "/v1/devices/link", auth, body); status != tt.want {
			t.Errorf("%s: status %d, want %d (%s)", tt.name, status, tt.want, out)
		}
	}
	// None of the refusals used up the code or added a device.
	d := newDev()
	out := tr.mustDo(t, 200, "PUT", "/v1/devices/link", newAuth(primary.aci, d.password), linkBodyFor(t, primary, d, code))
	got := decode[map[string]any](t, out)
	if got["uuid"] != primary.aci || got["pni"] != primary.pni || got["deviceId"] != float64(2) {
		t.Errorf("link answer %s", out)
	}
	d.aci, d.id = primary.aci, 2
	if status, _ := tr.do(t, "PUT", "/v1/devices/link", newAuth(primary.aci, newPasswordString()), linkBodyFor(t, primary, newDev(), code)); status != 403 {
		t.Errorf("reusing a link code: %d, want 403", status)
	}
	// The new device can authenticate.
	tr.mustDo(t, 200, "GET", "/v1/accounts/whoami", d.auth(), nil)
	// Only the primary gets link codes.
	if status, _ := tr.do(t, "GET", "/v1/devices/provisioning/code", d.auth(), nil); status != 403 {
		t.Errorf("link code for a linked device: %d, want 403", status)
	}
}

func TestLinkCodeExpiresAfterTenMinutes(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	tr := startRelay(t, Config{Now: clock.now})
	primary := tr.register(t, "")
	code := tr.linkCode(t, primary)
	clock.advance(linkTokenLifetime + time.Second)
	d := &testDevice{password: newPasswordString(), regID: 5, pniReg: 6}
	if status, _ := tr.do(t, "PUT", "/v1/devices/link", newAuth(primary.aci, d.password), linkBodyFor(t, primary, d, code)); status != 403 {
		t.Errorf("expired code: %d, want 403", status)
	}
}

func TestAnAccountHasAtMostSixDevices(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	primary := tr.register(t, "")
	code := tr.linkCode(t, primary) // taken while there is still room
	for range maxDevices - 1 {
		tr.link(t, primary)
	}
	if status, _ := tr.do(t, "GET", "/v1/devices/provisioning/code", primary.auth(), nil); status != 411 {
		t.Errorf("link code with six devices: %d, want 411", status)
	}
	d := &testDevice{password: newPasswordString(), regID: 5, pniReg: 6}
	if status, _ := tr.do(t, "PUT", "/v1/devices/link", newAuth(primary.aci, d.password), linkBodyFor(t, primary, d, code)); status != 411 {
		t.Errorf("seventh device: %d, want 411", status)
	}
	list := decode[struct {
		Devices []struct{ ID int } `json:"devices"`
	}](t, tr.mustDo(t, 200, "GET", "/v1/devices", primary.auth(), nil))
	if len(list.Devices) != maxDevices {
		t.Errorf("%d devices listed, want %d", len(list.Devices), maxDevices)
	}
}

func TestRegistration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		configured string
		given      string
		want       int
	}{
		{"open on loopback without a configured token", "", "", 200},
		{"a configured token is required", "operator-secret", "", 403},
		{"a wrong token is refused", "operator-secret", "guess", 403},
		{"the right token registers", "operator-secret", "operator-secret", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := startRelay(t, Config{RegistrationToken: tt.configured})
			id := newIdentity(t)
			d := &testDevice{regID: 1, pniReg: 2}
			body := map[string]any{
				"registrationToken":     tt.given,
				"accountAttributes":     attrs(d, false),
				"aciIdentityKey":        b64(id.public()),
				"aciSignedPreKey":       keyJSON(1, ecKey(t), &id),
				"aciPqLastResortPreKey": keyJSON(1, kyberKey(t), &id),
			}
			status, out := tr.do(t, "POST", "/v1/registration", newAuth("x", newPasswordString()), body)
			if status != tt.want {
				t.Fatalf("status %d, want %d (%s)", status, tt.want, out)
			}
			if strings.Contains(string(out), "operator-secret") {
				t.Error("the answer repeats the registration token")
			}
		})
	}
}

func TestPrekeys(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	bob := tr.register(t, "")

	upload := map[string]any{
		"preKeys":            []any{keyJSON(11, ecKey(t), nil), keyJSON(12, ecKey(t), nil)},
		"pqPreKeys":          []any{keyJSON(21, kyberKey(t), &bob.aciID), keyJSON(22, kyberKey(t), &bob.aciID)},
		"signedPreKey":       keyJSON(31, ecKey(t), &bob.aciID),
		"pqLastResortPreKey": keyJSON(41, kyberKey(t), &bob.aciID),
	}
	tr.mustDo(t, 200, "PUT", "/v2/keys?identity=aci", bob.auth(), upload)
	counts := func() map[string]int {
		return decode[map[string]int](t, tr.mustDo(t, 200, "GET", "/v2/keys?identity=aci", bob.auth(), nil))
	}
	if c := counts(); c["count"] != 2 || c["pqCount"] != 2 {
		t.Fatalf("counts %v, want 2 and 2", c)
	}

	refusals := []struct {
		name string
		body map[string]any
		want int
	}{
		{"a one-time Kyber key signed by someone else", map[string]any{"pqPreKeys": []any{keyJSON(23, kyberKey(t), &alice.aciID)}}, 422},
		{"a signed prekey without a signature", map[string]any{"signedPreKey": keyJSON(32, ecKey(t), nil)}, 422},
		{"a negative key id", map[string]any{"preKeys": []any{keyJSON(-1, ecKey(t), nil)}}, 422},
		{"a truncated EC key", map[string]any{"preKeys": []any{keyJSON(13, ecKey(t)[:32], nil)}}, 422},
		{"101 one-time keys", map[string]any{"preKeys": slices.Repeat([]any{keyJSON(1, ecKey(t), nil)}, 101)}, 422},
	}
	for _, r := range refusals {
		if status, out := tr.do(t, "PUT", "/v2/keys", bob.auth(), r.body); status != r.want {
			t.Errorf("%s: %d, want %d (%s)", r.name, status, r.want, out)
		}
	}
	if c := counts(); c["count"] != 2 || c["pqCount"] != 2 {
		t.Fatalf("refused uploads changed the counts: %v", c)
	}
	if status, _ := tr.do(t, "PUT", "/v2/keys?identity=xyz", bob.auth(), map[string]any{}); status != 400 {
		t.Errorf("unknown identity: %d, want 400", status)
	}

	type fetched struct {
		IdentityKey string `json:"identityKey"`
		Devices     []struct {
			DeviceID       int         `json:"deviceId"`
			RegistrationID int         `json:"registrationId"`
			SignedPreKey   *preKeyJSON `json:"signedPreKey"`
			PreKey         *preKeyJSON `json:"preKey"`
			PqPreKey       *preKeyJSON `json:"pqPreKey"`
		} `json:"devices"`
	}
	fetch := func(path string) fetched {
		return decode[fetched](t, tr.mustDo(t, 200, "GET", path, alice.auth(), nil))
	}
	var preKeyIDs, pqIDs []int64
	for range 3 {
		f := fetch("/v2/keys/" + bob.aci + "/1")
		if f.IdentityKey != b64(bob.aciID.public()) || len(f.Devices) != 1 || f.Devices[0].RegistrationID != bob.regID {
			t.Fatalf("bundle %+v", f)
		}
		dev := f.Devices[0]
		if dev.SignedPreKey == nil || *dev.SignedPreKey.KeyID != 31 {
			t.Fatalf("signed prekey %+v", dev.SignedPreKey)
		}
		if dev.PreKey != nil {
			preKeyIDs = append(preKeyIDs, *dev.PreKey.KeyID)
		}
		pqIDs = append(pqIDs, *dev.PqPreKey.KeyID)
	}
	if !slices.Equal(preKeyIDs, []int64{11, 12}) || !slices.Equal(pqIDs, []int64{21, 22, 41}) {
		t.Errorf("one-time EC keys %v (want 11, 12, then none), Kyber keys %v (want 21, 22, then last resort 41)", preKeyIDs, pqIDs)
	}
	if c := counts(); c["count"] != 0 || c["pqCount"] != 0 {
		t.Errorf("counts after fetching %v, want 0 and 0", c)
	}

	// PNI: the bundle carries the PNI identity key and registration id.
	f := fetch("/v2/keys/PNI:" + bob.pni + "/*")
	if f.IdentityKey != b64(bob.pniID.public()) || len(f.Devices) != 1 || f.Devices[0].RegistrationID != bob.pniReg {
		t.Errorf("PNI bundle %+v", f)
	}
	for _, c := range []struct {
		path string
		want int
	}{
		{"/v2/keys/" + newUUID().String() + "/1", 404},
		{"/v2/keys/" + bob.aci + "/9", 404},
		{"/v2/keys/" + bob.aci + "/0", 422},
		{"/v2/keys/" + bob.aci + "/x", 422},
		{"/v2/keys/ACI:" + bob.aci + "/1", 400},
	} {
		if status, _ := tr.do(t, "GET", c.path, alice.auth(), nil); status != c.want {
			t.Errorf("GET %s: %d, want %d", c.path, status, c.want)
		}
	}
	if status, _ := tr.do(t, "GET", "/v2/keys/"+bob.aci+"/1", "", nil); status != 401 {
		t.Errorf("fetch without credentials: %d, want 401", status)
	}
}

func TestSendIsRefused(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	bob2 := tr.link(t, bob)
	content := []byte("ciphertext")
	tests := []struct {
		name     string
		auth     string
		dest     string
		body     any
		want     int
		wantBody string
	}{
		{"no credentials", "", bob.aci, sendBodyOf(message(1, bob.regID, content), message(bob2.id, bob2.regID, content)), 401, ""},
		{"a missing device", alice.auth(), bob.aci, sendBodyOf(message(1, bob.regID, content)), 409, `{"extraDevices":[],"missingDevices":[2]}`},
		{"an extra device", alice.auth(), bob.aci, sendBodyOf(message(1, bob.regID, content), message(2, bob2.regID, content), message(5, 1, content)), 409, `{"extraDevices":[5],"missingDevices":[]}`},
		{"a stale registration id", alice.auth(), bob.aci, sendBodyOf(message(1, bob.regID+1, content), message(2, bob2.regID, content)), 410, `{"staleDevices":[1]}`},
		{"stale wins over missing", alice.auth(), bob.aci, sendBodyOf(message(1, bob.regID+1, content)), 410, `{"staleDevices":[1]}`},
		{"the ACI registration id for the PNI", alice.auth(), "PNI:" + bob.pni, sendBodyOf(message(1, bob.regID, content), message(2, bob2.regID, content)), 410, `{"staleDevices":[1,2]}`},
		{"an unknown account", alice.auth(), newUUID().String(), sendBodyOf(message(1, 1, content)), 404, ""},
		{"content over 96 KiB", alice.auth(), bob.aci, sendBodyOf(message(1, bob.regID, make([]byte, maxContentSize+1)), message(2, bob2.regID, content)), 413, ""},
		{"empty content", alice.auth(), bob.aci, sendBodyOf(message(1, bob.regID, nil), message(2, bob2.regID, content)), 400, ""},
		{"a device twice", alice.auth(), bob.aci, sendBodyOf(message(1, bob.regID, content), message(1, bob.regID, content)), 400, ""},
		{"the server receipt type", alice.auth(), bob.aci, sendBodyOf(map[string]any{"type": 5, "destinationDeviceId": 1, "destinationRegistrationId": bob.regID, "content": b64(content)}), 400, ""},
		{"a bad service id", alice.auth(), "ACI:" + bob.aci, sendBodyOf(message(1, bob.regID, content)), 400, ""},
		{"malformed JSON", alice.auth(), bob.aci, []byte(`{"messages":[`), 400, ""},
		{"a sync message that forgets a sibling", bob2.auth(), bob.aci, sendBodyOf(), 409, `{"extraDevices":[],"missingDevices":[1]}`},
		{"a sync message to the own PNI", bob2.auth(), "PNI:" + bob.pni, sendBodyOf(message(1, bob.pniReg, content)), 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, out := tr.do(t, "PUT", "/v1/messages/"+tt.dest, tt.auth, tt.body)
			if status != tt.want {
				t.Fatalf("status %d, want %d (%s)", status, tt.want, out)
			}
			if tt.wantBody != "" && strings.TrimSpace(string(out)) != tt.wantBody {
				t.Errorf("body %s, want %s", out, tt.wantBody)
			}
		})
	}
	// Nothing refused was queued.
	for _, d := range []*testDevice{bob, bob2} {
		aci, _ := parseUUID(d.aci)
		if n, _ := tr.srv.store.queueLen(aci, uint8(d.id)); n != 0 {
			t.Errorf("device %d has %d queued envelopes after refused sends", d.id, n)
		}
	}
}

func TestSendIsRateLimited(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	tr := startRelay(t, Config{Now: clock.now, MessageRate: 1, MessageBurst: 2})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	send := func() (int, http.Header) {
		req, _ := http.NewRequest("PUT", tr.base+"/v1/messages/"+bob.aci,
			strings.NewReader(`{"messages":[{"type":1,"destinationDeviceId":1,"destinationRegistrationId":`+itoa(bob.regID)+`,"content":"AQ=="}]}`))
		req.Header.Set("Authorization", alice.auth())
		resp, err := tr.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	for i := range 2 {
		if s, _ := send(); s != 200 {
			t.Fatalf("send %d within the burst: %d", i, s)
		}
	}
	s, h := send()
	if s != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("send over the burst: %d, Retry-After %q; want 429 with Retry-After", s, h.Get("Retry-After"))
	}
	// Provisioning messages draw on the same budget, as on Signal's server.
	if status, _ := tr.do(t, "PUT", "/v1/provisioning/somewhere", alice.auth(), map[string]string{"body": "AA=="}); status != 429 {
		t.Errorf("provisioning over the budget: %d, want 429", status)
	}
	// Another account has its own budget.
	if status, _ := tr.do(t, "PUT", "/v1/messages/"+alice.aci, bob.auth(), sendBodyOf(message(1, alice.regID, []byte("x")))); status != 200 {
		t.Errorf("another account's send: %d, want 200", status)
	}
	clock.advance(time.Second)
	if s, _ := send(); s != 200 {
		t.Errorf("send after a second: %d, want 200", s)
	}
}

func TestLiveDeliveryAndAck(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	alice2 := tr.link(t, alice)
	bob := tr.register(t, "")
	sock := tr.mustDial(t, bob, nil)
	if r := sock.next(t); r.Path != "/api/v1/queue/empty" {
		t.Fatalf("first push on an empty queue: %s, want queue/empty", r.Path)
	}

	out := tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice2.auth(), sendBodyOf(message(1, bob.regID, []byte("hello"))))
	if got := decode[map[string]bool](t, out); !got["needsSync"] {
		t.Errorf("needsSync %v, want true: the sender's account has two devices", got)
	}
	env := sock.nextEnvelope(t)
	aliceACI, _ := parseUUID(alice.aci)
	bobACI, _ := parseUUID(bob.aci)
	switch {
	case env.GetType() != signalpb.Envelope_CIPHERTEXT:
		t.Errorf("type %v", env.GetType())
	case !bytes.Equal(env.GetSourceServiceId(), aliceACI[:]):
		t.Errorf("source service id %x", env.GetSourceServiceId())
	case env.GetSourceDevice() != uint32(alice2.id):
		t.Errorf("source device %d", env.GetSourceDevice())
	case !bytes.Equal(env.GetDestinationServiceId(), bobACI[:]):
		t.Errorf("destination service id %x", env.GetDestinationServiceId())
	case len(env.GetServerGuid()) != 16:
		t.Errorf("server guid %x", env.GetServerGuid())
	case string(env.GetContent()) != "hello" || env.GetClientTimestamp() != 1700000000000 || env.GetServerTimestamp() == 0:
		t.Errorf("envelope %v", env)
	}
	waitQueueLen(t, tr, bob, 0)
}

func TestSyncMessageReachesOwnDevices(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	alice2 := tr.link(t, alice)
	sock := tr.mustDial(t, alice, nil)
	out := tr.mustDo(t, 200, "PUT", "/v1/messages/"+alice.aci, alice2.auth(), sendBodyOf(message(1, alice.regID, []byte("sync"))))
	if got := decode[map[string]bool](t, out); got["needsSync"] {
		t.Error("needsSync on a sync message")
	}
	if env := sock.nextEnvelope(t); string(env.GetContent()) != "sync" || env.GetSourceDevice() != 2 {
		t.Errorf("sync envelope %v", env)
	}
}

func waitQueueLen(t *testing.T, tr *testRelay, d *testDevice, want int) {
	t.Helper()
	aci, _ := parseUUID(d.aci)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := tr.srv.store.queueLen(aci, uint8(d.id))
		if err != nil {
			t.Fatal(err)
		}
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue of %s.%d has %d envelopes, want %d", d.aci, d.id, n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestQueuedDeliveryInOrderOnReconnect(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	for _, c := range []string{"one", "two", "three"} {
		tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte(c))))
	}
	// Ephemeral messages for an offline device are dropped.
	eph := sendBodyOf(message(1, bob.regID, []byte("typing")))
	eph["online"] = true
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), eph)
	waitQueueLen(t, tr, bob, 3)

	sock := tr.mustDial(t, bob, nil)
	var got []string
	for range 3 {
		r := sock.next(t)
		if r.Path != "/api/v1/message" {
			t.Fatalf("push %s before the backlog was through", r.Path)
		}
		var env signalpb.Envelope
		if err := proto.Unmarshal(r.Body, &env); err != nil {
			t.Fatal(err)
		}
		got = append(got, string(env.GetContent()))
	}
	if !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Errorf("delivered %v, want one, two, three", got)
	}
	if r := sock.next(t); r.Path != "/api/v1/queue/empty" {
		t.Errorf("after the backlog: %s, want queue/empty", r.Path)
	}
	waitQueueLen(t, tr, bob, 0)
}

func TestUnacknowledgedMessageIsRedelivered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		first func(*wsr.Request) int // the first socket's answer to the envelope
		drop  bool                   // the first socket drops without answering
	}{
		{"the device answers 500", func(*wsr.Request) int { return 500 }, false},
		{"the device disconnects before acking", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := startRelay(t, Config{})
			alice := tr.register(t, "")
			bob := tr.register(t, "")
			status := tt.first
			block := make(chan struct{})
			if tt.drop {
				status = func(r *wsr.Request) int {
					if r.Path == "/api/v1/message" {
						<-block // never answers while connected
					}
					return 200
				}
			}
			tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("keep me"))))
			first := tr.mustDial(t, bob, status)
			if !tt.drop {
				if env := first.nextEnvelope(t); string(env.GetContent()) != "keep me" {
					t.Fatalf("first delivery %v", env)
				}
			} else {
				time.Sleep(100 * time.Millisecond) // the envelope is in flight
			}
			first.closedWS.UnderlyingConn().Close()
			close(block) // the late answer finds the connection gone
			<-first.conn.Done()
			waitQueueLen(t, tr, bob, 1)

			second := tr.mustDial(t, bob, nil)
			if env := second.nextEnvelope(t); string(env.GetContent()) != "keep me" {
				t.Fatalf("redelivery %v", env)
			}
			waitQueueLen(t, tr, bob, 0)
		})
	}
}

func TestQueueSurvivesARestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := startRelay(t, Config{DataDir: dir})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	bob2 := tr.link(t, bob)
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(),
		sendBodyOf(message(1, bob.regID, []byte("before restart")), message(bob2.id, bob2.regID, []byte("for two"))))
	tr.stop(t)

	tr2 := startRelay(t, Config{DataDir: dir})
	sock := tr2.mustDial(t, bob2, nil)
	if env := sock.nextEnvelope(t); string(env.GetContent()) != "for two" {
		t.Fatalf("after restart: %v", env)
	}
	sock1 := tr2.mustDial(t, bob, nil)
	if env := sock1.nextEnvelope(t); string(env.GetContent()) != "before restart" {
		t.Fatalf("after restart: %v", env)
	}
	// Accounts, devices and keys survived too.
	tr2.mustDo(t, 200, "GET", "/v2/keys/"+bob.aci+"/*", alice.auth(), nil)
}

func TestNewerSocketReplacesTheOlder(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	old := tr.mustDial(t, bob, nil)
	old.next(t) // queue/empty: the old socket is registered
	newer := tr.mustDial(t, bob, nil)
	if code := old.closeCode(t); code != closeConnectedElsewhere {
		t.Errorf("older socket closed with %d, want 4409", code)
	}
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("to the new one"))))
	if env := newer.nextEnvelope(t); string(env.GetContent()) != "to the new one" {
		t.Errorf("newer socket got %v", env)
	}
}

func TestRemovedDeviceIsClosedAndForgotten(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	alice2 := tr.link(t, alice)
	alice3 := tr.link(t, alice)
	bob := tr.register(t, "")
	sock := tr.mustDial(t, alice3, nil)
	sock.next(t)

	tests := []struct {
		name string
		auth string
		path string
		want int
	}{
		{"a linked device cannot remove a sibling", alice2.auth(), "/v1/devices/3", 401},
		{"the primary cannot be removed", alice.auth(), "/v1/devices/1", 403},
		{"another account's device is not found", bob.auth(), "/v1/devices/3", 404},
		{"a bad device id", alice.auth(), "/v1/devices/x", 422},
		{"the primary removes a linked device", alice.auth(), "/v1/devices/3", 204},
	}
	for _, tt := range tests {
		if status, out := tr.do(t, "DELETE", tt.path, tt.auth, nil); status != tt.want {
			t.Errorf("%s: %d, want %d (%s)", tt.name, status, tt.want, out)
		}
	}
	if code := sock.closeCode(t); code != closeReauthenticate {
		t.Errorf("removed device's socket closed with %d, want 4401", code)
	}
	if status, _ := tr.do(t, "GET", "/v1/accounts/whoami", alice3.auth(), nil); status != 401 {
		t.Errorf("removed device authenticates: %d", status)
	}
	if _, err := tr.dial(t, alice3, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("removed device opens a socket: %v, want 403", err)
	}
	tr.mustDo(t, 204, "DELETE", "/v1/devices/2", alice2.auth(), nil) // a device removes itself
}

func TestRESTOverTheSockets(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	sock := tr.mustDial(t, alice, nil)
	resp := sock.request(t, "GET", "/v1/accounts/whoami", nil)
	if resp.Status != 200 || decode[map[string]any](t, resp.Body)["uuid"] != alice.aci || resp.Header("X-Signal-Timestamp") == "" {
		t.Errorf("whoami over the socket: %d %s %v", resp.Status, resp.Body, resp.Headers)
	}
	if resp := sock.request(t, "GET", "/v1/keepalive", nil); resp.Status != 200 {
		t.Errorf("keepalive: %d", resp.Status)
	}
	if resp := sock.request(t, "GET", "/v1/websocket/", nil); resp.Status != 404 {
		t.Errorf("a socket inside a socket: %d, want 404", resp.Status)
	}

	// An unauthenticated socket carries a link request with its own credentials.
	anon := tr.mustDial(t, nil, nil)
	if resp := anon.request(t, "GET", "/v1/accounts/whoami", nil); resp.Status != 401 {
		t.Errorf("whoami on an unauthenticated socket: %d, want 401", resp.Status)
	}
	d := &testDevice{password: newPasswordString(), regID: 77, pniReg: 78}
	body := linkBodyFor(t, alice, d, tr.linkCode(t, alice))
	b, _ := jsonMarshal(body)
	r, err := anon.conn.Request(t.Context(), &wsr.Request{Verb: "PUT", Path: "/v1/devices/link", Body: b,
		Headers: []string{"Content-Type:application/json", "Authorization:" + newAuth(alice.aci, d.password)}})
	if err != nil || r.Status != 200 {
		t.Fatalf("link over an unauthenticated socket: %+v %v", r, err)
	}
	if _, err := tr.dial(t, &testDevice{aci: alice.aci, id: 1, password: "wrong-password-123"}, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("socket with a wrong password: %v, want 403", err)
	}
}

func TestListenRules(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     Config
		wantErr error
	}{
		{"plain HTTP beyond loopback is refused", Config{Listen: "0.0.0.0:0", DataDir: dir}, ErrInsecureListen},
		{"an empty host is beyond loopback", Config{Listen: ":8080", DataDir: dir}, ErrInsecureListen},
		{"the operator may allow it", Config{Listen: "0.0.0.0:0", DataDir: dir, AllowInsecure: true}, nil},
		{"loopback needs no TLS", Config{Listen: "127.0.0.1:0", DataDir: dir}, nil},
		{"localhost needs no TLS", Config{Listen: "localhost:0", DataDir: dir}, nil},
		{"half a TLS pair", Config{Listen: "127.0.0.1:0", DataDir: dir, TLSCert: "c.pem"}, ErrConfig},
		{"a missing TLS file", Config{Listen: "127.0.0.1:0", DataDir: dir, TLSCert: "/nonexistent/c", TLSKey: "/nonexistent/k"}, ErrConfig},
		{"no data dir", Config{Listen: "127.0.0.1:0"}, ErrConfig},
		{"a bad address", Config{Listen: "nowhere", DataDir: dir}, ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tt.cfg)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("New: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	certFile, keyFile, pool := writeTestCert(t)
	tr := startRelay(t, Config{TLSCert: certFile, TLSKey: keyFile})
	if !strings.HasPrefix(tr.base, "https://") {
		t.Fatalf("URL %s is not https", tr.base)
	}
	tr.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsClientConfig(pool)}}
	alice := tr.register(t, "")
	tr.mustDo(t, 200, "GET", "/v1/accounts/whoami", alice.auth(), nil)
	d := websocket.Dialer{TLSClientConfig: tlsClientConfig(pool)}
	h := http.Header{"Authorization": {alice.auth()}}
	ws, _, err := d.DialContext(t.Context(), "wss"+strings.TrimPrefix(tr.base, "https")+"/v1/websocket/", h)
	if err != nil {
		t.Fatal(err)
	}
	ws.Close()
}

func TestDataFileIsPrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := startRelay(t, Config{DataDir: dir})
	tr.register(t, "")
	assertMode(t, dir+"/relay.db", 0o600)
}

func TestPasswordIsNotStoredInTheClear(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr := startRelay(t, Config{DataDir: dir})
	alice := tr.register(t, "")
	tr.stop(t)
	raw := readFile(t, dir+"/relay.db")
	if bytes.Contains(raw, []byte(alice.password)) || bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString([]byte(alice.password)))) {
		t.Error("the database holds the password")
	}
}

func TestADeviceOnlyEverSeesItsOwnQueue(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	alice2 := tr.link(t, alice)
	bob := tr.register(t, "")
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+alice.aci, bob.auth(),
		sendBodyOf(message(1, alice.regID, []byte("for alice 1")), message(alice2.id, alice2.regID, []byte("for alice 2"))))

	// Bob's socket, and alice's second device, get nothing of alice's primary.
	bobSock := tr.mustDial(t, bob, nil)
	bobSock.expectQuiet(t, 200*time.Millisecond)
	a2 := tr.mustDial(t, alice2, nil)
	if env := a2.nextEnvelope(t); string(env.GetContent()) != "for alice 2" {
		t.Fatalf("alice's device 2 got %q", env.GetContent())
	}
	a2.expectQuiet(t, 100*time.Millisecond)
	waitQueueLen(t, tr, alice, 1)

	// Bob's keys go to his own account whatever he names: PUT /v2/keys has no
	// destination, so alice's counts stay untouched.
	tr.mustDo(t, 200, "PUT", "/v2/keys", bob.auth(), map[string]any{"preKeys": []any{keyJSON(1, ecKey(t), nil)}})
	if c := decode[map[string]int](t, tr.mustDo(t, 200, "GET", "/v2/keys", alice.auth(), nil)); c["count"] != 0 {
		t.Errorf("alice has %d one-time keys after bob's upload", c["count"])
	}
	// Bob's credentials with alice's ACI do not authenticate.
	forged := &testDevice{aci: alice.aci, id: 1, password: bob.password}
	if status, _ := tr.do(t, "GET", "/v1/accounts/whoami", forged.auth(), nil); status != 401 {
		t.Errorf("bob's password on alice's ACI: %d, want 401", status)
	}
	if _, err := tr.dial(t, forged, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("socket with bob's password on alice's ACI: %v, want 403", err)
	}
}

func TestSocketWithMessagesDisabledReceivesNothing(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	h := http.Header{"Authorization": {bob.auth()}, "X-Signal-Disable-Messages": {"true"}}
	ws, _, err := websocket.DefaultDialer.DialContext(t.Context(), tr.wsURL("/v1/websocket/"), h)
	if err != nil {
		t.Fatal(err)
	}
	pushed := make(chan *wsr.Request, 4)
	conn := wsr.New(ws, wsr.Options{Handler: func(_ context.Context, r *wsr.Request) *wsr.Response {
		pushed <- r
		return &wsr.Response{Status: 200}
	}})
	go conn.Run(t.Context())
	defer conn.Close(websocket.CloseNormalClosure, "")
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("queued"))))
	resp, err := conn.Request(t.Context(), &wsr.Request{Verb: "GET", Path: "/v1/accounts/whoami"})
	if err != nil || resp.Status != 200 {
		t.Fatalf("request on the socket: %+v %v", resp, err)
	}
	select {
	case r := <-pushed:
		t.Fatalf("pushed %s %s on a socket with messages disabled", r.Verb, r.Path)
	case <-time.After(200 * time.Millisecond):
	}
	waitQueueLen(t, tr, bob, 1)
}

func TestPrimaryWaitsForTheLinkedDevice(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	primary := tr.register(t, "")
	other := tr.register(t, "")
	out := tr.mustDo(t, 200, "GET", "/v1/devices/provisioning/code", primary.auth(), nil)
	code := decode[map[string]string](t, out)
	ident := code["tokenIdentifier"]
	wait := "/v1/devices/wait_for_linked_device/" + ident

	type answer struct {
		status int
		body   []byte
	}
	waiting := make(chan answer, 1)
	go func() {
		status, body := tr.do(t, "GET", wait+"?timeout=10", primary.auth(), nil)
		waiting <- answer{status, body}
	}()
	time.Sleep(50 * time.Millisecond) // the primary is waiting before the link
	d := &testDevice{password: newPasswordString(), regID: 99, pniReg: 98}
	tr.mustDo(t, 200, "PUT", "/v1/devices/link", newAuth(primary.aci, d.password), linkBodyFor(t, primary, d, code["verificationCode"]))
	select {
	case a := <-waiting:
		got := decode[map[string]any](t, a.body)
		if a.status != 200 || got["id"] != float64(2) || got["registrationId"] != float64(99) {
			t.Errorf("wait answered %d %s", a.status, a.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting primary was not told")
	}

	tests := []struct {
		name string
		auth string
		path string
		want int
	}{
		{"asking after the link answers at once", primary.auth(), wait + "?timeout=1", 200},
		{"another account learns nothing", other.auth(), wait + "?timeout=1", 204},
		{"an unused token times out", primary.auth(), "/v1/devices/wait_for_linked_device/" + strings.Repeat("A", 43) + "?timeout=1", 204},
		{"a bad identifier is 400", primary.auth(), "/v1/devices/wait_for_linked_device/xyz", 400},
		{"a timeout over an hour is 400", primary.auth(), wait + "?timeout=3601", 400},
		{"no credentials is 401", "", wait, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if status, body := tr.do(t, "GET", tt.path, tt.auth, nil); status != tt.want {
				t.Errorf("status %d, want %d (%s)", status, tt.want, body)
			}
		})
	}
}

func TestOversizedBodyIs413AndChangesNothing(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	big := append([]byte(`{"preKeys":[],"pad":"`), bytes.Repeat([]byte("a"), maxBodySize)...)
	big = append(big, `"}`...)
	if status, _ := tr.do(t, "PUT", "/v2/keys", alice.auth(), big); status != 413 {
		t.Errorf("oversized body: %d, want 413", status)
	}
	tr.mustDo(t, 200, "GET", "/v1/accounts/whoami", alice.auth(), nil)
}

func TestExpiredLinkTokensArePurged(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	tr := startRelay(t, Config{Now: clock.now})
	primary := tr.register(t, "")
	for range 3 {
		tr.linkCode(t, primary)
	}
	clock.advance(linkTokenLifetime + time.Second)
	fresh := tr.linkCode(t, primary)
	if n, err := tr.srv.store.linkTokenCount(); err != nil || n != 1 {
		t.Fatalf("%d link tokens stored (%v), want only the fresh one", n, err)
	}
	d := &testDevice{password: newPasswordString(), regID: 3, pniReg: 4}
	tr.mustDo(t, 200, "PUT", "/v1/devices/link", newAuth(primary.aci, d.password), linkBodyFor(t, primary, d, fresh))
}

func TestSocketsBeyondTheLimitAre503(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{MaxSockets: 1})
	first, _, err := websocket.DefaultDialer.DialContext(t.Context(), tr.wsURL("/v1/websocket/provisioning/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/websocket/provisioning/", "/v1/websocket/"} {
		_, resp, err := websocket.DefaultDialer.DialContext(t.Context(), tr.wsURL(path), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("second socket on %s: %v, want 503", path, err)
		}
	}
	first.Close()
	// The slot comes back once the first socket is gone.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws, _, err := websocket.DefaultDialer.DialContext(t.Context(), tr.wsURL("/v1/websocket/"), nil)
		if err == nil {
			ws.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket after the first closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAQuickReconnectDoesNotRedeliverWhatWasAcknowledged(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	for i := range 5 {
		first := tr.mustDial(t, bob, nil)
		content := fmt.Sprint("round ", i)
		tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte(content))))
		if env := first.nextEnvelope(t); string(env.GetContent()) != content {
			t.Fatalf("got %q", env.GetContent())
		}
		// Once the relay has taken the acknowledgement, close and reconnect
		// at once. (Before that, a redelivery is correct: delivery is at
		// least once, and the client keeps what it decrypted to answer it.)
		waitQueueLen(t, tr, bob, 0)
		first.conn.Close(websocket.CloseNormalClosure, "")
		second := tr.mustDial(t, bob, nil)
		second.expectQuiet(t, 150*time.Millisecond)
		second.conn.Close(websocket.CloseNormalClosure, "")
		<-second.conn.Done()
		<-first.conn.Done()
	}
	waitQueueLen(t, tr, bob, 0)
}
