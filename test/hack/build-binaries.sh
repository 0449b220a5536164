#!/usr/bin/env bash
# Builds (once, then cached under ${IRONLB_CACHE:-~/.cache/ironlb}/bin/) the lab's
# kube-apiserver, etcd and podserver from the Go module proxy and prints
# "name=path" lines. The first run takes several minutes (kube-apiserver).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec go run ./tools/buildbins "$@"
