//go:build tools

// Package metallbspeaker only pins go.universe.tf/metallb v0.15.2 and the
// dependencies of its speaker, so that `go build go.universe.tf/metallb/speaker`
// builds MetalLB's own, unmodified speaker for the side-by-side Layer 2
// failover benchmark (test/cmd/benchspeaker -peer metallb). v0.15.2's speaker
// builds with this Go toolchain (Go 1.26).
//
// The speaker is a main package and cannot be imported, so go.mod and go.sum
// come from `go get go.universe.tf/metallb/speaker@v0.15.2`: do not run
// `go mod tidy` here, it would drop the speaker's requirements (it only sees
// the anchor below).
package metallbspeaker

import (
	// A public package of the MetalLB module.
	_ "go.universe.tf/metallb/api/v1beta1"
)
