package api

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/roster"
)

// Limits of one server.
const (
	maxConns       = 64 // connections at once
	maxInFlight    = 16 // requests of one connection handled at once
	eventBacklog   = 1024
	maxReasonBytes = 256
)

// Server answers API requests over a Backend.
type Server struct {
	backend Backend
	// approve: whoever connects may approve and decline; a socket that may
	// not asks and reads only, and a signing it asks for waits for a
	// person (or a rule) in this signer's queue.
	approve bool
	log     *slog.Logger

	mu    sync.Mutex
	conns int
}

// NewServer serves b; approve says whether callers may approve.
func NewServer(b Backend, approve bool, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{backend: b, approve: approve, log: log}
}

// Serve answers the connections of ln until ctx ends (it then closes ln
// and every connection, and waits for them).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("api: accept: %w", err)
		}
		s.mu.Lock()
		full := s.conns >= maxConns
		if !full {
			s.conns++
		}
		s.mu.Unlock()
		if full {
			s.log.Warn("api: too many connections, refusing one", "max", maxConns)
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				s.mu.Lock()
				s.conns--
				s.mu.Unlock()
			}()
			s.serveConn(ctx, c)
		}()
	}
}

// conn is one client connection: requests in, answers and notifications
// out, one writer at a time.
type conn struct {
	s    *Server
	c    net.Conn
	peer Peer
	wmu  sync.Mutex
	w    *bufio.Writer

	smu    sync.Mutex
	cancel context.CancelFunc // the subscription, if any

	hmu       sync.Mutex
	helloed   bool
	sshClient string // claimed by hello; "" none
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer c.Close()
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	cn := &conn{s: s, c: c, peer: peerOf(c), w: bufio.NewWriter(c)}
	s.log.Debug("api: client connected", "uid", cn.peer.UID, "pid", cn.peer.PID)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, maxInFlight)
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		line, err := readLine(r)
		if errors.Is(err, errLineTooLong) {
			cn.reply(nullID, nil, &Error{Code: CodeParse, Message: fmt.Sprintf("parse error: a line is at most %d bytes", MaxLine)})
			continue
		}
		if err != nil {
			return
		}
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		if isHello(line) {
			// Handled before the next line is read: a script may write its
			// answers right behind it, and they must carry the claim.
			cn.handle(ctx, line)
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			cn.handle(ctx, line)
		}()
	}
}

var errLineTooLong = errors.New("api: line too long")

// isHello reports whether a request line calls hello. A line that does not
// parse is not: handle answers it with the parse error.
func isHello(line []byte) bool {
	var m struct {
		Method string `json:"method"`
	}
	return json.Unmarshal(line, &m) == nil && m.Method == "hello"
}

// readLine reads one line of at most MaxLine bytes; a longer one is
// skipped to its end and reported.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > MaxLine {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}

// reply answers one request (nothing for a notification: id nil).
func (cn *conn) reply(id json.RawMessage, result any, rerr *Error) {
	if id == nil {
		return
	}
	resp := Response{JSONRPC: "2.0", ID: id, Error: rerr}
	if rerr == nil {
		b, err := json.Marshal(result)
		if err != nil {
			resp.Error = &Error{Code: CodeInternal, Message: "internal error: " + err.Error()}
		} else {
			resp.Result = b
		}
	}
	cn.write(resp)
}

func (cn *conn) write(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	cn.w.Write(b)
	cn.w.WriteByte('\n')
	cn.w.Flush()
}

func (cn *conn) handle(ctx context.Context, line []byte) {
	req, id, perr := parseRequest(line)
	if perr != nil {
		cn.reply(id, nil, perr)
		return
	}
	result, rerr := cn.dispatch(ctx, req)
	cn.reply(req.ID, result, rerr)
}

