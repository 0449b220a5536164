#!/usr/bin/env bash
# Runs every fuzz target of the main module (func FuzzXxx in *_test.go outside test/)
# for FUZZTIME each, so a new fuzzer is never forgotten in the Makefile.
#
# Go 1.26's fuzz coordinator can fail a run with a bare "context deadline exceeded"
# when -fuzztime ends while a worker is busy (golang/go#75804, fixed in Go 1.27): no
# input failed, none is written. Such a run is reported and not counted as a failure;
# a run that writes a failing input (or fails in any other way) still fails.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
grep -rl --include='*_test.go' '^func Fuzz' --exclude-dir=test . | sort | while read -r f; do
	pkg=./$(dirname "${f#./}")
	for fn in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
		echo "fuzz: $pkg $fn ($fuzztime)"
		if go test -run '^$' -fuzz "^${fn}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
			cat "$log"
			continue
		fi
		cat "$log"
		if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log" &&
			[ "$(grep -c -- '--- FAIL' "$log")" = 1 ]; then
			echo "fuzz: $pkg $fn: the run ended with Go's fuzztime shutdown race (golang/go#75804), no failing input; not a failure"
			continue
		fi
		exit 1
	done
done
