// Command cosigner is a terminal threshold-BLS co-signer console that talks to
// the other signers over Signal.
//
// Run without a command, it is the console: it links to a Signal account as
// an extra device (a QR code), then runs key generations and signings with
// the other signers over end-to-end encrypted Signal messages, each signing
// approved by a key press. The commands do the same headless (link,
// register, group, keygen, sign, keys), export a key share (key export),
// verify a BLS signature offline (verify), run the self-hosted
// Signal-compatible relay (relay) and a demo on one machine (demo).
// "cosigner help" lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
)

// Exit codes. keygen and sign tell their failures apart (ceremonyExit).
const (
	exitOK      = 0 // success (for verify: the signature is valid)
	exitFailure = 1 // the command ran and failed (for verify: invalid)
	exitUsage   = 2 // bad command line
	// exitNotApproved: a signer declined, or a deadline passed before
	// enough signers answered.
	exitNotApproved = 3
	// exitBlamed: a signer cheated and is blamed with signed evidence.
	exitBlamed = 4
	// exitNoConnection: the server could not be reached.
	exitNoConnection = 5
)

// stdio is what a command may read from and write to.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	// diag takes the command's own messages to stderr (say); shared by
	// the copies of this value.
	diag *diag
}

// diag is where a command's messages for its user go: plain lines
// "cosigner CMD: text" on stderr, or, once the configuration asks for JSON
// logs (log.format), log records, so that every line on stderr is one JSON
// object.
type diag struct {
	mu  sync.Mutex
	log *slog.Logger // nil: plain lines
}

// setJSON makes the messages JSON log records written to w.
func (d *diag) setJSON(w io.Writer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log = slog.New(slog.NewJSONHandler(w, nil))
}

// say writes the command's message at level: "cosigner CMD: text" (the
// console's messages have no CMD), or a JSON record {"level", "msg":
// text, "command": CMD}.
func (s stdio) say(level slog.Level, cmd, format string, a ...any) {
	text := fmt.Sprintf(format, a...)
	var log *slog.Logger
	if s.diag != nil {
		s.diag.mu.Lock()
		log = s.diag.log
		s.diag.mu.Unlock()
	}
	switch {
	case log != nil:
		log.Log(context.Background(), level, text, "command", cmd)
	case cmd == "":
		fmt.Fprintf(s.err, "cosigner: %s\n", text)
	default:
		fmt.Fprintf(s.err, "cosigner %s: %s\n", cmd, text)
	}
}

// command is one subcommand of the binary.
type command struct {
	name    string
	summary string // one line, shown in the overview
	usage   string // full help: synopsis, description, flags
	run     func(ctx context.Context, cmd command, args []string, sio stdio) int
}

// commands lists the subcommands that exist, in the order the overview shows
// them. It is filled in by init because help refers back to it.
var commands []command

func init() {
	commands = []command{
		consoleCommand,
		daemonCommand,
		demoCommand,
		registerCommand,
		linkCommand,
		addDeviceCommand,
		meCommand,
		groupCommand,
		keygenCommand,
		reshareCommand,
		signCommand,
		keysCommand,
		keyCommand,
		auditCommand,
		backupCommand,
		challengeCommand,
		verifyCommand,
		relayCommand,
		{
			name:    "version",
			summary: "print the version (also: cosigner --version)",
			usage: "Usage: cosigner version\n       cosigner --version\n\nPrint the version of this binary: the module version, and the\n" +
				"version control revision it was built from (\"modified\" when the work tree\nhad changes), as the go command stamped them.\n",
			run: runVersion,
		},
		{
			name:    "help",
			summary: "show help for a command",
			usage:   "Usage: cosigner help [COMMAND]\n\nShow the list of commands, or the help of COMMAND.\n",
			run:     runHelp,
		},
	}
}

func main() {
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args (without the program name) and returns
// the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Several goroutines (loggers, the console, results) write to the same
	// streams: one lock per stream keeps lines whole.
	stdout, stderr = &syncWriter{w: stdout}, &syncWriter{w: stderr}
	sio := stdio{in: stdin, out: stdout, err: stderr, diag: &diag{}}
	switch {
	case len(args) > 0 && isHelpFlag(args[0]):
		fmt.Fprint(stdout, overview())
		return exitOK
	case len(args) > 0 && (args[0] == "--version" || args[0] == "-version"):
		v, _ := lookup("version")
		return v.run(ctx, v, args[1:], sio)
	case len(args) == 0 || strings.HasPrefix(args[0], "-"):
		return runConsole(ctx, args, sio)
	}
	cmd, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "cosigner: unknown command %q; run 'cosigner help'\n", args[0])
		return exitUsage
	}
	return cmd.run(ctx, cmd, args[1:], sio)
}

