package ceremony

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/dkg"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
)

// console is one simulated co-signer: its console key, and after keygen its
// key record and share.
type console struct {
	idx    uint32
	key    ed25519.PrivateKey
	kg     *KeygenSession
	rec    *Key
	share  *share.Share
	signs  map[[32]byte]*SignSession
	errors []error
}

type bus struct {
	t        *testing.T
	consoles []*console
	queue    []delivery
	drop     func(d delivery) bool
	tamper   func(d delivery) []byte
}

type delivery struct {
	from, to uint32
	env      []byte
}

func (b *bus) send(from uint32, out []Outgoing) {
	for _, o := range out {
		for _, c := range b.consoles {
			if c.idx == from || (o.To != 0 && o.To != c.idx) {
				continue
			}
			b.queue = append(b.queue, delivery{from, c.idx, o.Envelope})
		}
	}
}

// run delivers everything; route decides which session of the recipient
// gets the envelope (or opens one).
func (b *bus) run(route func(c *console, env []byte) ([]Outgoing, error)) {
	for steps := 0; len(b.queue) > 0; steps++ {
		if steps > 100000 {
			b.t.Fatal("bus does not settle")
		}
		d := b.queue[0]
		b.queue = b.queue[1:]
		if b.drop != nil && b.drop(d) {
			continue
		}
		env := d.env
		if b.tamper != nil {
			env = b.tamper(d)
		}
		c := b.consoles[d.to-1]
		out, err := route(c, env)
		if err != nil {
			c.errors = append(c.errors, err)
		}
		b.send(c.idx, out)
	}
}

func setupConsoles(t *testing.T, name string, n int) ([]*console, *dkg.Proposal) {
	t.Helper()
	cs := make([]*console, n)
	parties := make([]dkg.Party, n)
	keys := map[string]ed25519.PrivateKey{}
	for i := range n {
		seed := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", name, i)))
		k := ed25519.NewKeyFromSeed(seed[:])
		acct := fmt.Sprintf("%08x-0000-4000-8000-%012d", i, i)
		keys[acct] = k
		parties[i] = dkg.Party{Account: acct, Device: 2, IdentityKey: append([]byte{5}, seed[:]...), ConsoleKey: k.Public().(ed25519.PublicKey)}
	}
	dkg.SortParties(parties)
	for i := range cs {
		cs[i] = &console{idx: uint32(i + 1), key: keys[parties[i].Account], signs: map[[32]byte]*SignSession{}}
	}
	prop := &dkg.Proposal{Threshold: 2, Parties: parties, RoundTimeout: time.Minute, Initiator: 1, Created: time.Unix(1_800_000_000, 0)}
	copy(prop.Nonce[:], name)
	return cs, prop
}

func seedOf(name string, i uint32) [32]byte {
	return sha256.Sum256([]byte(fmt.Sprintf("%s/seed/%d", name, i)))
}

// keygen runs a DKG between the consoles, each human accepting.
func keygen(t *testing.T, name string, n, th int) []*console {
	t.Helper()
	cs, prop := setupConsoles(t, name, n)
	prop.Threshold = th
	pinned := slices.Clone(prop.Parties)
	trust := func(p *dkg.Proposal) error {
		if !slices.EqualFunc(p.Parties, pinned, func(a, b dkg.Party) bool {
			return a.Account == b.Account && a.Device == b.Device && bytes.Equal(a.ConsoleKey, b.ConsoleKey) && bytes.Equal(a.IdentityKey, b.IdentityKey)
		}) {
			return errors.New("roster differs from the pinned one")
		}
		return nil
	}
	b := &bus{t: t, consoles: cs}
	kg, out, err := ProposeKeygen(prop, cs[0].key, seedOf(name, 1))
	if err != nil {
		t.Fatal(err)
	}
	cs[0].kg = kg
	b.send(1, out)
	b.run(func(c *console, env []byte) ([]Outgoing, error) {
		if c.kg == nil {
			kg, err := OpenKeygenProposal(env, c.key, seedOf(name, c.idx), trust)
			if err != nil {
				return nil, err
			}
			c.kg = kg
			return kg.Accept() // the human accepts
		}
		return c.kg.Handle(env)
	})
	for _, c := range cs {
		if !c.kg.Done() {
			t.Fatalf("console %d: keygen not done: %v %+v (errors %v)", c.idx, c.kg.Err(), c.kg.Progress(), c.errors)
		}
		rec, sh, err := c.kg.Result()
		if err != nil {
			t.Fatal(err)
		}
		c.rec, c.share = rec, sh
		if rec.ID != cs[0].rec.ID {
			t.Fatalf("console %d holds another key", c.idx)
		}
	}
	return cs
}

