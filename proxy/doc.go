// Package proxy programs iptables so that a node forwards Kubernetes Service
// traffic without kube-proxy: ClusterIPs (from pods and from the node),
// NodePorts, status.loadBalancer.ingress IPs and externalIPs, over TCP, UDP
// and SCTP, for IPv4 (iptables) and IPv6 (ip6tables). It follows kube-proxy's
// iptables mode in everything a client or backend can observe, with its own
// chains (IRONLB-*), and differs where kube-proxy is slow: the first packet of
// a connection does not walk one rule per Service, and a change rewrites only
// the chains it changes.
//
// # Use
//
//	p, err := proxy.New(proxy.Config{
//		NodeName:     nodeName,
//		ClusterCIDRs: podCIDRs,             // optional: masquerade off-cluster traffic to ClusterIPs
//		Registerer:   prometheus.DefaultRegisterer,
//	})
//	f := informers.NewSharedInformerFactory(client, 0)
//	inf := proxy.Informers{
//		Services:       f.Core().V1().Services(),
//		EndpointSlices: f.Discovery().V1().EndpointSlices(),
//		Nodes:          f.Core().V1().Nodes(),
//	}
//	inf.Services.Informer(); inf.EndpointSlices.Informer(); inf.Nodes.Informer()
//	f.Start(ctx.Done())
//	err = p.Run(ctx, inf) // blocks until ctx ends
//
// Run programs nothing until the informers have delivered their initial lists,
// so a restart never installs rules for a partial set of Services. For
// "--cleanup", call Cleanup(ctx, iptables.NewExec(iptables.IPv4),
// iptables.NewExec(iptables.IPv6)): it deletes every IRONLB-* chain and every
// rule elsewhere that jumps to one, and nothing else. Proxier.Healthy tells a
// health endpoint whether syncs keep up.
//
// # Behaviour (as kube-proxy's iptables mode)
//
// Endpoints come from EndpointSlices: ready endpoints, or, when a Service has
// none, serving-and-terminating ones; topology hints narrow the choice to the
// node's zone (label topology.kubernetes.io/zone) or to the node. A connection
// picks an endpoint at random: the Service chain (IRONLB-SVC-) has one rule
// per endpoint, "-m statistic --mode random --probability 1/(n-i)" (kube-proxy's
// "%0.10f", so 0.3333333333, 0.5000000000 and none for three endpoints), each
// DNATing to its endpoint itself: where kube-proxy jumps to a KUBE-SEP- chain
// per endpoint, there is no endpoint chain here, because every chain reachable
// from a base chain makes each later restore slower (see "Syncs" below).
// sessionAffinity ClientIP puts first one rule per endpoint, "-m recent
// --update --seconds T --reap --name <list of the endpoint>", and the random rules record the client ("-m recent --set");
// --update both checks and renews, so, as with kube-proxy (whose endpoint
// chain sets the entry again on every new connection), the timeout counts
// from the client's last new connection (TestRealAffinityFollowsTheKernel
// checks this on the kernel). externalTrafficPolicy Local keeps the client
// address and uses local endpoints only (no local endpoint: external traffic
// is dropped, while pods and the node itself still reach every endpoint); its
// healthCheckNodePort answers 200 or 503 with kube-proxy's JSON
// ({"service":{"namespace", "name"},"localEndpoints":N,"serviceProxyHealthy":bool}).
// internalTrafficPolicy Local limits ClusterIP traffic to local endpoints.
// loadBalancerSourceRanges drop traffic to the VIP from other sources
// (IRONLB-FW- chains, IRONLB-FIREWALL). A Service without usable endpoints is
// rejected (ICMP port unreachable, filter table), not black-holed.
//
// Masquerade: traffic to a ClusterIP from outside the cluster CIDR (or all of
// it with MasqueradeAll), external traffic under Cluster policy, and LOCAL
// traffic to external addresses under Local policy get the mark bit (default
// 0x4000) from a MARK rule before they are dispatched, and IRONLB-POSTROUTING
// clears it and masquerades them (--random-fully when iptables and the kernel
// support it). Hairpin traffic (an endpoint whose connection to its own
// Service is DNATed back to itself) is found in POSTROUTING instead, where only
// new connections pass: a connection the node DNATed (conntrack state DNAT)
// and did not mark walks IRONLB-HAIRPIN, a tree over the source address with a
// leaf rule "-s EP -d EP -j MASQUERADE" per endpoint address, shared by every
// Service. Only endpoints whose own connections can be DNATed here unmarked
// are in it: those on this node, those of no known node, and the endpoints of
// Local-policy Services reachable from outside (pod traffic to their external
// addresses goes to every endpoint unmarked); an endpoint on another node
// reaches this node's rules otherwise only through a NodePort, load balancer
// IP or externalIP, which mark. (Not covered: a node without a proxy routing
// a pod's ClusterIP traffic through this one.)
//
// When UDP endpoints go away, conntrack entries still pointing at them are
// deleted over netlink. Services labelled service.kubernetes.io/service-proxy-name,
// headless and ExternalName Services are left alone. NodePorts on 127.0.0.1
// (route_localnet) are not offered.
//
// # Dispatch: what the first packet walks
//
// kube-proxy puts one rule per Service port and address into KUBE-SERVICES,
// so the first packet of every connection (and every connection to no Service
// at all) walks up to N rules. Here the destination selects the rules through
// tries of chains: IRONLB-SERVICE-IPS by ClusterIP, IRONLB-EXTERNAL-IPS by
// load balancer IP and externalIP, IRONLB-NODEPORTS-TCP/UDP/SCTP by port; the
// filter table's REJECT, DROP and firewall rules the same way. Each level looks
// at 2 more bits and has at most 4 "-g" rules, levels where all keys share the
// bits are skipped, and a leaf holds at most 64 rules (the Service ports on
// the addresses under it). For N Services the first packet of a connection to
// a ClusterIP evaluates in the nat table:
//
//	PREROUTING jump 1 + IRONLB-SERVICES 1 + trie: <= 4 per level over
//	about log4(N/64) levels + leaf <= 64 + IRONLB-SVC- chain (1 masquerade
//	check + up to n endpoint rules, the last one without a test)
//
// and then, in POSTROUTING, 1 rule for a marked connection, or the
// IRONLB-HAIRPIN tree (about log4(E/32) levels and a leaf of <= 32 rules for E
// endpoint addresses on the node) for an unmarked one. Measured with the
// tracer (BenchmarkFirstPacketRules, 10 endpoints per Service, ClusterIPs
// spread over a /16, every tenth Service a LoadBalancer): 29 nat rules on
// average (53 worst) at 100 Services and 39 (65 worst) at 10,000 Services; a
// connection to an address that is no Service evaluates 25 at 100 and 6 at
// 10,000 Services. kube-proxy evaluates about N/2 + 9 on average and N + 1 for
// a non-Service destination. The leaves are big on purpose: see below.
//
// # Syncs: what a change costs
//
// Event handlers only record which Services changed (O(1) each). The sync
// loop runs at most once per MinSyncPeriod, batching what arrived in between.
// A sync regenerates the rules of the changed Services only, compares each
// chain with a hash of what was written before, and sends one
// "iptables-restore --noflush" per family with the chains whose rules
// changed, the tree chains on the changed keys' paths (at most one chain per
// level), and deletions of chains no longer needed, after every rule that
// referenced them was rewritten. The trees are a pure function of the set of
// keys, so an incremental sync produces exactly the rules a full one would
// (the package's randomised test checks this after every step). At 10,000
// Services x 10 endpoints one Service's endpoint change writes about 1 KB and
// adding or removing a Service about 4 KB (BenchmarkOneServiceChangeAt10k),
// instead of the whole KUBE-SERVICES chain; computing it takes about 1 ms.
//
// What a sync costs is mostly not ironlb's: two things decide it, and the
// rules are shaped for them.
//
// The kernel. On every commit that adds a rule with a jump, a target or an
// xtables match (any rule iptables-nft writes but the simplest), nf_tables
// (Linux 6.18 here) validates the whole table again: it walks every chain
// reachable from each base chain, once per path, every rule and expression.
// With kube-proxy's layout (a KUBE-SEP- chain per endpoint: 110,000 chains and
// about 310,000 rules, reached from PREROUTING and OUTPUT) that is about
// 0.2 s per commit; it is paid by every sync, even one that adds a single
// rule. (perf, one endpoint change at 10,000 x 10 in the layout below: 90 %
// of the restore's CPU is nft_chain_validate and the validate callbacks it
// calls; the nat table's PREROUTING and OUTPUT both reach the dispatch trees,
// so the graph is walked twice: 65 ms of system time, 37 ms with the OUTPUT
// jump removed. Node-originated traffic to a ClusterIP needs that jump.) So there are no endpoint chains here: the endpoint rules sit in the
// Service chain (10,000 chains, 110,000 rules for 10,000 x 10), the masquerade
// mark is a MARK rule rather than a jump to a chain, external traffic under
// Cluster policy goes from the dispatch rule straight to the Service chain (an
// IRONLB-EXT- chain exists only for Local policy or a firewall), and hairpin
// rules exist once per endpoint address of this node.
//
// The walk's speed depends on where the rules lie in memory: it is a chase
// of pointers from rule to rule, and perf puts most of it on the loads of the
// next rule. A full sync writes the Service chains in the order the ClusterIP
// tree reaches them (the IPv4 chain names and write order below), into fresh
// memory, so the walk reads memory in the order it was allocated. A partial
// sync puts a new or rewritten chain wherever the allocator has room, so
// Services that arrived after the last full sync and every endpoint change
// scatter the walk. Measured at 10,000 x 10 with random ClusterIPs
// (BenchmarkRealLabChange10k, load 2-6): one change took 128-176 ms (medians
// 146-160) with the table built by 157 partial syncs, as in the lab, and
// 124-172 ms once every Service's endpoints had changed; after a full sync
// 88-117 ms (medians 99-108; system time 64-83 ms instead of 92-139 ms).
//
// Hence the relayout: on a SyncPeriod tick when no change has arrived for
// 10 s, once partial syncs have written at least half of the Service chains
// since the last full sync (and at least 1,000), the proxy runs a full sync
// (2.3-3.9 s at 10,000 x 10, the CPU of about 25 one-change commits; a change
// arriving meanwhile waits for it, as for the hourly full sync). The quiet
// spell keeps it out of bursts: without it, a relayout started right after a
// burst of creates made the burst's last change wait 2.8 s in the lab. In the lab (benchproxy, 10,000 x 10, ironlb
// alone) one change went from 114 ms (median of 5) to 94 ms with it.
//
// Of the rest of a one-change restore, about 4 ms of CPU is
// iptables-nft-restore itself (reading the table's 10,000 chain names,
// parsing) and, after the commit, its exit waits 5-15 ms for an RCU grace
// period (nf_tables frees the replaced rules when the netlink socket
// closes); the rules are live before that wait. Splitting the restore per
// table showed the filter table's commit (the REJECT rule of a Service that
// had no endpoints) costs about 3 ms: the kernel validates only the tables a
// commit changed. What is left after a relayout is the validation itself,
// two walks over about 120,000 rules.
//
// iptables-nft-restore (1.8.9, Debian 12). For every line it inserts the chain
// names the line mentions into a list sorted by name, walking from the start,
// so a line costs the names listed before it, each a likely cache miss; input
// in kube-proxy's layout (all declarations, then all rules) costs about 10^10
// steps for 10,000 x 10, a quarter of an hour. IPv4 Service chains are named
// in address order (IRONLB-SVC-<ClusterIP><port><protocol in hex><hash>, see
// serviceChainName), the ClusterIP tree's chains so that each sorts right
// before the Service chains under it (IRONLB-SVC-<prefix>.<bits>), and the
// input writes every chain right after the chains it jumps to, larger names
// first (appendTable): nearly every line then costs one step. What remains
// is jumps from the NodePort and external-IP trees, about half of the Service
// chains each. IPv6 addresses do not fit in chain names; IPv6 chains are
// named by hashes and pay those costs.
//
// Measured with the real iptables-nft in a network namespace on a shared
// 2-core machine (BenchmarkRealRestore10kServices, 10,000 Services x 10
// endpoints, Linux 6.18, load average 4-6): a full sync in one restore 2.6 s
// (every Service a ClusterIP) and 3.5 s (every tenth a LoadBalancer with a
// NodePort); one Service's endpoints changed 85-93 ms (median of 10; worst
// 96-100 ms); a Service added or removed 88-92 ms. The layout before (an
// endpoint chain per endpoint, batches of 2,000 Service chains) took, in the
// same harness and run: 13.1 s and 21.3 s, and 221-230 ms. Almost all of a
// small sync is the kernel's validation; computing it takes about 1 ms.
//
// A full sync (at start, every FullSyncPeriod, after a failed restore, when
// a canary is lost, or as a relayout) rewrites every chain and deletes the chains this process
// made that it no longer wants; chains left by an earlier run (or version) are
// found once, with iptables-save, off the sync loop after the first sync.
// Every SyncPeriod the proxy checks that the canary rule in IRONLB-PROXY-CANARY
// exists in both the nat and the filter table and that its jump rules are in
// place, so an external "iptables -t nat -F" (or -t filter) is repaired within
// one SyncPeriod. The check runs beside the sync loop (each "iptables -C" took
// 0.25-0.45 s at 10,000 Services), so it never delays a change.
//
// A sync is one atomic restore per family unless it writes more than 30,000
// Service chains (a full sync of more than about 25,000 Services): then it
// is sent in batches of whole Services, then one restore with the trees and
// the deletions. One restore took 2.3 s of CPU for 10,000 Services and 6.2 s
// for 20,000 (all ClusterIPs), somewhat faster than linear. Every batch
// leaves a valid rule set, and a new chain is reached only once the last
// restore points the trees at it, so traffic sees no half-written Service.
//
// # Metrics (with Config.Registerer)
//
// ironlb_proxy_sync_duration_seconds{family,kind}, ironlb_proxy_syncs_total{family,kind}
// (kind full or partial), ironlb_proxy_sync_failures_total{family},
// ironlb_proxy_rules{family,table}, ironlb_proxy_restore_bytes{family,kind},
// ironlb_proxy_canary_lost_total{family}, ironlb_proxy_conntrack_deleted_total{family},
// ironlb_proxy_programming_latency_seconds.
//
// The iptables subpackage holds the thin shell that runs the binaries, and an
// in-memory iptables (Model) with a packet tracer that the tests use to assert
// where packets go.
package proxy
