#!/usr/bin/env bash
# Regenerates the Go code of the Signal protobufs in this folder. The output
# (*.pb.go) is committed: builds and CI never need protoc.
#
# Needs protoc (Debian: apt-get install protobuf-compiler) and protoc-gen-go
# at the version of google.golang.org/protobuf in go.mod:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.10
# Run from anywhere: bash signal/proto/gen.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

want="$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"
have="$(protoc-gen-go --version | awk '{print $2}')"
if [ "$have" != "$want" ]; then
	echo "gen.sh: protoc-gen-go is $have, go.mod has google.golang.org/protobuf $want;" >&2
	echo "        run: go install google.golang.org/protobuf/cmd/protoc-gen-go@$want" >&2
	exit 1
fi

# Paths relative to the module root keep the registered file names unique
# (signal/proto/*.proto) among every protobuf linked into the binary.
protoc --proto_path=. --go_out=. --go_opt=paths=source_relative \
	signal/proto/websocket.proto signal/proto/signalservice.proto
