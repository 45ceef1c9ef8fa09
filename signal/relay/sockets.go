package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
	"github.com/signal-mpc/cosigner/signal/wsr"
)

// Close codes Signal uses on the chat socket.
const (
	closeConnectedElsewhere = 4409
	closeReauthenticate     = 4401
)

func timestampHeader(t time.Time) []string {
	return []string{"X-Signal-Timestamp:" + strconv.FormatInt(t.UnixMilli(), 10)}
}

// provisioningSession is a new device waiting for its ProvisionEnvelope.
type provisioningSession struct {
	conn *wsr.Conn
	// deliver receives the one envelope; buffered so the sender never waits.
	deliver chan []byte
}

// serveProvisioningSocket: allocate an address, push it, wait up to 90 s
// for PUT /v1/provisioning/{address}, pass the envelope on, close.
func (s *Server) serveProvisioningSocket(w http.ResponseWriter, r *http.Request) {
	if r.Context().Value(ctxViaSocket) != nil {
		http.NotFound(w, r)
		return
	}
	release, ok := s.takeSocket(w, r, socketUnauthenticated)
	if !ok {
		return
	}
	defer release()
	// Counted before the upgrade: once hijacked, the connection is no longer
	// waited for by http.Server.Shutdown, and Run must still wait for it.
	s.sessions.Add(1)
	defer s.sessions.Done()
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}

	raw := make([]byte, 16)
	rand.Read(raw)
	// Unpadded, 22 characters, as Signal's server sends it: the padding
	// becomes "%3D%3D" in the link URL and made a third of the QR codes a
	// version larger.
	address := base64.RawURLEncoding.EncodeToString(raw)
	conn := wsr.New(ws, wsr.Options{
		Handler: func(_ context.Context, req *wsr.Request) *wsr.Response {
			if req.Verb == http.MethodGet && req.Path == "/v1/keepalive/provisioning" {
				return &wsr.Response{Status: http.StatusOK, Headers: timestampHeader(s.now())}
			}
			return &wsr.Response{Status: http.StatusNotFound}
		},
		MaxInFlight:    4,
		IdleTimeout:    s.provisioningLifetime + 5*time.Second, // the lifetime timer closes first, cleanly
		ReadLimit:      64 << 10,
		MaxQueuedBytes: unauthQueuedBytes,
		Logger:         s.log,
	})
	sess := &provisioningSession{conn: conn, deliver: make(chan []byte, 1)}
	s.mu.Lock()
	s.provisioning[address] = sess
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.provisioning[address] == sess {
			delete(s.provisioning, address)
		}
		s.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		body, err := proto.Marshal(&signalpb.ProvisioningAddress{Address: proto.String(address)})
		if err != nil {
			conn.Close(websocket.CloseInternalServerErr, "")
			return
		}
		if _, err := conn.Request(ctx, &wsr.Request{Verb: "PUT", Path: "/v1/address", Headers: timestampHeader(s.now()), Body: body}); err != nil {
			conn.Close(websocket.CloseNormalClosure, "")
			return
		}
		timer := time.NewTimer(s.provisioningLifetime)
		defer timer.Stop()
		select {
		case env := <-sess.deliver:
			reqCtx, cancelReq := context.WithTimeout(ctx, 10*time.Second)
			conn.Request(reqCtx, &wsr.Request{Verb: "PUT", Path: "/v1/message", Headers: timestampHeader(s.now()), Body: env})
			cancelReq()
			conn.Close(websocket.CloseNormalClosure, "Closed")
		case <-timer.C:
			conn.Close(websocket.CloseNormalClosure, "Timeout")
		case <-ctx.Done():
		}
	})
	conn.Run(ctx)
	cancel()
	wg.Wait()
}

// provisionBody is the body of PUT /v1/provisioning/{address}.
type provisionBody struct {
	Body string `json:"body"`
}

