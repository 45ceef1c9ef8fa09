package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAppBucketsAreSealedTransactionalAndOrdered(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(ctx, path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	err = s.AppUpdate(ctx, func(tx *AppTx) error {
		for _, k := range []string{"b2", "a1", "b1", "c"} {
			if err := tx.Put("ceremonies", []byte(k), []byte("secret-"+k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := s.AppUpdate(ctx, func(tx *AppTx) error {
		tx.Put("ceremonies", []byte("b3"), []byte("x"))
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	var keys []string
	s.AppView(ctx, func(tx *AppTx) error {
		return tx.Scan("ceremonies", []byte("b"), func(k, v []byte) error {
			keys = append(keys, string(k)+"="+string(v))
			return nil
		})
	})
	if len(keys) != 2 || keys[0] != "b1=secret-b1" || keys[1] != "b2=secret-b2" {
		t.Fatalf("scan %v (a failed update must leave nothing)", keys)
	}
	s.AppUpdate(ctx, func(tx *AppTx) error { return tx.Delete("ceremonies", []byte("b1")) })
	s.AppView(ctx, func(tx *AppTx) error {
		v, err := tx.Get("ceremonies", []byte("b1"))
		if v != nil || err != nil {
			t.Fatalf("deleted value %q %v", v, err)
		}
		if v, _ := tx.Get("nothing-here", []byte("x")); v != nil {
			t.Fatal("value from an absent bucket")
		}
		return nil
	})
	s.Close()
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte("secret-")) {
		t.Fatal("application values stored in the clear")
	}
}

func TestInboundRecordsArePrunedByAge(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := time.Now().Add(-48 * time.Hour)
	s.PutInbound(ctx, []byte("old"), Inbound{Account: "a", Device: 2, Body: []byte("x"), Received: old})
	s.PutInbound(ctx, []byte("new"), Inbound{Account: "a", Device: 2, Body: []byte("y"), Received: time.Now()})
	n, err := s.PruneInbound(ctx, time.Now().Add(-24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	if _, ok, _ := s.GetInbound(ctx, []byte("old")); ok {
		t.Fatal("old record kept")
	}
	in, ok, err := s.GetInbound(ctx, []byte("new"))
	if !ok || err != nil || string(in.Body) != "y" || in.Device != 2 || in.Account != "a" {
		t.Fatalf("new record: %+v %v %v", in, ok, err)
	}
}
