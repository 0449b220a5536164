#!/usr/bin/env bash
# Runs BenchmarkMetalLBAllocateBurst (metallb_bench_test.go.txt) inside MetalLB's
# own, unmodified package go.universe.tf/metallb/internal/allocator (v0.16.2).
#
# Why the indirection: an internal package cannot be imported from another
# module, but `go test` can test a dependency's package and `-overlay` can add a
# file to it. The go command however refuses overlay entries beneath GOMODCACHE
# ("Files beneath GOMODCACHE must not be replaced"), so this script:
#   1. downloads/locates the module with this directory's go.mod (go.sum-verified)
#      and checks the cached copy with `go mod verify`;
#   2. makes a temporary directory holding a symlink to that cached module
#      directory (nothing is copied or modified), a copy of go.mod/go.sum with
#      `replace go.universe.tf/metallb => <tmp>/metallb`, and an overlay that adds
#      <tmp>/metallb/internal/allocator/zz_ironlb_bench_test.go -> the .txt file;
#   3. runs go test with -modfile=<tmp>/go.mod -mod=mod (MetalLB's test-only
#      dependencies need go.sum lines that `go mod tidy` does not keep; only the
#      temporary go.sum gets them).
# Exit status: 0 on success, 0 with a "skipped" line when the module or its
# dependencies cannot be downloaded, non-zero on any other failure.
# Extra arguments are passed to go test (e.g. -count=3, -benchtime=2x).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

mod=go.universe.tf/metallb
pkg=$mod/internal/allocator

is_download_failure() {
	# Network / proxy failures, not checksum mismatches (those are real errors).
	grep -qE 'dial tcp|no such host|lookup .*: |connection refused|connection reset|i/o timeout|network is unreachable|TLS handshake timeout|proxyconnect|GOPROXY=off|module lookup disabled|GOFLAGS=-mod=vendor|[45][0-9][0-9] (Not Found|Gone|Forbidden|Bad Gateway|Service Unavailable|Gateway Timeout|Internal Server Error)|unrecognized import path' "$1" &&
		! grep -q 'SECURITY ERROR\|checksum mismatch' "$1"
}

skip_or_fail() { # $1: step, $2: log file
	cat "$2" >&2
	if is_download_failure "$2"; then
		echo "metallb bench: skipped: $1: $mod or a dependency cannot be downloaded (offline?)"
		exit 0
	fi
	echo "metallb bench: FAILED: $1" >&2
	exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ironlb-metallb-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if ! go mod download "$mod" >"$tmp/log" 2>&1; then skip_or_fail "go mod download $mod" "$tmp/log"; fi
dir=$(go list -m -f '{{.Dir}}' "$mod")
version=$(go list -m -f '{{.Version}}' "$mod")
if [ -z "$dir" ] || [ ! -d "$dir/internal/allocator" ]; then
	echo "metallb bench: FAILED: module directory of $mod not found ($dir)" >&2
	exit 1
fi
# The cached module must be byte-for-byte what go.sum pins.
if ! go mod verify >"$tmp/log" 2>&1; then skip_or_fail "go mod verify" "$tmp/log"; fi

ln -s "$dir" "$tmp/metallb"
cp go.mod go.sum "$tmp/"
go mod edit -modfile="$tmp/go.mod" -replace "$mod=$tmp/metallb"
printf '{"Replace":{"%s":"%s"}}\n' \
	"$tmp/metallb/internal/allocator/zz_ironlb_bench_test.go" \
	"$here/metallb_bench_test.go.txt" >"$tmp/overlay.json"
flags=(-mod=mod -modfile="$tmp/go.mod" -overlay="$tmp/overlay.json")

# Resolve (and fetch) MetalLB's test dependencies first, so that an offline
# machine is reported as "skipped" rather than as a benchmark failure.
if ! go list "${flags[@]}" -test -deps "$pkg" >/dev/null 2>"$tmp/log"; then
	skip_or_fail "resolving test dependencies of $pkg" "$tmp/log"
fi

echo "metallb bench: $mod $version (unmodified, $dir) + overlay $here/metallb_bench_test.go.txt"
echo "+ go test ${flags[*]} -run '^\$' -bench BenchmarkMetalLBAllocateBurst -benchmem -count=1 -timeout 60m $* $pkg"
go test "${flags[@]}" -run '^$' -bench BenchmarkMetalLBAllocateBurst -benchmem -count=1 -timeout 60m "$@" "$pkg"
