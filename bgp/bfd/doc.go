// Package bfd is a single-hop BFD speaker (RFC 5880, RFC 5881) in
// asynchronous mode: it tells a directly connected router, within a few
// hundred milliseconds, that this host is gone, so the router can drop the
// host's routes long before a BGP hold timer would.
//
// Use it like this:
//
//	srv := bfd.NewServer(bfd.ServerConfig{OnChange: func(c bfd.Change) {
//		if c.Old == bfd.StateUp && c.State != bfd.StateUp {
//			// reset the routing session with c.Peer
//		}
//	}})
//	defer srv.Close()
//	err := srv.Set(bfd.SessionConfig{
//		Peer:          netip.MustParseAddr("192.0.2.1"),
//		DesiredMinTx:  100 * time.Millisecond,
//		RequiredMinRx: 100 * time.Millisecond,
//		DetectMult:    3,
//	})
//
// The router needs a matching session (for FRR: "neighbor 192.0.2.11 bfd"
// with bfdd running); the session comes Up after the three-way handshake.
// Both sides then detect a failure after DetectMult times the agreed
// interval without a packet: here 300 ms.
//
// # What it implements
//
// Control packets are sent from a socket bound to the session's local
// address and a source port in 49152-65535, with TTL 255 and DSCP CS6, to UDP
// port 3784; packets are received on port 3784 (one socket per address
// family, all addresses) and dropped unless their TTL is 255 (RFC 5881's
// GTSM check) and they pass RFC 5880 section 6.8.6's checks. While a session
// is not Up it sends once a second at most; when it comes Up it switches to
// its configured rate with a Poll Sequence, and timer changes made with Set
// while Up use a Poll Sequence too. Not implemented: Demand mode, the Echo
// function, authentication (packets with the A bit are discarded) and
// multihop BFD.
//
// The codec (Unmarshal, ControlPacket.Append) and the state machine are pure;
// the Server is the thin shell with sockets and timers.
//
// # Costs
//
// One goroutine and one socket per session, one goroutine and one socket per
// address family in use; a session sends one 24-byte packet per interval. Port
// 3784 must be free: the speaker cannot share a host with another BFD daemon.
// Linux only: it needs the TTL of received datagrams.
package bfd
