//go:build tools

// Package metallbcontroller only pins go.universe.tf/metallb v0.15.2 so that
// `go build go.universe.tf/metallb/controller` builds MetalLB's own, unmodified
// controller for the side-by-side controller benchmarks (test/cmd/benchcontroller).
// v0.15.2 is the newest release whose controller builds with this Go toolchain.
package metallbcontroller

import (
	// A public package of the MetalLB module (the controller is a main package and
	// cannot be imported).
	_ "go.universe.tf/metallb/api/v1beta1"
)
