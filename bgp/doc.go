// Package bgp announces addresses to routers with an embedded GoBGP v3 server
// (github.com/osrg/gobgp/v3/pkg/server, no gRPC listener): the caller says
// which BGP sessions should exist and which prefixes go to which of them, and
// a Manager makes it so, idempotently. It knows nothing of Kubernetes.
//
// Use:
//
//	m, err := bgp.New(ctx, bgp.Config{
//		RouterID:   netip.MustParseAddr("192.0.2.11"), // the node's IPv4 address
//		ASN:        64600,
//		Registerer: prometheus.DefaultRegisterer,     // or your own registry
//		OnEvent:    func(e bgp.Event) { /* Kubernetes Event, status update */ },
//	})
//	...
//	err = m.Apply(ctx, bgp.Desired{
//		Peers: []bgp.Peer{{
//			Address: netip.MustParseAddr("192.0.2.1"), ASN: 64512,
//			HoldTime: 3 * time.Second, KeepaliveTime: time.Second,
//			BFD: &bgp.BFD{MinTx: 100 * time.Millisecond, MinRx: 100 * time.Millisecond, Multiplier: 3},
//		}},
//		Paths: []bgp.Path{{
//			Prefix:      netip.MustParsePrefix("203.0.113.10/32"),
//			Communities: []bgp.Community{bgp.CommunityNoExport},
//		}},
//	})
//	...
//	defer m.Stop(ctx) // withdraws everything, then closes the sessions
//
// Call Apply with the whole desired state whenever anything changes; it
// computes the difference to what GoBGP holds and only touches that: new and
// removed peers, sessions whose settings changed (restarted), BFD settings
// (without touching the BGP session), and prefixes that are new, gone, or
// whose attributes or peers changed. Status and the metrics report per peer
// the session state, the BFD state, the prefixes advertised and the UPDATEs
// sent; OnEvent is told when a session or its BFD goes up or down.
//
// # Sessions
//
// Sessions are opened from this side only (routers accept them; Config.
// ListenPort makes GoBGP listen as well). A Peer may set its own local AS,
// source address, port, hold and keepalive times (down to 3s/1s), eBGP
// multihop, a TCP MD5 password, graceful restart, and the families it
// carries: an IPv4 session can carry IPv6 prefixes with NextHopIPv6 set, and
// the reverse with NextHopIPv4. The next hop of a prefix of the session's own
// family is the session's local address, which is the node's address on the
// link for a directly connected router. LOCAL_PREF is sent on iBGP sessions
// only.
//
// With BFD set, a single-hop BFD session (package bfd) runs beside the BGP
// session. The router's BFD notices a dead node within DetectMult x interval
// (about 300ms at 100ms x 3) and drops its routes, instead of waiting for the
// hold time; and when this side's BFD session fails, the BGP session is reset
// at once.
//
// # Per-peer announcements
//
// All paths live in GoBGP's one global RIB. A path for every peer (Path.Peers
// empty) carries a tag saying so; a path for some peers carries one tag per
// peer. The tags are large communities in a reserved namespace (global
// administrator 4294967295), and each peer has an export policy that
// accepts, on that peer's session only, paths with its tag or the every-peer
// tag, removes all tags, and sets the next hop for the session's other
// family; the default export action is reject. Because the tags are part of
// the path, moving a prefix from one peer to another is a new version of the
// path, and GoBGP, comparing old and new against the same policy, sends the
// peer that lost it a withdrawal. Paths for every peer need no change when
// peers come and go. (Policies matching on the prefix alone would not do:
// GoBGP evaluates the old path against the new policy, so a peer removed from
// a prefix list would never get the withdrawal.)
//
// Two paths for the same prefix (e.g. VIPs aggregated with VIPPrefix) are
// merged: the union of their communities and peers, the higher LOCAL_PREF.
//
// # Costs
//
// Apply validates and diffs in O((P + R) log(P + R)) for P peers and R
// prefixes (about 6ms for 10,000 prefixes), then makes one GoBGP call per
// changed prefix or peer; GoBGP sends each changed prefix to every session
// carrying its family. Status counts advertised prefixes by running the
// export policy over GoBGP's RIB, O(R) per established session; the metrics
// call Status at scrape time. One Manager runs one GoBGP server, one
// goroutine per session and, with BFD, one per BFD session; GoBGP's server
// goroutine cannot be stopped and stays behind, idle, after Stop.
package bgp
