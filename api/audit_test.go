package api

import (
	"fmt"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core"
)

func TestAuditListsWhoAnsweredAndTheHead(t *testing.T) {
	t.Parallel()
	f := newFake()
	var asked time.Time
	e := &core.Ended{Seq: 1, Kind: core.KindSign, ID: [32]byte{1}, KeyID: [32]byte{0xab}, Outcome: core.EndSigned, Message: []byte("hi"),
		Created: time.Unix(100, 0).UTC(), EndedAt: time.Unix(101, 0).UTC(), Hash: [32]byte{9}}
	f.audit = func(since time.Time) ([]core.AuditEntry, core.AuditHead, error) {
		asked = since
		return []core.AuditEntry{{Ended: e, Requester: "alice", Signers: []string{"alice", "bob"}, Answers: []core.AuditAnswer{
			{Signer: "bob", Decision: "approved", By: `socket uid=1000 user=ops pid=7 ssh_client=10.0.0.7:52100`},
			{Signer: "alice", Decision: "approved"},
		}}}, core.AuditHead{Count: 1, Hash: [32]byte{9}}, nil
	}
	path := serve(t, f, false)
	got := exchange(t, path, `{"jsonrpc":"2.0","id":1,"method":"audit","params":{"since":"2026-12-07T00:00:00Z"}}`)
	res, ok := got[0]["result"].(map[string]any)
	if !ok {
		t.Fatalf("answer %v", got[0])
	}
	if !asked.Equal(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("since given as %v", asked)
	}
	head := res["head"].(map[string]any)
	if head["count"] != float64(1) || head["hash"] != fmt.Sprintf("09%062d", 0) {
		t.Fatalf("head %v", head)
	}
	entry := res["entries"].([]any)[0].(map[string]any)
	approvals := entry["approvals"].([]any)
	bob := approvals[0].(map[string]any)
	if entry["outcome"] != "signed" || entry["requester"] != "alice" || bob["signer"] != "bob" || bob["user"] != "ops" ||
		bob["ssh_client"] != "10.0.0.7:52100" || bob["rule"] != "" || len(approvals) != 2 {
		t.Fatalf("entry %v", entry)
	}

	f.audit = func(time.Time) ([]core.AuditEntry, core.AuditHead, error) {
		return nil, core.AuditHead{}, &core.AuditError{Seq: 4, Reason: "its signature does not verify"}
	}
	got = exchange(t, path, `{"jsonrpc":"2.0","id":2,"method":"audit"}`)
	errObj, ok := got[0]["error"].(map[string]any)
	if !ok || errObj["code"] != float64(CodeBroken) || errObj["data"].(map[string]any)["seq"] != float64(4) {
		t.Fatalf("a broken trail: %v", got[0])
	}
}
