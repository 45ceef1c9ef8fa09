package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkJSONLines fails unless log holds lines and each is one JSON object;
// it returns the records.
func checkJSONLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for line := range strings.Lines(log) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("a line on stderr is not a JSON object: %q (%v)", line, err)
			continue
		}
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		t.Error("nothing was logged")
	}
	return recs
}

// registeredConsole is a console registered on a test relay through the
// command line; cfg writes a configuration for it with more lines.
type registeredConsole struct {
	relay *testRelay
	dir   string
	data  string
}

func newRegisteredConsole(t *testing.T) *registeredConsole {
	t.Helper()
	r := startTestRelay(t, t.TempDir())
	dir := t.TempDir()
	c := &registeredConsole{relay: r, dir: dir, data: filepath.Join(dir, "data")}
	if res := runArgs(t, "register", "--config", c.cfg(t, r.srv.URL()), "--data", c.data); res.code != 0 {
		t.Fatalf("register: %d %s", res.code, res.stderr)
	}
	return c
}

// cfg writes a configuration naming the server url, followed by lines.
func (c *registeredConsole) cfg(t *testing.T, url string, lines ...string) string {
	t.Helper()
	f, err := os.CreateTemp(c.dir, "cfg-*.toml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	body := fmt.Sprintf("[server]\nurl = %q\n[device]\nname = \"alice\"\n", url) + strings.Join(lines, "\n") + "\n"
	if _, err := f.WriteString(body); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// deadURL is a server address where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// With log.format = "json", a headless command's stderr is JSON records
// only: the device's log lines and the command's own messages.
func TestJSONLogsMakeEveryLineOnStderrAnObject(t *testing.T) {
	t.Parallel()
	c := newRegisteredConsole(t)
	cfg := c.cfg(t, deadURL(t), "[log]", `format = "json"`, `level = "debug"`)
	res := runArgs(t, "keygen", "--config", cfg, "--data", c.data, "--connect-timeout", "1s")
	if res.code != exitNoConnection {
		t.Fatalf("keygen without a server: exit %d, want %d\n%s", res.code, exitNoConnection, res.stderr)
	}
	var failure bool
	for _, rec := range checkJSONLines(t, res.stderr) {
		failure = failure || rec["level"] == "ERROR" && rec["command"] == "keygen" && strings.Contains(fmt.Sprint(rec["msg"]), "no connection to the server")
	}
	if !failure {
		t.Errorf("no error record of the keygen command:\n%s", res.stderr)
	}
}

// keygen takes its threshold from keygen.threshold when -t is not given,
// and refuses a roster whose size is not keygen.parties.
func TestKeygenTakesItsDefaultsFromTheConfiguration(t *testing.T) {
	t.Parallel()
	c := newRegisteredConsole(t)
	url := c.relay.srv.URL()
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"the configured threshold is proposed", []string{"--config", c.cfg(t, url, "[keygen]", "threshold = 3")}, exitFailure,
			"proposing a 3-of-n key"},
		{"-t wins over the configuration", []string{"-t", "1", "--config", c.cfg(t, url, "[keygen]", "threshold = 3")}, exitOK,
			"proposing a 1-of-n key"},
		{"-t 0 is a usage error", []string{"-t", "0", "--config", c.cfg(t, url)}, exitUsage, "-t is how many signatures are needed"},
		{"a roster smaller than keygen.parties is refused", []string{"--config", c.cfg(t, url, "[keygen]", "parties = 3")}, exitFailure,
			"keygen.parties is 3 but the roster has 1 signers"},
	}
	for _, tt := range tests {
		// One after the other: they share the console's data.
		res := runArgs(t, append([]string{"keygen", "--data", c.data, "--connect-timeout", "20s", "--timeout", "1s"}, tt.args...)...)
		if res.code != tt.code || !strings.Contains(res.stderr, tt.wantErr) {
			t.Errorf("%s: exit %d, want %d with %q\n%s", tt.name, res.code, tt.code, tt.wantErr, res.stderr)
		}
	}
}
