package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core/event"
)

// challengedMessenger refuses every send with a challenge until the right
// answer comes, as a server does.
type challengedMessenger struct {
	Messenger
	mu       sync.Mutex
	open     bool
	refusals int
}

type testChallenge struct{ token string }

func (e testChallenge) Error() string          { return "challenge required: " + e.token }
func (e testChallenge) ChallengeToken() string { return e.token }

var errWrongAnswer = errors.New("wrong answer")

func (m *challengedMessenger) Send(ctx context.Context, to Address, env []byte) error {
	m.mu.Lock()
	open := m.open
	if !open {
		m.refusals++
	}
	m.mu.Unlock()
	if !open {
		return errors.Join(errors.New("send"), testChallenge{"T0KEN"})
	}
	return m.Messenger.Send(ctx, to, env)
}

func (m *challengedMessenger) AnswerChallenge(_ context.Context, token, answer string) error {
	if token != "T0KEN" || answer != "the operator's code" {
		return errWrongAnswer
	}
	m.mu.Lock()
	m.open = true
	m.mu.Unlock()
	return nil
}

func TestAChallengedConsoleAsksOnceAndCatchesUpOnceAnswered(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	cm := &challengedMessenger{}
	nodes[0].messenger = func(m Messenger) Messenger { cm.Messenger = m; return cm }
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sub := nodes[0].bus.Subscribe(0)
	defer sub.Close()
	done := make(chan error, 1)
	var kr *KeygenResult
	go func() {
		var err error
		kr, err = nodes[0].app.StartKeygen(ctx, 2)
		done <- err
	}()

	next := func() event.Event {
		t.Helper()
		for {
			e, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("no challenge event: %v", err)
			}
			switch e.(type) {
			case event.Challenge, event.ChallengeAnswered:
				return e
			}
		}
	}
	if ch, ok := next().(event.Challenge); !ok || ch.Token != "T0KEN" {
		t.Fatalf("first event %#v, want the challenge T0KEN", ch)
	}
	// Both peers' sends failed (and are retried) under one challenge: one event.
	for refusals := 0; refusals < 3; time.Sleep(10 * time.Millisecond) {
		if ctx.Err() != nil {
			t.Fatal("the refused sends were not retried")
		}
		cm.mu.Lock()
		refusals = cm.refusals
		cm.mu.Unlock()
	}

	if err := nodes[0].app.AnswerChallenge(ctx, "T0KEN", "a guess"); !errors.Is(err, errWrongAnswer) {
		t.Fatalf("wrong answer: %v, want the messenger's refusal", err)
	}
	if err := nodes[0].app.AnswerChallenge(ctx, "T0KEN", "the operator's code"); err != nil {
		t.Fatal(err)
	}
	if e, ok := next().(event.ChallengeAnswered); !ok || e.Token != "T0KEN" {
		t.Fatalf("event after the answer %#v, want ChallengeAnswered T0KEN (and no second Challenge)", e)
	}
	if err := <-done; err != nil {
		t.Fatalf("keygen after the answer: %v", err)
	}
	waitKeys(t, ctx, nodes[1], kr.KeyID)
	waitKeys(t, ctx, nodes[2], kr.KeyID)
}

func TestAMessengerWithoutChallengesSaysSo(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob")
	nodes[0].start(t, true)
	if err := nodes[0].app.AnswerChallenge(t.Context(), "T", "code"); !errors.Is(err, ErrNoChallenges) {
		t.Fatalf("answer through a plain messenger: %v, want ErrNoChallenges", err)
	}
}

// limitedMessenger refuses the first send with a rate limit that asks for
// a wait, then lets everything through; it notes when each send came.
type limitedMessenger struct {
	Messenger
	wait  time.Duration
	mu    sync.Mutex
	tries []time.Time
}

type testRateLimit struct{ wait time.Duration }

func (e testRateLimit) Error() string             { return "rate limited" }
func (e testRateLimit) RetryAfter() time.Duration { return e.wait }

func (m *limitedMessenger) Send(ctx context.Context, to Address, env []byte) error {
	m.mu.Lock()
	m.tries = append(m.tries, time.Now())
	first := len(m.tries) == 1
	m.mu.Unlock()
	if first {
		return fmt.Errorf("send: %w", testRateLimit{m.wait})
	}
	return m.Messenger.Send(ctx, to, env)
}

func TestARefusedSendWaitsAsLongAsTheServerSaid(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob")
	lm := &limitedMessenger{wait: 2500 * time.Millisecond} // longer than the first retry's own 1 s
	nodes[0].messenger = func(m Messenger) Messenger { lm.Messenger = m; return lm }
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := nodes[0].app.StartKeygen(ctx, 2); err != nil {
		t.Fatal(err)
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if len(lm.tries) < 2 {
		t.Fatalf("%d sends", len(lm.tries))
	}
	// The refused envelope's next try is the first one after the refusal
	// to the same peer (there is only bob).
	if gap := lm.tries[1].Sub(lm.tries[0]); gap < lm.wait {
		t.Fatalf("the refused send was tried again after %v; the server asked for %v", gap, lm.wait)
	}
}
