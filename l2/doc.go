// Package l2 will hold the ARP (mdlayher/arp) and NDP (mdlayher/ndp) responders and
// gratuitous announcements for owned VIPs. Nothing is implemented yet; see
// docs/architecture.md.
package l2
