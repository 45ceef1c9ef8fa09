package wsr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Handler answers one request from the peer. It runs on its own goroutine;
// ctx ends when the connection does. A nil response is answered 500.
type Handler func(ctx context.Context, req *Request) *Response

// Options configure a Conn. The zero value works: no handler (every peer
// request is answered 404), no idle timeout.
type Options struct {
	Handler Handler
	// MaxInFlight bounds the peer requests handled at once (default 32).
	// Requests beyond it wait for a slot without holding up the reader, so
	// that responses to this side's own requests are never stuck behind
	// them (a device receiving messages must still see the answers to its
	// sends).
	MaxInFlight int
	// MaxQueuedBytes bounds the bodies of peer requests read but not yet
	// answered (default 16 MiB): only past it does the reader wait.
	MaxQueuedBytes int
	// IdleTimeout closes the connection when no frame arrives for this long
	// (0: never).
	IdleTimeout time.Duration
	// ReadLimit is the largest WebSocket message accepted (default
	// MaxFrameSize); a larger one closes the connection with 1009.
	ReadLimit int64
	// WriteTimeout bounds one frame write (default 10 s).
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// closeGrace is how long a closing side waits for the peer's close frame
// before dropping the TCP connection.
const closeGrace = time.Second

// Conn multiplexes WebSocket-Resources requests in both directions over one
// WebSocket. New starts nothing; Run runs the read and write loops and the
// handlers, and returns when the connection ends. Request, Close and Done are
// safe for concurrent use.
type Conn struct {
	ws   *websocket.Conn
	opts Options
	log  *slog.Logger

	out     chan []byte   // frames for the writer
	closing chan closeCmd // a local close, taken by the writer
	done    chan struct{} // closed when the connection is over
	doneErr error         // why, set before done is closed

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *Response
	closed  bool // a close frame was queued or the connection is over
	started bool

	handlers sync.WaitGroup // peer requests being handled

	closeOnce sync.Once
}

type closeCmd struct {
	code int
	text string
}

// New wraps an established WebSocket. It starts no goroutine.
func New(ws *websocket.Conn, opts Options) *Conn {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 32
	}
	if opts.MaxQueuedBytes <= 0 {
		opts.MaxQueuedBytes = 16 << 20
	}
	if opts.ReadLimit <= 0 {
		opts.ReadLimit = MaxFrameSize
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Conn{
		ws: ws, opts: opts, log: log,
		out:     make(chan []byte, 64),
		closing: make(chan closeCmd, 1),
		done:    make(chan struct{}),
		pending: make(map[uint64]chan *Response),
	}
}

// Done is closed when the connection is over.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why the connection ended; nil before Done is closed.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.doneErr
	default:
		return nil
	}
}

// Run runs the connection until the peer closes it, an error ends it, Close
// is called or ctx ends (then the peer gets close code 1001). It waits for
// its goroutines and the running handlers, closes the socket, and fails the
// requests still waiting for an answer with ErrClosed. The returned error
// says why the connection ended; a *websocket.CloseError in its chain
// carries the peer's close code.
func (c *Conn) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("wsr: Run called twice")
	}
	c.started = true
	c.mu.Unlock()

	// inner ends when the reader does; the caller's ctx only starts a close.
	inner, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	c.ws.SetReadLimit(c.opts.ReadLimit)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.writeLoop(inner)
	}()
	go func() { // the caller's end asks the peer to go away politely
		defer wg.Done()
		select {
		case <-ctx.Done():
			c.Close(websocket.CloseGoingAway, "")
		case <-inner.Done():
		}
	}()

	err := c.readLoop(inner, &wg)
	cancel()
	c.ws.Close()
	wg.Wait()
	c.finish(err)
	return err
}

// finish marks the connection over and fails the waiting requests.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	c.closed = true
	pending := c.pending
	c.pending = map[uint64]chan *Response{}
	c.mu.Unlock()
	for _, ch := range pending {
		close(ch)
	}
	c.closeOnce.Do(func() {
		c.doneErr = err
		close(c.done)
	})
}

// queueChunk is the unit of the queued-bytes budget.
const queueChunk = 64 << 10

type queuedRequest struct {
	req    *Request
	tokens int
}

func (c *Conn) readLoop(ctx context.Context, wg *sync.WaitGroup) error {
	// The queued-bytes budget in chunks: the reader is its only taker, so
	// taking several tokens one by one cannot deadlock.
	budget := make(chan struct{}, max(1, c.opts.MaxQueuedBytes/queueChunk))
	// MaxInFlight workers take the requests in the order they came: the
	// reader never waits for a handler, only for the budget.
	queue := make(chan queuedRequest, cap(budget))
	defer close(queue)
	for range c.opts.MaxInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for q := range queue {
				c.serve(ctx, q.req)
				for range q.tokens {
					<-budget
				}
				c.handlers.Done()
			}
		}()
	}
	for {
		if c.opts.IdleTimeout > 0 {
			c.mu.Lock()
			if !c.closed { // once closing, the writer sets the grace deadline
				c.ws.SetReadDeadline(time.Now().Add(c.opts.IdleTimeout))
			}
			c.mu.Unlock()
		}
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			if c.isClosing() {
				return fmt.Errorf("%w: %w", ErrClosed, err)
			}
			return fmt.Errorf("read: %w", err)
		}
		if typ != websocket.BinaryMessage {
			c.Close(websocket.CloseUnsupportedData, "binary frames only")
			continue
		}
		f, err := DecodeFrame(data)
		if err != nil {
			// Like Signal's server: a frame that does not parse is dropped.
			c.log.Debug("dropped a malformed frame", "err", err)
			continue
		}
		if f.Response != nil {
			c.deliver(f.Response)
			continue
		}
		// Counted under the lock that Close takes: once closing, no handler
		// starts, so finishHandlers waits for a fixed set.
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			continue
		}
		c.handlers.Add(1)
		c.mu.Unlock()
		tokens := min(cap(budget), 1+len(data)/queueChunk)
		for taken := 0; taken < tokens; taken++ {
			select {
			case budget <- struct{}{}:
			case <-ctx.Done():
				for range taken {
					<-budget
				}
				c.handlers.Done()
				return fmt.Errorf("%w: %w", ErrClosed, ctx.Err())
			}
		}
		queue <- queuedRequest{f.Request, tokens} // never blocks: one place per token
	}
}