func signCfg(c *console) SignConfig {
	return SignConfig{Key: c.rec, Self: c.idx, Share: c.share, ConsoleKey: c.key}
}

// signRoute opens sessions for requests and lets decide answer them.
func signRoute(t *testing.T, decide func(c *console, s *SignSession) ([]Outgoing, error)) func(c *console, env []byte) ([]Outgoing, error) {
	return func(c *console, env []byte) ([]Outgoing, error) {
		e, err := wire.Decode(env)
		if err != nil {
			return nil, err
		}
		if s, ok := c.signs[e.Ceremony]; ok {
			return s.Handle(env)
		}
		s, err := OpenSignRequest(signCfg(c), env)
		if err != nil {
			return nil, err
		}
		c.signs[e.Ceremony] = s
		return decide(c, s)
	}
}

func requestID(name string) [32]byte { return sha256.Sum256([]byte("request/" + name)) }

func startRequest(t *testing.T, b *bus, c *console, name string, msg []byte) *SignSession {
	t.Helper()
	s, out, err := NewSignRequest(signCfg(c), requestID(name), tbls.Request{Message: msg, Description: name, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	c.signs[s.ID()] = s
	b.send(c.idx, out)
	return s
}

func TestKeygenThenSigningApprovedByTwoAndDeclinedByOne(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "happy", 3, 2)
	b := &bus{t: t, consoles: cs}
	msg := []byte("withdraw 32 ETH to validator 7")
	startRequest(t, b, cs[1], "happy", msg)
	b.run(signRoute(t, func(c *console, s *SignSession) ([]Outgoing, error) {
		if c.idx == 3 {
			return s.Decline("I do not recognise this withdrawal")
		}
		return s.Approve()
	}))
	for _, c := range cs {
		s := c.signs[requestID("happy")]
		p := s.Progress()
		if p.Outcome != OutcomeSigned {
			t.Fatalf("console %d: %+v", c.idx, p)
		}
		if err := bls.Verify(c.rec.Group.Key, msg, s.Result().Signature); err != nil {
			t.Fatalf("console %d: signature does not verify: %v", c.idx, err)
		}
		if !slices.Equal(s.Result().Signers, []uint32{1, 2}) {
			t.Fatalf("console %d: signers %v", c.idx, s.Result().Signers)
		}
	}
	if d := cs[2].signs[requestID("happy")].Progress().Decision; d != DecisionDeclined {
		t.Fatalf("console 3 decision %s", d)
	}
}

func TestEveryPairOfApproversGivesTheSameSignature(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "pairs", 3, 2)
	msg := []byte("same message, any two signers")
	var sigs [][]byte
	for _, pair := range [][2]uint32{{1, 2}, {1, 3}, {2, 3}} {
		name := fmt.Sprintf("pair-%d-%d", pair[0], pair[1])
		b := &bus{t: t, consoles: cs}
		startRequest(t, b, cs[pair[0]-1], name, msg)
		b.run(signRoute(t, func(c *console, s *SignSession) ([]Outgoing, error) {
			if c.idx == pair[1] {
				return s.Approve()
			}
			return s.Decline("not me")
		}))
		r := cs[pair[0]-1].signs[requestID(name)].Result()
		if r == nil || !slices.Equal(r.Signers, pair[:]) {
			t.Fatalf("pair %v: result %+v", pair, r)
		}
		sigs = append(sigs, r.Signature.Bytes())
	}
	if !bytes.Equal(sigs[0], sigs[1]) || !bytes.Equal(sigs[1], sigs[2]) {
		t.Fatal("different approver pairs gave different signatures")
	}
}

