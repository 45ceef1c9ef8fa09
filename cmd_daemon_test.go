package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core/config"
)

func TestDaemonMetricsFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"help names the flag", []string{"daemon", "--help"}, 0, ""},
		{"an address without a port is a usage error", []string{"daemon", "--metrics-listen", "127.0.0.1"}, 2, "--metrics-listen"},
		{"a bad address in the configuration names its key", []string{"daemon", "--config", "CONFIG", "--data", "DATADIR"}, 1, "metrics.listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for i, a := range tt.args {
				switch a {
				case "DATADIR":
					tt.args[i] = t.TempDir()
				case "CONFIG":
					tt.args[i] = filepath.Join(t.TempDir(), "c.toml")
					if err := os.WriteFile(tt.args[i], []byte("[metrics]\nlisten = \"9464\"\n"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			var out, errb bytes.Buffer
			code := run(t.Context(), tt.args, nil, &out, &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errb.String(), tt.code, tt.wantErr)
			}
			if tt.code == 0 && !strings.Contains(out.String()+errb.String(), "--metrics-listen ADDR") {
				t.Errorf("help does not name --metrics-listen:\n%s%s", out.String(), errb.String())
			}
		})
	}
}

// cosigner daemon --metrics-listen serves the signer's metrics, /healthz,
// and /readyz once it is connected.
func TestDaemonServesMetricsAndReadiness(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	dir := shortDir(t)
	cfg := filepath.Join(dir, "config.toml")
	data := filepath.Join(dir, "d")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("[server]\nurl = %q\n[device]\nname = \"alice\"\n", r.srv.URL())), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"register", "--config", cfg, "--data", data}, nil, &out, &errb); code != 0 {
		t.Fatalf("register: %d %s", code, errb.String())
	}
	daemonCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stderr strings.Builder
	logs := &lockedWriter{w: &stderr}
	done := make(chan int, 1)
	go func() {
		done <- run(daemonCtx, []string{"daemon", "--config", cfg, "--data", data, "--metrics-listen", "127.0.0.1:0"}, nil, io.Discard, logs)
	}()
	addrRE := regexp.MustCompile(`serving metrics.*addr=(127\.0\.0\.1:\d+)`)
	var base string
	for base == "" {
		logs.mu.Lock()
		m := addrRE.FindStringSubmatch(stderr.String())
		logs.mu.Unlock()
		if m != nil {
			base = "http://" + m[1]
			break
		}
		select {
		case code := <-done:
			t.Fatalf("the daemon stopped (%d) before serving metrics: %s", code, stderr.String())
		case <-ctx.Done():
			t.Fatal("the daemon never said where its metrics are")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if code, _ := scrape(t, ctx, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	waitMetrics(t, ctx, base+"/readyz", "ready", func(string) bool { return true })
	body := waitMetrics(t, ctx, base+"/metrics", "connected", func(b string) bool {
		return sample(b, "cosigner_node_connection_state", `state="connected"`) == 1
	})
	if !strings.Contains(body, "go_goroutines") {
		t.Error("no runtime metrics")
	}
	stop()
	if code := <-done; code != 0 {
		t.Errorf("daemon exit %d: %s", code, stderr.String())
	}
}

// A daemon stopped by its signal while it still waits for the store
// (another process holds its lock) stops cleanly, exit 0: the supervisor
// asked for it.
func TestADaemonStoppedBeforeItIsUpExitsZero(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	// Another process's store: its lock is held for the test.
	st, err := (&env{dir: data, cfg: config.Default(data)}).openStore(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel) // SIGTERM while it waits for the lock
	if code := run(ctx, []string{"daemon", "--data", data}, nil, &out, &errb); code != 0 {
		t.Fatalf("a daemon stopped while it waited for the store exited %d: %s", code, errb.String())
	}
}
