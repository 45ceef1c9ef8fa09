// Package share holds the secret-sharing arithmetic of the threshold scheme:
// polynomials over Fr, Shamir shares at x = 1..n, Feldman commitments and
// Lagrange coefficients at 0.
//
// Party indices are the polynomial x-coordinates: 1..n, never 0 (f(0) is the
// secret). A threshold t means any t shares recover f(0): the polynomial has
// degree t-1 and t coefficients.
package share

import (
	"errors"
	"fmt"
	"io"

	bls12381 "github.com/kilic/bls12-381"

	"github.com/signal-mpc/cosigner/bls"
)

// MaxParties bounds n: indices fit in a byte of UI space and the DKG's
// quadratic message count stays reasonable. It is far above any real group.
const MaxParties = 255

// Sentinel errors.
var (
	ErrThreshold     = errors.New("invalid threshold")
	ErrIndex         = errors.New("invalid party index")
	ErrDuplicate     = errors.New("duplicate party index")
	ErrCommitments   = errors.New("invalid commitments")
	ErrShareMismatch = errors.New("share does not match the commitments")
)

// CheckParams validates a threshold t of n parties: 1 <= t <= n <= MaxParties.
func CheckParams(t, n int) error {
	if n < 1 || n > MaxParties {
		return fmt.Errorf("%w: n = %d, want 1..%d", ErrThreshold, n, MaxParties)
	}
	if t < 1 || t > n {
		return fmt.Errorf("%w: t = %d, want 1..n (n = %d)", ErrThreshold, t, n)
	}
	return nil
}

// Poly is a secret polynomial f(x) = sum a_k x^k with t coefficients.
type Poly struct {
	coeffs []bls.Scalar
}

// NewRandomPoly draws t uniform non-zero coefficients (crypto/rand when rnd
// is nil). Zero coefficients are excluded so that no commitment is the
// identity, which receivers reject.
func NewRandomPoly(t int, rnd io.Reader) (*Poly, error) {
	if t < 1 || t > MaxParties {
		return nil, fmt.Errorf("%w: t = %d", ErrThreshold, t)
	}
	p := &Poly{coeffs: make([]bls.Scalar, t)}
	for k := range p.coeffs {
		a, err := bls.RandomScalar(rnd)
		if err != nil {
			p.Wipe()
			return nil, fmt.Errorf("polynomial: %w", err)
		}
		p.coeffs[k].Set(a)
		bls.WipeScalar(a)
	}
	return p, nil
}

// PolyFromCoefficients builds a polynomial from given coefficients (copied).
func PolyFromCoefficients(coeffs []*bls.Scalar) (*Poly, error) {
	if len(coeffs) < 1 || len(coeffs) > MaxParties {
		return nil, fmt.Errorf("%w: %d coefficients", ErrThreshold, len(coeffs))
	}
	p := &Poly{coeffs: make([]bls.Scalar, len(coeffs))}
	for k, c := range coeffs {
		p.coeffs[k].Set(c)
	}
	return p, nil
}

// Threshold is the number of coefficients t (degree + 1).
func (p *Poly) Threshold() int { return len(p.coeffs) }

// Secret returns a copy of f(0).
func (p *Poly) Secret() *bls.Scalar { return new(bls.Scalar).Set(&p.coeffs[0]) }

// Eval returns f(x) by Horner's rule.
func (p *Poly) Eval(x uint32) *bls.Scalar {
	xs := bls.ScalarFromUint64(uint64(x))
	acc := new(bls.Scalar).Set(&p.coeffs[len(p.coeffs)-1])
	for k := len(p.coeffs) - 2; k >= 0; k-- {
		acc.Mul(acc, xs)
		acc.Add(acc, &p.coeffs[k])
	}
	return acc
}

// Commit returns the Feldman commitments C_k = a_k * P1, computed with
// blinding since the coefficients are secret.
func (p *Poly) Commit() Commitments {
	c := make(Commitments, len(p.coeffs))
	for k := range p.coeffs {
		c[k] = *bls.MulG1Blinded(bls.G1Generator(), &p.coeffs[k])
	}
	return c
}

// Wipe overwrites the coefficients; the polynomial is unusable afterwards.
func (p *Poly) Wipe() {
	for k := range p.coeffs {
		bls.WipeScalar(&p.coeffs[k])
	}
	p.coeffs = p.coeffs[:1] // keep Eval from indexing out of range
}

// Commitments are Feldman commitments to a polynomial's coefficients, in
// order: C_0 commits to the secret.
type Commitments []bls.G1Point

// CommitmentsFromBytes decodes exactly t compressed commitments, each a
// subgroup point that is not the identity.
func CommitmentsFromBytes(enc [][]byte, t int) (Commitments, error) {
	if len(enc) != t {
		return nil, fmt.Errorf("%w: got %d, want %d", ErrCommitments, len(enc), t)
	}
	c := make(Commitments, t)
	for k, b := range enc {
		p, err := bls.G1FromBytes(b)
		if err != nil {
			return nil, fmt.Errorf("%w: commitment %d: %w", ErrCommitments, k, err)
		}
		c[k] = *p
	}
	return c, nil
}

