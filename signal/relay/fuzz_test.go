package relay

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/signal-mpc/cosigner/signal/wsr"
)

func FuzzParseServiceID(f *testing.F) {
	f.Add("9d0652a3-dcc3-4d11-975f-74d61598733f")
	f.Add("PNI:9d0652a3-dcc3-4d11-975f-74d61598733f")
	f.Add("ACI:9d0652a3-dcc3-4d11-975f-74d61598733f")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseServiceID(s)
		if err != nil {
			if !errors.Is(err, ErrBadServiceID) {
				t.Fatalf("error %v does not wrap ErrBadServiceID", err)
			}
			return
		}
		if !strings.EqualFold(id.String(), s) {
			t.Fatalf("%q parsed and printed as %q", s, id.String())
		}
		if n := len(id.binary()); (id.pni && n != 17) || (!id.pni && n != 16) {
			t.Fatalf("binary form of %s has %d bytes", id, n)
		}
	})
}

func FuzzCredentials(f *testing.F) {
	f.Add("Basic OWQwNjUyYTMtZGNjMy00ZDExLTk3NWYtNzRkNjE1OTg3MzNmLjI6cGFzc3dvcmQ=")
	f.Add("Basic Og==")
	f.Add("Bearer x")
	f.Fuzz(func(t *testing.T, header string) {
		user, password, err := basicAuth(http.Header{"Authorization": {header}})
		if err != nil {
			return
		}
		if user == "" || password == "" {
			t.Fatal("accepted credentials without a user or a password")
		}
		if _, dev, err := parseLogin(user); err == nil && (dev < 1 || dev > maxDeviceID) {
			t.Fatalf("device id %d accepted", dev)
		}
	})
}

func FuzzSendBody(f *testing.F) {
	f.Add([]byte(`{"messages":[{"type":1,"destinationDeviceId":1,"destinationRegistrationId":5,"content":"AQ=="}],"timestamp":1}`))
	f.Add([]byte(`{"messages":[{"type":5}]}`))
	f.Add([]byte(`{"messages":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var body sendBody
		if json.Unmarshal(b, &body) != nil {
			return
		}
		entries, err := parseSendBody(&body)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status < 400 || ae.status > 499 {
				t.Fatalf("refusal %v is not a 4xx apiError", err)
			}
			return
		}
		seen := map[uint8]bool{}
		for _, e := range entries {
			if len(e.content) == 0 || len(e.content) > maxContentSize || seen[e.dev] || e.dev < 1 || e.dev > maxDeviceID {
				t.Fatalf("accepted a bad entry: device %d, %d bytes", e.dev, len(e.content))
			}
			seen[e.dev] = true
		}
	})
}

// FuzzSocketRequest feeds arbitrary requests from an authenticated device
// through every route, the way requests arrive on a socket: no input may
// crash the relay or make it fail internally (500).
func FuzzSocketRequest(f *testing.F) {
	routes := []string{
		"PUT /v2/keys?identity=aci", "PUT /v2/keys?identity=pni", "GET /v2/keys", "GET /v2/keys/%s/*",
		"PUT /v1/messages/%s", "PUT /v1/devices/link", "POST /v1/registration", "PUT /v1/provisioning/%s",
		"GET /v1/devices", "DELETE /v1/devices/%s", "GET /v1/accounts/whoami", "PUT /v1/accounts/attributes", "GET /v1/devices/provisioning/code",
	}
	f.Add(uint8(0), "", []byte(`{"preKeys":[{"keyId":1,"publicKey":"BQ=="}]}`))
	f.Add(uint8(3), "", []byte(``))
	f.Add(uint8(4), "", []byte(`{"messages":[{"type":1,"destinationDeviceId":1,"destinationRegistrationId":1,"content":"AQ=="}]}`))
	f.Add(uint8(5), "", []byte(`{"verificationCode":"x","accountAttributes":{"registrationId":1}}`))
	f.Add(uint8(7), "abc", []byte(`{"body":"AAAA"}`))
	f.Add(uint8(9), "2", []byte{})

	srv, err := New(Config{Listen: "127.0.0.1:0", DataDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	st, err := openStore(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	writerCtx, stopWriter := context.WithCancel(context.Background())
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); st.runWriter(writerCtx) }()
	f.Cleanup(func() { stopWriter(); <-writerDone; st.close() })
	srv.store, srv.loopback, srv.baseCtx, srv.writerCtx = st, true, context.Background(), writerCtx
	srv.linked = newLinkWaiters()
	srv.chat, srv.provisioning = map[string]*chatSession{}, map[string]*provisioningSession{}
	srv.deliveryLocks = map[string]chan struct{}{}
	h := srv.routes()
	// One account with a device for the requests to act as.
	acc := &account{ACI: newUUID(), ACIIdentityKey: newIdentity(f).public(), NextDeviceID: 2}
	if err := st.createAccount(writerCtx, newAccount{acc: acc, primary: &device{ID: 1, RegistrationID: 1, Salt: []byte{1}, PasswordHash: []byte{1}}}); err != nil {
		f.Fatal(err)
	}
	p := &principal{aci: acc.ACI, dev: 1}

	f.Fuzz(func(t *testing.T, route uint8, arg string, body []byte) {
		verb, path, _ := strings.Cut(routes[int(route)%len(routes)], " ")
		if strings.Contains(path, "%s") {
			if arg == "" {
				arg = acc.ACI.String()
			}
			path = strings.Replace(path, "%s", arg, 1)
		}
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n") {
			return
		}
		resp := srv.serveSocketRequest(context.Background(), h, p, "127.0.0.1:1", &wsr.Request{
			Verb: verb, Path: path, Body: body, Headers: []string{"Content-Type:application/json"},
		})
		if resp.Status >= 500 {
			t.Fatalf("%s %s with %q: status %d %s", verb, path, body, resp.Status, resp.Body)
		}
	})
}
