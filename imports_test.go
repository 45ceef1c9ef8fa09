package main

// This file enforces the import arrows of docs/house.md ("Who may import
// whom"): it reads every package of the module with go/build and fails when a
// package imports something its row of importRules does not allow.

import (
	"errors"
	"fmt"
	"go/build"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mod is the module path; TestImportRules checks it against go.mod.
const mod = "github.com/signal-mpc/cosigner"

// importRule says what the packages matching pkg may import. Patterns are
// import paths, "path/..." (the path and everything below it), or "std" (the
// standard library: a path whose first element has no dot).
type importRule struct {
	pkg   string
	allow []string // nil: anything
	deny  []string // named explicitly for a clearer message; never in allow
}

var importRules = []importRule{
	{
		pkg: mod, // main.go wires everything together.
	},
	{
		// Tests against Signal's mock server wire the whole client, as
		// main.go does; nothing imports them.
		pkg: mod + "/conformance/...",
	},
	{
		pkg: mod + "/bls/...",
		allow: []string{"std", mod + "/bls/...", "github.com/kilic/bls12-381/...", "golang.org/x/crypto/...",
			"google.golang.org/protobuf/encoding/protowire"},
		deny: []string{mod + "/core/...", mod + "/signal/...", mod + "/tui/...", "github.com/charmbracelet/...", "github.com/prometheus/..."},
	},
	{
		pkg: mod + "/signal/...",
		allow: []string{"std", mod + "/signal/...", "go.mau.fi/libsignal/...", "github.com/gorilla/websocket",
			"golang.org/x/net/...", "golang.org/x/crypto/...", "github.com/cloudflare/circl/...",
			"google.golang.org/protobuf/...", "go.etcd.io/bbolt"},
		deny: []string{mod + "/bls/...", mod + "/core/...", mod + "/tui/...", "github.com/charmbracelet/...", "github.com/prometheus/..."},
	},
	{
		pkg: mod + "/core/...",
		// x/text for the Unicode normalisation EIP-2335 keystores require.
		allow: []string{"std", mod + "/core/...", mod + "/bls/...", "github.com/BurntSushi/toml", "go.etcd.io/bbolt",
			"golang.org/x/crypto/...", "golang.org/x/text/..."},
		deny: []string{mod + "/signal/...", mod + "/tui/...", "github.com/charmbracelet/...", "github.com/prometheus/..."},
	},
	{
		// Prometheus metrics, liveness and readiness: the only package
		// with the metrics library. It reads core's events and the
		// relay's counters (behind relay.Observer); core, bls and signal
		// never import the library.
		pkg: mod + "/metrics/...",
		allow: []string{"std", mod + "/metrics/...", mod + "/core/event", mod + "/signal/relay",
			"github.com/prometheus/..."},
		deny: []string{mod + "/tui/...", mod + "/bls/...", "github.com/charmbracelet/..."},
	},
	{
		// One running co-signer, wired: the device, core, the socket API.
		pkg:  mod + "/node/...",
		deny: []string{mod + "/tui/...", "github.com/charmbracelet/..."},
	},
	{
		// The socket API: JSON-RPC over core's calls and events, for
		// attached consoles and scripts; never the screen or the wire.
		pkg:   mod + "/api/...",
		allow: []string{"std", mod + "/api/...", mod + "/core/...", "golang.org/x/sys/unix"},
		deny:  []string{mod + "/signal/...", mod + "/bls/...", mod + "/tui/...", "github.com/charmbracelet/..."},
	},
	{
		pkg:   mod + "/tui/...",
		allow: []string{"std", mod + "/tui/...", mod + "/core/...", "github.com/charmbracelet/...", "github.com/mdp/qrterminal/v3"},
		deny:  []string{mod + "/signal/...", mod + "/bls/..."},
	},
}

// matchPattern reports whether the import path matches pattern.
func matchPattern(pattern, path string) bool {
	if pattern == "std" {
		first, _, _ := strings.Cut(path, "/")
		return !strings.Contains(first, ".")
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == base || strings.HasPrefix(path, base+"/")
	}
	return path == pattern
}

func matchAny(patterns []string, path string) (string, bool) {
	for _, p := range patterns {
		if matchPattern(p, path) {
			return p, true
		}
	}
	return "", false
}

// short writes a pattern relative to the module for messages.
func short(pattern string) string {
	if pattern == mod {
		return "the root package"
	}
	return strings.TrimPrefix(pattern, mod+"/")
}

func shortAll(patterns []string) string {
	s := make([]string, len(patterns))
	for i, p := range patterns {
		s[i] = short(p)
	}
	return strings.Join(s, ", ")
}

// pkgImports is one package and the imports of its files, tests included.
type pkgImports struct {
	path    string
	imports map[string]string // import path -> first file:line importing it
}

// checkImports returns one message per import that breaks a rule, and one per
// package that no rule covers (a new top-level package needs a row).
func checkImports(pkgs []pkgImports, rules []importRule) []string {
	var problems []string
	for _, p := range pkgs {
		i := slices.IndexFunc(rules, func(r importRule) bool { return matchPattern(r.pkg, p.path) })
		if i < 0 {
			problems = append(problems, fmt.Sprintf("package %s has no import rule: add a row to importRules (and to house.md)", short(p.path)))
			continue
		}
		r := rules[i]
		if r.allow == nil {
			continue
		}
		imps := make([]string, 0, len(p.imports))
		for imp := range p.imports {
			imps = append(imps, imp)
		}
		slices.Sort(imps)
		for _, imp := range imps {
			if d, ok := matchAny(r.deny, imp); ok {
				problems = append(problems, fmt.Sprintf("package %s imports %s (%s): rule broken: %s never imports %s",
					short(p.path), imp, p.imports[imp], short(r.pkg), short(d)))
				continue
			}
			if _, ok := matchAny(r.allow, imp); !ok {
				problems = append(problems, fmt.Sprintf("package %s imports %s (%s): rule broken: %s may import only %s",
					short(p.path), imp, p.imports[imp], short(r.pkg), shortAll(r.allow)))
			}
		}
	}
	return problems
}

// scanModule reads the imports of every package under root, whose module
// path is modPath. It skips testdata, hidden and underscore directories, bin/
// and nested modules. Files for other systems are read too.
func scanModule(root, modPath string) ([]pkgImports, error) {
	var pkgs []pkgImports
	err := filepath.WalkDir(root, func(dir string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return err
		}
		if rel != "." {
			name := d.Name()
			if name == "testdata" || name == "bin" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		imports, err := dirImports(dir)
		if err != nil {
			return err
		}
		if imports == nil {
			return nil // no Go package here
		}
		path := modPath
		if rel != "." {
			path += "/" + filepath.ToSlash(rel)
		}
		pkgs = append(pkgs, pkgImports{path: path, imports: imports})
		return nil
	})
	return pkgs, err
}

// dirImports returns the imports of the package in dir (nil if there is none)
// with where each is first imported, over the files of several systems.
func dirImports(dir string) (map[string]string, error) {
	var imports map[string]string
	for _, goos := range []string{"linux", "darwin", "windows"} {
		ctx := build.Default
		ctx.GOOS = goos
		p, err := ctx.ImportDir(dir, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read package in %s: %w", dir, err)
		}
		if imports == nil {
			imports = map[string]string{}
		}
		for _, positions := range []map[string][]token.Position{p.ImportPos, p.TestImportPos, p.XTestImportPos} {
			for imp, pos := range positions {
				if _, seen := imports[imp]; !seen && len(pos) > 0 {
					imports[imp] = fmt.Sprintf("%s:%d", filepath.Base(pos[0].Filename), pos[0].Line)
				}
			}
		}
	}
	return imports, nil
}

func TestImportRules(t *testing.T) {
	t.Parallel()
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if got := modulePath(string(gomod)); got != mod {
		t.Fatalf("go.mod declares module %q, the import rules are written for %q", got, mod)
	}
	pkgs, err := scanModule(".", mod)
	if err != nil {
		t.Fatal(err)
	}
	// The walk must have found the packages that exist, or the check is empty.
	var paths []string
	for _, p := range pkgs {
		paths = append(paths, p.path)
	}
	for _, want := range []string{mod, mod + "/bls"} {
		if !slices.Contains(paths, want) {
			t.Fatalf("package %s not found by the scan (found %v)", want, paths)
		}
	}
	for _, problem := range checkImports(pkgs, importRules) {
		t.Error(problem)
	}
}

func modulePath(gomod string) string {
	for line := range strings.Lines(gomod) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// TestImportCheckerReportsBrokenRules makes sure the checker can fail.
func TestImportCheckerReportsBrokenRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, pkg, imp string
		want           string // substring of the one expected problem; "" for none
	}{
		{"bls importing core is forbidden", mod + "/bls/share", mod + "/core", "bls/... never imports core/..."},
		{"bls importing Charm is forbidden", mod + "/bls", "github.com/charmbracelet/lipgloss", "bls/... never imports github.com/charmbracelet/..."},
		{"bls importing an unlisted module is forbidden", mod + "/bls/dkg", "github.com/evil/curve", "bls/... may import only std"},
		{"bls may use protowire only, not all of protobuf", mod + "/bls/wire", "google.golang.org/protobuf/proto", "may import only"},
		{"bls may use protowire", mod + "/bls/wire", "google.golang.org/protobuf/encoding/protowire", ""},
		{"bls may use kilic", mod + "/bls", "github.com/kilic/bls12-381", ""},
		{"bls may use the standard library", mod + "/bls", "crypto/sha256", ""},
		{"signal importing bls is forbidden", mod + "/signal/relay", mod + "/bls/tbls", "signal/... never imports bls/..."},
		{"signal may use x/net", mod + "/signal", "golang.org/x/net/http2", ""},
		{"core importing signal is forbidden", mod + "/core", mod + "/signal", "core/... never imports signal/..."},
		{"core importing tui is forbidden", mod + "/core", mod + "/tui", "core/... never imports tui/..."},
		{"core may use bls", mod + "/core", mod + "/bls/dkg", ""},
		{"core importing the metrics library is forbidden", mod + "/core", "github.com/prometheus/client_golang/prometheus", "core/... never imports github.com/prometheus/..."},
		{"signal importing the metrics library is forbidden", mod + "/signal/relay", "github.com/prometheus/client_golang/prometheus", "signal/... never imports github.com/prometheus/..."},
		{"bls importing the metrics library is forbidden", mod + "/bls", "github.com/prometheus/client_golang/prometheus", "bls/... never imports github.com/prometheus/..."},
		{"metrics may use the metrics library", mod + "/metrics", "github.com/prometheus/client_golang/prometheus/promhttp", ""},
		{"metrics may read core's events", mod + "/metrics", mod + "/core/event", ""},
		{"metrics importing tui is forbidden", mod + "/metrics", mod + "/tui", "metrics/... never imports tui/..."},
		{"tui importing bls is forbidden", mod + "/tui", mod + "/bls", "tui/... never imports bls/..."},
		{"tui importing signal is forbidden", mod + "/tui/link", mod + "/signal", "tui/... never imports signal/..."},
		{"tui may use qrterminal v3", mod + "/tui", "github.com/mdp/qrterminal/v3", ""},
		{"tui may not use another qrterminal major version", mod + "/tui", "github.com/mdp/qrterminal", "may import only"},
		{"the root package may import anything", mod, mod + "/signal/relay", ""},
		{"a package without a rule is reported", mod + "/util", "fmt", "package util has no import rule"},
		{"a look-alike of a ruled directory is not covered by it", mod + "/blsx", "fmt", "package blsx has no import rule"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkgs := []pkgImports{{path: tt.pkg, imports: map[string]string{tt.imp: "x.go:3"}}}
			problems := checkImports(pkgs, importRules)
			if tt.want == "" {
				if len(problems) != 0 {
					t.Fatalf("unexpected problems: %q", problems)
				}
				return
			}
			if len(problems) != 1 || !strings.Contains(problems[0], tt.want) {
				t.Fatalf("problems %q, want one containing %q", problems, tt.want)
			}
		})
	}
}

