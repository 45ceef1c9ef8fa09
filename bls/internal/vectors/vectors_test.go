package vectors

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"testing"
)

func TestEmbeddedCopyMatchesShared(t *testing.T) {
	t.Parallel()
	p, err := SharedPath()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) && os.Getenv("CI") == "" {
		t.Skipf("no shared folder at %s to compare with (outside CI)", p)
	}
	if err != nil {
		t.Fatalf("read %s: %v (set COSIGNER_SHARED to the shared/ folder)", p, err)
	}
	if !bytes.Equal(b, Embedded()) {
		t.Fatalf("bls-vectors.json differs from %s: copy it again", p)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	f, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sign) != 20 || len(f.Verify) != 7 || len(f.Threshold) != 3 {
		t.Fatalf("sections: %d sign, %d verify, %d threshold", len(f.Sign), len(f.Verify), len(f.Threshold))
	}
}
