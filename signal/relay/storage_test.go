package relay

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// diskFull is the error a write to a full disk returns.
var diskFull = &fs.PathError{Op: "write", Path: "relay.db", Err: syscall.ENOSPC}

// failingDisk makes the relay's commits fail (before or after the data
// reached the file) while fail is set.
type failingDisk struct{ before, after atomic.Bool }

func (d *failingDisk) tweak(s *Server) {
	s.beforeCommit = func() error {
		if d.before.Load() {
			return diskFull
		}
		return nil
	}
	s.afterCommit = func() error {
		if d.after.Load() {
			return diskFull
		}
		return nil
	}
}

// bucketLen counts the keys of a store bucket.
func bucketLen(t *testing.T, tr *testRelay, name []byte) int {
	t.Helper()
	var n int
	if err := tr.srv.store.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(name).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// A send while the disk is full is 503 with Retry-After, not 500: the
// client is told to come back.
func TestAFullDiskIsAnsweredUnavailableWithRetryAfter(t *testing.T) {
	t.Parallel()
	disk := &failingDisk{}
	tr := startRelayWith(t, Config{}, disk.tweak)
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	disk.before.Store(true)
	req, _ := http.NewRequestWithContext(t.Context(), "PUT", tr.base+"/v1/messages/"+bob.aci, jsonBody(t, sendBodyOf(message(1, bob.regID, []byte("m")))))
	req.Header.Set("Authorization", alice.auth())
	req.Header.Set("Content-Type", "application/json")
	resp, err := tr.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("send to a full disk: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	disk.before.Store(false)
	tr.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("m"))))
}

// A registration that cannot be stored leaves nothing behind, whether its
// commit fails before the data reaches the file or its sync fails after.
func TestAFailedRegistrationLeavesNoAccount(t *testing.T) {
	t.Parallel()
	for _, when := range []string{"before", "after"} {
		t.Run("commit fails "+when+" the write", func(t *testing.T) {
			t.Parallel()
			disk := &failingDisk{}
			tr := startRelayWith(t, Config{}, disk.tweak)
			flag := &disk.before
			if when == "after" {
				flag = &disk.after
			}
			flag.Store(true)
			d := &testDevice{id: 1, password: newPasswordString(), aciID: newIdentity(t), pniID: newIdentity(t), regID: 1, pniReg: 2}
			body := map[string]any{
				"accountAttributes":     attrs(d, true),
				"aciIdentityKey":        b64(d.aciID.public()),
				"pniIdentityKey":        b64(d.pniID.public()),
				"aciSignedPreKey":       keyJSON(1, ecKey(t), &d.aciID),
				"pniSignedPreKey":       keyJSON(1, ecKey(t), &d.pniID),
				"aciPqLastResortPreKey": keyJSON(1, kyberKey(t), &d.aciID),
				"pniPqLastResortPreKey": keyJSON(1, kyberKey(t), &d.pniID),
			}
			if status, out := tr.do(t, "POST", "/v1/registration", newAuth("new", d.password), body); status < 500 {
				t.Fatalf("registration on a failing disk: %d %s, want 5xx", status, out)
			}
			flag.Store(false)
			for _, b := range [][]byte{bucketAccounts, bucketPNIs, bucketDevices, bucketSigned, bucketLastResort} {
				if n := bucketLen(t, tr, b); n != 0 {
					t.Errorf("bucket %s holds %d records after a failed registration", b, n)
				}
			}
			tr.register(t, "") // and the relay registers again once the disk is back
		})
	}
}

// A device's queue holds at most MaxQueue envelopes: a send beyond it is
// refused with 507 naming the full devices, queues nothing, and sends go
// through again once the device has fetched its messages.
func TestAFullQueueRefusesSendsUntilTheDeviceReads(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{MaxQueue: 3})
	alice := tr.register(t, "")
	bob := tr.register(t, "")
	send := func() (int, []byte) {
		return tr.do(t, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte("m"))))
	}
	for range 3 {
		if status, out := send(); status != 200 {
			t.Fatalf("send: %d %s", status, out)
		}
	}
	status, out := send()
	if status != http.StatusInsufficientStorage {
		t.Fatalf("send to a full queue: %d %s, want 507", status, out)
	}
	if got := decode[struct {
		FullDevices []int `json:"fullDevices"`
	}](t, out).FullDevices; !slices.Equal(got, []int{1}) {
		t.Errorf("fullDevices %v, want [1]", got)
	}
	waitQueueLen(t, tr, bob, 3)
	sock := tr.mustDial(t, bob, nil)
	for range 3 {
		sock.nextEnvelope(t)
	}
	waitQueueLen(t, tr, bob, 0)
	if status, out := send(); status != 200 {
		t.Fatalf("send after the queue drained: %d %s", status, out)
	}
}

// jsonBody encodes v for a request body.
func jsonBody(t *testing.T, v any) io.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}