func (cn *conn) dispatch(ctx context.Context, req *Request) (any, *Error) {
	b := cn.s.backend
	switch req.Method {
	case MethodHello:
		var p HelloParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		return cn.hello(p)
	case MethodStatus:
		var p struct{}
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		return cn.status(ctx)
	case MethodMe:
		var p struct{}
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		card, err := json.Marshal(b.Identity())
		if err != nil {
			return nil, &Error{Code: CodeInternal, Message: "internal error: " + err.Error()}
		}
		return MeResult{Card: card}, nil
	case MethodRoster:
		var p struct{}
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		members, err := b.Roster(ctx)
		if err != nil {
			return nil, errorOf(err)
		}
		me := b.Identity()
		out := RosterResult{Signers: []Signer{}}
		for _, m := range members {
			out.Signers = append(out.Signers, Signer{Name: m.Card.Name, Account: m.Card.Account, Device: m.Card.Device,
				Fingerprint: m.Card.Fingerprint(), Verified: m.Verified, Blocked: m.Blocked(),
				Self: m.Card.Account == me.Account && m.Card.Device == me.Device})
		}
		return out, nil
	case MethodRosterAdd:
		var p RosterAddParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		c, err := roster.ParseCard(p.Card)
		if err != nil {
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: card: " + err.Error()}
		}
		if err := b.AddCard(ctx, *c, p.Verified); err != nil {
			return nil, errorOf(err)
		}
		return map[string]string{"name": c.Name}, nil
	case MethodRosterVerify:
		var p RosterVerifyParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		if err := b.VerifyCard(ctx, p.Name); err != nil {
			return nil, errorOf(err)
		}
		return struct{}{}, nil
	case MethodKeys:
		var p struct{}
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		keys, err := b.Keys(ctx)
		if err != nil {
			return nil, errorOf(err)
		}
		out := KeysResult{Keys: []Key{}}
		for _, k := range keys {
			out.Keys = append(out.Keys, Key{KeyID: hex.EncodeToString(k.KeyID[:]), GroupPublicKey: hex.EncodeToString(k.GroupKey),
				Threshold: k.T, Parties: k.N, Index: k.Self, Epoch: k.Epoch, HandedOver: k.HandedOver})
		}
		return out, nil
	case MethodKeygen:
		return cn.keygen(ctx, req.Params)
	case MethodSign:
		return cn.sign(ctx, req.Params)
	case MethodReshare:
		return cn.reshare(ctx, req.Params)
	case MethodKeyImport:
		return cn.keyImport(ctx, req.Params)
	case MethodWait:
		var p IDParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		id, e := parseID(p.ID)
		if e != nil {
			return nil, e
		}
		if r, err := b.WaitSignature(ctx, id); !errors.Is(err, core.ErrUnknown) {
			return signResult(id, r, err)
		}
		if r, err := b.WaitKeygen(ctx, id); !errors.Is(err, core.ErrUnknown) {
			return keygenResult(id, r, err)
		}
		r, err := b.WaitReshare(ctx, id)
		return reshareResult(id, r, err)
	case MethodApprovals:
		var p struct{}
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		list, err := b.Approvals(ctx)
		if err != nil {
			return nil, errorOf(err)
		}
		out := ApprovalsResult{Approvals: []Approval{}}
		for _, a := range list {
			ap := Approval{ID: hex.EncodeToString(a.ID[:]), Kind: a.Kind, Requester: a.Requester, SHA256: a.SHA256, Text: a.Text,
				Hex: a.Hex, Description: a.Description, Expires: a.Expires}
			if a.KeyID != ([32]byte{}) {
				ap.KeyID = hex.EncodeToString(a.KeyID[:])
			}
			out.Approvals = append(out.Approvals, ap)
		}
		return out, nil
	case MethodApprove, MethodDecline:
		return cn.decide(ctx, req)
	case MethodSignatures:
		var p SignaturesParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		if p.Limit < 0 {
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: limit must be 0 (all) or more"}
		}
		list, err := b.Signatures(ctx, p.Limit)
		if err != nil {
			return nil, errorOf(err)
		}
		if list == nil {
			list = []event.SignDone{}
		}
		return SignaturesResult{Signatures: list}, nil
	case MethodAudit:
		var p AuditParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		entries, head, err := b.Audit(ctx, p.Since)
		if err != nil {
			return nil, errorOf(err)
		}
		return AuditResultOf(entries, head), nil
	case MethodChallenge:
		var p ChallengeParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		if p.Token == "" || p.Code == "" {
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: token and code are required"}
		}
		if err := b.AnswerChallenge(ctx, p.Token, p.Code); err != nil {
			return nil, errorOf(err)
		}
		return struct{}{}, nil
	case MethodBackup:
		var p BackupParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		if p.Path == "" || !filepath.IsAbs(p.Path) {
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: path must be an absolute path"}
		}
		if !cn.s.approve {
			// It writes files as the co-signer's user.
			return nil, &Error{Code: CodeNotAllowed, Message: "this socket may not write backups (api.approve = false)"}
		}
		if err := b.Backup(ctx, p.Path, p.Replace); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return nil, &Error{Code: CodeRefused, Message: p.Path + " exists (replace: true replaces it)"}
			}
			return nil, errorOf(err)
		}
		cn.s.log.Info("api: backup written", "path", p.Path, "uid", cn.peer.UID)
		return struct{}{}, nil
	case MethodKeyExport:
		var p KeyExportParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		switch {
		case p.Path == "" || !filepath.IsAbs(p.Path):
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: path must be an absolute path"}
		case p.Password == "":
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: password is required"}
		case p.KDF != "" && p.KDF != "scrypt" && p.KDF != "pbkdf2":
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: kdf is scrypt or pbkdf2"}
		case !cn.s.approve:
			return nil, &Error{Code: CodeNotAllowed, Message: "this socket may not export key shares (api.approve = false)"}
		}
		var keyID [32]byte
		if p.Key != "" {
			var e *Error
			if keyID, e = cn.pickKey(ctx, p.Key); e != nil {
				return nil, e
			}
		}
		r, err := b.ExportKey(ctx, keyID, p.Path, p.Password, p.KDF)
		if err != nil {
			if errors.Is(err, fs.ErrExist) {
				return nil, &Error{Code: CodeRefused, Message: p.Path + " exists: the export never replaces a file"}
			}
			return nil, errorOf(err)
		}
		cn.s.log.Info("api: key share exported", "path", p.Path, "uid", cn.peer.UID, "user", cn.peer.User())
		return r, nil
	case MethodDeviceAdd:
		var p DeviceAddParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		if p.URL == "" {
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: url is required"}
		}
		if !cn.s.approve {
			return nil, &Error{Code: CodeNotAllowed, Message: "this socket may not add devices (api.approve = false)"}
		}
		if err := b.AddDevice(ctx, p.URL); err != nil {
			return nil, errorOf(err)
		}
		cn.s.log.Info("api: device added", "uid", cn.peer.UID, "user", cn.peer.User())
		return struct{}{}, nil
	case MethodSubscribe:
		var p struct{}
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		cn.subscribe(ctx)
		return map[string]bool{"subscribed": true}, nil
	case MethodUnsubscribe:
		cn.smu.Lock()
		if cn.cancel != nil {
			cn.cancel()
			cn.cancel = nil
		}
		cn.smu.Unlock()
		return map[string]bool{"subscribed": false}, nil
	}
	return nil, &Error{Code: CodeNoMethod, Message: fmt.Sprintf("method not found: %q (see docs/api.md)", req.Method)}
}

