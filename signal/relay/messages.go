package relay

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	signalpb "github.com/signal-mpc/cosigner/signal/proto"
)

// maxTimestamp is the largest client timestamp accepted (ms; Signal's bound).
const maxTimestamp = 8_640_000_000_000_000

// maxEntries bounds the entries of one send (one per device at most).
const maxEntries = maxDeviceID

type messageEntryJSON struct {
	Type                      *int   `json:"type"`
	DestinationDeviceID       *int   `json:"destinationDeviceId"`
	DestinationRegistrationID *int   `json:"destinationRegistrationId"`
	Content                   string `json:"content"`
}

type sendBody struct {
	Messages  []*messageEntryJSON `json:"messages"`
	Timestamp *int64              `json:"timestamp"`
	Online    bool                `json:"online"`
	Urgent    *bool               `json:"urgent"`
}

// allowedTypes are the Envelope types a client may send: every known one
// except the server's delivery receipt (5) and the retired 2 and 7.
var allowedTypes = map[int]signalpb.Envelope_Type{
	0: signalpb.Envelope_UNKNOWN,
	1: signalpb.Envelope_CIPHERTEXT,
	3: signalpb.Envelope_PREKEY_BUNDLE,
	6: signalpb.Envelope_UNIDENTIFIED_SENDER,
	8: signalpb.Envelope_PLAINTEXT_CONTENT,
}

type entry struct {
	typ     signalpb.Envelope_Type
	dev     uint8
	regID   int
	content []byte
}

// parseSendBody checks the body's shape: 400 for bad fields or duplicate
// devices, 413 for content over the limit.
func parseSendBody(body *sendBody) ([]entry, error) {
	if len(body.Messages) > maxEntries {
		return nil, fail(http.StatusBadRequest, "too many messages")
	}
	if body.Timestamp != nil && (*body.Timestamp < 0 || *body.Timestamp > maxTimestamp) {
		return nil, fail(http.StatusBadRequest, "timestamp out of range")
	}
	seen := map[uint8]bool{}
	out := make([]entry, 0, len(body.Messages))
	for i, m := range body.Messages {
		if m == nil || m.Type == nil || m.DestinationDeviceID == nil || m.DestinationRegistrationID == nil {
			return nil, fail(http.StatusBadRequest, "messages[%d]: type, destinationDeviceId and destinationRegistrationId are required", i)
		}
		typ, ok := allowedTypes[*m.Type]
		if !ok {
			return nil, fail(http.StatusBadRequest, "messages[%d]: envelope type %d not allowed", i, *m.Type)
		}
		if *m.DestinationDeviceID < 1 || *m.DestinationDeviceID > maxDeviceID {
			return nil, fail(http.StatusBadRequest, "messages[%d]: bad device id", i)
		}
		dev := uint8(*m.DestinationDeviceID)
		if seen[dev] {
			return nil, fail(http.StatusBadRequest, "messages[%d]: device %d listed twice", i, dev)
		}
		seen[dev] = true
		if len(m.Content) > (maxContentSize+2)/3*4+4 {
			return nil, fail(http.StatusRequestEntityTooLarge, "messages[%d]: content too large", i)
		}
		content, err := decodeB64(m.Content)
		if err != nil {
			return nil, fail(http.StatusBadRequest, "messages[%d]: content is not base64", i)
		}
		switch {
		case len(content) == 0:
			return nil, fail(http.StatusBadRequest, "messages[%d]: empty content", i)
		case len(content) > maxContentSize:
			return nil, fail(http.StatusRequestEntityTooLarge, "messages[%d]: content too large", i)
		}
		regID := *m.DestinationRegistrationID
		if regID < math.MinInt32 || regID > math.MaxInt32 {
			return nil, fail(http.StatusBadRequest, "messages[%d]: bad registration id", i)
		}
		out = append(out, entry{typ: typ, dev: dev, regID: regID, content: content})
	}
	return out, nil
}

