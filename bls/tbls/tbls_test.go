package tbls_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/internal/vectors"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
)

func TestThresholdVectors(t *testing.T) {
	t.Parallel()
	f, err := vectors.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range f.Threshold {
		name := fmt.Sprintf("%d-of-%d", v.T, v.N)
		enc := make([][]byte, len(v.Commitments))
		for i := range v.Commitments {
			enc[i] = v.Commitments[i]
		}
		comms, err := share.CommitmentsFromBytes(enc, v.T)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		group, err := tbls.NewGroup(comms, v.N)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(group.Key.Bytes(), v.GroupPK) {
			t.Fatalf("%s: group key %x, want %x", name, group.Key.Bytes(), v.GroupPK)
		}
		pop, err := bls.SignatureFromBytes(v.GroupPop)
		if err != nil {
			t.Fatal(err)
		}
		if err := bls.PopVerify(group.Key, pop); err != nil {
			t.Errorf("%s: group PoP: %v", name, err)
		}
		h := tbls.HashMessage(v.Msg)
		var partials []*tbls.Partial
		for _, s := range v.Shares {
			x, err := bls.SecretScalarFromBytes(s.SK)
			if err != nil {
				t.Fatal(err)
			}
			mine, err := tbls.Sign(&share.Share{Index: uint32(s.Index), Value: *x}, v.Msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mine.Bytes(), s.Partial) {
				t.Errorf("%s: partial %d = %x, want %x", name, s.Index, mine.Bytes(), s.Partial)
			}
			theirs, err := tbls.PartialFromBytes(uint32(s.Index), s.Partial)
			if err != nil {
				t.Fatal(err)
			}
			if err := group.VerifyPartial(h, theirs); err != nil {
				t.Errorf("%s: partial %d: %v", name, s.Index, err)
			}
			if slices.Contains(v.Signers, s.Index) {
				partials = append(partials, theirs)
			}
		}
		res, err := group.Combine(v.Msg, partials)
		if err != nil {
			t.Fatalf("%s: combine: %v", name, err)
		}
		if !bytes.Equal(res.Signature.Bytes(), v.Combined) {
			t.Errorf("%s: combined %x, want %x", name, res.Signature.Bytes(), v.Combined)
		}
		want := make([]uint32, len(v.Signers))
		for i, s := range v.Signers {
			want[i] = uint32(s)
		}
		if !slices.Equal(res.Signers, want) {
			t.Errorf("%s: signers %v, want %v", name, res.Signers, want)
		}
		if err := bls.VerifyBytes(v.GroupPK, v.Msg, res.Signature.Bytes()); err != nil {
			t.Errorf("%s: combined signature does not verify: %v", name, err)
		}
	}
}

// dealt is a trusted-dealer setup for tests (the DKG tests cover the real
// key generation).
func dealt(t testing.TB, th, n int) (*tbls.Group, []share.Share, *bls.SecretKey) {
	t.Helper()
	p, err := share.NewRandomPoly(th, nil)
	if err != nil {
		t.Fatal(err)
	}
	shares, err := p.Deal(n)
	if err != nil {
		t.Fatal(err)
	}
	g, err := tbls.NewGroup(p.Commit(), n)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := bls.NewSecretKey(p.Secret())
	if err != nil {
		t.Fatal(err)
	}
	return g, shares, sk
}

func TestAnyTPartialsGiveTheSameSignatureAndTMinusOneDoNot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ t, n int }{{2, 3}, {3, 5}, {4, 6}} {
		g, shares, sk := dealt(t, tc.t, tc.n)
		msg := []byte("pay 1 ETH to vitalik.eth")
		partials := make([]*tbls.Partial, tc.n)
		for i := range shares {
			p, err := tbls.Sign(&shares[i], msg)
			if err != nil {
				t.Fatal(err)
			}
			partials[i] = p
		}
		direct, _ := sk.Sign(msg)
		subsets := 0
		forEachSubset(tc.n, tc.t, func(idx []int) {
			subsets++
			sub := pick(partials, idx)
			res, err := g.Combine(msg, sub)
			if err != nil {
				t.Fatalf("%d-of-%d %v: %v", tc.t, tc.n, idx, err)
			}
			if !res.Signature.Equal(direct) {
				t.Fatalf("%d-of-%d %v: signature differs from the whole key's", tc.t, tc.n, idx)
			}
			if err := bls.Verify(g.Key, msg, res.Signature); err != nil {
				t.Fatal(err)
			}
			if _, err := g.Combine(msg, sub[:tc.t-1]); !errors.Is(err, tbls.ErrNotEnough) {
				t.Fatalf("%d-of-%d: t-1 partials: err = %v", tc.t, tc.n, err)
			}
			// Even interpolated by hand, t-1 partials are not the signature.
			pt, err := tbls.Interpolate(sub[:tc.t-1])
			if err != nil {
				t.Fatal(err)
			}
			if s, err := bls.NewSignature(pt); err == nil && s.Equal(direct) {
				t.Fatalf("%d-of-%d: t-1 partials interpolated to the signature", tc.t, tc.n)
			}
		})
		if subsets == 0 {
			t.Fatal("no subsets tried")
		}
	}
}

