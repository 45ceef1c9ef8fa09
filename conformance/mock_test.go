// Package conformance runs cosigner's Signal code against Signal's own mock
// server (@signalapp/mock-server 27.0.0, the server Signal tests its Desktop
// app against), driven by the Node harness in harness/. The mock is AGPL and
// is installed by `npm ci --prefix conformance/harness` at test time; it is
// never vendored. Without Node these tests skip outside CI and fail in CI.
package conformance

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/liblog"
	"github.com/signal-mpc/cosigner/signal/transport"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

func TestMain(m *testing.M) {
	liblog.Silence()
	os.Exit(m.Run())
}

// Three consoles link to three accounts of the mock through the real
// provisioning flow: the provisioning socket and cipher, PUT
// /v1/devices/link with the ACI as username, and the one-time key upload
// for ACI and PNI that the mock's phone waits for.
func TestLinkThreeConsolesToMockAccounts(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeAuto)
	for _, name := range []string{"alice", "bob", "carol"} {
		a := m.createAccount(name)
		l := m.link(a)
		if l.Acct.ACI != a.ACI || l.Acct.PNI != untagged(a.PNI) || l.Acct.Number != a.Number {
			t.Fatalf("%s linked as %s (PNI %s, %s); the mock's account is %s (PNI %s, %s)", name, l.Acct.ACI, l.Acct.PNI, l.Acct.Number, a.ACI, a.PNI, a.Number)
		}
		// The mock counts device ids from 1 (the phone): the console is 2.
		if l.Acct.DeviceID != 2 || l.Seen["deviceId"] != float64(2) || l.Seen["aci"] != a.ACI {
			t.Fatalf("%s: console is device %d; the mock linked %v.%v", name, l.Acct.DeviceID, l.Seen["aci"], l.Seen["deviceId"])
		}
		if l.Seen["registrationId"] != float64(l.Acct.ACIRegistrationID) || l.Seen["pniRegistrationId"] != float64(l.Acct.PNIRegistrationID) {
			t.Fatalf("%s: registration ids %d/%d, the mock holds %v/%v", name, l.Acct.ACIRegistrationID, l.Acct.PNIRegistrationID, l.Seen["registrationId"], l.Seen["pniRegistrationId"])
		}
		if fmt.Sprint(l.Steps) != fmt.Sprint([]string{device.StepWaiting, device.StepReceived, device.StepRegistered, device.StepUploaded}) {
			t.Fatalf("%s: link steps %q", name, l.Steps)
		}
		devs := m.must("devices", map[string]any{"name": name})["devices"].([]any)
		if len(devs) != 2 {
			t.Fatalf("%s: the mock lists devices %v, want the phone and the console", name, devs)
		}
		// The one-time keys the console uploaded, as the mock holds them.
		keys := m.must("keys", map[string]any{"name": name, "deviceId": 2})
		for _, id := range []string{"aci", "pni"} {
			k, _ := keys[id].(map[string]any)
			if k["preKeys"] != float64(linkPreKeys) || k["kyberPreKeys"] != float64(linkPreKeys) {
				t.Fatalf("%s: %s keys on the mock %v, want %d EC and %d Kyber one-time prekeys", name, id, k, linkPreKeys, linkPreKeys)
			}
		}
		// The authenticated connection comes up with the stored password.
		r := l.run(t, m.Dialer)
		if got := r.Dev.Address(); got != (device.Address{Account: a.ACI, Device: 2}) {
			t.Fatalf("%s: device address %v", name, got)
		}
		if mode := r.Dev.Status().Mode; mode != transport.ModeHTTP2 {
			t.Fatalf("%s: connected with %v, want RFC 8441 over HTTP/2", name, mode)
		}
	}
	// Auto mode found extended CONNECT on the mock's HTTP/2 listener.
	if got := m.Dialer.Mode(); got != transport.ModeHTTP2 {
		t.Fatalf("auto mode settled on %v, want http2 (RFC 8441)", got)
	}
}

// The mock serves WebSockets only over RFC 8441: an HTTP/1.1 upgrade is
// refused, and the same dialer in HTTP/2 mode gets through.
func TestMockRequiresRFC8441(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeHTTP2)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ws, err := m.Dialer.Dial(ctx, "/v1/websocket/provisioning/", nil)
	if err != nil {
		t.Fatalf("RFC 8441 WebSocket to the mock: %v", err)
	}
	ws.Close()

	h1, err := transport.NewDialer(transport.Config{URL: m.URL, RootCAs: rootsOf(t, m), Mode: transport.ModeHTTP1})
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	ws, err = h1.Dial(ctx, "/v1/websocket/provisioning/", nil)
	var he *transport.HandshakeError
	if err == nil {
		ws.Close()
		t.Fatal("the mock accepted an HTTP/1.1 upgrade; this test's premise (RFC 8441 only) no longer holds")
	}
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("HTTP/1.1 upgrade: %v, want the mock's 401", err)
	}
}

