// Package proxy will turn Service and EndpointSlice changes into iptables-restore input
// (chains prefixed IRONLB-) and apply it. Nothing is implemented yet; see
// docs/architecture.md.
package proxy
