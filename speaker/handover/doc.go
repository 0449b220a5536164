// Package handover keeps TCP connections alive across a planned layer-2
// takeover. When a speaker leaves (SIGTERM, a rolling restart), the node
// that takes one of its addresses over sends gratuitous ARP/NA, and clients
// switch to it at once, also for connections they opened through the old
// node. The new node has no conntrack entry for those: the kernel picks their
// next packet up mid-stream (nf_conntrack_tcp_loose), the Service rules
// (kube-proxy's or package proxy's) DNAT it to some endpoint, which answers
// with a reset. The old node, though, is still up: its kernel keeps its
// iptables rules and conntrack entries after the speaker exits, and would
// keep forwarding those connections to their endpoints.
//
// So for a bounded time (Config.Window, default 60s) after taking an address
// over from a node that left, the new node forwards at layer 3 the packets
// for that address that belong to TCP connections it does not know, to the
// old node's address, instead of DNATing them:
//
//	mangle PREROUTING -> IRONLB-HANDOVER:
//	  -d VIP -p tcp ! --syn -m conntrack --ctstate NEW -m time --datestop END
//	                                                     -j CONNMARK --set-xmark M/M   (one per address)
//	  -m connmark --mark M/M                             -j MARK --set-xmark M/M
//	nat PREROUTING, first rule -> IRONLB-HANDOVER:
//	  -m mark --mark M/M -j ACCEPT        (no DNAT: before KUBE-SERVICES / IRONLB-SERVICES)
//	filter FORWARD, first rule -> IRONLB-HANDOVER:
//	  -m mark --mark M/M -j ACCEPT
//	ip rule fwmark M/M lookup T;  ip route VIP via OLD-NODE dev LINK table T
//
// A connection's first unknown packet marks the connection; every later
// packet of it gets the packet mark from the connection mark, so the whole
// connection follows the old node's path while new connections (SYN) are
// this node's as usual. The old node finds its conntrack entry, translates
// and forwards as before; its replies go to the client directly. The source
// address is the client's, so the old node's reverse path filter passes it
// (the client is on the same link). M is bit 12 (0x1000) and T 7327 by
// default (see the constants for why).
//
// IPv4 and IPv6 work alike (iptables and ip6tables, an ip rule and a table
// per family), and both are proven with real kernels: one test runs each case
// over a LAN of each family. Neighbour discovery is untouched by the rules:
// its messages are not TCP and conntrack does not track them, so they carry
// no mark; the new node finds the old one by NDP as for any next hop.
//
// # Use
//
//	f, err := handover.New(handover.Config{Registerer: reg})
//	err = f.Prepare(ctx)                  // at start: installs the fixed parts, adopts what the last process left
//	err = f.Forward(ctx, map[netip.Addr]netip.Addr{vip: oldNodeIP}) // at a takeover from a node that left, before announcing
//	err = f.Stop(ctx, vip)                // this node released vip
//	f.Detach()                            // at a planned exit: the forwards stay for the next process
//	err = f.Close(ctx)                    // or: remove everything
//
// Package speaker does this for every address it takes over from a speaker
// that announced its leave (not for a failure: a node that died forwards
// nothing). A window ends by itself. The forwards live in the kernel and
// outlive the process, like the proxy's rules: in a rolling restart the node
// that took an address over is restarted next, and the node taking it from
// that one forwards the connections it does not know there, where they must
// still be relayed to the first owner. So a stopping speaker detaches, and
// the next process adopts the forwards whose windows have not ended (each
// rule's comment records its previous owner and end) and ends them on time.
// Without a next process (the speaker removed, or replaced by another
// implementation) the kernel ends them: the per-address rule matches only
// until the window's end (the time match, rounded up to the second), so no
// connection is picked up for the old owner after it; connections forwarded
// during the window keep their route until Cleanup or the next Prepare.
// Close and Cleanup ("ironlb-speaker --cleanup") remove the chains, the rule
// and the table's routes.
//
// # Limits
//
// TCP only (a UDP flow cannot be told new from old). A connection that
// sends nothing during the window is reset at its next packet, as without
// forwarding; one forwarded during the window loses its path when the window
// ends (this node then drops its packets), so the window bounds how long a
// connection may outlive a handover. The old node's address must be on a
// link of this node (a route via a router would bring the packets back
// here); otherwise Forward fails and the connections are reset, as before.
// With IPv6 that takes an on-link route to the nodes' prefix (SLAAC, a
// configured /64, a router advertisement's on-link flag): nodes holding only
// DHCPv6 /128 addresses without one reach each other via the router, and
// their IPv6 connections are reset. The node must forward the family
// (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding), as a node that DNATs
// to pods on other nodes does; the package does not set it (turning IPv6
// forwarding on stops a node taking router advertisements unless accept_ra
// is 2). A packet of a connection that no node knows, for an address handed
// back and forth within one window, can go round the nodes until its TTL
// ends. Needs nf_conntrack_tcp_loose (the default, for both families):
// without it the mid-stream packet is INVALID and not marked. Forwarding IPv4
// packets out of the link they came in on makes this node send ICMP redirects
// to the client (a few, rate limited); clients ignore them, since they reach
// the address on-link. IPv6 sends none: the next hop, the old node's address,
// is not link-local.
//
// # Costs
//
// Fixed, while the speaker runs: one mangle PREROUTING rule per packet (a
// connection mark test), one nat PREROUTING rule per new connection, one
// filter FORWARD rule per forwarded packet, one ip rule; an iptables-save of
// the nat and filter tables (to check that the jumps are first) at 2s, 5s,
// 15s, 30s, 1, 2 and 5 minutes after Prepare and after each takeover, off
// the takeover's path. Per takeover: one
// iptables-restore of the mangle chain (the kernel validates the mangle
// table only, small on most nodes) and one route; per address in a window one more mangle rule.
package handover
