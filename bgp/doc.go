// Package bgp will hold the session manager around an embedded GoBGP v3 server
// (peers, paths, communities). Nothing is implemented yet; see docs/architecture.md.
package bgp
