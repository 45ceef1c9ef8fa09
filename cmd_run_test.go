package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/core"
)

// stoppingConsole stops on its own after a while, with err.
type stoppingConsole struct{ err error }

func (s stoppingConsole) Run(ctx context.Context) error {
	select {
	case <-time.After(20 * time.Millisecond):
		return s.err
	case <-ctx.Done():
		return nil
	}
}

// A console that stops on its own (its store failed, its device was
// unlinked) ends what runs beside it, with its error: a headless console
// or a command waiting on it must not stay up and silent.
func TestACommandEndsWhenItsConsoleStops(t *testing.T) {
	t.Parallel()
	storeErr := fmt.Errorf("core: stopped, restart to resume from the file: %w", core.ErrStoreFailed)
	tests := []struct {
		name    string
		console stoppingConsole
		fn      func(context.Context) error
		want    error
	}{
		{"a headless console's event loop", stoppingConsole{storeErr}, func(ctx context.Context) error {
			<-ctx.Done()
			return nil
		}, core.ErrStoreFailed},
		{"a keygen waiting for its result", stoppingConsole{storeErr}, func(ctx context.Context) error {
			<-ctx.Done()
			return fmt.Errorf("keygen 1234 still running: %w", ctx.Err())
		}, core.ErrStoreFailed},
		{"a console that stops without a reason", stoppingConsole{nil}, func(ctx context.Context) error {
			<-ctx.Done()
			return nil
		}, errConsoleStopped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := runWhile(ctx, tt.console, tt.fn)
			if !errors.Is(err, tt.want) {
				t.Fatalf("runWhile = %v, want %v", err, tt.want)
			}
			if ctx.Err() != nil {
				t.Fatal("runWhile returned only when its context ended")
			}
		})
	}
}

// fn's own result stands when the console is stopped because fn ended.
func TestACommandsResultStandsWhenItEndsFirst(t *testing.T) {
	t.Parallel()
	errDeclined := errors.New("declined")
	err := runWhile(t.Context(), stoppingConsole{nil}, func(context.Context) error { return errDeclined })
	if !errors.Is(err, errDeclined) || errors.Is(err, errConsoleStopped) {
		t.Fatalf("runWhile = %v, want only fn's error", err)
	}
}
