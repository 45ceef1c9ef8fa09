// Package vectors loads ../shared/testdata/bls-vectors.json, the BLS test
// vectors made with an independent implementation (@noble/curves), for the
// tests of the bls packages.
package vectors

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File is the whole vector file.
type File struct {
	Generator   string      `json:"generator"`
	Ciphersuite string      `json:"ciphersuite"`
	PopDST      string      `json:"pop_dst"`
	Sign        []Sign      `json:"sign"`
	Verify      []Verify    `json:"verify"`
	Threshold   []Threshold `json:"threshold"`
}

// Sign is a known-answer signing vector.
type Sign struct {
	SK  Hex `json:"sk"`
	Msg Hex `json:"msg"`
	PK  Hex `json:"pk"`
	Sig Hex `json:"sig"`
	Pop Hex `json:"pop"`
}

// Verify is a verification case; Valid says whether it must verify.
type Verify struct {
	Case  string `json:"case"`
	PK    Hex    `json:"pk"`
	Msg   Hex    `json:"msg"`
	Sig   Hex    `json:"sig"`
	Valid bool   `json:"valid"`
}

// Threshold is a t-of-n transcript: a dealt polynomial's commitments, the
// shares and partials of some signers, and the combined signature.
type Threshold struct {
	T           int     `json:"t"`
	N           int     `json:"n"`
	GroupPK     Hex     `json:"group_pk"`
	GroupPop    Hex     `json:"group_pop"`
	Commitments []Hex   `json:"commitments"`
	Msg         Hex     `json:"msg"`
	Shares      []Share `json:"shares"`
	Signers     []int   `json:"signers"`
	Combined    Hex     `json:"combined"`
}

// Share is one party's share in a threshold transcript.
type Share struct {
	Index   int `json:"index"`
	SK      Hex `json:"sk"`
	PK      Hex `json:"pk"`
	Partial Hex `json:"partial"`
}

// Hex is a byte string written as hex in JSON.
type Hex []byte

// UnmarshalJSON decodes a hex string.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("vectors: %w", err)
	}
	*h = v
	return nil
}

// embedded is a copy of ../shared/testdata/bls-vectors.json, so the tests run
// in any checkout; TestEmbeddedCopyMatchesShared keeps it from drifting.
//
//go:embed bls-vectors.json
var embedded []byte

// Embedded returns the raw bytes of the embedded vector file.
func Embedded() []byte { return embedded }

// SharedPath is where the original lives: $COSIGNER_SHARED/testdata, else
// ../shared/testdata next to the module root (found by walking up from the
// working directory to go.mod).
func SharedPath() (string, error) {
	if d := os.Getenv("COSIGNER_SHARED"); d != "" {
		return filepath.Join(d, "testdata", "bls-vectors.json"), nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "testdata", "bls-vectors.json"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vectors: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Load parses the embedded vector file.
func Load() (*File, error) {
	var f File
	if err := json.Unmarshal(embedded, &f); err != nil {
		return nil, fmt.Errorf("vectors: %w", err)
	}
	if len(f.Sign) == 0 || len(f.Verify) == 0 || len(f.Threshold) == 0 {
		return nil, errors.New("vectors: a section is empty")
	}
	return &f, nil
}
