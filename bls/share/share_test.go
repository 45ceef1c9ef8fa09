package share_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/internal/vectors"
	"github.com/signal-mpc/cosigner/bls/share"
)

func TestVectorSharesMatchTheirCommitments(t *testing.T) {
	t.Parallel()
	f, err := vectors.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range f.Threshold {
		comms, err := share.CommitmentsFromBytes(toSlices(v.Commitments), v.T)
		if err != nil {
			t.Fatalf("%d-of-%d: %v", v.T, v.N, err)
		}
		if !bytes.Equal(bls.G1Bytes(&comms[0]), v.GroupPK) {
			t.Fatalf("%d-of-%d: C_0 is not the group key", v.T, v.N)
		}
		var shares []share.Share
		for _, s := range v.Shares {
			x, err := bls.SecretScalarFromBytes(s.SK)
			if err != nil {
				t.Fatal(err)
			}
			if err := comms.VerifyShare(uint32(s.Index), x); err != nil {
				t.Errorf("%d-of-%d share %d: %v", v.T, v.N, s.Index, err)
			}
			if got := bls.G1Bytes(comms.Eval(uint32(s.Index))); !bytes.Equal(got, s.PK) {
				t.Errorf("%d-of-%d public share %d = %x, want %x", v.T, v.N, s.Index, got, s.PK)
			}
			shares = append(shares, share.Share{Index: uint32(s.Index), Value: *x})
		}
		secret, err := share.Recover(shares)
		if err != nil {
			t.Fatal(err)
		}
		sk, err := bls.NewSecretKey(secret)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sk.PublicKey().Bytes(), v.GroupPK) {
			t.Errorf("%d-of-%d: shares of signers %v do not interpolate to the group key", v.T, v.N, v.Signers)
		}
	}
}

func toSlices(h []vectors.Hex) [][]byte {
	out := make([][]byte, len(h))
	for i := range h {
		out[i] = h[i]
	}
	return out
}

func TestAnyTSharesRecoverTheSecretAndTMinusOneDoNot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ t, n int }{{1, 1}, {2, 3}, {3, 5}, {5, 7}} {
		p, err := share.NewRandomPoly(tc.t, nil)
		if err != nil {
			t.Fatal(err)
		}
		shares, err := p.Deal(tc.n)
		if err != nil {
			t.Fatal(err)
		}
		comms := p.Commit()
		for _, s := range shares {
			if err := comms.VerifyShare(s.Index, &s.Value); err != nil {
				t.Fatalf("%d-of-%d: %v", tc.t, tc.n, err)
			}
		}
		secret := p.Secret()
		forEachSubset(tc.n, tc.t, func(idx []int) {
			sub := make([]share.Share, len(idx))
			for i, j := range idx {
				sub[i] = shares[j]
			}
			got, err := share.Recover(sub)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(secret) {
				t.Fatalf("%d-of-%d: subset %v recovered a different secret", tc.t, tc.n, idx)
			}
			if tc.t > 1 {
				less, _ := share.Recover(sub[:tc.t-1])
				if less.Equal(secret) {
					t.Fatalf("%d-of-%d: %d shares recovered the secret", tc.t, tc.n, tc.t-1)
				}
			}
		})
	}
}

// forEachSubset calls fn with every k-subset of 0..n-1 in lexicographic order.
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

func TestWrongShareIsDetected(t *testing.T) {
	t.Parallel()
	p, _ := share.NewRandomPoly(3, nil)
	comms := p.Commit()
	s := p.Eval(2)
	s.Add(s, bls.ScalarFromUint64(1))
	if err := comms.VerifyShare(2, s); !errors.Is(err, share.ErrShareMismatch) {
		t.Fatalf("tampered share: err = %v", err)
	}
	if err := comms.VerifyShare(3, p.Eval(2)); !errors.Is(err, share.ErrShareMismatch) {
		t.Fatalf("share at the wrong index: err = %v", err)
	}
	if err := comms.VerifyShare(0, p.Secret()); !errors.Is(err, share.ErrIndex) {
		t.Fatalf("index 0: err = %v", err)
	}
}

func TestSumOfCommitmentsCommitsToSumOfPolynomials(t *testing.T) {
	t.Parallel()
	a, _ := share.NewRandomPoly(3, nil)
	b, _ := share.NewRandomPoly(3, nil)
	sum, err := share.Sum([]share.Commitments{a.Commit(), b.Commit()})
	if err != nil {
		t.Fatal(err)
	}
	for x := uint32(1); x <= 4; x++ {
		s := a.Eval(x)
		s.Add(s, b.Eval(x))
		if err := sum.VerifyShare(x, s); err != nil {
			t.Fatalf("x=%d: %v", x, err)
		}
	}
	c, _ := share.NewRandomPoly(2, nil)
	if _, err := share.Sum([]share.Commitments{a.Commit(), c.Commit()}); !errors.Is(err, share.ErrCommitments) {
		t.Fatalf("mismatched lengths: err = %v", err)
	}
}

func TestCommitmentDecodingIsStrict(t *testing.T) {
	t.Parallel()
	p, _ := share.NewRandomPoly(2, nil)
	enc := p.Commit().Bytes()
	identity := append([]byte{0xc0}, make([]byte, 47)...)
	cases := []struct {
		name string
		in   [][]byte
		want error
	}{
		{"too few", enc[:1], share.ErrCommitments},
		{"too many", append(enc, enc[0]), share.ErrCommitments},
		{"identity", [][]byte{enc[0], identity}, bls.ErrIdentity},
		{"truncated", [][]byte{enc[0], enc[1][:40]}, bls.ErrLength},
	}
	for _, c := range cases {
		if _, err := share.CommitmentsFromBytes(c.in, 2); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestLagrangeRejectsBadIndexSets(t *testing.T) {
	t.Parallel()
	if _, err := share.LagrangeAtZero([]uint32{1, 0}); !errors.Is(err, share.ErrIndex) {
		t.Errorf("index 0: %v", err)
	}
	if _, err := share.LagrangeAtZero([]uint32{2, 2}); !errors.Is(err, share.ErrDuplicate) {
		t.Errorf("duplicate: %v", err)
	}
	for _, c := range []struct{ t, n int }{{0, 3}, {4, 3}, {1, 0}, {2, 256}} {
		if err := share.CheckParams(c.t, c.n); !errors.Is(err, share.ErrThreshold) {
			t.Errorf("t=%d n=%d accepted", c.t, c.n)
		}
	}
}
