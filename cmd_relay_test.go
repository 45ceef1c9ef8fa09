package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/relay"
	"github.com/signal-mpc/cosigner/signal/relay/relaytest"
)

// lockedWriter serialises writes from the relay's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestRelayCommandLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	usage := "Usage: cosigner relay [--listen ADDR] [--data DIR]"
	tests := []struct {
		name             string
		args             []string
		code             int
		wantOut, wantErr []string
	}{
		{"help shows the usage", []string{"--help"}, 0, []string{usage, "--tls-cert", "--allow-insecure"}, []string{""}},
		{"the configuration's listen address is used", []string{"--config", relayConfig(t, dir, `listen = "0.0.0.0:0"`)}, 1,
			[]string{""}, []string{"refusing to serve plain HTTP beyond loopback"}},
		{"a flag wins over the configuration", []string{"--config", relayConfig(t, dir, `listen = "127.0.0.1:0"`), "--listen", "0.0.0.0:0"}, 1,
			[]string{""}, []string{"refusing to serve plain HTTP beyond loopback"}},
		{"a bad value in the configuration names its key", []string{"--config", relayConfig(t, dir, `challenge_after = -5`)}, 1,
			[]string{""}, []string{"relay.challenge_after"}},
		{"an unknown key in the configuration is named", []string{"--config", relayConfig(t, dir, `lisen = "127.0.0.1:0"`)}, 1,
			[]string{""}, []string{"unknown key relay.lisen"}},
		{"a negative rate is a usage error", []string{"--config", relayConfig(t, dir), "--message-rate", "-1"}, 2, []string{""}, []string{"--message-rate and --message-burst"}},
		{"challenge-after below -1 is a usage error", []string{"--config", relayConfig(t, dir), "--challenge-after", "-2"}, 2,
			[]string{""}, []string{"--challenge-after is -1"}},
		{"a negative queue cap in the configuration names its key", []string{"--config", relayConfig(t, dir, `max_queue = -1`)}, 1,
			[]string{""}, []string{"relay.max_queue"}},
		{"a negative queue cap is a usage error", []string{"--config", relayConfig(t, dir), "--max-queue", "-1"}, 2,
			[]string{""}, []string{"--max-queue, --max-connections"}},
		{"a negative socket cap is a usage error", []string{"--config", relayConfig(t, dir), "--max-unauth-sockets-per-source", "-1"}, 2,
			[]string{""}, []string{"--max-unauth-sockets-per-source are 0"}},
		{"a negative connection cap in the configuration names its key", []string{"--config", relayConfig(t, dir, `max_connections = -1`)}, 1,
			[]string{""}, []string{"relay.max_connections"}},
		{"a missing configuration file fails", []string{"--config", filepath.Join(dir, "absent.toml")}, 1,
			[]string{""}, []string{"absent.toml"}},
		{"half a TLS pair is a usage error", []string{"--listen", "127.0.0.1:0", "--data", dir, "--tls-cert", "c.pem"}, 2,
			[]string{""}, []string{"--tls-cert and --tls-key go together"}},
		{"plain HTTP beyond loopback is refused", []string{"--listen", "0.0.0.0:0", "--data", dir}, 1,
			[]string{""}, []string{"refusing to serve plain HTTP beyond loopback"}},
		{"a missing token file fails", []string{"--listen", "127.0.0.1:0", "--data", dir, "--registration-token-file", filepath.Join(dir, "none")}, 1,
			[]string{""}, []string{"registration token"}},
		{"a metrics address without a port is a usage error", []string{"--config", relayConfig(t, dir), "--metrics-listen", "127.0.0.1"}, 2,
			[]string{""}, []string{"--metrics-listen"}},
		{"a bad metrics address in the configuration names its key", []string{"--config", relayConfig(t, dir, `metrics_listen = "localhost"`)}, 1,
			[]string{""}, []string{"relay.metrics_listen"}},
		{"a stray argument is a usage error", []string{"--listen", "127.0.0.1:0", "--data", dir, "x"}, 2,
			[]string{""}, []string{`unexpected argument "x"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runArgs(t, append([]string{"relay"}, tt.args...)...).check(t, tt.code, tt.wantOut, tt.wantErr)
		})
	}
}

// relayConfig writes a configuration file whose [relay] section holds
// lines, and returns its path.
func relayConfig(t *testing.T, dir string, lines ...string) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "relay-*.toml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("[relay]\n" + strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func TestRelayUsageNamesEveryFlag(t *testing.T) {
	t.Parallel()
	fs, _ := newRelayFlags(io.Discard)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(relayCommand.usage, "--"+f.Name+" ") {
			t.Errorf("relay usage does not document --%s", f.Name)
		}
	})
	if n == 0 {
		t.Fatal("relay defines no flags")
	}
}

func TestRelayServesUntilCancelled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args func(dir string) []string
	}{
		{"from flags", func(dir string) []string {
			tokenFile := filepath.Join(dir, "token")
			if err := os.WriteFile(tokenFile, []byte("operator-secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--registration-token-file", tokenFile}
		}},
		{"from the configuration", func(dir string) []string {
			// data_dir is relative to the file.
			return []string{"--config", relayConfig(t, dir, `listen = "127.0.0.1:0"`, `data_dir = "data"`, `registration_token = "operator-secret"`)}
		}},
		{"logging JSON", func(dir string) []string {
			return []string{"--config", relayConfig(t, dir, `listen = "127.0.0.1:0"`, `data_dir = "data"`, `registration_token = "operator-secret"`,
				"[log]", `format = "json"`)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			outR, outW := io.Pipe()
			var stderr strings.Builder
			code := make(chan int, 1)
			go func() {
				code <- run(ctx, append([]string{"relay"}, tc.args(dir)...), strings.NewReader(""), outW, &lockedWriter{w: &stderr})
				outW.Close()
			}()
			line, err := bufio.NewReader(outR).ReadString('\n')
			if err != nil {
				t.Fatalf("%v; stderr: %s", err, stderr.String())
			}
			url, ok := strings.CutPrefix(strings.TrimSpace(line), "relay listening on ")
			if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
				t.Fatalf("first line %q", line)
			}
			resp, err := http.Get(url + "/v1/keepalive")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("keepalive: %d", resp.StatusCode)
			}
			go io.Copy(io.Discard, outR)
			cancel()
			select {
			case c := <-code:
				if c != 0 {
					t.Errorf("exit code %d after cancel", c)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("relay did not stop")
			}
			if _, err := os.Stat(filepath.Join(dir, "data", "relay.db")); err != nil {
				t.Errorf("no database: %v", err)
			}
			if strings.Contains(stderr.String(), "operator-secret") {
				t.Error("the registration token reached the log")
			}
			if tc.name == "logging JSON" {
				checkJSONLines(t, stderr.String())
			}
		})
	}
}

// cosigner relay --metrics-listen serves the relay's metrics, liveness and
// readiness, and prints where after the relay's URL.
func TestRelayCommandServesMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	outR, outW := io.Pipe()
	var stderr strings.Builder
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"relay", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"), "--metrics-listen", "127.0.0.1:0"},
			strings.NewReader(""), outW, &lockedWriter{w: &stderr})
		outW.Close()
	}()
	out := bufio.NewReader(outR)
	var lines []string
	for range 2 {
		line, err := out.ReadString('\n')
		if err != nil {
			t.Fatalf("%v; stderr: %s", err, stderr.String())
		}
		lines = append(lines, strings.TrimSpace(line))
	}
	go io.Copy(io.Discard, outR)
	if !strings.HasPrefix(lines[0], "relay listening on ") {
		t.Fatalf("first line %q: the relay's URL must come first", lines[0])
	}
	metricsURL, ok := strings.CutPrefix(lines[1], "relay metrics on ")
	if !ok || !strings.HasPrefix(metricsURL, "http://127.0.0.1:") {
		t.Fatalf("second line %q", lines[1])
	}
	base := strings.TrimSuffix(metricsURL, "/metrics")
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "cosigner_relay_queued_messages 0"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, body without %q:\n%s", path, resp.StatusCode, want, b)
		}
	}
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code %d after cancel; stderr: %s", c, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not stop")
	}
}

func TestRelayChallengeCodeCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	relaytest.Start(t, dir) // a relay that has run once has its challenge key
	token := strings.Repeat("K", 16)
	want, err := relay.ChallengeCode(dir, token)
	if err != nil {
		t.Fatal(err)
	}
	runArgs(t, "relay", "challenge-code", "--data", dir, token).check(t, 0, []string{want + "\n"}, []string{""})
	// The flag may follow the token, as elsewhere.
	runArgs(t, "relay", "challenge-code", token, "--data", dir).check(t, 0, []string{want}, []string{""})
	// Without --data, the configuration's relay.data_dir.
	cfg := relayConfig(t, t.TempDir(), fmt.Sprintf("data_dir = %q", dir))
	runArgs(t, "relay", "challenge-code", "--config", cfg, token).check(t, 0, []string{want + "\n"}, []string{""})
	for _, tt := range []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"a bad configuration", []string{"--config", relayConfig(t, t.TempDir(), "nope = 1"), token}, 1, "unknown key relay.nope"},
		{"the token is required", []string{"--data", dir}, 2, "give the TOKEN"},
		{"one token only", []string{"--data", dir, token, token}, 2, "unexpected argument"},
		{"a token the relay never makes", []string{"--data", dir, "hello"}, 1, "not a challenge token"},
		{"a folder where no relay ran", []string{"--data", t.TempDir(), token}, 1, "challenge.key does not exist"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			runArgs(t, append([]string{"relay", "challenge-code"}, tt.args...)...).check(t, tt.code, []string{""}, []string{tt.wantErr})
		})
	}
}
