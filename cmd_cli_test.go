package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core/config"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/signal/store"
	"github.com/signal-mpc/cosigner/signal/transport"
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

func TestHelpAndUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		args             []string
		code             int
		wantOut, wantErr []string
	}{
		{"help console describes the console", []string{"help", "console"}, 0,
			[]string{"Usage: cosigner console", "cosigner [global flags]", "--headless"}, []string{""}},
		{"the overview says plain cosigner is the console and lists the global flags", []string{"help"}, 0,
			[]string{"Usage: cosigner [global flags]", "run the console", "--config PATH", "--data DIR", "--headless", "keys"}, []string{""}},
		{"--version prints the version", []string{"--version"}, 0, []string{"cosigner devel"}, []string{""}},
		{"--version takes no argument", []string{"--version", "x"}, 2, []string{""}, []string{`unexpected argument "x"`, "Usage: cosigner version"}},
		{"group -h shows the group usage", []string{"group", "-h"}, 0, []string{"Usage: cosigner group"}, []string{""}},
		{"group --help shows the group usage", []string{"group", "--help"}, 0, []string{"Usage: cosigner group"}, []string{""}},
		{"group without a subcommand is a usage error", []string{"group"}, 2, []string{""}, []string{"add, list or verify"}},
		{"an unknown group subcommand is a usage error", []string{"group", "remove", "bob"}, 2, []string{""}, []string{`unknown subcommand "remove"`}},
		{"group add without a card is a usage error", []string{"group", "add"}, 2, []string{""}, []string{"add takes one card"}},
		{"group list takes no argument", []string{"group", "list", "x"}, 2, []string{""}, []string{`unexpected argument "x"`}},
		{"sign --hex with no hex says which flag wants what", []string{"sign", "--hex", "zz", "--config", "testdata/empty.toml", "--data", "DATADIR"}, 2,
			[]string{""}, []string{"--hex takes the message as hex digits", "Usage: cosigner sign"}},
		{"keys -h shows the keys usage", []string{"keys", "-h"}, 0, []string{"Usage: cosigner keys", "--json"}, []string{""}},
		{"key -h shows the key usage", []string{"key", "-h"}, 0, []string{"Usage: cosigner key export"}, []string{""}},
		{"keygen -t 0 is a usage error", []string{"keygen", "-t", "0"}, 2, []string{""}, []string{"-t is how many signatures are needed"}},
		{"a configuration without server.url names the file", []string{"link", "--config", "testdata/empty.toml", "--data", "DATADIR"}, 1,
			[]string{""}, []string{"set server.url in testdata/empty.toml"}},
		{"link --server names a configured server", []string{"link", "--server", "nowhere", "--config", "testdata/two-servers.toml", "--data", "DATADIR"}, 1,
			[]string{""}, []string{`no server named "nowhere"`, "testdata/two-servers.toml", "home, backup"}},
		{"register --server names a configured server", []string{"register", "--server", "nowhere", "--config", "testdata/two-servers.toml", "--data", "DATADIR"}, 1,
			[]string{""}, []string{`no server named "nowhere"`, "home, backup"}},
		{"an absent configuration file says how to start one", []string{"link", "--config", "testdata/absent.toml", "--data", "DATADIR"}, 1,
			[]string{""}, []string{"absent.toml", "start from config.example.toml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := slices.Clone(tt.args)
			for i, a := range args {
				if a == "DATADIR" {
					args[i] = t.TempDir()
				}
			}
			runArgs(t, args...).check(t, tt.code, tt.wantOut, tt.wantErr)
		})
	}
}

// Without --config and without a file where it is looked for, the error
// says where the file goes and what to start from.
func TestTheMissingConfigurationErrorSaysWhereItGoes(t *testing.T) {
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home)
	res := runArgs(t, "link", "--data", t.TempDir())
	res.check(t, 1, []string{""}, []string{"no configuration file at " + filepath.Join(home, "cosigner", "config.toml"), "config.example.toml", "server.url"})
}

func TestVersionNamesTheRevision(t *testing.T) {
	t.Parallel()
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	tests := []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no build information", nil, "devel"},
		{"a work tree build", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
		{"a release", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: settings("vcs.revision", "abc123", "vcs.modified", "false")},
			"v1.2.3 (abc123)"},
		{"a modified work tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.revision", "abc123", "vcs.modified", "true")},
			"devel (abc123, modified)"},
	}
	for _, tt := range tests {
		if got := version(tt.info); got != tt.want {
			t.Errorf("%s: version %q, want %q", tt.name, got, tt.want)
		}
	}
}