func TestBadPartialIsBlamedOnItsSender(t *testing.T) {
	t.Parallel()
	g, shares, _ := dealt(t, 2, 3)
	msg := []byte("m")
	p1, _ := tbls.Sign(&shares[0], msg)
	p2, _ := tbls.Sign(&shares[1], msg)
	p3, _ := tbls.Sign(&shares[2], msg)
	// Party 2 sends its partial over another message: a valid point, wrong
	// content.
	bad, _ := tbls.Sign(&shares[1], []byte("something else"))

	res, err := g.Combine(msg, []*tbls.Partial{p1, bad, p3})
	if err != nil {
		t.Fatalf("two good partials must still combine: %v", err)
	}
	if !slices.Equal(res.Blamed, []uint32{2}) || !slices.Equal(res.Signers, []uint32{1, 3}) {
		t.Fatalf("blamed %v signers %v, want [2] and [1 3]", res.Blamed, res.Signers)
	}
	if err := g.VerifyPartial(tbls.HashMessage(msg), bad); !errors.Is(err, tbls.ErrBadPartial) {
		t.Fatalf("verify bad partial: %v", err)
	}

	_, err = g.Combine(msg, []*tbls.Partial{bad, p3})
	var blame *tbls.BlameError
	if !errors.As(err, &blame) || !slices.Equal(blame.Parties, []uint32{2}) {
		t.Fatalf("err = %v, want blame on party 2", err)
	}
	if !errors.Is(err, tbls.ErrNotEnough) || !errors.Is(err, tbls.ErrBadPartial) {
		t.Fatalf("err = %v, want both not-enough and bad-partial", err)
	}

	// A partial relabelled as another party's is blamed on the label.
	stolen := &tbls.Partial{Index: 1, Sig: p2.Sig}
	_, err = g.Combine(msg, []*tbls.Partial{stolen, p3})
	if !errors.As(err, &blame) || !slices.Equal(blame.Parties, []uint32{1}) {
		t.Fatalf("relabelled partial: err = %v", err)
	}
}

func TestCombineRejectsDuplicatesAndUnknownParties(t *testing.T) {
	t.Parallel()
	g, shares, _ := dealt(t, 2, 3)
	msg := []byte("m")
	p1, _ := tbls.Sign(&shares[0], msg)
	if _, err := g.Combine(msg, []*tbls.Partial{p1, p1}); !errors.Is(err, share.ErrDuplicate) {
		t.Errorf("duplicate: %v", err)
	}
	ghost := &tbls.Partial{Index: 4, Sig: p1.Sig}
	if _, err := g.Combine(msg, []*tbls.Partial{p1, ghost}); !errors.Is(err, tbls.ErrUnknownParty) {
		t.Errorf("unknown party: %v", err)
	}
}

func TestPartialDecodingIsStrict(t *testing.T) {
	t.Parallel()
	identity := append([]byte{0xc0}, make([]byte, 95)...)
	if _, err := tbls.PartialFromBytes(1, identity); !errors.Is(err, bls.ErrIdentity) {
		t.Errorf("identity: %v", err)
	}
	if _, err := tbls.PartialFromBytes(1, make([]byte, 95)); !errors.Is(err, bls.ErrLength) {
		t.Errorf("short: %v", err)
	}
	if _, err := tbls.PartialFromBytes(0, make([]byte, 96)); !errors.Is(err, tbls.ErrUnknownParty) {
		t.Errorf("index 0: %v", err)
	}
}

func pick(ps []*tbls.Partial, idx []int) []*tbls.Partial {
	out := make([]*tbls.Partial, len(idx))
	for i, j := range idx {
		out[i] = ps[j]
	}
	return out
}

func forEachSubset(n, k int, fn func([]int)) {
	idx := make([]int, k)
	var rec func(start, depth int)
	rec = func(start, depth int) {
		if depth == k {
			fn(append([]int(nil), idx...))
			return
		}
		for i := start; i < n; i++ {
			idx[depth] = i
			rec(i+1, depth+1)
		}
	}
	rec(0, 0)
}