func (cn *conn) status(ctx context.Context) (any, *Error) {
	b := cn.s.backend
	keys, err := b.Keys(ctx)
	if err != nil {
		return nil, errorOf(err)
	}
	approvals, err := b.Approvals(ctx)
	if err != nil {
		return nil, errorOf(err)
	}
	me := b.Identity()
	res := StatusResult{APIVersion: Version, Name: me.Name, Account: me.Account, Device: me.Device, Connection: b.Connection(),
		Keys: len(keys), Approvals: len(approvals), CanApprove: cn.s.approve}
	if sb, ok := b.(ServersBackend); ok {
		if list := sb.Servers(); len(list) > 1 {
			res.Servers = list
		}
	}
	return res, nil
}

func (cn *conn) keygen(ctx context.Context, params json.RawMessage) (any, *Error) {
	var p KeygenParams
	if e := decodeParams(params, &p); e != nil {
		return nil, e
	}
	if p.Threshold < 1 {
		return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: threshold must be 1 or more"}
	}
	// Proposing accepts for this signer, except through a socket that may
	// not approve: the proposal then waits in this signer's queue too.
	id, err := cn.s.backend.BeginKeygen(core.WithCaller(ctx, cn.by()), p.Threshold, cn.s.approve)
	if err != nil {
		return nil, errorOf(err)
	}
	cn.s.log.Info("api: key generation proposed", "id", ceremony.ShortID(id), "uid", cn.peer.UID, "accepted_by_proposing", cn.s.approve)
	if !p.Wait {
		return KeygenResult{ID: hex.EncodeToString(id[:])}, nil
	}
	r, err := cn.s.backend.WaitKeygen(ctx, id)
	return keygenResult(id, r, err)
}