// The package documentation (go doc .) describes what the command does.
func TestPackageDocDescribesTheCommand(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	doc := f.Doc.Text()
	for _, w := range []string{"console", "relay", "keygen", "verify"} {
		if !strings.Contains(doc, w) {
			t.Errorf("the package doc does not mention %s:\n%s", w, doc)
		}
	}
	if strings.Contains(doc, "not built") {
		t.Errorf("the package doc says parts are not built:\n%s", doc)
	}
}

// cosigner keys lists the keys; a bad or unknown sign --key says so and
// lists them.
func TestKeysAreListedAndABadKeyIsNamed(t *testing.T) {
	t.Parallel()
	c := newRegisteredConsole(t)
	cfg := c.cfg(t, c.relay.srv.URL())
	cli := func(args ...string) result {
		return runArgs(t, append(args, "--config", cfg, "--data", c.data)...)
	}
	cli("keys").check(t, 0, []string{"no keys yet"}, []string{""})
	cli("keys", "--json").check(t, 0, []string{"[]\n"}, []string{""})
	cli("sign", "--message", "m").check(t, 1, []string{""}, []string{"holds no key yet: run cosigner keygen"})
	res := cli("keygen", "-t", "1") // alone in its roster: a 1-of-1 key
	if res.code != 0 {
		t.Fatalf("keygen: %d %s", res.code, res.stderr)
	}
	var kr struct {
		KeyID    string `json:"key_id"`
		GroupKey string `json:"group_public_key"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &kr); err != nil {
		t.Fatal(err)
	}
	cli("keys").check(t, 0, []string{kr.KeyID + "  1-of-1  share 1  group key " + kr.GroupKey}, []string{""})
	var list []struct {
		KeyID     string `json:"key_id"`
		GroupKey  string `json:"group_public_key"`
		Threshold int    `json:"threshold"`
		Parties   int    `json:"parties"`
		Index     int    `json:"index"`
	}
	res = cli("keys", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil || len(list) != 1 || list[0].KeyID != kr.KeyID ||
		list[0].GroupKey != kr.GroupKey || list[0].Threshold != 1 || list[0].Parties != 1 || list[0].Index != 1 {
		t.Fatalf("keys --json printed %q (%v)", res.stdout, err)
	}
	unknown := "0"
	if strings.HasPrefix(kr.KeyID, "0") {
		unknown = "1"
	}
	cli("sign", "--message", "m", "--key", "zz").check(t, 1, []string{""}, []string{`--key "zz" is not a key id`, kr.KeyID + " (1-of-1)"})
	cli("sign", "--message", "m", "--key", unknown).check(t, 1, []string{""}, []string{`no key "` + unknown + `"`, kr.KeyID + " (1-of-1)"})
}

// notifyWriter reports on seen when what it is written contains want.
type notifyWriter struct {
	mu   sync.Mutex
	buf  strings.Builder
	want string
	seen chan struct{}
	once sync.Once
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *notifyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// A keygen interrupted while it waits for the others says that it goes on
// when the console runs again.
func TestAnInterruptedKeygenSaysItGoesOnWithTheConsole(t *testing.T) {
	t.Parallel()
	c := newRegisteredConsole(t)
	cfg := c.cfg(t, c.relay.srv.URL())
	bob := newSigner(t, c.relay, "bob") // never runs: he never accepts
	st, err := store.Open(t.Context(), bob.path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	card, err := ownCard(t.Context(), &env{cfg: &config.Config{Server: config.Server{URL: c.relay.srv.URL()}, Device: config.Device{Name: "bob"}}}, st)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(card)
	if res := runArgs(t, "group", "add", string(raw), "--verified", "--config", cfg, "--data", c.data); res.code != 0 {
		t.Fatalf("group add: %s", res.stderr)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stderr := &notifyWriter{want: "waiting for every signer", seen: make(chan struct{})}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"keygen", "-t", "2", "--config", cfg, "--data", c.data}, strings.NewReader(""), io.Discard, stderr)
	}()
	select {
	case <-stderr.seen:
		cancel() // ctrl-C
	case got := <-code:
		t.Fatalf("keygen ended with %d before it was interrupted: %s", got, stderr.String())
	}
	if got := <-code; got != exitFailure || !strings.Contains(stderr.String(), "goes on when this console runs again") {
		t.Fatalf("interrupted keygen: exit %d\n%s", got, stderr.String())
	}
}

// Two consoles on copies of one data folder are the same Signal device:
// the server keeps dropping one for the other. Each says so on its bus (an
// error and the connection's detail), and a console with MaxElsewhere
// stops with ErrConnectedElsewhere instead of fighting on.
func TestACopiedDataFolderIsDetected(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	s := newSigner(t, r, "alice")
	copied := t.TempDir()
	copyDir(t, filepath.Dir(s.path), copied)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	open := func(path string, maxElsewhere int) (*console, *event.Subscription, chan error) {
		st, err := store.Open(ctx, path, store.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		c, err := openConsole(ctx, consoleConfig{Name: "alice", Dialer: r.dialer, Store: st, MaxElsewhere: maxElsewhere,
			RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		sub := c.Bus.Subscribe(0)
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return c, sub, done
	}
	_, keeps, keepsDone := open(s.path, 0)
	_, quits, quitsDone := open(filepath.Join(copied, filepath.Base(s.path)), 2)
	select {
	case err := <-quitsDone:
		if !errors.Is(err, transport.ErrConnectedElsewhere) {
			t.Fatalf("the console with MaxElsewhere stopped with %v, want ErrConnectedElsewhere", err)
		}
	case err := <-keepsDone:
		t.Fatalf("the console without MaxElsewhere stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the console with MaxElsewhere never stopped")
	}
	want := "another console is connected with this same device (a copied data folder?): stop one of them"
	for name, sub := range map[string]*event.Subscription{"kept": keeps, "stopped": quits} {
		var said, detail bool
		for !said || !detail {
			ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
			e, err := sub.Next(ectx)
			ecancel()
			if err != nil {
				t.Fatalf("the %s console: error event %v, connection detail %v", name, said, detail)
			}
			switch e := e.(type) {
			case event.Error:
				said = said || strings.Contains(e.Text, want)
			case event.Connection:
				detail = detail || strings.Contains(e.Detail, want)
			}
		}
	}
}

// The console screen's keygens (its form) are refused like the command's
// when the roster's size is not keygen.parties.
func TestTheConsoleFormsKeygenChecksTheParties(t *testing.T) {
	t.Parallel()
	r := startTestRelay(t, t.TempDir())
	s := newSigner(t, r, "alice")
	st, err := store.Open(t.Context(), s.path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := openConsole(t.Context(), consoleConfig{Name: "alice", Dialer: r.dialer, Store: st,
		RoundTimeout: time.Minute, RequestTTL: time.Minute, ResendEvery: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.App.Run(ctx) }() // the engine alone
	defer func() { cancel(); <-done }()
	lc := &lateCore{ready: make(chan struct{})}
	lc.set(c.App)
	_, err = partiesGuard{lc, 3}.StartKeygen(ctx, 2)
	if err == nil || !strings.Contains(err.Error(), "keygen.parties is 3 but the roster has 1 signers") {
		t.Fatalf("StartKeygen with a roster of 1 and keygen.parties = 3: %v", err)
	}
}

// copyDir copies the files of the folder from into the folder to.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			copyDir(t, filepath.Join(from, e.Name()), filepath.Join(to, e.Name()))
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A headless command whose console keeps being dropped for a console on a
// copy of its data folder gives up with exit 5 and says why.
func TestAHeadlessCommandGivesUpOnACopiedDataFolder(t *testing.T) {
	t.Parallel()
	c := newRegisteredConsole(t)
	cfg := c.cfg(t, c.relay.srv.URL())
	bob := newSigner(t, c.relay, "bob") // never runs: the keygen waits
	st, err := store.Open(t.Context(), bob.path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	card, err := ownCard(t.Context(), &env{cfg: &config.Config{Server: config.Server{URL: c.relay.srv.URL()}, Device: config.Device{Name: "bob"}}}, st)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(card)
	if res := runArgs(t, "group", "add", string(raw), "--verified", "--config", cfg, "--data", c.data); res.code != 0 {
		t.Fatalf("group add: %s", res.stderr)
	}
	copied := filepath.Join(t.TempDir(), "copy")
	copyDir(t, c.data, copied)
	ctx, cancel := context.WithCancel(t.Context())
	other := make(chan int, 1)
	go func() {
		other <- run(ctx, []string{"--headless", "--config", cfg, "--data", copied}, strings.NewReader(""), io.Discard, io.Discard)
	}()
	defer func() { cancel(); <-other }()
	res := runArgs(t, "keygen", "-t", "2", "--timeout", "2m", "--config", cfg, "--data", c.data)
	res.check(t, exitNoConnection, []string{""}, []string{"another console is connected with this same device (a copied data folder?): stop one of them"})
}
