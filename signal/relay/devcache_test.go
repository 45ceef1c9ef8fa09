package relay

import (
	"context"
	"testing"
	"time"
)

func TestCachedDeviceListsFollowLinksAndDeletions(t *testing.T) {
	t.Parallel()
	st := openTestStore(t)
	acc := &account{ACI: newUUID(), ACIIdentityKey: newIdentity(t).public(), NextDeviceID: 2}
	if err := st.createAccount(t.Context(), newAccount{acc: acc, primary: &device{ID: 1, RegistrationID: 1, Salt: []byte{1}, PasswordHash: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	ids := func() []uint8 {
		t.Helper()
		ds, err := st.devices(acc.ACI)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint8
		for _, d := range ds {
			out = append(out, d.ID)
		}
		return out
	}
	if got := ids(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("devices %v, want [1]", got)
	}
	ids() // now served from the cache
	now := time.Now()
	hash := []byte("0123456789abcdef0123456789abcdef")
	if err := st.putLinkToken(hash, linkToken{ACI: acc.ACI, Expires: now.Add(time.Minute).UnixMilli()}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := st.linkDevice(hash, now, &device{RegistrationID: 2, Salt: []byte{1}, PasswordHash: []byte{1}}, identityKeys{}, identityKeys{}); err != nil {
		t.Fatal(err)
	}
	if got := ids(); len(got) != 2 || got[1] != 2 {
		t.Fatalf("after a link the devices are %v, want [1 2]", got)
	}
	if found, err := st.deleteDevice(acc.ACI, 2); err != nil || !found {
		t.Fatalf("delete: %v, %v", found, err)
	}
	if got := ids(); len(got) != 1 {
		t.Fatalf("after a deletion the devices are %v, want [1]", got)
	}
}

// openTestStore opens a store in a temporary folder with its writer
// running, until the test ends.
func openTestStore(t *testing.T) *store {
	t.Helper()
	st, err := openStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); st.runWriter(ctx) }()
	t.Cleanup(func() { stop(); <-done; st.close() })
	return st
}