// fillersTo counts the routed type-8 entries to one device of an account.
func fillersTo(evs []Event, aci string, deviceID int) (n int) {
	for _, e := range evs {
		if e.To == fmt.Sprintf("%s.%d", aci, deviceID) && e.Type == 8 {
			n++
		}
	}
	return n
}

// failed returns the envelopes the mock refused (a 500 to the sender).
func failed(evs []Event) []Event {
	var out []Event
	for _, e := range evs {
		if !e.OK {
			out = append(out, e)
		}
	}
	return out
}

// Three linked consoles send MPC messages to each other through the mock:
// every message is one Signal-encrypted entry for the console device plus a
// PLAINTEXT_CONTENT filler for the phone, which the mock's phone (official
// libsignal) must accept or the whole send fails with 500.
func TestMPCMessagesBetweenConsolesThroughMock(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeHTTP2)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var devs []*runningDevice
	for _, name := range []string{"alice", "bob", "carol"} {
		devs = append(devs, m.link(m.createAccount(name)).run(t, m.Dialer))
	}
	// Two rounds: the first starts sessions (PreKey messages), the second
	// answers on established sessions (SignalMessages).
	for round := 1; round <= 2; round++ {
		for _, from := range devs {
			for _, to := range devs {
				if from == to {
					continue
				}
				body := fmt.Sprintf("round %d from %s to %s", round, from.Account.Name, to.Account.Name)
				if err := from.Dev.Send(ctx, to.Dev.Address(), []byte(body)); err != nil {
					t.Fatalf("%s: %v", body, err)
				}
			}
		}
		for _, to := range devs {
			got := to.In.wait(t, 2*round)
			for _, d := range got[2*(round-1):] {
				want := fmt.Sprintf("round %d from ", round)
				if len(d.Body) < len(want) || d.Body[:len(want)] != want || d.Body[len(d.Body)-len(to.Account.Name):] != to.Account.Name {
					t.Fatalf("%s got %q from %s", to.Account.Name, d.Body, addr(d.From))
				}
			}
		}
	}
	// 6 messages per round, each with a filler.
	evs := m.waitEvents(ctx, func(evs []Event) bool { return len(evs) >= 24 })
	if bad := failed(evs); len(bad) > 0 {
		t.Fatalf("the mock refused envelopes:\n%s", formatEvents(bad))
	}
	var prekeys, ciphertexts int
	for _, to := range devs {
		// Every MPC message to an account carried one filler for its phone.
		if n := fillersTo(evs, to.Account.ACI, 1); n != 4 {
			t.Fatalf("%s's phone got %d fillers, want 4 (one per message):\n%s", to.Account.Name, n, formatEvents(evs))
		}
		var prekey, ciphertext int
		for _, e := range evs {
			if e.To != addr(to.Dev.Address()) {
				continue
			}
			switch {
			case e.Type == 8:
				t.Fatalf("a filler went to the console %s", e.To)
			case e.Type == 3:
				prekey++
			case e.Type == 1:
				ciphertext++
			}
			// The MPC tag is outside the encryption, then a Signal message
			// of version 3 (0x33: go.mau.fi/libsignal speaks X3DH and the
			// Double Ratchet; the mock relays console traffic unread).
			if e.FirstByte == nil || *e.FirstByte != 'M' || len(e.Head) < 10 || e.Head[:10] != "4d50430133" {
				t.Fatalf("an envelope to the console %s is not MPC tag || version-3 Signal message: %+v", e.To, e)
			}
		}
		if prekey+ciphertext != 4 {
			t.Fatalf("%s's console got %d PreKey and %d Signal messages, want 4 in all", to.Account.Name, prekey, ciphertext)
		}
		prekeys, ciphertexts = prekeys+prekey, ciphertexts+ciphertext
		waitStats(t, to, func(s device.Stats) bool { return s.Sent == 4 && s.Received == 4 && s.Undecrypt == 0 })
	}
	// Each first send to an account learnt of the phone from a 409.
	for _, v := range m.Verdicts() {
		if v.Status != 200 && v.String() != "409 missing [1] extra []" {
			t.Fatalf("the mock answered %s -> %s with %s", v.From, v.To, v)
		}
	}
	// Sessions started with PreKey messages, then carried Signal messages.
	if prekeys == 0 || ciphertexts == 0 {
		t.Fatalf("%d PreKey and %d Signal messages in all", prekeys, ciphertexts)
	}
	for _, e := range evs {
		if e.Type == 8 && (e.Bytes != 4 || e.FirstByte == nil || *e.FirstByte != 0xC0) {
			t.Fatalf("filler %+v is not 0xC0||Content{nullMessage}||0x80", e)
		}
	}

	// A phone's ordinary Signal message (PQXDH + SPQR, official libsignal)
	// reaches the console, which acknowledges it and drops it unread; MPC
	// traffic carries on.
	alice := devs[0]
	m.must("phoneText", map[string]any{"name": "alice", "deviceId": 2, "text": "hello from the phone"})
	waitStats(t, alice, func(s device.Stats) bool { return s.Untagged == 1 })
	if err := devs[1].Dev.Send(ctx, alice.Dev.Address(), []byte("after the phone")); err != nil {
		t.Fatal(err)
	}
	if got := alice.In.wait(t, 5); got[4].Body != "after the phone" {
		t.Fatalf("alice got %q", got[4].Body)
	}
	waitStats(t, alice, func(s device.Stats) bool { return s.Undecrypt == 0 && s.Received == 5 && s.Untagged == 1 })
}

