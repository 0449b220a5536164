//go:build tools

// Package metallbbench only anchors the go.universe.tf/metallb dependency so
// that `go mod tidy` keeps it; the benchmark itself runs inside MetalLB's own
// internal/allocator package through `go test -overlay` (see run.sh).
package metallbbench

import (
	// A public package of the MetalLB module (internal packages cannot be
	// imported from here).
	_ "go.universe.tf/metallb/api/v1beta1"
)
