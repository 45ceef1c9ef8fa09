// Package tbls is threshold BLS signing over a key shared t-of-n: partial
// signatures, their verification against public shares, and their combination
// into an ordinary BLS signature that verifies with bls.Verify under the group
// key. A bad partial is blamed on the party that sent it.
package tbls

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	bls12381 "github.com/kilic/bls12-381"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
)

// Sentinel errors.
var (
	// ErrBadPartial: a partial signature does not verify against its
	// sender's public share. A *BlameError names the senders.
	ErrBadPartial = errors.New("bad partial signature")
	// ErrNotEnough: fewer than t valid partials from distinct parties.
	ErrNotEnough = errors.New("not enough valid partial signatures")
	// ErrUnknownParty: a partial names an index outside 1..n.
	ErrUnknownParty = errors.New("unknown party index")
	// ErrGroup: the group description is inconsistent.
	ErrGroup = errors.New("invalid group")
)

// BlameError names the parties whose partials were checked and found bad.
// It wraps ErrBadPartial, and ErrNotEnough too when the good ones left are
// fewer than t.
type BlameError struct {
	Parties   []uint32
	NotEnough bool
}

func (e *BlameError) Error() string {
	ids := make([]string, len(e.Parties))
	for i, p := range e.Parties {
		ids[i] = fmt.Sprint(p)
	}
	s := "bad partial signature from party " + strings.Join(ids, ", ")
	if e.NotEnough {
		s += "; " + ErrNotEnough.Error()
	}
	return s
}

// Unwrap lets errors.Is match ErrBadPartial and, when set, ErrNotEnough.
func (e *BlameError) Unwrap() []error {
	if e.NotEnough {
		return []error{ErrBadPartial, ErrNotEnough}
	}
	return []error{ErrBadPartial}
}

// Group is the public description of a shared key: the threshold, the group
// key X and every party's public share X_j = x_j * P1.
type Group struct {
	T      int
	Key    *bls.PublicKey
	Shares []*bls.PublicKey // Shares[j-1] is X_j
}

// NewGroup derives a group from the joint Feldman commitments A_0..A_{t-1}
// of a DKG: X = A_0 and X_j = sum_k j^k A_k. Public shares are derived from
// the commitments, never taken from what a party says about itself.
//
// Commitments hold subgroup points by construction (strict decoding, or
// arithmetic on such points), so their combinations are subgroup points too
// and only the identity needs checking here: repeating the subgroup check
// for every X_j would cost about 0.1 ms per party for nothing.
func NewGroup(commitments share.Commitments, n int) (*Group, error) {
	if err := share.CheckParams(commitments.Threshold(), n); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrGroup, err)
	}
	key, err := publicKeyOf(&commitments[0])
	if err != nil {
		return nil, fmt.Errorf("%w: group key: %w", ErrGroup, err)
	}
	g := &Group{T: commitments.Threshold(), Key: key, Shares: make([]*bls.PublicKey, n)}
	for j := 1; j <= n; j++ {
		pk, err := publicKeyOf(commitments.Eval(uint32(j)))
		if err != nil {
			return nil, fmt.Errorf("%w: public share %d: %w", ErrGroup, j, err)
		}
		g.Shares[j-1] = pk
	}
	return g, nil
}

// publicKeyOf wraps a point known to be in the subgroup, rejecting only the
// identity (see NewGroup).
func publicKeyOf(p *bls.G1Point) (*bls.PublicKey, error) {
	return bls.NewPublicKeyFromSubgroupPoint(p)
}

// N is the number of parties.
func (g *Group) N() int { return len(g.Shares) }

// PublicShare returns X_j for index j in 1..n.
func (g *Group) PublicShare(j uint32) (*bls.PublicKey, error) {
	if j == 0 || int(j) > len(g.Shares) {
		return nil, fmt.Errorf("%w: %d (n = %d)", ErrUnknownParty, j, len(g.Shares))
	}
	return g.Shares[j-1], nil
}

// Partial is party Index's signature share sigma_j = x_j * H(msg).
type Partial struct {
	Index uint32
	Sig   bls.G2Point
}

// Bytes encodes the partial's point (96 bytes); the index travels in the
// signed envelope that carries it.
func (p *Partial) Bytes() []byte { return bls.G2Bytes(&p.Sig) }

// PartialFromBytes decodes a partial from party index with the strict G2
// decoding (subgroup checked, identity rejected).
func PartialFromBytes(index uint32, b []byte) (*Partial, error) {
	if index == 0 {
		return nil, fmt.Errorf("partial: %w: 0", ErrUnknownParty)
	}
	p, err := bls.G2FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("partial from party %d: %w", index, err)
	}
	return &Partial{Index: index, Sig: *p}, nil
}

// HashMessage is H(msg) = hash_to_G2(msg, SigDST), computed once per request
// and shared by the partial checks and the final verification.
func HashMessage(msg []byte) *bls.G2Point { return bls.HashToG2(msg, bls.SigDST) }

// Sign makes this party's partial signature over msg with its share, blinded
// against kilic's variable-time scalar multiplication.
func Sign(s *share.Share, msg []byte) (*Partial, error) {
	return SignHashed(s, HashMessage(msg))
}