// The recipient account's device set changes under a sender: a device is
// added (409 missingDevices: the sender adds a filler for it), removed (409
// extraDevices: the sender drops it), and the console is re-linked with new
// keys under the same device id (410 staleDevices: the sender drops the
// session and starts a new one from the new keys).
func TestDeviceSetChangesRepairedAgainstMock(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeHTTP2)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	alice := m.link(m.createAccount("alice")).run(t, m.Dialer)
	bobAcct := m.createAccount("bob")
	bob := m.link(bobAcct).run(t, m.Dialer)
	send := func(to *runningDevice, body string, n int) {
		t.Helper()
		if err := alice.Dev.Send(ctx, to.Dev.Address(), []byte(body)); err != nil {
			t.Fatalf("send %q: %v", body, err)
		}
		if got := to.In.wait(t, n); got[n-1].Body != body {
			t.Fatalf("bob got %q, want %q", got[n-1].Body, body)
		}
	}
	// verdicts checks the mock's answers to alice's sends since the last
	// check (read once the routed envelopes are in: they follow on the
	// harness's output).
	seen := 0
	verdicts := func(want ...string) {
		t.Helper()
		var got []string
		all := m.Verdicts()
		for _, v := range all[seen:] {
			got = append(got, v.String())
		}
		seen = len(all)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("the mock answered alice's sends with %q, want %q", got, want)
		}
	}
	// The first send knows only bob's console: 409 names the phone.
	send(bob, "first", 1)
	m.waitEvents(ctx, func(evs []Event) bool { return len(evs) >= 2 })
	verdicts("409 missing [1] extra []", "200")

	// Bob links another device (a simulated Desktop, device 3).
	added := m.must("addDevice", map[string]any{"name": "bob"})
	if added["deviceId"] != float64(3) {
		t.Fatalf("added device %v", added)
	}
	send(bob, "after a device was added", 2)
	// Two entries per send (console and phone), three for this one.
	m.waitEvents(ctx, func(evs []Event) bool { return len(evs) >= 5 })
	verdicts("409 missing [3] extra []", "200")
	if n := fillersTo(m.Events(), bobAcct.ACI, 3); n != 1 {
		t.Fatalf("the new device got %d fillers, want 1:\n%s", n, formatEvents(m.Events()))
	}

	// It is unlinked again: 409 with extraDevices.
	m.must("unlink", map[string]any{"name": "bob", "deviceId": 3})
	send(bob, "after the device was removed", 3)
	m.waitEvents(ctx, func(evs []Event) bool { return len(evs) >= 7 })
	verdicts("409 missing [] extra [3]", "200")
	if n := fillersTo(m.Events(), bobAcct.ACI, 3); n != 1 {
		t.Fatalf("the removed device got %d fillers, want still 1", n)
	}

	// Bob's console is unlinked and bob links a fresh console, which gets
	// device id 2 again with new registration ids and keys.
	old := bob.Acct
	bob.stop()
	m.must("unlink", map[string]any{"name": "bob", "deviceId": 2})
	before := len(m.Events())
	bob2 := m.link(bobAcct).run(t, m.Dialer)
	if bob2.Acct.DeviceID != 2 {
		t.Fatalf("the re-linked console is device %d, want 2 (the mock reuses the id)", bob2.Acct.DeviceID)
	}
	sameReg := bob2.Acct.ACIRegistrationID == old.ACIRegistrationID
	send(bob2, "to the re-linked console", 1)
	evs := m.waitEvents(ctx, func(evs []Event) bool { return len(evs) >= before+2 })
	var fresh []Event
	for _, e := range evs[before:] {
		if e.To == addr(bob2.Dev.Address()) {
			fresh = append(fresh, e)
		}
	}
	// Only a new session from the new keys can be decrypted by the new
	// console: a PreKey message.
	if len(fresh) != 1 || fresh[0].Type != 3 {
		t.Fatalf("to the re-linked console:\n%s", formatEvents(fresh))
	}
	if sameReg {
		// One chance in 16383: the new registration id is the old one,
		// so the mock sees nothing stale; the session still had to change.
		t.Logf("the re-linked console drew its old registration id %d: no 410 this run", old.ACIRegistrationID)
		verdicts("200")
	} else {
		verdicts("410 stale [2]", "200")
	}
	// And back: the new console starts its own session with alice.
	if err := bob2.Dev.Send(ctx, alice.Dev.Address(), []byte("hello from the new console")); err != nil {
		t.Fatal(err)
	}
	if got := alice.In.wait(t, 1); got[0].Body != "hello from the new console" || got[0].From != bob2.Dev.Address() {
		t.Fatalf("alice got %+v", got[0])
	}
	if bad := failed(m.Events()); len(bad) > 0 {
		t.Fatalf("the mock refused envelopes:\n%s", formatEvents(bad))
	}
}