func (s *Server) handleProvision(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if err := s.rateLimit(p); err != nil { // Signal uses the messages limiter here too
		return err
	}
	var body provisionBody
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	// Signal decodes with a MIME decoder: tolerate line breaks.
	env, err := decodeB64(stripSpace(body.Body))
	if err != nil || len(env) == 0 {
		return fail(http.StatusBadRequest, "body is not base64")
	}
	if len(env) > maxProvisionSize {
		return fail(http.StatusBadRequest, "provisioning message too large")
	}
	var pe signalpb.ProvisionEnvelope
	if err := proto.Unmarshal(env, &pe); err != nil || len(pe.GetPublicKey()) != ecKeyLen || len(pe.GetBody()) == 0 {
		return fail(http.StatusBadRequest, "body is not a ProvisionEnvelope")
	}
	address := r.PathValue("address")
	s.mu.Lock()
	sess := s.provisioning[address]
	delete(s.provisioning, address) // one envelope per socket
	s.mu.Unlock()
	if sess == nil {
		return fail(http.StatusNotFound, "no device waits at this address")
	}
	sess.deliver <- env
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func stripSpace(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\r', '\n', '\t':
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}

// chatSession is an authenticated device's socket.
type chatSession struct {
	p      principal
	conn   *wsr.Conn
	notify chan struct{} // a new envelope is queued; capacity 1

	// fresh holds envelopes written for this device whose commit may not
	// be done yet, in queue order, so that a connected device gets a
	// message while the relay's commit syncs instead of after it (one
	// commit less per hop on the path of every MPC round). It is only a
	// shortcut: the queue stays the record, a message is acknowledged to
	// its sender only once committed, and a relay that dies before the
	// commit has delivered a message its sender will send again (a
	// duplicate, never a loss).
	fmu        sync.Mutex
	fresh      []queueItem
	freshBytes int
	refused    uint64 // the group of the last refused offer (0: none)
}

func (c *chatSession) poke() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// maxFresh and maxFreshBytes bound a session's fresh envelopes (a device
// that reads slowly holds them up); beyond them, envelopes reach the
// device from the queue once committed.
const (
	maxFresh      = 4 * deliveryWindow
	maxFreshBytes = 4 << 20
)

// offer adds an envelope written in group g (the writer calls it in queue
// order). Once one envelope of a group is refused (full), the rest of
// that group is too: delivering a later envelope of the group from memory
// while an earlier one is not yet readable from the queue would skip the
// earlier one. Envelopes of later groups are safe again, because a group's
// hooks run only after every earlier group has committed.
func (c *chatSession) offer(g uint64, it queueItem) {
	c.fmu.Lock()
	if c.refused == g || len(c.fresh) >= maxFresh || c.freshBytes+len(it.envelope) > maxFreshBytes {
		c.refused = g
		c.fmu.Unlock()
		return
	}
	c.fresh = append(c.fresh, it)
	c.freshBytes += len(it.envelope)
	c.fmu.Unlock()
	c.poke()
}

// withdraw drops fresh envelopes whose write failed.
func (c *chatSession) withdraw(keys [][]byte) {
	c.fmu.Lock()
	c.fresh = slices.DeleteFunc(c.fresh, func(it queueItem) bool {
		if slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, it.key) }) {
			c.freshBytes -= len(it.envelope)
			return true
		}
		return false
	})
	c.fmu.Unlock()
}

// dropFresh forgets every fresh envelope (the queue has them, or will once
// their commit ends, followed by a poke).
func (c *chatSession) dropFresh() {
	c.fmu.Lock()
	c.fresh, c.freshBytes = nil, 0
	c.fmu.Unlock()
}

// freshAfter forgets the fresh envelopes at or before cursor (delivered)
// and returns the others.
func (c *chatSession) freshAfter(cursor []byte) []queueItem {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	i := 0
	for i < len(c.fresh) && cursor != nil && bytes.Compare(c.fresh[i].key, cursor) <= 0 {
		c.freshBytes -= len(c.fresh[i].envelope)
		i++
	}
	c.fresh = c.fresh[i:]
	return slices.Clone(c.fresh)
}

// mergeQueue merges queue items and fresh ones (both in key order, possibly
// overlapping) into at most n items in key order, each once.
func mergeQueue(queued, fresh []queueItem, n int) []queueItem {
	if len(fresh) == 0 {
		return queued
	}
	out := make([]queueItem, 0, min(n, len(queued)+len(fresh)))
	for len(out) < n && (len(queued) > 0 || len(fresh) > 0) {
		switch {
		case len(fresh) == 0:
			out, queued = append(out, queued[0]), queued[1:]
		case len(queued) == 0:
			out, fresh = append(out, fresh[0]), fresh[1:]
		default:
			switch c := bytes.Compare(queued[0].key, fresh[0].key); {
			case c < 0:
				out, queued = append(out, queued[0]), queued[1:]
			case c > 0:
				out, fresh = append(out, fresh[0]), fresh[1:]
			default:
				out, queued, fresh = append(out, queued[0]), queued[1:], fresh[1:]
			}
		}
	}
	return out
}

