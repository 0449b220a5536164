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
// picks an endpoint at random ("-m statistic --mode random --probability
// 1/(n-i)", 10 decimals) and jumps to that endpoint's IRONLB-SEP- chain, which
// marks hairpin traffic (source = the endpoint) for masquerade and DNATs.
// sessionAffinity ClientIP uses the recent module with the Service's timeout.
// externalTrafficPolicy Local keeps the client address and uses local
// endpoints only (no local endpoint: external traffic is dropped, while pods
// and the node itself still reach every endpoint); its healthCheckNodePort
// answers 200 or 503 with kube-proxy's JSON ({"service":{"namespace",
// "name"},"localEndpoints":N,"serviceProxyHealthy":bool}).
// internalTrafficPolicy Local limits ClusterIP traffic to local endpoints.
// loadBalancerSourceRanges drop traffic to the VIP from other sources
// (IRONLB-FW- chains, IRONLB-FIREWALL). A Service without usable endpoints is
// rejected (ICMP port unreachable, filter table), not black-holed. Masquerade
// sets a mark bit (default 0x4000) and IRONLB-POSTROUTING masquerades marked
// packets, with --random-fully when iptables and the kernel support it. When
// UDP endpoints go away, conntrack entries still pointing at them are deleted
// over netlink. Services labelled service.kubernetes.io/service-proxy-name,
// headless and ExternalName Services are left alone. NodePorts on 127.0.0.1
// (route_localnet) are not offered.
//
// # Dispatch: what the first packet walks
//
// kube-proxy puts one rule per Service port and address into KUBE-SERVICES,
// so the first packet of every connection (and every connection to no Service
// at all) walks up to N rules. Here the destination address selects the rules
// through a trie of chains (IRONLB-SERVICE-IPS, then IRONLB-DSP-* chains):
// each level looks at 2 more bits of the address and has at most 4 "-g" rules,
// levels where all Service addresses share the bits are skipped, and a leaf
// holds at most 8 rules (the Service ports on the few addresses under it).
// NodePorts use the same kind of trie over the port number, per protocol
// (IRONLB-NODEPORTS-TCP/UDP/SCTP), and so do the filter-table REJECT, DROP and
// firewall rules. For N Services the first packet of a connection to a
// ClusterIP evaluates in the nat table:
//
//	PREROUTING jump 1 + IRONLB-SERVICES 1 + trie: <= 4 per level over
//	about log4(N/8) levels + leaf <= 8 + IRONLB-SVC- chain (1 masquerade
//	check + up to n endpoint rules) + IRONLB-SEP- chain 2
//
// Measured with the tracer (BenchmarkFirstPacketRules, 10 endpoints per
// Service, ClusterIPs spread over a /16): 21 rules on average (31 worst) at 100
// Services and 29 (41 worst) at 10,000 Services; a connection to an address
// that is no Service evaluates 6 rules at either size. kube-proxy evaluates
// about N/2 + 8 on average and N + 1 for a non-Service destination.
//
// # Syncs: what a change costs
//
// Event handlers only record which Services changed (O(1) each). The sync
// loop runs at most once per MinSyncPeriod, batching what arrived in between.
// A sync regenerates the rules of the changed Services only, compares each
// chain with a hash of what was written before, and sends one
// "iptables-restore --noflush" per family with the chains whose rules changed,
// the dispatch chains on the changed addresses' paths (at most one chain per
// trie level, each a handful of rules), and deletions of chains no longer
// needed, after every rule that referenced them was rewritten. The dispatch
// chains are a pure function of the set of Service addresses and ports, so an
// incremental sync produces exactly the rules a full one would (the package's
// randomised test checks this after every step). At 10,000 Services x 10
// endpoints one Service's endpoint change writes about 3 KB and adding or
// removing a Service about 1 KB (BenchmarkOneServiceChangeAt10k), instead of
// the whole KUBE-SERVICES chain; computing it takes under 1 ms.
//
// A full sync (at start, every FullSyncPeriod, after a failed restore, or when
// a canary is lost) rewrites every chain and deletes the chains this process
// made that it no longer wants; chains left by an earlier run are found once,
// with iptables-save, off the sync loop after the first sync. Every
// SyncPeriod the proxy checks that the canary rule in IRONLB-PROXY-CANARY
// exists in both the nat and the filter table and that its jump rules are in
// place, so an external "iptables -t nat -F" (or -t filter) is repaired within
// one SyncPeriod.
//
// A sync that writes more than 2,000 Service chains (a full sync of a big
// cluster, or thousands of new Services at once) is sent in several restores:
// batches of whole Services first, then one restore with the dispatch chains
// and the deletions. iptables-nft-restore (1.8.9, Debian 12) takes time
// superlinear in the chains declared in one transaction (10,000 declarations
// 0.2 s, 20,000 1.6 s, 40,000 11 s in a namespace here), so one restore of
// 110,000 chains did not finish in 15 minutes, while the batches take 20 s.
// Every batch leaves a valid rule set, and a new chain is reached only once
// the last restore points the dispatch at it, so traffic sees no
// half-written Service.
//
// Measured with the real iptables-nft in a network namespace (Linux 6.18,
// BenchmarkRealRestore10kServices, 10,000 Services x 10 endpoints, on a
// shared 2-core machine): full sync 20-23 s (38 MB of input in 56 restores);
// one Service's endpoints changed 0.29-0.31 s; a Service added or removed
// 0.30-0.32 s. Almost all of a small sync is the kernel: on every commit
// nf_tables re-validates everything reachable from the base chains, about
// 0.27 s for these rules. A one-rule restore costs the same 0.28 s in that
// table, and 0.03 s once the PREROUTING and OUTPUT jumps are removed.
// kube-proxy has the same rule graph and pays the same on every sync, on top
// of rewriting KUBE-SERVICES. Computing the change takes under 1 ms.
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
