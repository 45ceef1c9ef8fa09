package api

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// runAs runs this test binary's TestHelperDial as uid, dialing path. The
// binary is copied where that user may run it first (go test keeps it in a
// folder only its owner can enter).
func runAs(t *testing.T, uid, gid uint32, path string) (string, error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "api-runas")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "api.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	// A binary just written can be busy for a moment: another test's
	// fork may still hold the descriptor it was written through (ETXTBSY).
	for attempt := 0; ; attempt++ {
		cmd := exec.Command(bin, "-test.run=^TestHelperDial$", "-test.count=1")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "COSIGNER_API_DIAL="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		out, err := cmd.CombinedOutput()
		if errors.Is(err, syscall.ETXTBSY) && attempt < 50 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		return string(out), err
	}
}
