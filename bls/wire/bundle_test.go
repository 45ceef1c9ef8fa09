package wire

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func sealedSeries(t testing.TB, n, payload int) [][]byte {
	var envs [][]byte
	for i := range n {
		envs = append(envs, mustSeal(t, &Envelope{Kind: KindShare, Round: uint32(i + 1), From: 1, To: 2, Payload: bytes.Repeat([]byte{byte(i)}, payload)}))
	}
	return envs
}

func TestPackBundlesAndUnbundleSplits(t *testing.T) {
	envs := sealedSeries(t, 3, 100)
	msgs := Pack(envs)
	if len(msgs) != 1 {
		t.Fatalf("3 small envelopes packed into %d messages, want 1", len(msgs))
	}
	if msgs[0][0] == envs[0][0] {
		t.Fatal("a bundle starts like an envelope")
	}
	got, err := Unbundle(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(got, envs, bytes.Equal) {
		t.Fatal("unbundled envelopes differ from the packed ones")
	}
	for _, e := range got {
		if _, err := Open(e, roster); err != nil {
			t.Fatalf("an unbundled envelope does not open: %v", err)
		}
	}
}

func TestALoneEnvelopeIsSentAsItIs(t *testing.T) {
	env := mustSeal(t, sampleEnvelope())
	msgs := Pack([][]byte{env})
	if len(msgs) != 1 || !bytes.Equal(msgs[0], env) {
		t.Fatal("a single envelope was wrapped")
	}
	got, err := Unbundle(env)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], env) {
		t.Fatalf("Unbundle(envelope) = %d entries, %v", len(got), err)
	}
	if got := Pack(nil); len(got) != 0 {
		t.Fatalf("Pack(nil) = %d messages", len(got))
	}
}

func TestPackKeepsOrderWithinTheBounds(t *testing.T) {
	// Count bound: 2*MaxBundleCount+1 small envelopes give two full
	// bundles and a lone envelope.
	envs := sealedSeries(t, 2*MaxBundleCount+1, 10)
	msgs := Pack(envs)
	if len(msgs) != 3 || !bytes.Equal(msgs[2], envs[len(envs)-1]) {
		t.Fatalf("count bound: %d messages", len(msgs))
	}
	// Size bound: envelopes of a third of the limit, three do not fit.
	big := sealedSeries(t, 5, MaxBundleSize/3)
	msgs = Pack(big)
	var flat [][]byte
	for _, m := range msgs {
		if len(m) > MaxBundleSize {
			t.Fatalf("a message of %d bytes exceeds %d", len(m), MaxBundleSize)
		}
		got, err := Unbundle(m)
		if err != nil {
			t.Fatal(err)
		}
		flat = append(flat, got...)
	}
	if len(msgs) != 3 || !slices.EqualFunc(flat, big, bytes.Equal) {
		t.Fatalf("size bound: %d messages, order kept %v", len(msgs), slices.EqualFunc(flat, big, bytes.Equal))
	}
}

func TestUnbundleRejectsWhatPackNeverMakes(t *testing.T) {
	envs := sealedSeries(t, 2, 10)
	b := Pack(envs)[0]
	one := Pack(sealedSeries(t, 1, 10))[0]
	oneBundled := append([]byte{bundleTag, byte(len(one))}, one...)
	nonMinimal := append([]byte{bundleTag, 0x80 | byte(len(envs[0])&0x7f), byte(len(envs[0]) >> 7)}, envs[0]...)
	nonMinimal = append(nonMinimal, b[bundledSize(len(envs[0])):]...)
	tooMany := Pack(sealedSeries(t, MaxBundleCount, 10))[0]
	extra := mustSeal(t, sampleEnvelope())
	tooMany = append(tooMany, append([]byte{bundleTag, byte(len(extra))}, extra...)...)
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"one entry":          {oneBundled, ErrMalformed},
		"trailing byte":      {append(bytes.Clone(b), 0x08), ErrMalformed},
		"truncated":          {b[:len(b)-1], ErrMalformed},
		"non-minimal length": {nonMinimal, ErrMalformed},
		"empty entry":        {append([]byte{bundleTag, 0}, b...), ErrMalformed},
		"too many entries":   {tooMany, ErrTooLarge},
		"too large":          {append([]byte{bundleTag}, make([]byte, MaxBundleSize)...), ErrTooLarge},
	} {
		if _, err := Unbundle(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
}

func FuzzUnbundle(f *testing.F) {
	envs := sealedSeries(f, 3, 20)
	f.Add(Pack(envs)[0])
	f.Add(envs[0])
	f.Add([]byte{bundleTag})
	f.Add([]byte{bundleTag, 1, 8, bundleTag, 1, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Unbundle(b)
		if err != nil {
			if got != nil {
				t.Fatal("Unbundle returned entries with an error")
			}
			return
		}
		if len(got) == 1 {
			if !bytes.Equal(got[0], b) {
				t.Fatal("a non-bundle came back changed")
			}
			return
		}
		// Canonical: the entries pack back into exactly the input.
		if p := Pack(got); len(p) != 1 || !bytes.Equal(p[0], b) {
			t.Fatalf("not canonical: %x packs back into %d messages", b, len(p))
		}
	})
}
