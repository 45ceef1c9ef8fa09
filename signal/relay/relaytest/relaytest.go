// Package relaytest runs the relay in-process for other packages' tests.
package relaytest

import (
	"context"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/signal/relay"
)

// Relay is a relay started for a test.
type Relay struct {
	Server *relay.Server
	stop   context.CancelFunc
	done   chan error
}

// Start runs a relay on 127.0.0.1 with a free port and its data in dir (a
// fresh temporary folder when empty), stopped when the test ends.
func Start(t testing.TB, dir string) *Relay {
	t.Helper()
	return StartConfig(t, relay.Config{DataDir: dir})
}

// StartConfig is Start with a configuration: Listen defaults to 127.0.0.1
// with a free port, DataDir to a fresh temporary folder. A test that
// restarts a relay puts a Proxy in front of it rather than listening on
// the old port again.
func StartConfig(t testing.TB, cfg relay.Config) *Relay {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	srv, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{Server: srv, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Run(ctx) }()
	<-srv.Ready()
	if srv.Addr() == nil {
		cancel()
		t.Fatalf("relay did not start: %v", <-r.done)
	}
	t.Cleanup(r.Stop)
	return r
}

// URL is the relay's base URL.
func (r *Relay) URL() string { return r.Server.URL() }

// Stop stops the relay (again is fine).
func (r *Relay) Stop() {
	if r.stop == nil {
		return
	}
	r.stop()
	r.stop = nil
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
	}
}