func TestBadPartialIsBlamedAndTheOthersStillSign(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "bad-partial", 3, 2)
	b := &bus{t: t, consoles: cs}
	// Console 2's partial is over another message: a valid point, signed by
	// console 2, but wrong.
	b.tamper = func(d delivery) []byte {
		e, _ := wire.Decode(d.env)
		if d.from != 2 || e.Kind != wire.KindPartial {
			return d.env
		}
		p, _ := tbls.Sign(cs[1].share, []byte("something else"))
		e.Payload, _ = tbls.EncodePartial(p)
		raw, _ := wire.Seal(e, cs[1].key)
		return raw
	}
	msg := []byte("pay the auditors")
	startRequest(t, b, cs[0], "bad-partial", msg)
	// Console 2 answers first, console 3 afterwards.
	b.run(signRoute(t, func(c *console, s *SignSession) ([]Outgoing, error) { return s.Approve() }))
	s := cs[0].signs[requestID("bad-partial")]
	p := s.Progress()
	if p.Outcome != OutcomeSigned || !slices.Equal(p.Blamed, []uint32{2}) {
		t.Fatalf("requester: %+v", p)
	}
	if !slices.Equal(s.Result().Signers, []uint32{1, 3}) {
		t.Fatalf("signers %v", s.Result().Signers)
	}
	ev := s.Evidence()[2]
	if len(ev) != 1 {
		t.Fatalf("evidence %d envelopes", len(ev))
	}
	// The evidence convicts on its own: signed by console 2, and its partial
	// does not verify against console 2's public share.
	e, err := wire.Open(ev[0], s.cfg.Key.consoleKey)
	if err != nil || e.From != 2 {
		t.Fatalf("evidence: %v", err)
	}
	bad, _ := tbls.DecodePartial(2, e.Payload)
	if err := s.cfg.Key.Group.VerifyPartial(tbls.HashMessage(msg), bad); !errors.Is(err, tbls.ErrBadPartial) {
		t.Fatalf("evidence partial verifies: %v", err)
	}
}

func TestDeclinesBeyondNMinusTFailTheRequest(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "declined", 3, 2)
	b := &bus{t: t, consoles: cs}
	startRequest(t, b, cs[0], "declined", []byte("no"))
	b.run(signRoute(t, func(c *console, s *SignSession) ([]Outgoing, error) { return s.Decline("no") }))
	for _, c := range cs {
		p := c.signs[requestID("declined")].Progress()
		if p.Outcome != OutcomeFailed || !slices.Equal(p.Declined, []uint32{2, 3}) || p.Expired {
			t.Fatalf("console %d: %+v", c.idx, p)
		}
	}
}

func TestUnansweredRequestExpiresAsADecline(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "expiry", 3, 2)
	b := &bus{t: t, consoles: cs}
	s0 := startRequest(t, b, cs[0], "expiry", []byte("late"))
	b.run(signRoute(t, func(c *console, s *SignSession) ([]Outgoing, error) { return nil, nil }))
	s2 := cs[1].signs[requestID("expiry")]
	if out, _ := s2.Tick(time.Now()); out != nil {
		t.Fatal("declined before the expiry")
	}
	out, err := s2.Tick(s0.Request().Expires)
	if err != nil || len(out) != 1 || out[0].Kind != wire.KindDecline {
		t.Fatalf("expiry sent %v (%v), want one decline", out, err)
	}
	if p := s2.Progress(); p.Decision != DecisionExpired || p.Outcome != OutcomeFailed || !p.Expired {
		t.Fatalf("after expiry: %+v", p)
	}
	if _, err := s2.Approve(); !errors.Is(err, ErrDecided) {
		t.Fatalf("approve after expiry: %v", err)
	}
}

