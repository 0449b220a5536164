package membership

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// Timings, tuned for sub-second failure detection on a LAN without false
// positives on a busy node. The package documentation derives the detection
// time from them; TestDetectsKilledMember and BenchmarkFailureDetection
// measure it, TestNoFalseSuspicionUnderLoad checks the margin.
const (
	// probeInterval: each member probes one peer per interval, round robin,
	// so every member is probed about once per interval by someone. A probe
	// fails only if no direct ack, indirect ack or TCP fallback answer arrives
	// within the interval: it is the stall a member survives without being
	// suspected. On a 2-core machine with both processors saturated by busy
	// goroutines in the same process, probe round trips were mostly 20-50 ms
	// with a tail past 100 ms (Go preempts a busy goroutine only every 10 ms,
	// and a probe crosses about five goroutine wake-ups): 100 ms intervals
	// produced suspicions there, 150 ms none unless the machine was also
	// oversubscribed by other processes. A LAN round trip is under 1 ms.
	probeInterval = 150 * time.Millisecond
	// probeTimeout is how long the prober waits for a direct ack before asking
	// indirectChecks peers to probe too (and trying TCP); it does not suspect
	// anyone by itself. Half the interval leaves the indirect probes the other
	// half.
	probeTimeout = 75 * time.Millisecond
	// indirectChecks peers probe on the prober's behalf, so a lost packet or a
	// bad path between two members is not taken for a failure.
	indirectChecks = 3
	// suspicionMult: a suspect that does not refute is declared dead after
	// suspicionMult * max(1, log10(N)) * probeInterval = 450 ms for up to 10
	// members (900 ms at 100), once suspicionMult-2 = 1 other member confirmed
	// the suspicion by its own failed probe. A slow member hears of its
	// suspicion within a gossip interval or two and refutes; to be declared
	// dead it must stay unresponsive for the probe interval plus 450 ms. The
	// confirmation keeps one overloaded member, whose own probes time out,
	// from killing healthy peers on its own.
	suspicionMult = 3
	// suspicionMaxTimeoutMult bounds an unconfirmed suspicion (one accuser):
	// 3 * 450 ms = 1.35 s instead of memberlist's default 6x.
	suspicionMaxTimeoutMult = 3
	// gossipInterval: pending broadcasts (suspect, dead, alive with new
	// metadata) go out to gossipNodes random members every interval, besides
	// riding on probes. Every hop of a dead notice or a claim costs up to one
	// interval; nothing is sent when nothing is pending.
	gossipInterval = 50 * time.Millisecond
	gossipNodes    = 3
	// retransmitMult: each broadcast is sent retransmitMult*ceil(log10(N+1))
	// times (4 for up to 9 members), and every receiver relays it as well.
	retransmitMult = 4
	// pushPullInterval: a full state exchange with one random member over TCP,
	// the backstop for any lost update (claims included). memberlist stretches
	// it beyond 32 members to bound the load.
	pushPullInterval = 10 * time.Second
	// gossipToTheDeadTime: dead members keep receiving gossip this long so a
	// falsely declared or partitioned member can refute and merge back; after
	// it, they are forgotten and only the rejoin loop merges them again.
	gossipToTheDeadTime = 30 * time.Second
	// deadNodeReclaimTime lets a Node that comes back with a new address (a
	// reinstalled machine keeping its name) rejoin under its name after 10 s
	// instead of never.
	deadNodeReclaimTime = 10 * time.Second
	// tcpTimeout bounds joins, push/pull and TCP fallback probes: a LAN
	// connection takes milliseconds, and a dead peer must not stall a join.
	tcpTimeout = 2 * time.Second
	// awarenessMaxMultiplier: a member that notices it misses acks itself
	// (nacks missing) stretches its own probe interval up to this factor, so
	// an overloaded member accuses others less. 8 is memberlist's default.
	awarenessMaxMultiplier = 8
	// rejoinInterval: peers given to SetPeers that are not alive members are
	// joined again this often, which merges partitions that outlived
	// gossipToTheDeadTime and speakers that were unreachable at start.
	rejoinInterval = 10 * time.Second
	// maxRejoins bounds the joins in flight: SetPeers starts one at once even
	// while another still waits (up to tcpTimeout) for a peer that does not
	// answer, so a healed partition merges within a round trip of the next
	// trigger.
	maxRejoins = 4
	// label separates ironlb's gossip from any other memberlist cluster (for
	// example MetalLB's during a migration) even on the same port; with a key
	// it is authenticated data.
	label = "ironlb"
)

func tunedConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.ProbeInterval = probeInterval
	c.ProbeTimeout = probeTimeout
	c.IndirectChecks = indirectChecks
	c.SuspicionMult = suspicionMult
	c.SuspicionMaxTimeoutMult = suspicionMaxTimeoutMult
	c.GossipInterval = gossipInterval
	c.GossipNodes = gossipNodes
	c.RetransmitMult = retransmitMult
	c.PushPullInterval = pushPullInterval
	c.GossipToTheDeadTime = gossipToTheDeadTime
	c.DeadNodeReclaimTime = deadNodeReclaimTime
	c.TCPTimeout = tcpTimeout
	c.AwarenessMaxMultiplier = awarenessMaxMultiplier
	c.Label = label
	// Compression costs CPU on every packet and saves little on pings and
	// delta-encoded claims.
	c.EnableCompression = false
	return c
}
