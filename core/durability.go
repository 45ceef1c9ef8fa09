package core

// Durability: what the loop tells only once it is on disk, and what a
// failed store write does.

import (
	"context"
	"errors"
	"fmt"

	"github.com/signal-mpc/cosigner/core/event"
)

// announcement is an ending to tell (tell) once the writes before it are
// durable (durable); tell gets the store's error, if any.
type announcement struct {
	durable func(context.Context) error
	tell    func(err error)
}

// announceBacklog bounds the endings waiting for durability; past it the
// loop waits for the store itself (rare: one ending per ceremony).
const announceBacklog = 256

// whenDurable calls tell once every write made so far is durable (loop
// goroutine only). Endings are told in order: a console never announces a
// key, or prints a signature, that a restart would not show again.
func (a *App) whenDurable(tell func(err error)) {
	ann := announcement{a.cfg.Store.Durable(), tell}
	select {
	case a.announce <- ann:
	default:
		err := ann.durable(a.runCtx)
		if err != nil && a.runCtx.Err() == nil {
			a.storeFailed(err)
		}
		ann.tell(err)
	}
}

// announcer tells the endings, in order, as they become durable.
func (a *App) announcer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ann := <-a.announce:
			err := ann.durable(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				a.storeFailed(err)
			}
			ann.tell(err)
		}
	}
}

// storeFailed stops the App after a store write failed (the first failure
// wins).
func (a *App) storeFailed(err error) {
	if !errors.Is(err, ErrStoreFailed) {
		err = fmt.Errorf("%w: %w", ErrStoreFailed, err)
	}
	if !a.failed.CompareAndSwap(nil, &err) {
		return
	}
	a.log.Error("store failed", "err", err)
	a.publish(event.Error{Time: a.now(), Text: err.Error()})
	select {
	case a.fatal <- err:
	default:
	}
}

// failure is the store failure that stopped the App, if any.
func (a *App) failure() error {
	if p := a.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// settle waits until what the loop did for a caller is durable.
func (a *App) settle(ctx context.Context, durable func(context.Context) error, err error) error {
	if errors.Is(err, ErrStoreFailed) {
		a.storeFailed(err)
		return err
	}
	if derr := durable(ctx); derr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.storeFailed(derr)
		return derr
	}
	return err
}