func (c *Conn) serve(ctx context.Context, req *Request) {
	var resp *Response
	if c.opts.Handler == nil {
		resp = &Response{Status: http.StatusNotFound}
	} else {
		resp = c.opts.Handler(ctx, req)
		if resp == nil {
			resp = &Response{Status: http.StatusInternalServerError}
		}
	}
	r := *resp
	r.ID = req.ID
	b, err := EncodeResponse(&r)
	if err != nil {
		c.log.Warn("encode response", "err", err)
		return
	}
	c.enqueue(ctx, b) // fails only when the connection is over
}

// deliver hands a response to the request waiting for it; a response to no
// pending request is dropped.
func (c *Conn) deliver(r *Response) {
	c.mu.Lock()
	ch, ok := c.pending[r.ID]
	delete(c.pending, r.ID)
	c.mu.Unlock()
	if !ok {
		c.log.Debug("dropped a response to an unknown id", "id", r.ID)
		return
	}
	ch <- r // buffered, capacity 1
}

func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *Conn) enqueue(ctx context.Context, b []byte) error {
	select {
	case c.out <- b:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrClosed, ctx.Err())
	case <-c.done:
		return ErrClosed
	}
}

func (c *Conn) writeLoop(ctx context.Context) {
	for {
		select {
		case b := <-c.out:
			c.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
			if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
				c.log.Debug("write", "err", err)
				c.ws.Close() // ends the reader too
				return
			}
		case cmd := <-c.closing:
			c.finishHandlers()
			c.flush()
			msg := websocket.FormatCloseMessage(cmd.code, cmd.text)
			if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace)); err != nil {
				c.ws.Close()
				return
			}
			// Wait for the peer's close frame (the reader sees it) or the grace.
			c.mu.Lock()
			c.ws.SetReadDeadline(time.Now().Add(closeGrace))
			c.mu.Unlock()
			return
		case <-ctx.Done():
			return
		}
	}
}

// finishHandlers lets the requests being handled finish, for up to
// closeGrace, and writes their responses before the close frame: a peer
// that acknowledged a message just before closing still gets its
// acknowledgement across.
func (c *Conn) finishHandlers() {
	done := make(chan struct{})
	go func() {
		c.handlers.Wait()
		close(done)
	}()
	grace := time.NewTimer(closeGrace)
	defer grace.Stop()
	for {
		select {
		case b := <-c.out:
			c.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
			if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
				return
			}
		case <-done:
			return
		case <-grace.C:
			return
		}
	}
}

// flush writes the frames already queued, best effort, before a close frame.
func (c *Conn) flush() {
	for {
		select {
		case b := <-c.out:
			c.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
			if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
				return
			}
		default:
			return
		}
	}
}

// Close starts a clean close with the given code and reason: no new request
// is handled or sent, the close frame goes out after the frames already
// queued, and Run returns once the peer answers or a grace period ends.
// Later calls do nothing.
func (c *Conn) Close(code int, text string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if len(text) > 120 {
		text = text[:120]
	}
	select {
	case c.closing <- closeCmd{code, text}:
	default:
	}
}

// Request sends a request to the peer and waits for its response. The id
// is assigned here (from 0 upwards; 0 is a valid id). It fails with an error
// wrapping ErrClosed when the connection ends first, or with ctx's error.
func (c *Conn) Request(ctx context.Context, req *Request) (*Response, error) {
	call, err := c.Start(ctx, req)
	if err != nil {
		return nil, err
	}
	return call.Wait(ctx)
}

// Call is a request on its way; Wait collects its response.
type Call struct {
	c  *Conn
	id uint64
	ch chan *Response
}

// Start queues a request for sending and returns without waiting for the
// answer. Requests started one after the other from one goroutine go out in
// that order, which lets a sender keep several in flight and still deliver
// in order.
func (c *Conn) Start(ctx context.Context, req *Request) (*Call, error) {
	ch := make(chan *Response, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	id := c.nextID
	c.nextID++
	c.pending[id] = ch
	c.mu.Unlock()

	r := *req
	r.ID = id
	b, err := EncodeRequest(&r)
	if err != nil {
		c.forget(id)
		return nil, err
	}
	if err := c.enqueue(ctx, b); err != nil {
		c.forget(id)
		return nil, err
	}
	return &Call{c: c, id: id, ch: ch}, nil
}

// Wait waits for the response. It fails with an error wrapping ErrClosed
// when the connection ends first, or with ctx's error (the response is then
// dropped when it comes).
func (call *Call) Wait(ctx context.Context) (*Response, error) {
	select {
	case resp, ok := <-call.ch:
		if !ok {
			return nil, ErrClosed
		}
		return resp, nil
	case <-ctx.Done():
		call.c.forget(call.id)
		return nil, ctx.Err()
	}
}

func (c *Conn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}