// rawSocket opens the console's authenticated chat socket by hand, for
// requests the device package never makes (the filler controls below).
func rawSocket(t *testing.T, m *mockServer, l *linkedConsole) *wsr.Conn {
	t.Helper()
	cred := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%s.%d:%s", l.Acct.ACI, l.Acct.DeviceID, l.Acct.Password))
	ws, err := m.Dialer.Dial(t.Context(), "/v1/websocket/", http.Header{"Authorization": {"Basic " + cred}})
	if err != nil {
		t.Fatal(err)
	}
	conn := wsr.New(ws, wsr.Options{Handler: func(context.Context, *wsr.Request) *wsr.Response {
		return &wsr.Response{Status: http.StatusOK}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { conn.Run(ctx); close(done) }()
	t.Cleanup(func() { conn.Close(1000, ""); cancel(); <-done })
	return conn
}

// The filler is checked, not waved through: the mock hands a phone's
// envelopes to the phone's libsignal before it answers the sender, so the
// console's filler (0xC0 || Content{nullMessage} || 0x80, type 8) gets 200
// while a malformed PLAINTEXT_CONTENT or an envelope type the server does not
// take gets 500. The 200s in the other tests therefore mean "accepted".
func TestMockPhoneChecksFillers(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeHTTP2)
	alice := m.link(m.createAccount("alice"))
	bob := m.createAccount("bob")
	conn := rawSocket(t, m, alice)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	keys, err := conn.Request(ctx, &wsr.Request{Verb: http.MethodGet, Path: "/v2/keys/" + bob.ACI + "/1"})
	if err != nil || keys.Status != http.StatusOK {
		t.Fatalf("bob's phone's keys: %v %v", keys, err)
	}
	var bundle struct {
		Devices []struct {
			DeviceID       int `json:"deviceId"`
			RegistrationID int `json:"registrationId"`
		} `json:"devices"`
	}
	if err := json.Unmarshal(keys.Body, &bundle); err != nil || len(bundle.Devices) != 1 {
		t.Fatalf("bob's phone's keys: %s (%v)", keys.Body, err)
	}
	reg := bundle.Devices[0].RegistrationID
	// The keepalive the transport sends every 30 s.
	if ka, err := conn.Request(ctx, &wsr.Request{Verb: http.MethodGet, Path: "/v1/keepalive"}); err != nil || ka.Status != http.StatusOK {
		t.Fatalf("keepalive: %v %v", ka, err)
	}
	tests := []struct {
		name    string
		typ     int
		content []byte
		want    int
	}{
		{"the console's filler is accepted", 8, []byte{0xC0, 0x22, 0x00, 0x80}, http.StatusOK},
		{"plaintext content without its 0xC0 version byte is refused", 8, []byte{0x22, 0x00, 0x80}, http.StatusInternalServerError},
		{"envelope type 0 is refused by the mock", 0, []byte{0xC0, 0x22, 0x00, 0x80}, http.StatusInternalServerError},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{
				"messages": []map[string]any{{"type": tc.typ, "destinationDeviceId": 1, "destinationRegistrationId": reg,
					"content": base64.StdEncoding.EncodeToString(tc.content)}},
				"timestamp": time.Now().UnixMilli() + int64(i), "online": false, "urgent": true,
			})
			resp, err := conn.Request(ctx, &wsr.Request{Verb: http.MethodPut, Path: "/v1/messages/" + bob.ACI, Body: body,
				Headers: []string{"Content-Type:application/json"}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != tc.want {
				t.Fatalf("answered %d %s, want %d", resp.Status, resp.Body, tc.want)
			}
		})
	}
}

// Messages sent while a console is offline wait at the mock and arrive when
// it reconnects; sessions survive the console's restart from its store.
func TestMessagesQueuedWhileOfflineThroughMock(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeHTTP2)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	alice := m.link(m.createAccount("alice")).run(t, m.Dialer)
	bobLink := m.link(m.createAccount("bob"))
	bob := bobLink.run(t, m.Dialer)
	if err := alice.Dev.Send(ctx, bob.Dev.Address(), []byte("while online")); err != nil {
		t.Fatal(err)
	}
	bob.In.wait(t, 1)
	bob.stop()
	for i := range 3 {
		if err := alice.Dev.Send(ctx, bob.Dev.Address(), fmt.Appendf(nil, "while offline %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	bob = bobLink.run(t, m.Dialer)
	got := bob.In.wait(t, 3)
	var bodies []string
	for _, d := range got {
		bodies = append(bodies, d.Body)
	}
	slices.Sort(bodies)
	if fmt.Sprint(bodies) != "[while offline 0 while offline 1 while offline 2]" {
		t.Fatalf("after reconnecting bob got %q", bodies)
	}
	// And the session carries on both ways.
	if err := bob.Dev.Send(ctx, alice.Dev.Address(), []byte("back online")); err != nil {
		t.Fatal(err)
	}
	if got := alice.In.wait(t, 1); got[0].Body != "back online" {
		t.Fatalf("alice got %q", got[0].Body)
	}
	waitStats(t, bob, func(s device.Stats) bool { return s.Undecrypt == 0 && s.Received == 3 })
}

// Signal's own challenge flow, as the mock plays it: a rate-limited sender
// gets 428 {token, options}; the console reports the token and options;
// its answer goes to PUT /v1/challenge as a captcha answer, which the mock
// accepts (200) or refuses (428); once the server lifts the limit, sends
// go through again.
func TestChallengesFollowTheMocksAnswers(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeHTTP2)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	alice := m.link(m.createAccount("alice")).run(t, m.Dialer)
	bob := m.link(m.createAccount("bob")).run(t, m.Dialer)
	if err := alice.Dev.Send(ctx, bob.Dev.Address(), []byte("before")); err != nil {
		t.Fatal(err)
	}

	m.must("rateLimit", map[string]any{"from": "alice", "to": "bob"})
	err := alice.Dev.Send(ctx, bob.Dev.Address(), []byte("limited"))
	var ce *device.ChallengeError
	if !errors.As(err, &ce) || !errors.Is(err, device.ErrChallengeRequired) {
		t.Fatalf("send while rate limited: %v, want a ChallengeError", err)
	}
	if ce.Token != "token" || len(ce.Options) != 1 || ce.Options[0] != "captcha" {
		t.Fatalf("challenge %+v, want the mock's token and its captcha option", ce)
	}
	m.must("respondToChallengesWith", map[string]any{"status": 428})
	if err := alice.Dev.AnswerChallenge(ctx, ce.Token, "signalcaptcha://a-wrong-one"); !errors.Is(err, device.ErrChallengeFailed) {
		t.Fatalf("an answer the mock refuses: %v, want ErrChallengeFailed", err)
	}
	m.must("respondToChallengesWith", map[string]any{})
	if err := alice.Dev.AnswerChallenge(ctx, ce.Token, "signalcaptcha://solved"); err != nil {
		t.Fatalf("an answer the mock takes: %v", err)
	}
	if got := m.must("stopRateLimiting", map[string]any{"from": "alice", "to": "bob"}); got["refused"] != float64(1) {
		t.Errorf("the mock refused %v sends, want 1", got["refused"])
	}
	if err := alice.Dev.Send(ctx, bob.Dev.Address(), []byte("after")); err != nil {
		t.Fatalf("send after the challenge: %v", err)
	}
	if got := bob.In.wait(t, 2); got[1].Body != "after" {
		t.Fatalf("bob got %q, want before then after", []string{got[0].Body, got[1].Body})
	}
}