// serveChatSocket serves /v1/websocket/: with credentials, the device's
// message socket; without, an unauthenticated socket for requests only.
func (s *Server) serveChatSocket(w http.ResponseWriter, r *http.Request, root http.Handler) {
	if r.Context().Value(ctxViaSocket) != nil {
		http.NotFound(w, r)
		return
	}
	var p *principal
	if r.Header.Get("Authorization") != "" {
		var err error
		if p, err = s.checkCredentials(r); err != nil {
			var ae *apiError
			switch {
			case errors.As(err, &ae): // throttled
				for k, v := range ae.header {
					w.Header().Set(k, v)
				}
				http.Error(w, ae.msg, ae.status)
			case errors.Is(err, errWrongCredentials):
				http.Error(w, "forbidden", http.StatusForbidden)
			default:
				s.log.Error("check credentials", "err", err)
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
			return
		}
	}
	messages := p != nil && r.Header.Get("X-Signal-Disable-Messages") != "true"
	kind := socketUnauthenticated
	switch {
	case messages:
		kind = socketMessages
	case p != nil:
		kind = socketAuthenticated
	}
	release, ok := s.takeSocket(w, r, kind)
	if !ok {
		return
	}
	defer release()
	s.sessions.Add(1) // before the upgrade, as for provisioning sockets
	defer s.sessions.Done()
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}

	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	opts := wsr.Options{
		Handler: func(ctx context.Context, req *wsr.Request) *wsr.Response {
			return s.serveSocketRequest(ctx, root, p, r.RemoteAddr, req)
		},
		IdleTimeout: chatIdleTimeout,
		ReadLimit:   maxBodySize + 64<<10,
		Logger:      s.log,
	}
	if p == nil {
		// Anyone can open one: it gets a small budget.
		opts.ReadLimit, opts.MaxInFlight, opts.MaxQueuedBytes = unauthReadLimit, unauthInFlight, unauthQueuedBytes
	}
	conn := wsr.New(ws, opts)
	if !messages {
		conn.Run(ctx)
		return
	}

	sess := &chatSession{p: *p, conn: conn, notify: make(chan struct{}, 1)}
	key := string(devKey(p.aci, p.dev))
	s.mu.Lock()
	old := s.chat[key]
	s.chat[key] = sess
	s.mu.Unlock()
	if old != nil {
		old.conn.Close(closeConnectedElsewhere, "Connected elsewhere")
	}
	defer func() {
		s.mu.Lock()
		if s.chat[key] == sess {
			delete(s.chat, key)
		}
		s.mu.Unlock()
	}()
	if err := s.store.touch(p.aci, p.dev, s.now()); err != nil {
		s.log.Warn("update last seen", "err", err)
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.deliverLoop(ctx, sess); err != nil && !errors.Is(err, wsr.ErrClosed) && ctx.Err() == nil {
			s.log.Warn("delivery stopped", "err", err)
			conn.Close(websocket.CloseInternalServerErr, "")
		}
	})
	conn.Run(ctx)
	cancel()
	wg.Wait()
}

// deliverLoop sends the device's queue in order, with up to deliveryWindow
// envelopes in flight, deleting each only after a 2xx answer; after the
// backlog found at connection it sends PUT /api/v1/queue/empty; then it
// waits for new envelopes. An envelope answered otherwise stays queued and
// comes again on the next connection.
//
// Deletions are batched by one acker goroutine. An acknowledged envelope
// whose deletion has not committed yet when the relay dies is delivered
// again: a duplicate, never a loss.
func (s *Server) deliverLoop(ctx context.Context, sess *chatSession) error {
	// One delivery loop per device at a time: a new socket's loop starts
	// reading the queue only after the previous one has committed the
	// deletions of everything acknowledged on the old socket, so a quick
	// reconnect does not get acknowledged envelopes again.
	lock := s.deliveryLock(sess.p)
	select {
	case lock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-sess.conn.Done():
		return wsr.ErrClosed
	}
	defer func() { <-lock }() // runs last, after the acknowledgements are committed
	// Envelopes offered to this session while the previous socket's loop
	// still ran may have gone out there (from the queue, once committed):
	// they are read from the queue now, which holds what was not yet
	// acknowledged, rather than sent again from memory.
	sess.dropFresh()

	var (
		cursor  []byte
		drained bool
		wg      sync.WaitGroup
		slots   = make(chan struct{}, deliveryWindow)
		acks    = make(chan []byte, deliveryWindow)
		ackDone = make(chan struct{})
	)
	go func() {
		defer close(ackDone)
		s.ackLoop(s.writerCtx, acks)
	}()
	defer func() {
		wg.Wait()
		close(acks)
		<-ackDone
	}()
	for {
		// Fresh first, then the queue: an envelope that leaves fresh
		// because it was delivered is behind the cursor, and one that
		// commits in between is in the queue read after.
		fresh := sess.freshAfter(cursor)
		items, err := s.store.queueAfter(sess.p.aci, sess.p.dev, cursor, deliveryWindow)
		if err != nil {
			return fmt.Errorf("read queue: %w", err)
		}
		items = mergeQueue(items, fresh, deliveryWindow)
		for _, it := range items {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return ctx.Err()
			case <-sess.conn.Done():
				return wsr.ErrClosed
			}
			cursor = it.key
			// Started here, in queue order; answered in any order.
			call, err := sess.conn.Start(ctx, &wsr.Request{
				Verb: "PUT", Path: "/api/v1/message", Headers: timestampHeader(s.now()), Body: it.envelope,
			})
			if err != nil {
				<-slots
				return fmt.Errorf("deliver: %w", err)
			}
			wg.Go(func() {
				defer func() { <-slots }()
				resp, err := call.Wait(ctx)
				switch {
				case err != nil: // the connection is gone; the envelope stays queued
				case resp.Status < 200 || resp.Status > 299:
					s.log.Debug("envelope refused by the device; kept", "status", resp.Status)
				default:
					acks <- it.key
				}
			})
		}
		if len(items) > 0 {
			continue
		}
		if !drained {
			wg.Wait()
			drained = true
			if _, err := sess.conn.Request(ctx, &wsr.Request{Verb: "PUT", Path: "/api/v1/queue/empty", Headers: timestampHeader(s.now())}); err != nil {
				return fmt.Errorf("queue empty: %w", err)
			}
			continue // envelopes may have come meanwhile
		}
		select {
		case <-sess.notify:
		case <-ctx.Done():
			return ctx.Err()
		case <-sess.conn.Done():
			return wsr.ErrClosed
		}
	}
}

