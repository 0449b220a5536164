// Package membership is the speakers' cluster: a thin layer over
// hashicorp/memberlist (v0.7.0) that tells each speaker which others are
// alive, within a second of a failure, and what each one claims (the
// metadata the election package reads). Member name = Kubernetes Node name;
// peers are found through the Nodes' addresses given by the caller (no pod
// listing, no API polling); all gossip is encrypted with a key derived from a
// shared secret.
//
// # Use
//
//	key, err := membership.ReadKeyFile(*secretFile) // --memberlist-secret-file
//	c, err := membership.New(membership.Config{
//		NodeName: nodeName, Addr: nodeIP, Port: *memberlistPort, Key: key,
//		Registerer: prometheus.DefaultRegisterer,
//	})
//	// 1. Wait for the informers (Nodes, Services, EndpointSlices, IPPools) to
//	//    sync: the election must start from the same view as the peers.
//	// 2. Join through every Node's InternalIP; when Join returns, this node
//	//    has merged the state (members and claims) of the peers that answered.
//	n, err := c.Join(ctx, peers) // err only if peers exist and none answered
//	// 3. Keep the peer list current from the Node informer; peers that are not
//	//    members are joined now and every 10 s.
//	c.SetPeers(peers)
//	// 4. Feed the events (this node's own included) to the election.
//	for ev := range c.Events() {
//		switch ev.Type {
//		case membership.Join, membership.Update:
//			changes = e.SetMember(ev.Member.Name, ev.Member.Meta.Claims)
//		case membership.Leave:
//			changes = e.DeleteMember(ev.Member.Name)
//		}
//	}
//	// 5. After a settle time (300 ms, see package election), announce what the
//	//    election gives this node and publish it whenever it changes:
//	n, err = c.SetMeta(ctx, membership.Meta{Claims: e.Claims(nodeName)})
//
// Events never block memberlist: its callbacks run under memberlist's locks,
// so they only record each member's latest state, and a goroutine delivers
// them; a slow reader gets merged events, never stale ones, and memory stays
// bounded by the number of members. Members returns the alive set (suspects
// included) on demand.
//
// # Failure detection
//
// memberlist (SWIM with the Lifeguard extensions) probes one random peer
// every probe interval; a peer that answers neither the probe, nor indirect
// probes through three others, nor a TCP ping within the interval becomes
// suspect; a suspect that does not refute in time is declared dead and the
// news is gossiped. The timings (timing.go explains each number) are:
//
//	ProbeInterval 150 ms, ProbeTimeout 75 ms, IndirectChecks 3,
//	SuspicionMult 3 (450 ms for up to 10 members, confirmed by 1 other),
//	SuspicionMaxTimeoutMult 3 (1.35 s when no other member confirms),
//	GossipInterval 50 ms to 3 members, RetransmitMult 4,
//	PushPullInterval 10 s, GossipToTheDeadTime 30 s, TCPTimeout 2 s.
//
// Expected detection time of a dead member: the first probe of it comes after
// about (N-1)/N of a probe interval (every member probes round robin, so the
// member is probed about once per interval), the probe fails at the end of its
// interval (150 ms), the suspicion lasts 450 ms once a second member's probe
// confirms it (the confirmation usually lands inside those 450 ms), and the
// death reaches the others within a gossip interval: about 0.1 + 0.15 + 0.45 +
// 0.05 = 0.75 s, at most about 1.7 s when nobody confirms. Measured here
// (BenchmarkFailureDetection: 5 members in a network namespace on a shared
// 2-core machine, 12 kills): first peer p50 0.80 s, p95 0.86 s; every peer p50
// 0.80 s, p95 0.88 s. Across runs of TestDetectsKilledMember, p50 was
// 0.7-0.85 s and p95 at most 1.0 s.
//
// Without false positives: a member is suspected only if it answers nothing
// for 150 ms, and declared dead only if it stays silent 150 + 450 ms and
// another member agrees; a merely slow member hears of its suspicion within a
// gossip round and refutes. The guarantee needs the speaker's process to run
// a goroutine within about half a probe interval: a process stalled longer
// cannot be told from a dead one. TestNoFalseSuspicionUnderLoad saturates
// GOMAXPROCS with busy loops in the process that runs five members for 20 s
// (harsher than production, where each speaker has its own process: here five
// members' goroutines queue behind the same busy loops; Go then wakes a
// goroutine after 10-20 ms) and asserts no probe failure, refutation or death
// whenever a watchdog saw no stall of 75 ms or more; on a machine
// oversubscribed by other processes (stalls of seconds were seen on the shared
// build machine) it reports the counts instead. In interleaved runs there, a
// 100 ms interval produced more than twice the probe failures of 150 ms.
// Run the speaker without a CPU limit (a request only): CFS throttling stalls
// a throttled process for the rest of a 100 ms period.
// ironlb_memberlist_probe_failures_total and ironlb_memberlist_refutations_total
// show whether a cluster's network or load needs longer timings.
//
// A graceful Leave is seen by every peer in about 0.1 s (TestLeaveIsSeenAtOnce,
// 10 trials: p50 0.10-0.14 s, p95 0.15 s).
//
// # Planned restart: handing addresses over
//
// On SIGTERM the speaker should, in this order:
//
//  1. keep answering ARP/NDP for the addresses it owns, and stop publishing;
//  2. call Leave(2*time.Second): it publishes Meta.Leaving, then memberlist's
//     leave message, and returns once that is sent;
//  3. the peers get a Leave event, their elections drop this node, and each
//     address's next candidate starts answering and sends gratuitous ARP/NA;
//  4. keep answering for a grace period after Leave returned (1 s covers the
//     0.15 s the leave takes to reach everyone plus the successor's reaction),
//     then stop answering, call Shutdown, and exit. Packets that still arrive
//     through caches not yet updated are forwarded by the node's iptables
//     rules, which outlive the process.
//
// Stopping at once would leave a gap with no answer; answering much longer
// would let a late reply of the old owner point a client back at it.
//
// # Encryption
//
// KeyFromSecret derives the AES-256-GCM key with HKDF-SHA256 from the secret
// file's bytes (at least 16 bytes; e.g. `openssl rand -base64 32`). A member
// with another key, or none, cannot join: its messages do not decrypt
// (TestEncryptionKeepsOutOtherKeys). Messages also carry the label "ironlb",
// so ironlb's gossip never merges with another memberlist cluster (MetalLB's
// during a migration). Without a key gossip is plain text and anyone who
// reaches the port can join; New logs a warning.
//
// Key rotation is not supported. Changing the Secret and restarting the
// speakers splits them, for the length of the rollout, into two clusters that
// cannot read each other, and both elect owners (duplicate ARP answers, which
// the l2 package reports). memberlist's keyring could rotate without a split
// (install the new key on every member, switch the primary, remove the old);
// a secret file holding several keys would be the way to offer it.
//
// # Metadata
//
// Each member's metadata (memberlist allows 512 bytes) is a Meta: the
// addresses it claims and a leaving flag, in a versioned binary format
// (version byte, flags, then per family a count and sorted addresses as
// variable-length deltas) that later versions may only extend. About 500 IPv4
// or 250 IPv6 addresses of one pool range fit, at least 100 IPv4 or 25 IPv6
// anywhere; when the claims do not fit, the first ones are published (the
// election orders them so the loss matters least) and
// ironlb_memberlist_meta_unpublished_claims counts the rest. DecodeMeta
// rejects anything Encode would not write, without panicking (fuzzed).
//
// # Metrics
//
//	ironlb_memberlist_members{state="alive|left|dead"}
//	ironlb_memberlist_member_events_total{event="join|update|left|failed"}
//	ironlb_memberlist_probe_failures_total
//	ironlb_memberlist_refutations_total
//	ironlb_memberlist_probe_rtt_seconds
//	ironlb_memberlist_meta_unpublished_claims
//	ironlb_memberlist_joins_total{result="ok|failed"}
//
// memberlist does not expose suspicion per member, so alive counts suspects.
// Left and dead are told apart by the leaving flag, which reaches a peer before
// the leave message in practice but not by guarantee (Event.Left).
//
// # Costs
//
// Each member sends a probe (a ping and its ack, about 100 bytes each with
// encryption) every 150 ms, gossip packets only while something changed, and
// a full state exchange with one peer over TCP every 10 s (N members times
// about 600 bytes at most; memberlist stretches the interval beyond 32
// members). CPU use is negligible; memory is O(N) members with their metadata.
package membership