func keygenResult(id [32]byte, r *core.KeygenResult, err error) (any, *Error) {
	if err != nil {
		return nil, errorOf(err)
	}
	return KeygenResult{ID: hex.EncodeToString(id[:]), KeyID: hex.EncodeToString(r.KeyID[:]), GroupPublicKey: hex.EncodeToString(r.GroupKey),
		Threshold: r.T, Parties: r.N}, nil
}

func (cn *conn) sign(ctx context.Context, params json.RawMessage) (any, *Error) {
	var p SignParams
	if e := decodeParams(params, &p); e != nil {
		return nil, e
	}
	var msg []byte
	switch {
	case p.Hex != "" && p.Text != "":
		return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: give the message as hex or as text, not both"}
	case p.Hex != "":
		var err error
		if msg, err = hex.DecodeString(strings.TrimPrefix(p.Hex, "0x")); err != nil {
			return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: hex: not an even number of hex digits"}
		}
	case p.Text != "":
		msg = []byte(p.Text)
	default:
		return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: the message is missing (hex or text)"}
	}
	if !utf8.ValidString(p.Description) || len(p.Description) > 1024 {
		return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: description must be UTF-8 text of at most 1024 bytes"}
	}
	keyID, e := cn.pickKey(ctx, p.Key)
	if e != nil {
		return nil, e
	}
	id, err := cn.s.backend.BeginSignature(core.WithCaller(ctx, cn.by()), keyID, msg, p.Description, cn.s.approve)
	if err != nil {
		return nil, errorOf(err)
	}
	cn.s.log.Info("api: signature requested", "id", ceremony.ShortID(id), "uid", cn.peer.UID, "approved_by_asking", cn.s.approve)
	if !p.Wait {
		return SignResult{ID: hex.EncodeToString(id[:])}, nil
	}
	r, err := cn.s.backend.WaitSignature(ctx, id)
	return signResult(id, r, err)
}

func signResult(id [32]byte, r *core.SignResult, err error) (any, *Error) {
	if err != nil {
		return nil, errorOf(err)
	}
	return SignResult{ID: hex.EncodeToString(id[:]), GroupPublicKey: hex.EncodeToString(r.GroupKey), MessageHex: hex.EncodeToString(r.Message),
		Signature: hex.EncodeToString(r.Signature), Signers: nonNil(r.Signers), Blamed: nonNil(r.Blamed)}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// pickKey resolves a key id prefix (empty: the only key).
func (cn *conn) pickKey(ctx context.Context, prefix string) ([32]byte, *Error) {
	keys, err := cn.s.backend.Keys(ctx)
	if err != nil {
		return [32]byte{}, errorOf(err)
	}
	prefix = strings.ToLower(prefix)
	ids := make([][32]byte, len(keys))
	all := make([]string, len(keys))
	for i, k := range keys {
		ids[i], all[i] = k.KeyID, ceremony.ShortID(k.KeyID)
	}
	match := core.KeysWithPrefix(ids, prefix)
	switch {
	case len(keys) == 0:
		return [32]byte{}, &Error{Code: CodeNoKey, Message: "no key yet: generate one first (keygen)"}
	case len(match) == 1:
		return match[0], nil
	case len(match) == 0:
		return [32]byte{}, &Error{Code: CodeNoKey, Message: fmt.Sprintf("no key matches %q; keys: %s", prefix, strings.Join(all, ", "))}
	}
	return [32]byte{}, &Error{Code: CodeNoKey, Message: fmt.Sprintf("%d keys match %q; give a longer key id prefix", len(match), prefix)}
}

func (cn *conn) decide(ctx context.Context, req *Request) (any, *Error) {
	var idText, reason string
	if req.Method == MethodApprove {
		var p IDParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		idText = p.ID
	} else {
		var p DeclineParams
		if e := decodeParams(req.Params, &p); e != nil {
			return nil, e
		}
		if len(p.Reason) > maxReasonBytes || !utf8.ValidString(p.Reason) {
			return nil, &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("invalid params: reason must be UTF-8 text of at most %d bytes", maxReasonBytes)}
		}
		idText, reason = p.ID, p.Reason
	}
	id, e := parseID(idText)
	if e != nil {
		return nil, e
	}
	if !cn.s.approve {
		return nil, &Error{Code: CodeNotAllowed, Message: "this socket may not approve or decline (api.approve = false)"}
	}
	by := cn.by()
	var err error
	if req.Method == MethodApprove {
		err = cn.s.backend.ApproveAs(ctx, id, by)
	} else {
		err = cn.s.backend.DeclineAs(ctx, id, reason, by)
	}
	if err != nil {
		return nil, errorOf(err)
	}
	cn.s.log.Info("api: "+req.Method+"d", "id", ceremony.ShortID(id), "uid", cn.peer.UID, "user", cn.peer.User(), "pid", cn.peer.PID, "ssh_client", cn.claim())
	return struct{}{}, nil
}