// deliveryLock returns the device's delivery lock (a channel of capacity
// one). Locks are kept for the relay's lifetime: one small channel per
// device that ever connected.
func (s *Server) deliveryLock(p principal) chan struct{} {
	key := string(devKey(p.aci, p.dev))
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.deliveryLocks[key]
	if !ok {
		l = make(chan struct{}, 1)
		s.deliveryLocks[key] = l
	}
	return l
}

// maxAckBatch bounds the deletions of one batch, maxAckBatches the batches
// of one socket waiting for their commit at once.
const (
	maxAckBatch   = 1024
	maxAckBatches = 8
)

// ackLoop deletes acknowledged envelopes in batches of what has arrived,
// until acks is closed and drained; it returns once every deletion has
// committed. A batch's deletion waits for a commit to join (store.ack is
// lazy), so several batches wait at once and acknowledgements go on being
// taken meanwhile: one wait at a time stalled the delivery window behind
// each (a backlog drained at a window per linger).
func (s *Server) ackLoop(ctx context.Context, acks <-chan []byte) {
	var deleting sync.WaitGroup
	defer deleting.Wait()
	slots := make(chan struct{}, maxAckBatches)
	var batch [][]byte
	for acks != nil || len(batch) > 0 {
		in, slot := acks, slots
		if len(batch) >= maxAckBatch {
			in = nil // full: wait for a slot
		}
		if len(batch) == 0 {
			slot = nil // nothing to delete yet
		}
		select {
		case key, ok := <-in:
			if !ok {
				acks = nil
				continue
			}
			batch = append(batch, key)
		case slot <- struct{}{}:
			keys := batch
			batch = nil
			deleting.Go(func() {
				defer func() { <-slots }()
				s.obs.MessagesDelivered(len(keys))
				if err := s.store.ack(ctx, keys); err != nil {
					s.log.Error("delete acknowledged envelopes", "n", len(keys), "err", err)
				}
			})
		}
	}
}

// session returns a device's chat session, nil when it has no socket.
func (s *Server) session(aci uuid, dev uint8) *chatSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chat[string(devKey(aci, dev))]
}

// pokeDevice wakes the delivery loop of a connected device; it reports
// whether the device has a socket.
func (s *Server) pokeDevice(aci uuid, dev uint8) bool {
	s.mu.Lock()
	sess := s.chat[string(devKey(aci, dev))]
	s.mu.Unlock()
	if sess == nil {
		return false
	}
	sess.poke()
	return true
}

func (s *Server) isConnected(aci uuid, dev uint8) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chat[string(devKey(aci, dev))] != nil
}

// closeChat closes a device's socket, if it has one.
func (s *Server) closeChat(aci uuid, dev uint8, code int, text string) {
	s.mu.Lock()
	sess := s.chat[string(devKey(aci, dev))]
	s.mu.Unlock()
	if sess != nil {
		sess.conn.Close(code, text)
	}
}
