package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesTheFileAndLeavesNoTemporary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	for _, data := range [][]byte{[]byte("first"), []byte("second, longer")} {
		if err := Write(path, data); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %q (%v), want %q", got, err, data)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode %o, want 600", mode)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("folder holds %d entries (%v), want only the file", len(entries), err)
	}
}

func TestWriteIntoAMissingFolderFailsAndCreatesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Write(filepath.Join(dir, "absent", "secret"), []byte("x")); err == nil {
		t.Fatal("wrote into a folder that does not exist")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %d entries", len(entries))
	}
}

func TestCreateRefusesAnExistingFileUnlessToldToReplaceIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "copy")
	fill := func(data string) func(string) error {
		return func(tmp string) error { return os.WriteFile(tmp, []byte(data), 0o600) }
	}
	if err := Create(path, false, fill("first")); err != nil {
		t.Fatal(err)
	}
	if err := Create(path, false, fill("second")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing file: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "first" {
		t.Fatalf("the existing file holds %q", got)
	}
	if err := Create(path, true, fill("third")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "third" {
		t.Fatalf("the replaced file holds %q", got)
	}
	if err := Create(path, true, func(string) error { return errors.New("fill failed") }); err == nil {
		t.Fatal("a failed fill was installed")
	}
	if got, _ := os.ReadFile(path); string(got) != "third" {
		t.Fatalf("after a failed fill the file holds %q", got)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the folder holds %d entries, want only the file", len(entries))
	}
}
