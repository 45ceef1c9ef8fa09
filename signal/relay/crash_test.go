package relay

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// envChildDir makes the test binary a relay process (see TestRelayChild).
const envChildDir = "COSIGNER_RELAY_CHILD_DIR"

// TestRelayChild is not a test on its own: run by
// TestAcceptedMessagesSurviveAKill with envChildDir set, it serves a relay
// on that data directory, prints its URL and serves until killed.
func TestRelayChild(t *testing.T) {
	dir := os.Getenv(envChildDir)
	if dir == "" {
		t.Skip("only runs as the child of TestAcceptedMessagesSurviveAKill")
	}
	srv, err := New(Config{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-srv.Ready()
		fmt.Printf("URL %s\n", srv.URL())
	}()
	if err := srv.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestAcceptedMessagesSurviveAKill: every message the relay answered 200 is
// delivered after the relay process is killed (SIGKILL, no shutdown) and
// started again on the same data.
func TestAcceptedMessagesSurviveAKill(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestRelayChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envChildDir+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	lines := bufio.NewScanner(stdout)
	var url string
	for lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "URL "); ok {
			url = u
			break
		}
	}
	if url == "" {
		t.Fatal("the child relay did not report its URL")
	}
	child := &testRelay{base: url, client: (&testRelay{}).clientOrDefault()}
	alice := child.register(t, "")
	bob := child.register(t, "")
	const n = 30
	for i := range n {
		child.mustDo(t, 200, "PUT", "/v1/messages/"+bob.aci, alice.auth(), sendBodyOf(message(1, bob.regID, []byte(fmt.Sprintf("m%02d", i)))))
	}
	// Killed right after the last 200: no graceful shutdown, no final sync.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true

	tr := startRelay(t, Config{DataDir: dir})
	sock := tr.mustDial(t, bob, nil)
	for i := range n {
		want := fmt.Sprintf("m%02d", i)
		if env := sock.nextEnvelope(t); string(env.GetContent()) != want {
			t.Fatalf("message %d after the kill: %q, want %q", i, env.GetContent(), want)
		}
	}
	sock.expectQuiet(t, 100*time.Millisecond)
}
