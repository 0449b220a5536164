#!/usr/bin/env bash
# Runs every fuzz target of the main module (func FuzzXxx in *_test.go outside test/)
# for FUZZTIME each, so a new fuzzer is never forgotten in the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
grep -rl --include='*_test.go' '^func Fuzz' --exclude-dir=test . | sort | while read -r f; do
	pkg=./$(dirname "${f#./}")
	for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
		echo "fuzz: $pkg $fn ($fuzztime)"
		go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime" "$pkg"
	done
done
