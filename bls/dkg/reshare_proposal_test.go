package dkg

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
)

func TestReshareProposalRoundTripsAndIsValidated(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "proposal", h, []int{1, 3}, 3, []int{1, 3, 4, 5})
	imp := proposeImport(t, "proposal-import", importVectorSecret(t), 2, []int{1, 2, 3})
	for name, p := range map[string]*ReshareProposal{"reshare": prop, "import": imp} {
		b, err := p.Encode()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := DecodeReshareProposal(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if b2, _ := got.Encode(); !bytes.Equal(b, b2) {
			t.Fatalf("%s: does not round-trip", name)
		}
		if id1, _ := p.ID(); id1 != mustID(t, got) {
			t.Fatalf("%s: ids differ", name)
		}
		if _, err := DecodeReshareProposal(append(b, 0)); err == nil {
			t.Fatalf("%s: trailing byte accepted", name)
		}
	}
	other := dealtKey(t, 2, []int{1, 2, 3})
	cases := map[string]func(p *ReshareProposal){
		"t' = 0":                      func(p *ReshareProposal) { p.Threshold = 0 },
		"t' > n'":                     func(p *ReshareProposal) { p.Threshold = 5 },
		"fewer dealers than t":        func(p *ReshareProposal) { p.Dealers = []uint32{1} },
		"dealer not in the old group": func(p *ReshareProposal) { p.Dealers = []uint32{1, 4} },
		"dealers not ascending":       func(p *ReshareProposal) { p.Dealers = []uint32{3, 1} },
		"key id of another key":       func(p *ReshareProposal) { p.KeyID[0] ^= 1 },
		"group key not A_0": func(p *ReshareProposal) {
			p.GroupKey = other.key
			p.KeyID = mustKeyID(other.key)
		},
		"public share off the polynomial": func(p *ReshareProposal) {
			o := *p.Old
			o.PublicShares = slices.Clone(o.PublicShares)
			o.PublicShares[1] = other.old.PublicShares[1]
			p.Old = &o
		},
		"too few public shares": func(p *ReshareProposal) {
			o := *p.Old
			o.PublicShares = o.PublicShares[:2]
			p.Old = &o
		},
		"changed console key of a staying dealer": func(p *ReshareProposal) {
			p.Parties = slices.Clone(p.Parties)
			p.Parties[0].IdentityKey = []byte{9}
		},
		"no old group":        func(p *ReshareProposal) { p.Old = nil },
		"import with a group": func(p *ReshareProposal) { p.Import = true },
		"initiator unknown":   func(p *ReshareProposal) { p.Initiator = 9 },
		"no timeout":          func(p *ReshareProposal) { p.RoundTimeout = 0 },
		"last epoch":          func(p *ReshareProposal) { p.Epoch = ^uint32(0) },
	}
	for name, mut := range cases {
		c := *prop
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrProposal) {
			t.Errorf("%s: err = %v, want ErrProposal", name, err)
		}
		if _, err := c.Encode(); err == nil {
			t.Errorf("%s: an invalid proposal encoded", name)
		}
	}
	c := *imp
	c.Initiator = 4
	if err := c.Validate(); !errors.Is(err, ErrProposal) {
		t.Errorf("import dealer outside the group: %v", err)
	}
}

func mustID(t *testing.T, p *ReshareProposal) [32]byte {
	t.Helper()
	id, err := p.ID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustKeyID(k *bls.PublicKey) [32]byte { return tbls.KeyID(k) }

func TestAnOldSignerRefusesARecordOtherThanItsOwn(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "record", h, []int{1, 2, 3}, 2, []int{1, 2, 3})
	if err := prop.CheckRecord(prop.KeyID, h.epoch, h.old); err != nil {
		t.Fatalf("own record refused: %v", err)
	}
	// The same key, but this console's record has other public shares
	// (another keygen's record, or a tampered proposal).
	other := dealtKey(t, 2, []int{1, 2, 3})
	changed := *h.old
	changed.Parties = slices.Clone(changed.Parties)
	changed.Parties[2].Device = 7
	cases := map[string]struct {
		id    [32]byte
		epoch uint32
		local *OldGroup
	}{
		"another key":    {mustKeyID(other.key), 0, h.old},
		"another epoch":  {prop.KeyID, 1, h.old},
		"another group":  {prop.KeyID, 0, other.old},
		"another roster": {prop.KeyID, 0, &changed},
		"no record":      {prop.KeyID, 0, nil},
	}
	for name, tc := range cases {
		if err := prop.CheckRecord(tc.id, tc.epoch, tc.local); !errors.Is(err, ErrRecordMismatch) {
			t.Errorf("%s: err = %v, want ErrRecordMismatch", name, err)
		}
	}
}

func TestReshareConfigIsChecked(t *testing.T) {
	t.Parallel()
	h := dealtKey(t, 2, []int{1, 2, 3})
	prop := proposeReshare(t, "config", h, []int{1, 2}, 2, []int{1, 2, 3, 4})
	_, k1 := console(1)
	_, k2 := console(2)
	s1 := h.shares[1]
	s3 := h.shares[3]
	wrong := share.Share{Index: 1, Value: *bls.ScalarFromUint64(5)}
	cases := map[string]ReshareConfig{
		"no proposal":                 {Self: 1, Key: k1, Seed: reshareSeed("x", 1), OldShare: &s1},
		"self 0":                      {Proposal: prop, Key: k1, Seed: reshareSeed("x", 1), OldShare: &s1},
		"self beyond participants":    {Proposal: prop, Self: 9, Key: k1, Seed: reshareSeed("x", 1)},
		"someone else's console key":  {Proposal: prop, Self: 1, Key: k2, Seed: reshareSeed("x", 1), OldShare: &s1},
		"zero seed":                   {Proposal: prop, Self: 1, Key: k1, OldShare: &s1},
		"dealer without its share":    {Proposal: prop, Self: 1, Key: k1, Seed: reshareSeed("x", 1)},
		"dealer with another's share": {Proposal: prop, Self: 1, Key: k1, Seed: reshareSeed("x", 1), OldShare: &s3},
		"dealer with a wrong share":   {Proposal: prop, Self: 1, Key: k1, Seed: reshareSeed("x", 1), OldShare: &wrong},
	}
	for name, cfg := range cases {
		if _, err := NewReshare(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
	_, k3 := console(3)
	if _, err := NewReshare(ReshareConfig{Proposal: prop, Self: 3, Key: k3, Seed: reshareSeed("x", 3), OldShare: &s3}); !errors.Is(err, ErrConfig) {
		t.Errorf("a party that does not deal was given its old share: %v", err)
	}
}

func TestATooLargeReshareIsRefused(t *testing.T) {
	t.Parallel()
	if err := checkReshareSize(100, 150, 20); !errors.Is(err, ErrProposal) {
		t.Fatalf("20 dealers to 100-of-150: %v", err)
	}
	if err := checkReshareSize(10, 15, 10); err != nil {
		t.Fatalf("10-of-15 from 10 dealers: %v", err)
	}
}