// subscribe streams the backend's events to this connection as
// notifications until it closes or unsubscribes.
func (cn *conn) subscribe(ctx context.Context) {
	cn.smu.Lock()
	defer cn.smu.Unlock()
	if cn.cancel != nil {
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	cn.cancel = cancel
	sub := cn.s.backend.Subscribe(eventBacklog)
	go func() {
		defer sub.Close()
		for {
			e, err := sub.Next(sctx)
			if err != nil {
				return
			}
			typ := eventType(e)
			if typ == "" {
				continue
			}
			b, err := json.Marshal(e)
			if err != nil {
				continue
			}
			p, _ := json.Marshal(EventParams{Type: typ, Event: b})
			cn.write(Notification{JSONRPC: "2.0", Method: NotifyEvent, Params: p})
		}
	}()
}

func parseID(s string) ([32]byte, *Error) {
	id, err := core.ParseID(s)
	if err != nil {
		return id, &Error{Code: CodeInvalidParams, Message: "invalid params: id must be the full id, 64 hex digits"}
	}
	return id, nil
}

// errorOf maps the backend's errors to API errors.
func errorOf(err error) *Error {
	var ke *core.KeygenError
	var se *core.SignError
	switch {
	case errors.As(err, &ke):
		d, _ := json.Marshal(FailureData{Declined: errors.Is(err, core.ErrDeclined), Expired: errors.Is(err, core.ErrExpired),
			Blamed: ke.Blamed, Claimed: ke.Claimed})
		return &Error{Code: CodeFailed, Message: err.Error(), Data: d}
	case errors.As(err, &se):
		d, _ := json.Marshal(FailureData{Declined: len(se.Declined) > 0, Expired: se.Expired, Blamed: se.Blamed})
		return &Error{Code: CodeFailed, Message: err.Error(), Data: d}
	case errors.Is(err, core.ErrAuditBroken):
		var ae *core.AuditError
		var d json.RawMessage
		if errors.As(err, &ae) {
			d, _ = json.Marshal(map[string]uint64{"seq": ae.Seq})
		}
		return &Error{Code: CodeBroken, Message: err.Error(), Data: d}
	case errors.Is(err, core.ErrUnknown):
		return &Error{Code: CodeUnknown, Message: err.Error()}
	case errors.Is(err, core.ErrEnded):
		return &Error{Code: CodeEnded, Message: err.Error()}
	case errors.Is(err, core.ErrNoKey):
		return &Error{Code: CodeNoKey, Message: err.Error()}
	case errors.Is(err, core.ErrStopped), errors.Is(err, core.ErrStoreFailed), errors.Is(err, context.Canceled):
		return &Error{Code: CodeStopped, Message: err.Error()}
	case errors.Is(err, roster.ErrKeyChanged), errors.Is(err, roster.ErrNameTaken), errors.Is(err, roster.ErrUnknown),
		errors.Is(err, core.ErrConfig), errors.Is(err, ceremony.ErrDecided):
		return &Error{Code: CodeRefused, Message: err.Error()}
	}
	return &Error{Code: CodeRefused, Message: err.Error()}
}
