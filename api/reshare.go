package api

import (
	"context"
	"encoding/hex"
	"encoding/json"

	"github.com/signal-mpc/cosigner/core"
	"github.com/signal-mpc/cosigner/core/ceremony"
)

// maxKeystoreBytes bounds an imported keystore's JSON.
const maxKeystoreBytes = 64 << 10

// reshare proposes a reshare or refresh. Proposing is this signer's
// acceptance, so a socket that may not approve may not propose one.
func (cn *conn) reshare(ctx context.Context, params json.RawMessage) (any, *Error) {
	var p ReshareParams
	if e := decodeParams(params, &p); e != nil {
		return nil, e
	}
	if !cn.s.approve {
		return nil, &Error{Code: CodeNotAllowed, Message: "this socket may not approve (api.approve = false), and proposing a reshare accepts it"}
	}
	if p.Threshold < 1 || len(p.Signers) == 0 {
		return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: threshold (1 or more) and signers (roster names) are required"}
	}
	keyID, e := cn.pickKey(ctx, p.Key)
	if e != nil {
		return nil, e
	}
	id, err := cn.s.backend.BeginReshare(core.WithCaller(ctx, cn.by()), core.ReshareRequest{KeyID: keyID, Threshold: p.Threshold, Signers: p.Signers, Dealers: p.Dealers})
	if err != nil {
		return nil, errorOf(err)
	}
	cn.s.log.Info("api: reshare proposed", "id", ceremony.ShortID(id), "key", ceremony.ShortID(keyID), "uid", cn.peer.UID)
	if !p.Wait {
		return ReshareResult{ID: hex.EncodeToString(id[:])}, nil
	}
	r, err := cn.s.backend.WaitReshare(ctx, id)
	return reshareResult(id, r, err)
}

// keyImport proposes to split a keystore's key. The password and the key
// are never logged.
func (cn *conn) keyImport(ctx context.Context, params json.RawMessage) (any, *Error) {
	var p KeyImportParams
	if e := decodeParams(params, &p); e != nil {
		return nil, e
	}
	if !cn.s.approve {
		return nil, &Error{Code: CodeNotAllowed, Message: "this socket may not approve (api.approve = false), and proposing an import accepts it"}
	}
	if p.Threshold < 1 || p.Keystore == "" || len(p.Keystore) > maxKeystoreBytes || p.Password == "" {
		return nil, &Error{Code: CodeInvalidParams, Message: "invalid params: keystore (its JSON, at most 64 KiB), password and threshold (1 or more) are required"}
	}
	id, err := cn.s.backend.ImportKeystore(ctx, []byte(p.Keystore), p.Password, p.Threshold)
	if err != nil {
		return nil, errorOf(err)
	}
	cn.s.log.Info("api: key import proposed", "id", ceremony.ShortID(id), "uid", cn.peer.UID)
	if !p.Wait {
		return ReshareResult{ID: hex.EncodeToString(id[:])}, nil
	}
	r, err := cn.s.backend.WaitReshare(ctx, id)
	return reshareResult(id, r, err)
}

func reshareResult(id [32]byte, r *core.ReshareResult, err error) (any, *Error) {
	if err != nil {
		return nil, errorOf(err)
	}
	return ReshareResult{ID: hex.EncodeToString(id[:]), What: r.What, KeyID: hex.EncodeToString(r.KeyID[:]), GroupPublicKey: hex.EncodeToString(r.GroupKey),
		Epoch: r.Epoch, Threshold: r.T, Parties: r.N, HandedOver: r.HandedOver}, nil
}