// TestImportScanFindsForbiddenImport runs the whole check over a small module
// on disk: the forbidden arrow is found in a package file and in a test file,
// and testdata is left alone.
func TestImportScanFindsForbiddenImport(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	files := map[string]string{
		"go.mod":                    "module " + mod + "\n\ngo 1.26\n",
		"main.go":                   "package main\n\nimport _ \"" + mod + "/tui\"\n\nfunc main() {}\n",
		"bls/bls.go":                "package bls\n\nimport _ \"" + mod + "/core\"\n",
		"core/core.go":              "package core\n\nimport _ \"" + mod + "/bls\"\n",
		"tui/tui.go":                "package tui\n\nimport _ \"" + mod + "/core\"\n",
		"tui/tui_test.go":           "package tui\n\nimport _ \"" + mod + "/signal\"\n",
		"signal/signal_windows.go":  "package signal\n\nimport _ \"github.com/charmbracelet/bubbletea\"\n",
		"core/testdata/x/x.go":      "package x\n\nimport _ \"" + mod + "/tui\"\n",
		"bls/.hidden/h.go":          "package h\n\nimport _ \"" + mod + "/tui\"\n",
		"bls/empty/README.md":       "no Go here\n",
		"bls/share/share.go":        "package share\n\nimport \"math/big\"\n\nvar _ big.Int\n",
		"bls/share/share_x_test.go": "package share_test\n\nimport _ \"" + mod + "/signal\"\n",
	}
	for name, content := range files {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pkgs, err := scanModule(root, mod)
	if err != nil {
		t.Fatal(err)
	}
	got := checkImports(pkgs, importRules)
	want := []string{
		"package bls imports " + mod + "/core (bls.go:3): rule broken: bls/... never imports core/...",
		"package bls/share imports " + mod + "/signal (share_x_test.go:3): rule broken: bls/... never imports signal/...",
		"package signal imports github.com/charmbracelet/bubbletea (signal_windows.go:3): rule broken: signal/... never imports github.com/charmbracelet/...",
		"package tui imports " + mod + "/signal (tui_test.go:3): rule broken: tui/... never imports signal/...",
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
