package core

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/signal-mpc/cosigner/core/roster"
)

const (
	bucketConsole = "core.console"
	keyConsoleKey = "ed25519"
	keyRoster     = "roster"
)

// ConsoleKey returns this console's Ed25519 key, which signs every MPC
// envelope it sends, creating and storing it (encrypted, in the vault) on
// first use.
func ConsoleKey(ctx context.Context, v Vault) (ed25519.PrivateKey, error) {
	var key ed25519.PrivateKey
	err := v.Update(ctx, func(tx VaultTx) error {
		seed, err := tx.Get(bucketConsole, []byte(keyConsoleKey))
		if err != nil {
			return err
		}
		if seed == nil {
			seed = make([]byte, ed25519.SeedSize)
			if _, err := rand.Read(seed); err != nil {
				return err
			}
			if err := tx.Put(bucketConsole, []byte(keyConsoleKey), seed); err != nil {
				return err
			}
		}
		if len(seed) != ed25519.SeedSize {
			return fmt.Errorf("%w: console key", ErrCorrupt)
		}
		key = ed25519.NewKeyFromSeed(seed)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("core: console key: %w", err)
	}
	return key, nil
}

// LoadRoster reads the stored roster (empty if none yet).
func LoadRoster(ctx context.Context, v Vault) (*roster.Roster, error) {
	r := &roster.Roster{}
	err := v.View(ctx, func(tx VaultTx) error {
		b, err := tx.Get(bucketConsole, []byte(keyRoster))
		if err != nil || b == nil {
			return err
		}
		return json.Unmarshal(b, r)
	})
	if err != nil {
		return nil, fmt.Errorf("core: load roster: %w", err)
	}
	return r, nil
}

// SaveRoster stores the roster.
func SaveRoster(ctx context.Context, v Vault, r *roster.Roster) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return v.Update(ctx, func(tx VaultTx) error { return tx.Put(bucketConsole, []byte(keyRoster), b) })
}

const keyCardSerial = "card-serial"

// OwnCard is this console's signed card over addrs (one per server it has
// an account on). Its serial is kept in the vault and bumped when the
// addresses change, so that every card a console hands out replaces the
// ones before it on the others' consoles.
func OwnCard(ctx context.Context, v Vault, name string, key ed25519.PrivateKey, addrs []roster.Address) (roster.Card, error) {
	var card roster.Card
	err := v.Update(ctx, func(tx VaultTx) error {
		var serial uint64
		prev, err := tx.Get(bucketConsole, []byte(keyCardSerial))
		if err != nil {
			return err
		}
		var last *roster.Card
		if prev != nil {
			if last, err = roster.ParseCard(prev); err != nil || !last.Signed() {
				return fmt.Errorf("%w: own card", ErrCorrupt)
			}
			serial = last.Serial
		}
		card, err = roster.SignCard(name, max(serial, 1), key, addrs)
		if err != nil {
			return err
		}
		if prev != nil && sameAddresses(last.Addresses, addrs) {
			return nil
		}
		if prev != nil {
			if card, err = roster.SignCard(name, serial+1, key, addrs); err != nil {
				return err
			}
		}
		b, err := json.Marshal(card)
		if err != nil {
			return err
		}
		return tx.Put(bucketConsole, []byte(keyCardSerial), b)
	})
	if err != nil {
		return roster.Card{}, fmt.Errorf("core: own card: %w", err)
	}
	return card, nil
}

func sameAddresses(a, b []roster.Address) bool {
	return slices.EqualFunc(a, b, func(x, y roster.Address) bool {
		return x.Server == y.Server && x.Account == y.Account && x.Device == y.Device && bytes.Equal(x.IdentityKey, y.IdentityKey)
	})
}
