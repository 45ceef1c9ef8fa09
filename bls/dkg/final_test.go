package dkg

import (
	"testing"

	"github.com/signal-mpc/cosigner/bls/wire"
)

// A party that finished answers a peer still waiting in the last round with
// its final message: the confirmation that peer lost completes its key.
func TestFinalMessageCompletesAPeerThatLostTheLastOne(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "final", 2, 3)
	nw := newNetwork(t, ps)
	nw.tamper = func(d delivery) [][]byte {
		if d.from == 1 && d.to == 2 && kindOf(d.env) == wire.KindConfirm {
			return nil // party 1 stopped before this one went out
		}
		return [][]byte{d.env}
	}
	nw.startAll()
	nw.run()
	if ps[0].engine.State() != StateDone || ps[2].engine.State() != StateDone || ps[1].engine.State() != StateRunning {
		t.Fatalf("states %s %s %s, want done, running, done", ps[0].engine.State(), ps[1].engine.State(), ps[2].engine.State())
	}
	if out := ps[1].engine.Final(); out != nil {
		t.Fatal("a running engine has a final message")
	}
	final := ps[0].engine.Final()
	if len(final) != 1 || final[0].Kind != wire.KindConfirm || final[0].To != 0 {
		t.Fatalf("final %+v, want the confirmation broadcast", final)
	}
	if _, err := ps[1].engine.Handle(final[0].Envelope); err != nil {
		t.Fatal(err)
	}
	r0, _ := ps[0].engine.Result()
	r1, err := ps[1].engine.Result()
	if err != nil || !r0.Group.Key.Equal(r1.Group.Key) {
		t.Fatalf("party 2 after the answer: %v", err)
	}
}

// The party that detected an abort keeps its abort as the final message;
// a party told of it by another has none of its own.
func TestFinalMessageOfAnAbortIsTheAbort(t *testing.T) {
	t.Parallel()
	_, ps := testGroup(t, "final-abort", 2, 3)
	nw := newNetwork(t, ps)
	nw.startAll(3)
	out, err := ps[2].engine.Decline("no")
	if err != nil {
		t.Fatal(err)
	}
	nw.send(3, out)
	nw.run()
	if f := ps[2].engine.Final(); len(f) != 1 || f[0].Kind != wire.KindAbort {
		t.Fatalf("decliner's final %+v, want its abort", f)
	}
	if f := ps[0].engine.Final(); f != nil {
		t.Fatalf("party 1 relays no abort of its own, has %+v", f)
	}
}
