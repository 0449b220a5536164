// Package l2 announces virtual IPs on the local Ethernet segment: it answers
// ARP requests (IPv4) and Neighbor Solicitations (IPv6) for the VIPs this
// node owns, and announces them gratuitously when it takes them over. It
// knows nothing about Kubernetes: the caller (ironlb's speaker) decides which
// VIPs the node owns and hands over the complete set whenever it changes.
//
// # Use
//
//	a, err := l2.New(l2.Config{
//		Registerer:  prometheus.DefaultRegisterer,
//		OnConflict:  onConflict,  // see "Split brain" below
//		OnPlacement: onPlacement, // status and Events: which interface answers
//	})
//	if err != nil { ... }
//	go a.Run(ctx) // link tracking, burst repeats, refresh, callbacks
//	...
//	// Whenever the election result changes (idempotent; a full set):
//	err = a.SetOwned(ctx, []l2.Announcement{
//		{VIP: netip.MustParseAddr("192.0.2.200")},                              // the interface whose subnet holds it
//		{VIP: netip.MustParseAddr("2001:db8::200"), Interfaces: []string{"eth1"}}, // an IPPool's interfaces
//	})
//	...
//	a.Close() // stop answering now (Run also closes when its ctx ends)
//
// The process needs CAP_NET_RAW (packet and ICMPv6 sockets) and must run in
// the network namespace whose links it announces on (hostNetwork).
//
// # Which interface answers
//
// A VIP with Interfaces is answered on each named link that can answer; one
// without is answered on the single link that can answer and holds the most
// specific configured subnet containing the VIP (ties: the smallest name;
// host addresses such as a VIP/32 on kube-ipvs0 are not subnets). A link can
// answer when it is up with carrier, is not loopback, not NOARP, has an
// Ethernet address and is not the port of a bridge, bond or team (its master
// answers instead; VRF members are fine). A VIP that no link can answer for
// is reported by Status and OnPlacement with the reason, and counted in
// ironlb_l2_vips_unplaced. Links are followed through netlink notifications
// (plus a rescan every Config.RescanInterval): a link going down, losing its
// carrier, gaining a master or disappearing stops the answers there at once;
// a link coming back, or a VIP moving to another link, is a takeover.
//
// # What is answered, and what is sent
//
// ARP: requests for an owned VIP (broadcast, unicast reachability probes to
// the link's MAC, and RFC 5227 probes from 0.0.0.0) get a unicast reply
// from the link's MAC. NDP: Neighbor Solicitations for an owned VIP sent to
// its solicited-node group or to the VIP itself get a solicited Neighbor
// Advertisement (Override set, target link-layer option); duplicate address
// detection probes for it are answered to all nodes, which defends the VIP.
// The link joins the solicited-node group of every IPv6 VIP it answers for,
// so NICs accept those frames and MLD-snooping switches forward them. Frames
// captured in promiscuous mode (sent to another MAC) are never answered.
//
// On every takeover (a VIP newly owned, moved to another link, its link back
// up or with a new MAC) the announcer sends a burst of Config.GratuitousCount
// rounds, Config.GratuitousInterval apart; a round is an ARP request and an
// ARP reply, both broadcast with sender and target address the VIP (the form
// Linux accepts to override a fresh cache entry), or an unsolicited Neighbor
// Advertisement with the Override flag to ff02::1. The first round goes out
// before SetOwned returns. Config.RefreshInterval adds one round per VIP
// periodically. Linux hosts, by default, only update entries they already
// have from gratuitous packets and create none from them.
//
// Release is immediate: when SetOwned (or Close) returns, no answer for a VIP
// it dropped is sent any more, and sockets and group memberships no longer
// needed are gone.
//
// # Split brain
//
// Any frame in which another MAC claims an owned VIP on the link that answers
// for it — an ARP packet with the VIP as sender address (gratuitous or a
// reply), a Neighbor Advertisement for it, a Neighbor Solicitation sent from
// it — is a conflict. It is counted in ironlb_l2_conflicts_total, logged, and
// reported to Config.OnConflict with the VIP, the interface, both MACs and
// the kind of packet. Reports for one (VIP, interface, MAC) are coalesced to
// at most one per Config.ConflictInterval, and a report always follows the
// last conflicting frame.
//
// The rule to resolve it: ownership is decided by the caller's election
// alone, never by the wire. On a report, the caller re-checks its election:
// if this node still owns the VIP (and is not handing it over), it calls
// Reannounce, which sends a new gratuitous burst; otherwise it does nothing
// more than the SetOwned it makes anyway. Since a report follows the other
// claimant's last frame, the owner's burst comes after it: the elected owner
// has the last word in every client's cache. While two partitions each elect
// themselves, both re-announce, at most one burst per ConflictInterval each;
// once membership heals, the election agrees on one owner, the other node's
// SetOwned stops its answers, and the owner's re-announcement fixes the
// caches within ConflictInterval plus one round trip. The caller turns the
// report into a Kubernetes Event naming both MACs.
//
//	onConflict := func(c l2.Conflict) {
//		recorder.Eventf(svc, "Warning", "L2Conflict", "%s on %s also claimed by %s", c.VIP, c.Interface, c.TheirMAC)
//		if election.Owner(c.VIP) == myNode && !leaving {
//			_ = a.Reannounce(c.VIP)
//		}
//	}
//
// # Costs
//
// Each link that answers for at least one VIP has two AF_PACKET sockets: one
// bound to ETH_P_ARP, which receives every ARP frame arriving on the link
// (the ARP traffic of the whole broadcast domain), and one bound to
// ETH_P_IPV6 with an in-kernel BPF filter that passes only Neighbor
// Solicitations and Advertisements, plus an ICMPv6 socket that receives
// nothing and only holds the multicast memberships. Links without VIPs get no
// socket. Every received frame is parsed and decided in O(1) (two map
// lookups) under a read lock; answers are written from the receiving
// goroutine, so no queue can grow. A link change costs one netlink dump of
// links and addresses and an O(V·(L+A)) placement for V VIPs, L links and A
// addresses; notifications arriving during a rescan are coalesced into one
// more. Timers cost O(V) per wake-up. See BenchmarkAnswer and BenchmarkPlace.
//
// # Metrics
//
// All labelled family="ipv4"|"ipv6": ironlb_l2_requests_total (ARP requests
// and Neighbor Solicitations received on answering links, for any address),
// ironlb_l2_answers_total, ironlb_l2_gratuitous_total (frames),
// ironlb_l2_conflicts_total (frames), ironlb_l2_vips_owned and
// ironlb_l2_vips_unplaced.
//
// # Limits
//
// Linux only. Auto placement looks at configured addresses, not at on-link
// routes: on an IPv6 network whose nodes hold only /128 addresses, name the
// interfaces. Neighbor Solicitations carrying IPv6 extension headers are not
// answered. Conflicts are only detected from frames that reach this node:
// broadcast and multicast claims always do, unicast replies to clients only
// when the link is in promiscuous mode.
package l2
