package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"testing"
)

// Any line gets at most one answer, which is JSON-RPC, and never a panic.
func FuzzServerLine(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"status"}`,
		`{"jsonrpc":"2.0","id":"x","method":"sign","params":{"hex":"0a0b","wait":false}}`,
		`{"jsonrpc":"2.0","id":null,"method":"approve","params":{"id":"00"}}`,
		`{"jsonrpc":"2.0","method":"decline","params":{"id":"` + "0707070707070707070707070707070707070707070707070707070707070707" + `","reason":"x"}}`,
		`{"jsonrpc":"2.0","id":1e400,"method":"keys"}`,
		`{"jsonrpc":"2.0","id":1,"method":"roster.add","params":{"card":"x","verified":true}}`,
		`{"jsonrpc":"2.0","id":1,"method":"hello","params":{"ssh_client":"192.0.2.7:52722"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"hello","params":{"ssh_client":"[fe80::1%eth0]:22"}}`,
		`[]`, `{`, `null`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		s := NewServer(newFake(), true, nil)
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		cn := &conn{s: s, c: a, w: bufio.NewWriter(a)}
		out := make(chan []byte, 1)
		go func() {
			r := bufio.NewReader(b)
			l, _ := r.ReadBytes('\n')
			out <- l
		}()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel() // ends a subscription the line may have made
		cn.handle(ctx, line)
		a.Close()
		l := <-out
		if len(l) == 0 {
			return // a notification: no answer
		}
		var resp Response
		if err := json.Unmarshal(l, &resp); err != nil || resp.JSONRPC != "2.0" || (resp.Error == nil) == (resp.Result == nil) {
			t.Fatalf("answer %q to %q is not a JSON-RPC response", l, line)
		}
	})
}

// FuzzDecodeEvent: an event notification from the socket never panics the
// attached console, and what it accepts is an event of the type it names.
func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"type":"server_lagging","event":{"server":"backup","peer":"bob","lagging":true}}`,
		`{"type":"connection","event":{"state":"connected","server":"home"}}`,
		`{"type":"message","event":{"direction":"in","peer":"bob","server":"https://relay.example"}}`,
		`{"type":"nope","event":{}}`, `{"type":"error","event":null}`, `{`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			return
		}
		var p EventParams
		if json.Unmarshal(b, &p) != nil || eventType(e) != p.Type {
			t.Fatalf("%q decoded as %T", b, e)
		}
	})
}
