package core

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/bls"
	"github.com/signal-mpc/cosigner/bls/share"
	"github.com/signal-mpc/cosigner/bls/tbls"
	"github.com/signal-mpc/cosigner/bls/wire"
	"github.com/signal-mpc/cosigner/core/ceremony"
	"github.com/signal-mpc/cosigner/core/event"
	"github.com/signal-mpc/cosigner/core/keystore"
	"github.com/signal-mpc/cosigner/core/roster"
)

// acceptReshares makes a node accept every reshare by a rule.
func acceptReshares(nd *node) {
	nd.configure = func(c *Config) { c.ReshareRules = []*ReshareRule{{Name: ReshareRuleName(0)}} }
}

// joinNet adds consoles to a running test net: every running console
// pins their cards (verified), and theirs pin everyone.
func joinNet(t *testing.T, ctx context.Context, n *testNet, running []*node, names ...string) []*node {
	t.Helper()
	var out []*node
	for _, name := range names {
		seed := sha256.Sum256([]byte(t.Name() + name))
		k := ed25519.NewKeyFromSeed(seed[:])
		i := len(n.nodes)
		c := roster.Card{Name: name, Account: fmt.Sprintf("%08d-aaaa-4aaa-8aaa-%012d", i+1, i+1), Device: 2,
			IdentityKey: append([]byte{5}, seed[:]...), ConsoleKey: k.Public().(ed25519.PublicKey)}
		nd := &node{net: n, addr: Address{Account: c.Account, Device: c.Device}, name: name, card: c, key: k, store: NewVaultStore(newMemVault()), wake: make(chan struct{}, 1)}
		n.mu.Lock()
		n.nodes[nd.addr] = nd
		n.mu.Unlock()
		for _, r := range running {
			if err := r.app.AddCard(ctx, c, true); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, nd)
	}
	return out
}

