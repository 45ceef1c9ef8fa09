#!/usr/bin/env bash
# Runs every fuzz target of every package in the module, one at a time, for a
# short time each. Usage: .ci/fuzz.sh [FUZZTIME]   (default: $FUZZTIME, else 10s).
# Fails as soon as one fuzz run (or listing the targets) fails.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${1:-${FUZZTIME:-10s}}"
count=0

# Capture first: a failing command inside a for-list would not stop the script.
pkgs=$(go list ./...)
for pkg in $pkgs; do
	# `go test -list` prints the matching test names, then an "ok" line.
	listing=$(go test -list '^Fuzz' "$pkg")
	names=$(printf '%s\n' "$listing" | grep -E '^Fuzz' || true)
	for name in $names; do
		echo "fuzz: $pkg $name (fuzztime $fuzztime)"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
		count=$((count + 1))
	done
done

echo "fuzz: $count fuzz target(s) passed"