// handleSend is PUT /v1/messages/{serviceId}: check the device set against
// the destination account, store one envelope per device durably, wake the
// connected devices, answer 200 {"needsSync"}.
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) error {
	p, err := s.authenticate(r)
	if err != nil {
		return err
	}
	dest, err := parseServiceID(r.PathValue("serviceId"))
	if err != nil {
		return fail(http.StatusBadRequest, "bad service id")
	}
	var body sendBody
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	entries, err := parseSendBody(&body)
	if err != nil {
		return err
	}
	if err := s.rateLimit(p); err != nil {
		return err
	}

	// The checks and the writes are not one transaction: a device linked or
	// removed in between gets a 409 or a stale entry on the next send, as
	// with Signal's server.
	destAcc, err := s.store.resolve(dest)
	if err != nil {
		return fmt.Errorf("resolve destination: %w", err)
	}
	if destAcc == nil {
		return fail(http.StatusNotFound, "no such account")
	}
	sync := destAcc.ACI == p.aci
	if sync && dest.pni {
		return fail(http.StatusForbidden, "sync messages go to the ACI")
	}
	devs, err := s.store.devices(destAcc.ACI)
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	want := map[uint8]*device{}
	for _, d := range devs {
		if sync && d.ID == p.dev {
			continue
		}
		want[d.ID] = d
	}
	given := map[uint8]bool{}
	var stale, extra, missing []int
	for _, e := range entries {
		given[e.dev] = true
		d, ok := want[e.dev]
		if !ok {
			extra = append(extra, int(e.dev))
			continue
		}
		reg := d.RegistrationID
		if dest.pni {
			reg = d.PNIRegistrationID
		}
		if e.regID != reg {
			stale = append(stale, int(e.dev))
		}
	}
	for id := range want {
		if !given[id] {
			missing = append(missing, int(id))
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	slices.Sort(stale)
	if len(stale) > 0 {
		e := fail(http.StatusGone, "stale devices")
		e.body = map[string][]int{"staleDevices": stale}
		return e
	}
	if len(missing) > 0 || len(extra) > 0 {
		e := fail(http.StatusConflict, "mismatched devices")
		e.body = map[string][]int{"missingDevices": nonNil(missing), "extraDevices": nonNil(extra)}
		return e
	}

	now := s.now()
	ts := uint64(now.UnixMilli())
	if body.Timestamp != nil && *body.Timestamp != 0 {
		ts = uint64(*body.Timestamp)
	}
	urgent := body.Urgent == nil || *body.Urgent
	var items []queued
	for _, e := range entries {
		if body.Online && !s.isConnected(destAcc.ACI, e.dev) {
			continue // ephemeral: dropped for offline devices
		}
		guid := newUUID()
		env := &signalpb.Envelope{
			Type:                 e.typ.Enum(),
			SourceServiceId:      serviceID{uuid: p.aci}.binary(),
			SourceDevice:         proto.Uint32(uint32(p.dev)),
			DestinationServiceId: dest.binary(),
			ClientTimestamp:      proto.Uint64(ts),
			ServerTimestamp:      proto.Uint64(uint64(now.UnixMilli())),
			Content:              e.content,
			ServerGuid:           guid[:],
			Urgent:               proto.Bool(urgent),
		}
		b, err := proto.Marshal(env)
		if err != nil {
			return fmt.Errorf("encode envelope: %w", err)
		}
		items = append(items, queued{aci: destAcc.ACI, dev: e.dev, envelope: b})
	}
	if err := s.checkQueues(items); err != nil {
		return err
	}
	if len(items) > 0 {
		// Connected devices get their envelopes as soon as they are
		// written, while the commit syncs (chatSession.fresh).
		var o offers
		ran := func(g uint64, keys [][]byte) {
			for i, it := range items {
				if sess := s.session(it.aci, it.dev); sess != nil {
					o.offer(sess, g, queueItem{key: keys[i], envelope: it.envelope})
				}
			}
		}
		if err := s.store.enqueue(r.Context(), items, ran); err != nil {
			o.withdraw()
			return fmt.Errorf("queue envelopes: %w", err)
		}
		s.obs.MessagesStored(len(items))
	}
	for _, it := range items {
		s.pokeDevice(it.aci, it.dev)
	}
	needsSync := false
	if !sync {
		own, err := s.store.devices(p.aci)
		if err != nil {
			return fmt.Errorf("list own devices: %w", err)
		}
		needsSync = len(own) > 1
	}
	writeJSON(w, http.StatusOK, map[string]bool{"needsSync": needsSync})
	return nil
}

// checkQueues refuses a send when a destination device's queue holds
// Config.MaxQueue envelopes (507, with the devices in "fullDevices"): a
// device that never reads would otherwise fill the relay's disk. Nothing
// of the send is queued. The check reads before the write, so concurrent
// sends may pass the cap by a few envelopes each.
func (s *Server) checkQueues(items []queued) error {
	var full []int
	for _, it := range items {
		f, err := s.store.queueFull(it.aci, it.dev, s.cfg.MaxQueue)
		if err != nil {
			return fmt.Errorf("count queue: %w", err)
		}
		if f {
			full = append(full, int(it.dev))
		}
	}
	if len(full) == 0 {
		return nil
	}
	e := fail(http.StatusInsufficientStorage, "queue full")
	e.body = map[string]any{"code": http.StatusInsufficientStorage,
		"message": "the recipient's message queue is full: it must fetch its messages first", "fullDevices": full}
	return e
}

// offers remembers which sessions got which envelopes of one send from
// memory, to take them back if the write fails. The writer may still call
// offer after a context ended the sender's wait, hence the lock.
type offers struct {
	mu    sync.Mutex
	keys  [][]byte
	sesss []*chatSession
}

func (o *offers) offer(sess *chatSession, g uint64, it queueItem) {
	o.mu.Lock()
	defer o.mu.Unlock()
	sess.offer(g, it)
	o.keys, o.sesss = append(o.keys, it.key), append(o.sesss, sess)
}

func (o *offers) withdraw() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, sess := range o.sesss {
		sess.withdraw(o.keys[i : i+1])
	}
}

// rateLimit takes a token of the account's send budget: 429 with
// Retry-After when it is spent, and 428 while the account owes an answer
// to a challenge (challenge.go).
func (s *Server) rateLimit(p *principal) error {
	acct := string(p.aci[:])
	if tok, ok := s.challenges.pendingFor(acct); ok {
		return challengeRequired(tok)
	}
	ok, wait := s.limiter.allow(acct)
	if ok {
		return nil
	}
	tok, err := s.challenges.refused(acct)
	if err != nil {
		return err
	}
	if tok != "" {
		s.log.Warn("account keeps sending while refused: it must answer a challenge",
			"account", p.aci.String(), "token", tok)
		return challengeRequired(tok)
	}
	return tooManyRequests(wait)
}

func nonNil(s []int) []int {
	if s == nil {
		return []int{}
	}
	return s
}
