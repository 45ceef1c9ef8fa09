package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/term"
)

var demoCommand = command{
	name:    "demo",
	summary: "run three signers, a 2-of-3 keygen and a signing on this machine",
	usage: `Usage: cosigner demo [--headless] [--message TEXT] [--keep]

Everything on one machine, no phone and no network: a relay on 127.0.0.1,
three signers (alice, bob, carol), each with its own account and a console
linked to it through the real provisioning flow (a primary device plays each
signer's phone and scans the QR code), a 2-of-3 key generation, then a
signing request over end-to-end encrypted Signal sessions.

With a terminal, the console opens for the three signers; switch between
them (F1, F2, F3), approve the request on two, and watch the partials, the
combination and the verified signature. Rounds and the request wait half an
hour for the humans; if the story fails (a decline, a deadline), r starts it
again. It exits 0 with the signature, 1 with the reason when the story did
not finish. --headless (automatic when stdout is not a terminal) runs the
script instead: bob asks, alice and bob approve, carol declines, and one
JSON object is printed:
  {"group_public_key","message_hex","signature","signers","threshold","parties"}

Flags:
  --headless        no console: scripted approvals, JSON on stdout
  --message TEXT    the message to sign (default "hello from the cosigner demo")
  --keep            keep the demo's folder (relay and stores) and print where it is
`,
	run: runDemo,
}

func runDemo(ctx context.Context, cmd command, args []string, sio stdio) int {
	fs := newFlagSet("demo", sio.err)
	headless := fs.Bool("headless", false, "no console")
	message := fs.String("message", "hello from the cosigner demo", "message to sign")
	keep := fs.Bool("keep", false, "keep the demo folder")
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(sio.err, "cosigner demo: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	dir, err := demoDir()
	if err != nil {
		fmt.Fprintf(sio.err, "cosigner demo: %v\n", err)
		return exitFailure
	}
	if *keep {
		fmt.Fprintf(sio.err, "cosigner demo: files in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if !*headless && isTerminal(sio.out) {
		return runDemoConsole(ctx, dir, []byte(*message), sio)
	}
	return runDemoHeadless(ctx, dir, []byte(*message), sio)
}

func isTerminal(w io.Writer) bool {
	f, ok := unwrap(w).(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func runDemoHeadless(ctx context.Context, dir string, msg []byte, sio stdio) int {
	log := slog.New(slog.NewTextHandler(sio.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fmt.Fprintln(sio.err, "cosigner demo: starting a relay on 127.0.0.1 and linking alice, bob and carol...")
	w, err := startDemoWorld(ctx, dir, log, nil, demoHooks{
		Linked: func(name string) { fmt.Fprintf(sio.err, "cosigner demo: %s's console is linked\n", name) },
	})
	if err != nil {
		fmt.Fprintf(sio.err, "cosigner demo: %v\n", err)
		return exitFailure
	}
	defer w.close()
	for _, s := range w.signers {
		scriptApprovals(ctx, s)
	}
	fmt.Fprintln(sio.err, "cosigner demo: 2-of-3 key generation, then bob asks for a signature...")
	kr, sr, err := runDemoScript(ctx, w, msg)
	if err != nil {
		fmt.Fprintf(sio.err, "cosigner demo: %v\n", err)
		return exitFailure
	}
	signers := slices.Clone(sr.Signers)
	slices.Sort(signers)
	out, _ := json.Marshal(demoResult{
		GroupPublicKey: hex.EncodeToString(kr.GroupKey), MessageHex: hex.EncodeToString(msg),
		Signature: hex.EncodeToString(sr.Signature), Signers: signers, Threshold: kr.T, Parties: kr.N,
	})
	fmt.Fprintln(sio.out, string(out))
	fmt.Fprintf(sio.err, "cosigner demo: check it again with\n  cosigner verify --pubkey %x --signature %x --hex %x\n", kr.GroupKey, sr.Signature, msg)
	return exitOK
}

// demoLogFile is where the console demo logs while the TUI owns the terminal.
func demoLogFile(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "demo.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}
