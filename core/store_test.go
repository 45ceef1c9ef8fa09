package core

import (
	"errors"
	"testing"
	"time"
)

func TestMemoryStoreKeepsInputsInOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := NewMemoryStore()
	r := &CeremonyRecord{ID: [32]byte{1}, Kind: KindSign, Opening: []byte("r"), Created: time.Unix(1, 0)}
	s.PutCeremony(ctx, r)
	for i := range 3 {
		s.AppendInput(ctx, r.ID, Input{Kind: InputEnvelope, Envelope: []byte{byte(i)}})
	}
	got, _ := s.Ceremonies(ctx)
	if len(got) != 1 || len(got[0].Inputs) != 3 || got[0].Inputs[2].Envelope[0] != 2 {
		t.Fatalf("%+v", got)
	}
	s.AppendInput(ctx, [32]byte{9}, Input{})
	if err := s.Durable()(ctx); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown ceremony: %v", err)
	}
}