func TestReplaysDuplicatesAndForeignMessagesChangeNothing(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "replay", 3, 2)
	b := &bus{t: t, consoles: cs}
	var all [][]byte
	b.tamper = func(d delivery) []byte { all = append(all, d.env); return d.env }
	startRequest(t, b, cs[0], "replay", []byte("once"))
	b.run(signRoute(t, func(c *console, s *SignSession) ([]Outgoing, error) { return s.Approve() }))
	// At the requester, which got every message of the request (partials
	// go to it alone).
	s := cs[0].signs[requestID("replay")]
	before := s.Progress()
	for _, env := range all {
		if _, err := s.Handle(env); err == nil {
			e, _ := wire.Decode(env)
			if e.From != 1 {
				t.Fatalf("replayed %s accepted again", e.Kind)
			}
		}
	}
	if after := s.Progress(); !slices.Equal(after.Approved, before.Approved) || after.Outcome != before.Outcome {
		t.Fatalf("replays changed the session: %+v -> %+v", before, after)
	}
	// A request made under another key is refused outright.
	other := keygen(t, "other-group", 3, 2)
	_, out, _ := NewSignRequest(signCfg(other[0]), requestID("x"), tbls.Request{Message: []byte("m"), Expires: time.Now().Add(time.Hour)})
	if _, err := OpenSignRequest(signCfg(cs[1]), out[0].Envelope); err == nil {
		t.Fatal("request from another group accepted")
	}
}

func TestProposalFromOutsideThePinnedRosterIsRefused(t *testing.T) {
	t.Parallel()
	cs, prop := setupConsoles(t, "intruder", 3)
	// An intruder replaces console 3's console key with its own and proposes.
	intruder := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	pinned := slices.Clone(prop.Parties)
	evil := *prop
	evil.Parties = slices.Clone(prop.Parties)
	evil.Parties[2].ConsoleKey = intruder.Public().(ed25519.PublicKey)
	evil.Initiator = 3
	_, out, err := ProposeKeygen(&evil, intruder, seedOf("intruder", 3))
	if err != nil {
		t.Fatal(err)
	}
	trust := func(p *dkg.Proposal) error {
		for i := range p.Parties {
			if !bytes.Equal(p.Parties[i].ConsoleKey, pinned[i].ConsoleKey) {
				return fmt.Errorf("party %d's console key changed", i+1)
			}
		}
		return nil
	}
	if _, err := OpenKeygenProposal(out[0].Envelope, cs[0].key, seedOf("intruder", 1), trust); !errors.Is(err, ErrUntrustedProposal) {
		t.Fatalf("err = %v, want ErrUntrustedProposal", err)
	}
}

// A result is a claim: a console that did not combine itself verifies it,
// and a forged one blames the requester instead of being shown as signed.
func TestForgedResultIsRefusedAndBlamed(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "forged-result", 3, 2)
	b := &bus{t: t, consoles: cs}
	b.tamper = func(d delivery) []byte {
		e, _ := wire.Decode(d.env)
		if d.to == 3 && e.Kind == wire.KindPartial {
			return nil // console 3 never sees the partials
		}
		if d.to == 3 && e.Kind == wire.KindSignResult {
			other, _ := tbls.Sign(cs[0].share, []byte("something else"))
			sig, _ := bls.NewSignature(&other.Sig)
			e.Payload, _ = (&tbls.SignResult{Signature: sig, Signers: []uint32{1, 2}}).Encode()
			raw, _ := wire.Seal(e, cs[0].key)
			return raw
		}
		return d.env
	}
	startRequest(t, b, cs[0], "forged-result", []byte("real message"))
	b.run(func(c *console, env []byte) ([]Outgoing, error) {
		if env == nil {
			return nil, nil
		}
		return signRoute(t, func(c *console, s *SignSession) ([]Outgoing, error) {
			if c.idx == 2 {
				return s.Approve()
			}
			return nil, nil
		})(c, env)
	})
	if p := cs[0].signs[requestID("forged-result")].Progress(); p.Outcome != OutcomeSigned {
		t.Fatalf("requester: %+v", p)
	}
	p := cs[2].signs[requestID("forged-result")].Progress()
	if p.Outcome == OutcomeSigned || !slices.Equal(p.Blamed, []uint32{1}) {
		t.Fatalf("console 3 took a forged result: %+v", p)
	}
}

