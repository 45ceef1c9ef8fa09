package api

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/signal-mpc/cosigner/core"
)

func (f *fakeBackend) BeginReshare(_ context.Context, req core.ReshareRequest) ([32]byte, error) {
	f.change(fmt.Sprintf("reshare %x %d %s", req.KeyID[:2], req.Threshold, strings.Join(req.Signers, ",")))
	return [32]byte{6}, nil
}
func (f *fakeBackend) ImportKeystore(_ context.Context, ks []byte, password string, t int) ([32]byte, error) {
	f.change(fmt.Sprintf("import %d", t))
	return [32]byte{5}, nil
}
func (f *fakeBackend) WaitReshare(_ context.Context, id [32]byte) (*core.ReshareResult, error) {
	if id != [32]byte{6} && id != [32]byte{5} {
		return nil, core.ErrUnknown
	}
	return &core.ReshareResult{Ceremony: id, What: "reshare", KeyID: [32]byte{0xab, 0xcd}, GroupKey: []byte{1}, Epoch: 1, T: 3, N: 5}, nil
}

func TestReshareAndImportAreProposedOnlyThroughASocketThatMayApprove(t *testing.T) {
	t.Parallel()
	for _, approve := range []bool{true, false} {
		f := newFake()
		cl, err := Dial(t.Context(), serve(t, f, approve))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var r ReshareResult
		err = cl.Call(t.Context(), MethodReshare, ReshareParams{Key: "abcd", Threshold: 3, Signers: []string{"alice", "bob"}, Wait: true}, &r)
		ierr := cl.Call(t.Context(), MethodKeyImport, KeyImportParams{Keystore: "{}", Password: "pw", Threshold: 2}, nil)
		if !approve {
			if err == nil || ierr == nil || len(f.Changes()) != 0 {
				t.Fatalf("a read-only socket proposed: %v %v %v", err, ierr, f.Changes())
			}
			continue
		}
		if err != nil || ierr != nil {
			t.Fatal(err, ierr)
		}
		if r.Epoch != 1 || r.Threshold != 3 || r.What != "reshare" {
			t.Fatalf("result %+v", r)
		}
		if got := strings.Join(f.Changes(), "; "); got != "reshare abcd 3 alice,bob; import 2" {
			t.Fatalf("changes %q", got)
		}
	}
}