// Bytes encodes the commitments compressed.
func (c Commitments) Bytes() [][]byte {
	out := make([][]byte, len(c))
	for k := range c {
		out[k] = bls.G1Bytes(&c[k])
	}
	return out
}

// Threshold is the number of commitments t.
func (c Commitments) Threshold() int { return len(c) }

// Eval returns sum_k x^k C_k = f(x)*P1, the public counterpart of the share
// at x. Horner's rule keeps every multiplication by the small x, which is far
// cheaper than multiplying by the full-size x^k.
func (c Commitments) Eval(x uint32) *bls.G1Point {
	g := bls12381.NewG1()
	acc := g.New().Set(&c[len(c)-1])
	for k := len(c) - 2; k >= 0; k-- {
		mulSmall(g, acc, x)
		g.Add(acc, acc, &c[k])
	}
	return g.Affine(acc)
}

// mulSmall sets p to x*p by double-and-add over the bits of a small public x.
func mulSmall(g *bls12381.G1, p *bls.G1Point, x uint32) {
	if x == 0 {
		p.Zero()
		return
	}
	base := g.New().Set(p)
	top := 31
	for x>>uint(top)&1 == 0 {
		top--
	}
	for i := top - 1; i >= 0; i-- {
		g.Double(p, p)
		if x>>uint(i)&1 == 1 {
			g.Add(p, p, base)
		}
	}
}

// VerifyShare checks s*P1 == Eval(x): the share at x lies on the committed
// polynomial.
func (c Commitments) VerifyShare(x uint32, s *bls.Scalar) error {
	if x == 0 {
		return fmt.Errorf("%w: 0", ErrIndex)
	}
	g := bls12381.NewG1()
	lhs := g.MulScalar(g.New(), g.One(), s)
	if !g.Equal(lhs, c.Eval(x)) {
		return fmt.Errorf("%w: index %d", ErrShareMismatch, x)
	}
	return nil
}

// Sum adds commitment vectors of equal length coefficient by coefficient: the
// commitments of the sum of the polynomials (the joint key of a DKG).
func Sum(all []Commitments) (Commitments, error) {
	if len(all) == 0 {
		return nil, fmt.Errorf("%w: none to add", ErrCommitments)
	}
	t := len(all[0])
	g := bls12381.NewG1()
	out := make(Commitments, t)
	for k := range out {
		out[k].Set(&all[0][k])
	}
	for i, c := range all[1:] {
		if len(c) != t {
			return nil, fmt.Errorf("%w: vector %d has %d commitments, want %d", ErrCommitments, i+1, len(c), t)
		}
		for k := range out {
			g.Add(&out[k], &out[k], &c[k])
		}
	}
	for k := range out {
		g.Affine(&out[k])
	}
	return out, nil
}

// Share is one party's Shamir share: the evaluation of the polynomial at the
// party's index.
type Share struct {
	Index uint32
	Value bls.Scalar
}

// Deal evaluates p at 1..n.
func (p *Poly) Deal(n int) ([]Share, error) {
	if err := CheckParams(p.Threshold(), n); err != nil {
		return nil, err
	}
	out := make([]Share, n)
	for i := range out {
		x := uint32(i + 1)
		out[i] = Share{Index: x, Value: *p.Eval(x)}
	}
	return out, nil
}

// LagrangeAtZero returns lambda_j = prod_{m != j} m / (m - j) for each index
// j in the set, in the order given. Indices must be distinct and non-zero.
func LagrangeAtZero(indices []uint32) ([]*bls.Scalar, error) {
	seen := make(map[uint32]bool, len(indices))
	for _, j := range indices {
		if j == 0 {
			return nil, fmt.Errorf("%w: 0", ErrIndex)
		}
		if seen[j] {
			return nil, fmt.Errorf("%w: %d", ErrDuplicate, j)
		}
		seen[j] = true
	}
	out := make([]*bls.Scalar, len(indices))
	for a, j := range indices {
		num := new(bls.Scalar).One()
		den := new(bls.Scalar).One()
		xj := bls.ScalarFromUint64(uint64(j))
		diff := new(bls.Scalar)
		for _, m := range indices {
			if m == j {
				continue
			}
			xm := bls.ScalarFromUint64(uint64(m))
			num.Mul(num, xm)
			diff.Sub(xm, xj)
			den.Mul(den, diff)
		}
		den.Inverse(den)
		num.Mul(num, den)
		out[a] = num
	}
	return out, nil
}

// Recover interpolates f(0) from at least t shares with distinct indices. It
// is for tests and key export checks: in operation the secret is never
// assembled.
func Recover(shares []Share) (*bls.Scalar, error) {
	idx := make([]uint32, len(shares))
	for i, s := range shares {
		idx[i] = s.Index
	}
	lambdas, err := LagrangeAtZero(idx)
	if err != nil {
		return nil, err
	}
	acc := new(bls.Scalar)
	term := new(bls.Scalar)
	for i := range shares {
		term.Mul(lambdas[i], &shares[i].Value)
		acc.Add(acc, term)
	}
	return acc, nil
}
