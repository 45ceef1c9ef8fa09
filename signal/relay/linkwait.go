package relay

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// linkWaiters lets a primary wait for the device that uses a link token
// (GET /v1/devices/wait_for_linked_device/{tokenIdentifier}). Results are
// kept in memory for the lifetime of a token; a relay restart forgets them,
// and the primary then sees the device in GET /v1/devices.
type linkWaiters struct {
	mu      sync.Mutex
	results map[[32]byte]linkResult
	waiters map[[32]byte][]chan struct{}
}

type linkResult struct {
	aci     uuid
	device  deviceJSON
	expires time.Time
}

// maxLinkResults bounds the remembered results; the oldest go first.
const maxLinkResults = 10_000

func newLinkWaiters() *linkWaiters {
	return &linkWaiters{results: map[[32]byte]linkResult{}, waiters: map[[32]byte][]chan struct{}{}}
}

// done records that the token with this hash linked a device, and wakes
// the waiters.
func (l *linkWaiters) done(hash [32]byte, aci uuid, d deviceJSON, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, r := range l.results {
		if now.After(r.expires) || len(l.results) >= maxLinkResults {
			delete(l.results, k)
		}
	}
	l.results[hash] = linkResult{aci: aci, device: d, expires: now.Add(linkTokenLifetime)}
	for _, ch := range l.waiters[hash] {
		close(ch)
	}
	delete(l.waiters, hash)
}

// wait returns the device linked with the token, if any, and otherwise a
// channel closed when it is linked and a function to stop waiting.
func (l *linkWaiters) wait(hash [32]byte) (*linkResult, <-chan struct{}, func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, ok := l.results[hash]; ok {
		return &r, nil, func() {}
	}
	ch := make(chan struct{})
	l.waiters[hash] = append(l.waiters[hash], ch)
	return nil, ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		list := l.waiters[hash]
		for i, c := range list {
			if c == ch {
				l.waiters[hash] = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(l.waiters[hash]) == 0 {
			delete(l.waiters, hash)
		}
	}
}

func (l *linkWaiters) result(hash [32]byte) (linkResult, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.results[hash]
	return r, ok
}

// handleWaitForLinkedDevice answers 200 with the device linked with the
// token, or 204 when none was within ?timeout= seconds (1..3600, default 30).
// A token of another account is never reported: the answer is 204.
func (s *Server) handleWaitForLinkedDevice(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.DecodeString(r.PathValue("tokenIdentifier"))
	if err != nil || len(raw) != 32 {
		return fail(http.StatusBadRequest, "bad token identifier")
	}
	timeout := 30 * time.Second
	if v := r.URL.Query().Get("timeout"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3600 {
			return fail(http.StatusBadRequest, "timeout must be 1..3600 seconds")
		}
		timeout = time.Duration(n) * time.Second
	}
	hash := [32]byte(raw)
	res, ch, stop := s.linked.wait(hash)
	defer stop()
	if res == nil {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-ch:
		case <-t.C:
		case <-r.Context().Done():
			return r.Context().Err()
		}
		if got, ok := s.linked.result(hash); ok {
			res = &got
		}
	}
	if res == nil || res.aci != p.aci {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, http.StatusOK, res.device)
	return nil
}