// waitEpoch waits until nd shows the key at epoch (or handed over there).
func waitEpoch(t *testing.T, ctx context.Context, nd *node, id [32]byte, epoch uint32, handedOver bool) KeyInfo {
	t.Helper()
	for {
		keys, err := nd.app.Keys(ctx)
		if err != nil {
			t.Fatalf("%s: %v", nd.name, err)
		}
		for _, k := range keys {
			if k.KeyID == id && k.Epoch == epoch && k.HandedOver == handedOver {
				return k
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never showed key %x at epoch %d (handed over %v): %+v", nd.name, id[:4], epoch, handedOver, keys)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func signAndVerify(t *testing.T, ctx context.Context, nd *node, kr *KeygenResult, msg string, signers int) {
	t.Helper()
	sr, err := nd.app.RequestSignature(ctx, kr.KeyID, []byte(msg), "")
	if err != nil {
		t.Fatalf("%s signs %q: %v", nd.name, msg, err)
	}
	if err := bls.VerifyBytes(kr.GroupKey, []byte(msg), sr.Signature); err != nil {
		t.Fatalf("%q does not verify under the original group key: %v", msg, err)
	}
	if len(sr.Signers) != signers {
		t.Fatalf("%q signed by %v, want %d signers", msg, sr.Signers, signers)
	}
}

func TestReshareGrowsDropsAndRefreshesAKeyThatKeepsSigning(t *testing.T) {
	t.Parallel()
	n, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		acceptReshares(nd)
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	signAndVerify(t, ctx, nodes[1], kr, "before any reshare", 2)

	// 2-of-3 to 3-of-5: dave and eve join.
	more := joinNet(t, ctx, n, nodes, "dave", "eve")
	for _, nd := range more {
		acceptReshares(nd)
		nd.start(t, true)
	}
	all := append(nodes, more...)
	rr, err := nodes[0].app.StartReshare(ctx, ReshareRequest{KeyID: kr.KeyID, Threshold: 3, Signers: []string{"alice", "bob", "carol", "dave", "eve"}})
	if err != nil {
		t.Fatal(err)
	}
	if rr.KeyID != kr.KeyID || rr.Epoch != 1 || rr.T != 3 || rr.N != 5 || rr.What != "reshare" {
		t.Fatalf("reshare result %+v", rr)
	}
	for _, nd := range all {
		waitEpoch(t, ctx, nd, kr.KeyID, 1, false)
	}
	signAndVerify(t, ctx, more[0], kr, "after growing to 3-of-5", 3)
	// The keygen's secrets (its seed and the sub-shares it received) are
	// gone from every old signer's store; its public opening stays.
	for _, nd := range nodes {
		recs, err := nd.store.Ceremonies(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.ID == kr.Ceremony && (r.Seed != ([32]byte{}) || !erased(r) || len(r.Opening) == 0) {
				t.Fatalf("%s: the keygen record keeps its secrets: seed set %v, %d inputs", nd.name, r.Seed != ([32]byte{}), len(r.Inputs))
			}
		}
	}

	// 3-of-5 to 2-of-4: eve leaves. She is offline meanwhile; the four
	// that stay deal (they are at least the old t), and when she is back
	// the handover in her queue proves the new group holds the key: she
	// erases her share.
	eve := more[1]
	eve.stop()
	_, err = nodes[1].app.StartReshare(ctx, ReshareRequest{KeyID: kr.KeyID, Threshold: 2, Signers: []string{"alice", "bob", "carol", "dave"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range all[:4] {
		waitEpoch(t, ctx, nd, kr.KeyID, 2, false)
	}
	eve.start(t, true)
	gone := waitEpoch(t, ctx, eve, kr.KeyID, 2, true)
	if gone.Self != 0 {
		t.Fatalf("eve still holds index %d", gone.Self)
	}
	if _, _, _, err := eve.app.KeyShare(ctx, kr.KeyID); !errors.Is(err, ErrNoKey) {
		t.Fatalf("eve can still export a share: %v", err)
	}
	eks, err := eve.store.(EpochKeyStore).EpochKeys(ctx)
	if err != nil || len(eks) != 1 || eks[0].Share != nil {
		t.Fatalf("eve's store keeps a share: %d records, %v", len(eks), err)
	}
	eve.stop()
	eve.start(t, true)
	waitEpoch(t, ctx, eve, kr.KeyID, 2, true)
	signAndVerify(t, ctx, nodes[2], kr, "after dropping eve", 2)

	// A refresh of the 2-of-4.
	rr, err = nodes[2].app.StartReshare(ctx, ReshareRequest{KeyID: kr.KeyID, Threshold: 2, Signers: []string{"alice", "bob", "carol", "dave"}})
	if err != nil {
		t.Fatal(err)
	}
	if rr.What != "refresh" || rr.Epoch != 3 {
		t.Fatalf("refresh result %+v", rr)
	}
	for _, nd := range all[:4] {
		k := waitEpoch(t, ctx, nd, kr.KeyID, 3, false)
		if k.T != 2 || k.N != 4 {
			t.Fatalf("%s: %d-of-%d after the refresh", nd.name, k.T, k.N)
		}
	}
	signAndVerify(t, ctx, more[0], kr, "after the refresh", 2)

	// One entry per key, restarts included: the key's record of the
	// current epoch is restored, the erased ones are not rebuilt.
	dave := more[0]
	dave.stop()
	dave.start(t, true)
	keys, err := dave.app.Keys(ctx)
	if err != nil || len(keys) != 1 || keys[0].Epoch != 3 {
		t.Fatalf("dave after a restart: %+v %v", keys, err)
	}
	signAndVerify(t, ctx, dave, kr, "dave after his restart", 2)
}

func TestARequestOpenAtTheSwitchEndsUnsignedAndAnOldPartialIsRefused(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		acceptReshares(nd)
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	alice, bob := nodes[0], nodes[1]
	oldShare, _, info, err := bob.app.KeyShare(ctx, kr.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody answers alice's request: its human-less peers hold it open.
	for _, nd := range nodes[1:] {
		nd.deliver = func(_ Address, env []byte) bool {
			e, _ := wire.Decode(env)
			return e == nil || e.Kind != wire.KindSignRequest
		}
	}
	msg := []byte("asked at epoch 0")
	reqID, err := alice.app.BeginSignature(ctx, kr.KeyID, msg, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.app.StartReshare(ctx, ReshareRequest{KeyID: kr.KeyID, Threshold: 2, Signers: []string{"alice", "bob", "carol"}}); err != nil {
		t.Fatal(err)
	}
	waitEpoch(t, ctx, alice, kr.KeyID, 1, false)
	var serr *SignError
	if _, err := alice.app.WaitSignature(ctx, reqID); !errors.As(err, &serr) || !strings.Contains(serr.Reason, "moved to epoch 1") {
		t.Fatalf("a request open at the switch did not end unsigned at it: %v", err)
	}
	if err := alice.app.Approve(ctx, reqID); err == nil {
		t.Fatal("alice approved a request of the old epoch")
	}
	// Bob's partial with his old share, as an old console would send it.
	x, err := bls.SecretScalarFromBytes(oldShare)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tbls.Sign(&share.Share{Index: info.Self, Value: *x}, msg)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := tbls.EncodePartial(p)
	env, err := wire.Seal(&wire.Envelope{Kind: wire.KindPartial, Ceremony: reqID, Round: ceremony.SignRoundAnswer, From: info.Self, To: 1, Payload: payload}, bob.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.app.Deliver(ctx, bob.addr, env); !errors.Is(err, ErrRejected) {
		t.Fatalf("an old-epoch partial was taken: %v", err)
	}
	for _, nd := range nodes[1:] {
		nd.mu.Lock()
		nd.deliver = nil
		nd.mu.Unlock()
	}
	signAndVerify(t, ctx, alice, kr, "asked at epoch 1", 2)
}

func TestADeclinedReshareStopsWithNobodyBlamedAndTheOldGroupStillSigns(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, true) // auto_approve: keygen and signing, never a reshare
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	var mu sync.Mutex
	var asked []event.ApprovalRequested
	for _, nd := range nodes[1:] {
		approvals(ctx, nd, func(ar event.ApprovalRequested) (bool, string) {
			mu.Lock()
			asked = append(asked, ar)
			mu.Unlock()
			return nd.name != "carol", "not now"
		})
	}
	_, err := nodes[0].app.StartReshare(ctx, ReshareRequest{KeyID: kr.KeyID, Threshold: 3, Signers: []string{"alice", "bob", "carol"}})
	var kerr *KeygenError
	if !errors.As(err, &kerr) || len(kerr.Blamed) != 0 || kerr.Reason.String() != "declined" || !errors.Is(err, ErrDeclined) ||
		!strings.HasPrefix(err.Error(), "reshare ") || strings.Contains(err.Error(), "blaming") {
		t.Fatalf("declined reshare: %v (%+v)", err, kerr)
	}
	// Carol was asked (she declined). Bob may not have been: the abort can
	// reach him before the proposal, which then opens already ended.
	mu.Lock()
	if len(asked) == 0 || len(asked) > 2 {
		t.Fatalf("approval prompts %+v", asked)
	}
	for _, ar := range asked {
		if ar.Kind != "reshare" {
			t.Fatalf("approval prompts %+v", asked)
		}
	}
	mu.Unlock()
	for _, nd := range nodes {
		waitEpoch(t, ctx, nd, kr.KeyID, 0, false)
	}
	signAndVerify(t, ctx, nodes[2], kr, "the old group after a declined reshare", 2)

	// A refresh that goes through erases the declined one's secrets too:
	// its seed and sub-shares were dealt from the old shares.
	for _, nd := range nodes {
		nd.mu.Lock()
		nd.configure = func(c *Config) { c.ReshareRules = []*ReshareRule{{Name: ReshareRuleName(0)}} }
		nd.mu.Unlock()
		nd.stop()
		nd.start(t, true)
	}
	if _, err := nodes[0].app.StartReshare(ctx, ReshareRequest{KeyID: kr.KeyID, Threshold: 2, Signers: []string{"alice", "bob", "carol"}}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitEpoch(t, ctx, nd, kr.KeyID, 1, false)
		recs, err := nd.store.Ceremonies(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Kind == KindReshare && !erased(r) {
				t.Fatalf("%s keeps the secrets of reshare %x: seed set %v, %d inputs", nd.name, r.ID[:4], r.Seed != ([32]byte{}), len(r.Inputs))
			}
		}
	}
}

func TestConsoleRestartedMidReshareCompletesIt(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		acceptReshares(nd)
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	kr := keygenAll(t, ctx, nodes)
	carol := nodes[2]
	var handled int
	var mu sync.Mutex
	crash := make(chan struct{})
	carol.mu.Lock()
	carol.deliver = func(_ Address, env []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		handled++
		if handled == 4 {
			close(crash)
		}
		return true
	}
	carol.mu.Unlock()
	res := make(chan error, 1)
	go func() {
		_, err := nodes[0].app.StartReshare(ctx, ReshareRequest{KeyID: kr.KeyID, Threshold: 3, Signers: []string{"alice", "bob", "carol"}})
		res <- err
	}()
	select {
	case <-crash:
	case <-ctx.Done():
		t.Fatal("carol never got 4 messages")
	}
	carol.stop()
	carol.mu.Lock()
	carol.deliver = nil
	carol.mu.Unlock()
	carol.start(t, true)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitEpoch(t, ctx, nd, kr.KeyID, 1, false)
	}
	signAndVerify(t, ctx, carol, kr, "carol after her restart mid-reshare", 3)
}

func TestAnImportedKeyIsSplitAndSignsUnderItsOwnPublicKey(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		acceptReshares(nd)
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	x, err := bls.RandomScalar(nil)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := bls.NewSecretKey(x)
	if err != nil {
		t.Fatal(err)
	}
	pk := sk.PublicKey()
	id, err := nodes[0].app.ImportKey(ctx, sk, 2)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := nodes[0].app.WaitReshare(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rr.What != "import" || rr.Epoch != 0 || rr.KeyID != tbls.KeyID(pk) {
		t.Fatalf("import result %+v", rr)
	}
	for _, nd := range nodes {
		waitEpoch(t, ctx, nd, rr.KeyID, 0, false)
	}
	kr := &KeygenResult{KeyID: rr.KeyID, GroupKey: pk.Bytes()}
	signAndVerify(t, ctx, nodes[2], kr, "signed by an imported key", 2)
}

func TestAKeystoreThatDoesNotOpenIsRefusedAndNothingIsStored(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, true)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	x, err := bls.RandomScalar(nil)
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := bls.NewSecretKey(x)
	ks, err := keystore.Encrypt(sk.Bytes(), sk.PublicKey().Bytes(), "right", keystore.Options{KDF: "pbkdf2"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		keystore []byte
		password string
		want     error
	}{
		{"wrong password", ks, "wrong", keystore.ErrPassword},
		{"not a keystore", []byte(`{"version":4}`), "right", keystore.ErrFormat},
	}
	for _, tt := range tests {
		if _, err := nodes[0].app.ImportKeystore(ctx, tt.keystore, tt.password, 2); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	recs, err := nodes[0].store.Ceremonies(ctx)
	if err != nil || len(recs) != 0 {
		t.Fatalf("a refused import stored %d ceremonies (%v)", len(recs), err)
	}
}

func TestAnImporterRestartedBeforeTheEndAbandonsTheImport(t *testing.T) {
	t.Parallel()
	_, nodes := newTestNet(t, "alice", "bob", "carol")
	for _, nd := range nodes {
		nd.start(t, false) // nobody accepts: the import waits
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	x, err := bls.RandomScalar(nil)
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := bls.NewSecretKey(x)
	id, err := nodes[0].app.ImportKey(ctx, sk, 2)
	if err != nil {
		t.Fatal(err)
	}
	alice := nodes[0]
	alice.stop()
	alice.start(t, false)
	// It cannot deal again (the key is not stored): it ends here.
	if _, err := alice.app.WaitReshare(ctx, id); !errors.Is(err, ErrUnknown) {
		t.Fatalf("the abandoned import is still running: %v", err)
	}
	recs, err := alice.store.Ceremonies(ctx)
	// Nor was its seed stored: with any one signer's sub-share it gives
	// the whole key.
	if err != nil || len(recs) != 1 || !recs[0].Finished || recs[0].Seed != ([32]byte{}) {
		t.Fatalf("records after the restart: %+v %v", recs, err)
	}
}