// SignHashed is Sign with H(msg) already computed (HashMessage), for a
// caller that needs the hash for other checks of the same request too.
func SignHashed(s *share.Share, h *bls.G2Point) (*Partial, error) {
	if s.Index == 0 {
		return nil, fmt.Errorf("partial sign: %w: 0", ErrUnknownParty)
	}
	if s.Value.IsZero() {
		return nil, fmt.Errorf("partial sign: %w", bls.ErrZeroScalar)
	}
	return &Partial{Index: s.Index, Sig: *bls.MulG2Blinded(h, &s.Value)}, nil
}

// VerifyPartial checks e(X_j, H) == e(P1, sigma_j) with h = HashMessage(msg).
func (g *Group) VerifyPartial(h *bls.G2Point, p *Partial) error {
	xj, err := g.PublicShare(p.Index)
	if err != nil {
		return err
	}
	if !bls.PairingCheck(xj.Point(), h, &p.Sig) {
		return &BlameError{Parties: []uint32{p.Index}}
	}
	return nil
}

// Result is a combined signature and who contributed to it.
type Result struct {
	Signature *bls.Signature
	Signers   []uint32 // the t indices whose partials were combined, ascending
	Blamed    []uint32 // parties whose partials were bad, ascending
}

// Combine makes the group signature over msg from partials of distinct
// parties. Optimistic path: it combines the first t partials and verifies the
// result once; only if that fails does it check partials one by one, blame
// the bad ones and combine t good ones. Duplicated indices are an error (the
// caller dedups by sender before this point). With fewer than t good partials
// the error wraps ErrNotEnough (and is a *BlameError when any were bad).
func (g *Group) Combine(msg []byte, partials []*Partial) (*Result, error) {
	return g.CombineHashed(HashMessage(msg), partials)
}

// CombineHashed is Combine with h = HashMessage(msg) already computed.
func (g *Group) CombineHashed(h *bls.G2Point, partials []*Partial) (*Result, error) {
	seen := make(map[uint32]bool, len(partials))
	for _, p := range partials {
		if _, err := g.PublicShare(p.Index); err != nil {
			return nil, err
		}
		if seen[p.Index] {
			return nil, fmt.Errorf("combine: %w: %d", share.ErrDuplicate, p.Index)
		}
		seen[p.Index] = true
	}
	if len(partials) < g.T {
		return nil, fmt.Errorf("combine: %w: have %d, need %d", ErrNotEnough, len(partials), g.T)
	}
	if sig, err := g.combineVerified(h, partials[:g.T]); err == nil {
		return &Result{Signature: sig, Signers: sortedIndices(partials[:g.T])}, nil
	}

	var good []*Partial
	var blamed []uint32
	for _, p := range partials {
		if err := g.VerifyPartial(h, p); err != nil {
			blamed = append(blamed, p.Index)
			continue
		}
		good = append(good, p)
	}
	slices.Sort(blamed)
	if len(good) < g.T {
		return nil, &BlameError{Parties: blamed, NotEnough: true}
	}
	sig, err := g.combineVerified(h, good[:g.T])
	if err != nil {
		// Valid partials of a consistent group always combine to a valid
		// signature; failing here means the group itself is wrong.
		return nil, fmt.Errorf("combine: %w: valid partials do not combine: %w", ErrGroup, err)
	}
	return &Result{Signature: sig, Signers: sortedIndices(good[:g.T]), Blamed: blamed}, nil
}

// combineVerified interpolates sigma = sum lambda_j sigma_j over exactly the
// given partials and checks it with the standard verification against X.
func (g *Group) combineVerified(h *bls.G2Point, ps []*Partial) (*bls.Signature, error) {
	sigma, err := Interpolate(ps)
	if err != nil {
		return nil, err
	}
	// Partials are subgroup points (strict decoding), so their combination
	// is too: only the identity needs rejecting.
	sig, err := bls.NewSignatureFromSubgroupPoint(sigma)
	if err != nil {
		return nil, err
	}
	if !bls.PairingCheck(g.Key.Point(), h, sigma) {
		return nil, bls.ErrVerify
	}
	return sig, nil
}

// Interpolate returns sum lambda_j sigma_j at 0 over the given partials
// (distinct indices). The result is the same point for any t-subset.
func Interpolate(ps []*Partial) (*bls.G2Point, error) {
	idx := make([]uint32, len(ps))
	for i, p := range ps {
		idx[i] = p.Index
	}
	lambdas, err := share.LagrangeAtZero(idx)
	if err != nil {
		return nil, err
	}
	g2 := bls12381.NewG2()
	acc, term := g2.Zero(), g2.New()
	for i, p := range ps {
		g2.MulScalar(term, &p.Sig, lambdas[i])
		g2.Add(acc, acc, term)
	}
	return g2.Affine(acc), nil
}

func sortedIndices(ps []*Partial) []uint32 {
	out := make([]uint32, len(ps))
	for i, p := range ps {
		out[i] = p.Index
	}
	slices.Sort(out)
	return out
}
