// Package speaker will hold the node agent: Service/Node watches, membership through
// hashicorp/memberlist, per-VIP election by rendezvous hashing, and the wiring of the
// l2, bgp and proxy packages. Nothing is implemented yet; see docs/architecture.md.
package speaker
