package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const crashChildEnv = "COSIGNER_STORE_CRASH_CHILD"

var bucketCrash = []byte("crash")

// crashChild writes pairs of records that must always agree, one pair per
// transaction, until it is killed: one of each pair in the default
// server's device, the other in another server's, which share the commit.
func crashChild() {
	s, err := Open(context.Background(), os.Getenv(crashChildEnv), Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	far, err := s.Server("far")
	if err != nil {
		fmt.Println("server:", err)
		os.Exit(2)
	}
	for i := uint64(1); ; i++ {
		v := binary.BigEndian.AppendUint64(nil, i)
		err := s.update(context.Background(), func(tx *txn) error {
			if err := s.putTx(tx, [][]byte{bucketCrash}, []byte("a"), v); err != nil {
				return err
			}
			return s.putTx(tx, far.path(bucketCrash), []byte("b"), v)
		})
		if err != nil {
			fmt.Println("write:", err)
			os.Exit(2)
		}
		if i == 1 {
			fmt.Println("ready")
		}
	}
}

func TestAKilledWriterLeavesAConsistentStore(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("spawns a process")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child said %q", line)
		}
		time.Sleep(time.Duration(20+30*round) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		s := openStore(t, path, Options{})
		far, err := s.Server("far")
		if err != nil {
			t.Fatal(err)
		}
		a, errA := s.get(t.Context(), [][]byte{bucketCrash}, []byte("a"))
		b, errB := far.get(t.Context(), far.path(bucketCrash), []byte("b"))
		s.Close()
		if errA != nil || errB != nil || len(a) != 8 || string(a) != string(b) {
			t.Fatalf("round %d: after the kill a=%x (%v) b=%x (%v)", round, a, errA, b, errB)
		}
		t.Logf("round %d: killed after %d transactions", round, binary.BigEndian.Uint64(a))
	}
}
