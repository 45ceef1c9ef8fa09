// Package metrics serves Prometheus metrics, liveness and readiness for a
// running co-signer (node) and for the relay. core, bls and signal do not
// import the metrics library: the node's numbers come from core's event bus
// and small hooks (the store's commit time, the device's counters), the
// relay's from its Observer and Stats.
//
// Labels are kinds, directions, outcomes, states, routes and status
// classes only: never an account, a name, an address, a digest or
// anything of a message (privacy, and a bounded number of series).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric name.
const Namespace = "cosigner"

// NewRegistry returns a registry with the Go runtime's and the process's
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves /metrics from reg, /healthz (the process is up: always
// 200) and /readyz (200 when ready returns nil, else 503 with its reason).
func Handler(reg *prometheus.Registry, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Listen opens the metrics listener on addr. A non-loopback address is
// allowed (metrics show activity, not secrets) and logged as a warning:
// anyone who reaches it sees when this signer works.
func Listen(ctx context.Context, addr string, log *slog.Logger) (net.Listener, error) {
	if addr == "" {
		return nil, errors.New("metrics: no listen address")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen: %w", err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() && log != nil {
		log.Warn("metrics listen beyond loopback: whoever reaches it sees this process's activity", "addr", ln.Addr().String())
	}
	return ln, nil
}

// Serve serves h on ln until ctx ends, then shuts the server down.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("metrics: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	hs.Close()
	<-done
	return nil
}

// statusClass is "2xx", "4xx", ...: a bounded label.
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return fmt.Sprintf("%dxx", status/100)
}

var errNotServing = errors.New("the relay is not serving")
