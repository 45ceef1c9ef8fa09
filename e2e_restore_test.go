package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
)

// Carol's disk is lost and her console comes back from a backup made after
// the keygen, while the others' sessions with her moved on: her console
// starts new sessions, the others take them up, and she signs again.
func TestAConsoleRestoredFromABackupSignsAgain(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	signers := threeSigners(t, r, true)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	kr, err := signers[0].con.App.StartKeygen(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	carol := signers[2]
	for _, s := range signers {
		waitKey(t, ctx, s, kr.KeyID) // bob asks next: he must hold the key too
	}
	backup := filepath.Join(t.TempDir(), "carol-backup.db")
	if err := carol.st.Backup(ctx, backup, false); err != nil {
		t.Fatal(err)
	}
	// After the backup the ratchets move on.
	for _, s := range []int{1, 2} {
		msg := []byte{byte(s)}
		sr, err := signers[s].con.App.RequestSignature(ctx, kr.KeyID, msg, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
			t.Fatal(err)
		}
	}
	carol.stop()
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(carol.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	carol.start(t, r, true)
	if _, ok := carol.st.Restored(); !ok {
		t.Fatal("the console did not see it was restored")
	}
	waitKey(t, ctx, carol, kr.KeyID)
	msg := []byte("back from the backup")
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	sr, err := carol.con.App.RequestSignature(rctx, kr.KeyID, msg, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, msg, sr.Signature); err != nil {
		t.Fatal(err)
	}
}
