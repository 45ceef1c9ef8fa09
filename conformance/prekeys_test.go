package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/device"
	"github.com/signal-mpc/cosigner/signal/prekey"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

// The mock answers 500 to a PUT /v2/keys without a preKeys list, which a
// console sent at every start (its signed and last-resort keys again).
// Started and restarted with its keys in place (the linked one-time keys
// at the mark, as a console linked with the default 50 is above the
// default mark), it uploads nothing: no warning, and the mock still holds
// the linked keys.
func TestRestartUploadsNothingTheMockRefuses(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeHTTP2)
	l := m.link(m.createAccount("alice"))
	for start := range 2 {
		logs := &lockedBuffer{}
		r := l.runWith(t, m.Dialer, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			device.KeyConfig{LowWater: linkPreKeys})
		// A check of both identities ends with a "prekeys checked" line
		// each; a failed one with a warning.
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(logs.String(), "prekeys checked") < 2 && !strings.Contains(logs.String(), "level=WARN") {
			if time.Now().After(deadline) {
				t.Fatalf("start %d: no check finished:\n%s", start+1, logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		r.stop()
		text := logs.String()
		if strings.Contains(text, "level=WARN") || strings.Contains(text, "level=ERROR") || strings.Contains(text, "prekeys uploaded") {
			t.Fatalf("start %d: the upkeep uploaded or complained:\n%s", start+1, text)
		}
		keys := m.must("keys", map[string]any{"name": "alice", "deviceId": 2})
		for _, id := range []string{"aci", "pni"} {
			if k, _ := keys[id].(map[string]any); k["preKeys"] != float64(linkPreKeys) || k["kyberPreKeys"] != float64(linkPreKeys) {
				t.Fatalf("start %d: %s keys on the mock %v, want the %d linked ones of each kind", start+1, id, k, linkPreKeys)
			}
		}
	}
}

// What a rotation uploads, by itself: a signed prekey, a last-resort key,
// or both, with the one-time lists present and empty. The mock takes each
// (200) and hands the new keys out; without the preKeys list it answers
// 500, so the 200s are about the body's shape.
func TestMockTakesUploadsOfOnlyASignedOrALastResortKey(t *testing.T) {
	t.Parallel()
	m := startMock(t, transport.ModeHTTP2)
	l := m.link(m.createAccount("alice"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, l.Path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := st.Protocol(ctx, prekey.ACI)
	if err != nil {
		t.Fatal(err)
	}
	ik := p.GetIdentityKeyPair()
	next, err := p.NextKeyOptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn := rawSocket(t, m, l)
	put := func(body []byte) *wsr.Response {
		t.Helper()
		resp, err := conn.Request(ctx, &wsr.Request{Verb: http.MethodPut, Path: prekey.UploadPath(prekey.ACI), Body: body,
			Headers: []string{"Content-Type:application/json"}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// handedOut is the signed prekey id and the Kyber key id a peer gets.
	handedOut := func() (signed, kyber uint32) {
		t.Helper()
		resp, err := conn.Request(ctx, &wsr.Request{Verb: http.MethodGet, Path: fmt.Sprintf("/v2/keys/%s/%d", l.Acct.ACI, l.Acct.DeviceID)})
		if err != nil || resp.Status != http.StatusOK {
			t.Fatalf("fetch the console's keys: %v %v", resp, err)
		}
		b, err := prekey.ParseBundles(resp.Body)
		if err != nil || len(b.Devices) != 1 {
			t.Fatalf("the console's bundle: %v", err)
		}
		return b.Devices[0].Bundle.SignedPreKeyID(), b.Devices[0].KyberPreKeyID
	}
	signedID, lrID := next.SignedPreKeyID, next.LastResortID
	for _, tc := range []struct {
		name           string
		signed, lastRe bool
	}{
		{"a signed prekey only", true, false},
		{"a last-resort key only", false, true},
		{"both", true, true},
	} {
		k := &prekey.Keys{Identity: ik}
		wantSigned, _ := handedOut()
		if tc.signed {
			if k.SignedPreKey, err = prekey.NewSignedPreKey(signedID, ik, time.Now()); err != nil {
				t.Fatal(err)
			}
			wantSigned = signedID
			signedID++
		}
		if tc.lastRe {
			if k.LastResort, err = prekey.NewKyberPreKey(nil, lrID, ik, true, time.Now()); err != nil {
				t.Fatal(err)
			}
			lrID++
		}
		req, err := k.UploadRequest()
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		// Without the lists (as the console sent it before) the mock refuses it.
		var bare map[string]json.RawMessage
		if err := json.Unmarshal(body, &bare); err != nil {
			t.Fatal(err)
		}
		delete(bare, "preKeys")
		delete(bare, "pqPreKeys")
		noLists, _ := json.Marshal(bare)
		if resp := put(noLists); resp.Status != http.StatusInternalServerError {
			t.Fatalf("%s without the lists: answered %d %s, want the mock's 500", tc.name, resp.Status, resp.Body)
		}
		if resp := put(body); resp.Status != http.StatusOK {
			t.Fatalf("%s: answered %d %s", tc.name, resp.Status, resp.Body)
		}
		signed, kyber := handedOut()
		if signed != wantSigned {
			t.Fatalf("%s: the mock hands out signed prekey %d, want %d", tc.name, signed, wantSigned)
		}
		// The mock takes every upload as the whole set of one-time keys
		// (Signal-Server leaves them for an empty list): no one-time Kyber
		// key is left, so a peer gets the last-resort key.
		if tc.lastRe && kyber != k.LastResort.ID {
			t.Fatalf("%s: the mock hands out Kyber key %d, want the new last-resort key %d", tc.name, kyber, k.LastResort.ID)
		}
	}
}
