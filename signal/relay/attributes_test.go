package relay

import (
	"testing"
)

func TestAttributesReplaceTheRegistrationIDsAndAreChecked(t *testing.T) {
	t.Parallel()
	tr := startRelay(t, Config{})
	bob := tr.register(t, "")
	regID := func() float64 {
		t.Helper()
		out := decode[struct {
			Devices []map[string]any `json:"devices"`
		}](t, tr.mustDo(t, 200, "GET", "/v1/devices", bob.auth(), nil))
		if len(out.Devices) != 1 {
			t.Fatalf("devices %v", out.Devices)
		}
		return out.Devices[0]["registrationId"].(float64)
	}
	if got := regID(); got != float64(bob.regID) {
		t.Fatalf("registration id %v, want %d", got, bob.regID)
	}
	good := func(reg int) map[string]any {
		return map[string]any{"fetchesMessages": true, "registrationId": reg, "pniRegistrationId": bob.pniReg,
			"capabilities": map[string]bool{"spqr": true}}
	}
	fresh := bob.regID%0x3fff + 1
	for _, tc := range []struct {
		name string
		body map[string]any
		auth string
		want int
	}{
		{"without credentials", good(fresh), "", 401},
		{"registration id out of range", good(0x4000), bob.auth(), 422},
		{"no PNI registration id", map[string]any{"fetchesMessages": true, "registrationId": fresh, "capabilities": map[string]bool{"spqr": true}}, bob.auth(), 422},
		{"without a required capability", map[string]any{"fetchesMessages": true, "registrationId": fresh, "pniRegistrationId": bob.pniReg, "capabilities": map[string]bool{}}, bob.auth(), 409},
	} {
		if status, out := tr.do(t, "PUT", "/v1/accounts/attributes", tc.auth, tc.body); status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, status, out, tc.want)
		}
	}
	if got := regID(); got != float64(bob.regID) {
		t.Fatalf("a refused update changed the registration id to %v", got)
	}
	tr.mustDo(t, 204, "PUT", "/v1/accounts/attributes", bob.auth(), good(fresh))
	if got := regID(); got != float64(fresh) {
		t.Fatalf("registration id %v after the update, want %d", got, fresh)
	}
	// The password and the keys stay: the device still authenticates.
	tr.mustDo(t, 200, "GET", "/v1/accounts/whoami", bob.auth(), nil)
}
