package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/signal-mpc/cosigner/bls"
)

var verifyCommand = command{
	name:    "verify",
	summary: "verify a BLS signature offline (Ethereum min-pk, POP ciphersuite)",
	usage: `Usage: cosigner verify --pubkey HEX --signature HEX (--message TEXT | --hex HEX)

Verify a BLS signature with the ciphersuite Ethereum uses: public keys in G1,
signatures in G2, proof-of-possession scheme
(BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_). Works offline: no network,
no configuration, no keys of this device.

Flags:
  --pubkey HEX      the public key: 48-byte compressed G1 point
  --signature HEX   the signature: 96-byte compressed G2 point
  --message TEXT    the message: the bytes of TEXT exactly (no newline added)
  --hex HEX         the message as hex-encoded bytes ("" is the empty message)

Exactly one of --message and --hex is required. Hex may start with 0x.

Exit status: 0 the signature is valid, 1 it is not (the reason is printed on
stderr), 2 the command line is wrong.
`,
	run: runVerify,
}

// verifyArgs holds the flags of cosigner verify.
type verifyArgs struct {
	pubkey, signature, message, hex string
}

// newVerifyFlags defines the flags of cosigner verify.
func newVerifyFlags(stderr io.Writer) (*flag.FlagSet, *verifyArgs) {
	var a verifyArgs
	fs := newFlagSet("verify", stderr)
	fs.StringVar(&a.pubkey, "pubkey", "", "public key, hex")
	fs.StringVar(&a.signature, "signature", "", "signature, hex")
	fs.StringVar(&a.message, "message", "", "message, as text")
	fs.StringVar(&a.hex, "hex", "", "message, as hex")
	return fs, &a
}

func runVerify(_ context.Context, cmd command, args []string, sio stdio) int {
	fs, a := newVerifyFlags(sio.err)
	if code, ok := parseFlags(fs, cmd, args, sio); !ok {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case !set["pubkey"]:
		return usageError(cmd, sio, "--pubkey is required")
	case !set["signature"]:
		return usageError(cmd, sio, "--signature is required")
	case set["message"] && set["hex"]:
		return usageError(cmd, sio, "give the message once: --message or --hex, not both")
	case !set["message"] && !set["hex"]:
		return usageError(cmd, sio, "the message is required: --message TEXT or --hex HEX")
	}

	if err := verify(a, set["hex"]); err != nil {
		fmt.Fprintf(sio.err, "cosigner verify: invalid: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(sio.out, "valid: signature verifies for this public key and message")
	return exitOK
}

// verify decodes the inputs and checks the signature. The error is the
// reason the signature is not accepted, led by the input at fault.
func verify(a *verifyArgs, msgIsHex bool) error {
	pkBytes, err := decodeHex(a.pubkey)
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	pk, err := bls.PublicKeyFromBytes(pkBytes)
	if err != nil {
		return inputError("public key", err)
	}

	sigBytes, err := decodeHex(a.signature)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	sig, err := bls.SignatureFromBytes(sigBytes)
	if err != nil {
		return inputError("signature", err)
	}

	msg := []byte(a.message)
	if msgIsHex {
		if msg, err = decodeHex(a.hex); err != nil {
			return fmt.Errorf("message: %w", err)
		}
	}

	if err := bls.Verify(pk, msg, sig); err != nil {
		if errors.Is(err, bls.ErrVerify) {
			return errors.New("signature does not verify for this public key and message")
		}
		return err
	}
	return nil
}

// inputError makes sure a decoding error from bls names the input exactly
// once, whether or not bls already put that name in front.
func inputError(input string, err error) error {
	return fmt.Errorf("%s: %s", input, strings.TrimPrefix(err.Error(), input+": "))
}

// decodeHex decodes hex with an optional 0x prefix and surrounding spaces.
func decodeHex(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	b, err := hex.DecodeString(s)
	var bad hex.InvalidByteError
	switch {
	case errors.As(err, &bad) && bad < utf8.RuneSelf:
		return nil, fmt.Errorf("not hex: invalid character %q", rune(bad))
	case errors.As(err, &bad):
		return nil, errors.New("not hex: non-ASCII character")
	case errors.Is(err, hex.ErrLength):
		return nil, errors.New("not hex: odd number of digits")
	case err != nil:
		return nil, fmt.Errorf("not hex: %w", err)
	}
	return b, nil
}
