package api

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/signal-mpc/cosigner/core"
)

// ErrDetached: the console is not connected to the co-signer it attached
// to (it stopped; the console reconnects when it serves again).
var ErrDetached = errors.New("api: not connected to the running cosigner")

// Remote makes calls a console makes on core (tui.Core) through the API,
// for a console attached to a co-signer that runs in another process. Its
// connection can be replaced (Attach) when that process comes back.
type Remote struct {
	mu sync.Mutex
	c  *Client
}

// Attach makes c the connection calls go through (nil: none).
func (r *Remote) Attach(c *Client) {
	r.mu.Lock()
	r.c = c
	r.mu.Unlock()
}

func (r *Remote) client() (*Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c == nil {
		return nil, ErrDetached
	}
	return r.c, nil
}

func (r *Remote) call(ctx context.Context, method string, params, result any) error {
	c, err := r.client()
	if err != nil {
		return err
	}
	if err := c.Call(ctx, method, params, result); err != nil {
		var rerr *Error
		if errors.As(err, &rerr) {
			return errors.New(rerr.Message)
		}
		return fmt.Errorf("%w: %w", ErrDetached, err)
	}
	return nil
}

// StartKeygen proposes a key generation and waits for it.
func (r *Remote) StartKeygen(ctx context.Context, t int) (*core.KeygenResult, error) {
	var res KeygenResult
	if err := r.call(ctx, MethodKeygen, KeygenParams{Threshold: t, Wait: true}, &res); err != nil {
		return nil, err
	}
	out := &core.KeygenResult{T: res.Threshold, N: res.Parties}
	var err error
	if out.Ceremony, err = core.ParseID(res.ID); err != nil {
		return nil, fmt.Errorf("%w: keygen id: %w", ErrProtocol, err)
	}
	if out.KeyID, err = core.ParseID(res.KeyID); err != nil {
		return nil, fmt.Errorf("%w: key id: %w", ErrProtocol, err)
	}
	if out.GroupKey, err = hex.DecodeString(res.GroupPublicKey); err != nil {
		return nil, fmt.Errorf("%w: group key: %w", ErrProtocol, err)
	}
	return out, nil
}

// RequestSignature asks for a signature and waits for it.
func (r *Remote) RequestSignature(ctx context.Context, keyID [32]byte, msg []byte, description string) (*core.SignResult, error) {
	p := SignParams{Hex: hex.EncodeToString(msg), Description: description, Wait: true}
	if keyID != ([32]byte{}) {
		p.Key = hex.EncodeToString(keyID[:])
	}
	var res SignResult
	if err := r.call(ctx, MethodSign, p, &res); err != nil {
		return nil, err
	}
	out := &core.SignResult{KeyID: keyID, Message: msg, Signers: res.Signers, Blamed: res.Blamed}
	var err error
	if out.ID, err = core.ParseID(res.ID); err != nil {
		return nil, fmt.Errorf("%w: request id: %w", ErrProtocol, err)
	}
	if out.GroupKey, err = hex.DecodeString(res.GroupPublicKey); err != nil {
		return nil, fmt.Errorf("%w: group key: %w", ErrProtocol, err)
	}
	if out.Signature, err = hex.DecodeString(res.Signature); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrProtocol, err)
	}
	return out, nil
}

// Approve answers yes.
func (r *Remote) Approve(ctx context.Context, id [32]byte) error {
	return r.call(ctx, MethodApprove, IDParams{ID: hex.EncodeToString(id[:])}, nil)
}

// Decline answers no.
func (r *Remote) Decline(ctx context.Context, id [32]byte, reason string) error {
	return r.call(ctx, MethodDecline, DeclineParams{ID: hex.EncodeToString(id[:]), Reason: reason}, nil)
}

// Keys lists the generated keys.
func (r *Remote) Keys(ctx context.Context) ([]core.KeyInfo, error) {
	var res KeysResult
	if err := r.call(ctx, MethodKeys, nil, &res); err != nil {
		return nil, err
	}
	out := make([]core.KeyInfo, 0, len(res.Keys))
	for _, k := range res.Keys {
		id, err := core.ParseID(k.KeyID)
		if err != nil {
			return nil, fmt.Errorf("%w: key id: %w", ErrProtocol, err)
		}
		gk, err := hex.DecodeString(k.GroupPublicKey)
		if err != nil {
			return nil, fmt.Errorf("%w: group key: %w", ErrProtocol, err)
		}
		out = append(out, core.KeyInfo{KeyID: id, GroupKey: gk, T: k.Threshold, N: k.Parties, Self: k.Index, Epoch: k.Epoch, HandedOver: k.HandedOver})
	}
	return out, nil
}

// AnswerChallenge answers the server's challenge.
func (r *Remote) AnswerChallenge(ctx context.Context, token, answer string) error {
	return r.call(ctx, MethodChallenge, ChallengeParams{Token: token, Code: answer}, nil)
}

// StartReshare proposes a reshare of a key and waits for it
// (tui.Resharer).
func (r *Remote) StartReshare(ctx context.Context, req core.ReshareRequest) (*core.ReshareResult, error) {
	var res ReshareResult
	p := ReshareParams{Key: hex.EncodeToString(req.KeyID[:]), Threshold: req.Threshold, Signers: req.Signers, Dealers: req.Dealers, Wait: true}
	if err := r.call(ctx, MethodReshare, p, &res); err != nil {
		return nil, err
	}
	out := &core.ReshareResult{What: res.What, Epoch: res.Epoch, T: res.Threshold, N: res.Parties, HandedOver: res.HandedOver}
	var err error
	if out.Ceremony, err = core.ParseID(res.ID); err != nil {
		return nil, fmt.Errorf("%w: reshare id: %w", ErrProtocol, err)
	}
	if out.KeyID, err = core.ParseID(res.KeyID); err != nil {
		return nil, fmt.Errorf("%w: key id: %w", ErrProtocol, err)
	}
	if out.GroupKey, err = hex.DecodeString(res.GroupPublicKey); err != nil {
		return nil, fmt.Errorf("%w: group key: %w", ErrProtocol, err)
	}
	return out, nil
}
