module github.com/signal-mpc/cosigner

go 1.26.0

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/cloudflare/circl v1.6.5
	github.com/gorilla/websocket v1.5.3
	github.com/kilic/bls12-381 v0.1.0
	go.etcd.io/bbolt v1.5.0
	go.mau.fi/libsignal v0.2.1
	golang.org/x/crypto v0.59.0
	golang.org/x/net v0.62.0
	google.golang.org/protobuf v1.36.10
)

require (
	filippo.io/edwards25519 v1.1.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