// A console that did not ask sees its own answer, the declines (they are
// broadcasts) and the result, never the partials, which go to the
// requester: it does not list the requester, or anyone whose partial it
// would never see, as waiting.
func TestProgressShowsOnlyWhatThisConsoleCanSee(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "visible", 4, 3)
	b := &bus{t: t, consoles: cs}
	startRequest(t, b, cs[0], "visible", []byte("pay"))
	b.run(signRoute(t, func(c *console, s *SignSession) ([]Outgoing, error) {
		switch c.idx {
		case 2:
			return s.Approve()
		case 3:
			return s.Decline("no")
		}
		return nil, nil // console 4's human is away
	}))
	tests := []struct {
		console                             int
		approved, declined, waiting, unseen []uint32
	}{
		{1, []uint32{1, 2}, []uint32{3}, []uint32{4}, nil},
		{2, []uint32{2}, []uint32{3}, nil, []uint32{1, 4}},
		{3, nil, []uint32{3}, nil, []uint32{1, 2, 4}},
		{4, nil, []uint32{3}, []uint32{4}, []uint32{1, 2}},
	}
	for _, tt := range tests {
		p := cs[tt.console-1].signs[requestID("visible")].Progress()
		if p.Outcome != OutcomeCollecting || !slices.Equal(p.Approved, tt.approved) || !slices.Equal(p.Declined, tt.declined) ||
			!slices.Equal(p.Waiting, tt.waiting) || !slices.Equal(p.Unseen, tt.unseen) {
			t.Errorf("console %d: %+v, want approved %v declined %v waiting %v unseen %v",
				tt.console, p, tt.approved, tt.declined, tt.waiting, tt.unseen)
		}
	}
	// Console 4 approves: the request is signed, and every console lists
	// the signers, none of them as unseen or waiting.
	s4 := cs[3].signs[requestID("visible")]
	out, err := s4.Approve()
	if err != nil {
		t.Fatal(err)
	}
	b.send(4, out)
	b.run(signRoute(t, nil))
	for _, c := range cs {
		p := c.signs[requestID("visible")].Progress()
		if p.Outcome != OutcomeSigned || !slices.Equal(p.Approved, []uint32{1, 2, 4}) || len(p.Waiting) != 0 || len(p.Unseen) != 0 {
			t.Errorf("console %d after the result: %+v", c.idx, p)
		}
	}
}

