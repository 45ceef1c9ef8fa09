package store

import (
	"context"
	"fmt"
	"github.com/signal-mpc/cosigner/signal/store/storetest"
	"testing"

	"go.mau.fi/libsignal/session"
)

// BenchmarkSessionMessage measures one message through libsignal with both
// ends on persistent stores: encrypt (write-through of the sender's session)
// plus decrypt (write-through of the receiver's). "oneway" sends a stream in
// one direction (symmetric ratchet only); "alternating" turns the DH ratchet
// on every message (a key pair and two X25519 agreements in libsignal).
// "durable" fsyncs every commit; "nosync" survives a crash of the process
// but not of the machine.
func BenchmarkSessionMessage(b *testing.B) {
	type bench struct {
		name      string
		opts      Options
		alternate bool
	}
	var cases []bench
	for _, sync := range []struct {
		name string
		opts Options
	}{{"durable", Options{}}, {"nosync", Options{NoSync: true}}} {
		cases = append(cases, bench{sync.name + "/oneway", sync.opts, false}, bench{sync.name + "/alternating", sync.opts, true})
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			ctx := b.Context()
			alice, bob := ackedPair(b, bc.opts)
			if !bc.opts.NoSync {
				storetest.LoadDisk(b, b.TempDir())
			}
			msg := make([]byte, 160) // one padded Content block
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				from, to := alice, bob
				if bc.alternate && i%2 == 1 {
					from, to = bob, alice
				}
				wire, typ := from.encrypt(b, to.addr, msg)
				if _, err := to.decrypt(ctx, from.addr, wire, typ); err != nil {
					b.Fatal(err)
				}
			}
			if !bc.opts.NoSync {
				storetest.Report(b)
			}
		})
	}
}

// BenchmarkOpenPassphrase is the cost of opening a store with the default
// argon2id parameters (paid once at start).
func BenchmarkOpenPassphrase(b *testing.B) {
	path := b.TempDir() + "/state.db"
	o := Options{Passphrase: []byte("benchmark"), KDF: DefaultKDF}
	s, err := Open(b.Context(), path, o)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	for b.Loop() {
		s, err := Open(b.Context(), path, o)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkSessionMessagePipelined is BenchmarkSessionMessage with the
// messages of a round submitted together, as a console does when it
// encrypts one round for several peers or decrypts what arrived at once:
// the store runs them one after the other and commits them in one group,
// so the fsyncs are shared. An op is still one message (encrypt plus
// decrypt), durable at both ends.
func BenchmarkSessionMessagePipelined(b *testing.B) {
	for _, batch := range []int{4, 16} {
		b.Run(fmt.Sprintf("durable/batch=%d", batch), func(b *testing.B) {
			ctx := b.Context()
			alice, bob := ackedPair(b, Options{})
			storetest.LoadDisk(b, b.TempDir())
			msg := make([]byte, 160)
			type sealed struct {
				wire []byte
				typ  uint32
			}
			out := make([]sealed, batch)
			pending := make([]Pending, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				for i := range batch {
					pending[i] = alice.store.Submit(ctx, func(ctx context.Context) error {
						ct, err := session.NewCipher(alice.builder(bob.addr), bob.addr).Encrypt(ctx, msg)
						if err == nil {
							out[i] = sealed{ct.Serialize(), ct.Type()}
						}
						return err
					})
				}
				for i := range batch {
					if err := pending[i].Wait(ctx); err != nil {
						b.Fatal(err)
					}
				}
				for i := range batch {
					pending[i] = bob.store.Submit(ctx, func(ctx context.Context) error {
						_, err := bob.decrypt(ctx, alice.addr, out[i].wire, out[i].typ)
						return err
					})
				}
				for i := range batch {
					if err := pending[i].Wait(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			storetest.Report(b)
		})
	}
}

// ackedPair is two devices with a session set up and acknowledged by a
// reply: later messages are ordinary (WHISPER) messages, not PreKey
// messages.
func ackedPair(b *testing.B, o Options) (alice, bob *device) {
	b.Helper()
	ctx := b.Context()
	alice, bob = newDeviceOpts(b, "alice", o), newDeviceOpts(b, "bob", o)
	connect(b, alice, bob, true)
	wire, typ := alice.encrypt(b, bob.addr, []byte("setup"))
	if _, err := bob.decrypt(ctx, alice.addr, wire, typ); err != nil {
		b.Fatal(err)
	}
	wire, typ = bob.encrypt(b, alice.addr, []byte("ack"))
	if _, err := alice.decrypt(ctx, bob.addr, wire, typ); err != nil {
		b.Fatal(err)
	}
	return alice, bob
}