// isHelpFlag reports whether a is one of the ways to ask for help.
func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// overview is the top-level help: what the program is and its commands.
func overview() string {
	var b strings.Builder
	b.WriteString("cosigner: a threshold-BLS co-signer console that talks over Signal.\n\n")
	b.WriteString("Usage: cosigner [global flags]           run the console (see 'cosigner help console')\n")
	b.WriteString("       cosigner COMMAND [flags]\n\nCommands:\n")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, c.name, c.summary)
	}
	b.WriteString("\nGlobal flags (the console, and the commands that use its data):\n")
	b.WriteString(globalFlagsHelp)
	b.WriteString("\nRun 'cosigner help COMMAND' for the flags of a command.\n")
	return b.String()
}

// newFlagSet returns a flag set for a subcommand that reports errors instead
// of exiting and writes parse errors to stderr.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cosigner "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // parseFlags prints the usage itself, to the right stream.
	return fs
}

// parseFlags parses args into fs. It returns (code, false) when the command
// must stop with that exit code: help was asked for (usage on stdout, exit 0)
// or the command line is wrong (usage on stderr, exit 2).
func parseFlags(fs *flag.FlagSet, cmd command, args []string, sio stdio) (int, bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(sio.out, cmd.usage)
		return exitOK, false
	case err != nil:
		// The flag package has already printed the error itself.
		printUsageHint(cmd, sio.err)
		return exitUsage, false
	case fs.NArg() > 0:
		return usageError(cmd, sio, "unexpected argument %q", fs.Arg(0)), false
	}
	return 0, true
}

// usageError prints a command-line error and a pointer to the command's
// help to stderr, and returns the usage exit code.
func usageError(cmd command, sio stdio, format string, a ...any) int {
	fmt.Fprintf(sio.err, "cosigner %s: %s\n", cmd.name, fmt.Sprintf(format, a...))
	printUsageHint(cmd, sio.err)
	return exitUsage
}

// printUsageHint prints the synopsis (the first line of the usage) and where
// to find the rest.
func printUsageHint(cmd command, w io.Writer) {
	synopsis, _, _ := strings.Cut(cmd.usage, "\n")
	fmt.Fprintf(w, "%s\nRun 'cosigner help %s' for details.\n", synopsis, cmd.name)
}

func runHelp(_ context.Context, cmd command, args []string, sio stdio) int {
	switch len(args) {
	case 0:
		fmt.Fprint(sio.out, overview())
		return exitOK
	case 1:
		topic, ok := lookup(args[0])
		if !ok {
			fmt.Fprintf(sio.err, "cosigner help: unknown command %q; run 'cosigner help'\n", args[0])
			return exitUsage
		}
		fmt.Fprint(sio.out, topic.usage)
		return exitOK
	default:
		return usageError(cmd, sio, "too many arguments")
	}
}

func runVersion(_ context.Context, cmd command, args []string, sio stdio) int {
	fs := newFlagSet(cmd.name, sio.err)
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	info, _ := debug.ReadBuildInfo()
	fmt.Fprintf(sio.out, "cosigner %s\n", version(info))
	return exitOK
}

// version is what the go command stamped into the binary: the module
// version ("devel" when there is none: go run, go test, a build from a work
// tree), then the VCS revision, and "modified" when the work tree had
// changes. info may be nil.
func version(info *debug.BuildInfo) string {
	v := "devel"
	if info == nil {
		return v
	}
	if mv := info.Main.Version; mv != "" && mv != "(devel)" {
		v = mv
	}
	var rev string
	var modified bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	switch {
	case rev != "" && modified:
		v += " (" + rev + ", modified)"
	case rev != "":
		v += " (" + rev + ")"
	}
	return v
}

// parseFlagsArgs is parseFlags for commands with positional arguments: flags
// may come before, between or after them (the flag package alone stops at
// the first argument). It returns the positional arguments, at most max.
func parseFlagsArgs(fs *flag.FlagSet, cmd command, args []string, sio stdio, max int) ([]string, int, bool) {
	var pos []string
	for {
		err := fs.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			fmt.Fprint(sio.out, cmd.usage)
			return nil, exitOK, false
		case err != nil:
			printUsageHint(cmd, sio.err)
			return nil, exitUsage, false
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) > max {
		return nil, usageError(cmd, sio, "unexpected argument %q", pos[max]), false
	}
	return pos, 0, true
}

// syncWriter serialises writes to a stream shared by goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *syncWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// unwrap returns the stream under a syncWriter: Bubble Tea must see the
// terminal itself to size and drive it.
func unwrap(w io.Writer) io.Writer {
	if s, ok := w.(*syncWriter); ok {
		return s.w
	}
	return w
}