// A result whose signature verifies but whose party lists an honest
// requester could not have sent (a signer that declined, more or fewer than
// t signers, a party outside the roster, a signer also blamed) is refused
// and its sender blamed: it would show signers who did not sign.
func TestResultWithImpossibleSignersIsRefusedAndBlamed(t *testing.T) {
	t.Parallel()
	cs := keygen(t, "wrong-signers", 3, 2)
	tests := []struct {
		name            string
		signers, blamed []uint32
		// want: signed, or failed (console 3 declined; the requester
		// blamed, t can no longer be reached).
		want Outcome
	}{
		{name: "the real lists", signers: []uint32{1, 2}, want: OutcomeSigned},
		{name: "the declining party as a signer", signers: []uint32{1, 3}, want: OutcomeFailed},
		{name: "more than t signers", signers: []uint32{1, 2, 3}, want: OutcomeFailed},
		{name: "fewer than t signers", signers: []uint32{1}, want: OutcomeFailed},
		{name: "a signer outside the roster", signers: []uint32{1, 9}, want: OutcomeFailed},
		{name: "a signer also blamed", signers: []uint32{1, 2}, blamed: []uint32{2}, want: OutcomeFailed},
		{name: "a blamed party outside the roster", signers: []uint32{1, 2}, blamed: []uint32{7}, want: OutcomeFailed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("wrong-signers/%d", i)
			b := &bus{t: t, consoles: cs}
			b.tamper = func(d delivery) []byte {
				e, _ := wire.Decode(d.env)
				if d.to != 3 || e.Kind != wire.KindSignResult {
					return d.env
				}
				m, err := tbls.DecodeSignResult(e.Payload)
				if err != nil {
					t.Fatal(err)
				}
				// The real signature, other lists.
				e.Payload, _ = (&tbls.SignResult{Signature: m.Signature, Signers: tt.signers, Blamed: tt.blamed}).Encode()
				raw, _ := wire.Seal(e, cs[0].key)
				return raw
			}
			startRequest(t, b, cs[0], name, []byte("real message"))
			b.run(signRoute(t, func(c *console, s *SignSession) ([]Outgoing, error) {
				if c.idx == 2 {
					return s.Approve()
				}
				return s.Decline("no")
			}))
			if p := cs[0].signs[requestID(name)].Progress(); p.Outcome != OutcomeSigned {
				t.Fatalf("requester: %+v", p)
			}
			p := cs[2].signs[requestID(name)].Progress()
			switch {
			case p.Outcome != tt.want:
				t.Fatalf("console 3: outcome %s, want %s (%+v)", p.Outcome, tt.want, p)
			case tt.want == OutcomeSigned && len(p.Blamed) != 0:
				t.Fatalf("console 3 blamed %v for the real result", p.Blamed)
			case tt.want != OutcomeSigned && !slices.Equal(p.Blamed, []uint32{1}):
				t.Fatalf("console 3 took the result: %+v", p)
			}
		})
	}
}

// A party that signs both a decline and a partial for one request is
// blamed with the two envelopes as evidence, whichever came first; the
// first answer is not replaced by the second.
func TestDeclineAndPartialFromOnePartyAreEquivocation(t *testing.T) {
	t.Parallel()
	// 3-of-3: the requester's partial and one more do not complete it, so
	// the second answer still reaches an open request.
	cs := keygen(t, "decline-and-partial", 3, 3)
	for i, declineFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("decline first %v", declineFirst), func(t *testing.T) {
			name := fmt.Sprintf("decline-and-partial/%d", i)
			b := &bus{t: t, consoles: cs}
			var other []byte
			s := startRequest(t, b, cs[0], name, []byte("one request"))
			b.run(signRoute(t, func(c *console, sess *SignSession) ([]Outgoing, error) {
				if c.idx != 2 {
					return nil, nil // console 3 leaves it pending
				}
				// Console 2 answers both ways: its session gives the first
				// answer, the second is signed by hand.
				var out []Outgoing
				var err error
				var kind wire.Kind
				var payload []byte
				if declineFirst {
					out, err = sess.Decline("no")
					p, _ := tbls.Sign(c.share, []byte("one request"))
					kind, payload = wire.KindPartial, must(tbls.EncodePartial(p))
				} else {
					out, err = sess.Approve()
					kind, payload = wire.KindDecline, must((&tbls.Decline{Reason: "no"}).Encode())
				}
				if err != nil {
					return nil, err
				}
				other, err = wire.Seal(&wire.Envelope{Kind: kind, Ceremony: sess.ID(), Round: SignRoundAnswer, From: 2, Payload: payload}, c.key)
				if err != nil {
					return nil, err
				}
				return append(out, Outgoing{To: 1, Kind: kind, Round: SignRoundAnswer, Envelope: other}), nil
			}))
			p := s.Progress()
			if !slices.Equal(p.Blamed, []uint32{2}) || p.Outcome != OutcomeFailed {
				t.Fatalf("requester: %+v; want party 2 blamed and the request failed", p)
			}
			ev := s.Evidence()[2]
			if len(ev) != 2 || !bytes.Equal(ev[1], other) {
				t.Fatalf("evidence: %d envelopes, want the two answers", len(ev))
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
