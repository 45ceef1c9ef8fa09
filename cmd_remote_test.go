package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/signal-mpc/cosigner/api"
)

// lineServer answers every request on a socket with an empty result and
// reports each request it read.
func lineServer(t *testing.T) (string, <-chan api.Request) {
	t.Helper()
	path := filepath.Join(shortDir(t), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	reqs := make(chan api.Request, 16)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewScanner(c)
		for r.Scan() {
			var req api.Request
			if json.Unmarshal(r.Bytes(), &req) != nil {
				return
			}
			reqs <- req
			b, _ := json.Marshal(api.Response{JSONRPC: "2.0", ID: req.ID, Result: json.RawMessage("{}")})
			c.Write(append(b, '\n'))
		}
	}()
	return path, reqs
}

// A command or console under SSH says hello with its SSH client first;
// without SSH it says nothing more than before. (Not parallel: it sets
// the environment.)
func TestDialingTheCosignerClaimsTheSSHClient(t *testing.T) {
	tests := []struct {
		name, conn, client string
		want               string // the hello's ssh_client; "" no hello
	}{
		{"over ssh", "192.0.2.7 52722 198.51.100.1 22", "", "192.0.2.7:52722"},
		{"ssh client only", "", "2001:db8::7 4000 22", "[2001:db8::7]:4000"},
		{"not over ssh", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SSH_CONNECTION", tt.conn)
			t.Setenv("SSH_CLIENT", tt.client)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			path, reqs := lineServer(t)
			cl, err := dialCosigner(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if err := cl.Call(ctx, api.MethodStatus, nil, nil); err != nil {
				t.Fatal(err)
			}
			first := <-reqs
			if tt.want == "" {
				if first.Method != api.MethodStatus {
					t.Fatalf("first request %q, want status (no hello)", first.Method)
				}
				return
			}
			var p api.HelloParams
			if first.Method != api.MethodHello || json.Unmarshal(first.Params, &p) != nil || p.SSHClient != tt.want {
				t.Fatalf("first request %s %s, want hello with ssh_client %q", first.Method, first.Params, tt.want)
			}
		})
	}
}
