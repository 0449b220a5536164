// Package speaker is ironlb's node agent: it watches the cluster, decides with
// the other speakers which node announces each LoadBalancer address, and drives
// the l2 (ARP/NDP) and bgp (GoBGP) packages accordingly. cmd/ironlb-speaker is
// its flag parsing; everything else is here.
//
// # Use
//
//	s, err := speaker.New(speaker.Config{
//		NodeName: "node1",                // the Node it runs on (memberlist name)
//		MemberlistKey: key,               // membership.ReadKeyFile(--memberlist-secret-file)
//		Client: clientset, Dynamic: dyn,  // as ServiceAccount ironlb-speaker (deploy/speaker)
//		Registerer: registry,
//	})
//	go serve(registry, s.Ready)           // /metrics, /readyz
//	err = s.Run(ctx)                      // returns after the handover once ctx ends
//
// Run needs CAP_NET_RAW (ARP/NDP) and the node's network namespace
// (hostNetwork); Cleanup removes a node's status objects (--cleanup).
//
// With Config.Proxy (--proxy=iptables) the speaker also runs package proxy, the
// iptables programmer that replaces kube-proxy, on its own Service,
// EndpointSlice and Node informers (one watch per resource for both; CAP_NET_ADMIN).
// Without it (--proxy=none, the default) a stock kube-proxy forwards the VIPs.
//
// # What it watches
//
// LoadBalancer Services whose spec.loadBalancerClass is unset or
// Config.LoadBalancerClass, with their EndpointSlices; Nodes (readiness,
// labels, and the InternalIPs through which the speakers find each other);
// IPPools; BGPPeers; Secrets of its own namespace (BGP passwords); and the
// ServiceAnnouncements and BGPSessions it writes. Each address of a Service is
// announced per the IPPool the controller attributed it to (annotation
// ironlb.io/ip-allocated-from-pool); the speaker never recomputes allocation.
// Nothing is announced before the informers have synced.
//
// # Decisions
//
// All decisions are pure functions, table-tested: viewOf (a Service and its
// EndpointSlices -> the election's view), poolOf (an IPPool's advertise
// settings), planBGP (BGPPeers, Secrets, pools and the advertised addresses ->
// the node's bgp.Desired), and the election itself (package election). Choices
// a user may meet:
//
//   - An address whose IPPool does not exist (deleted, or its advertise settings
//     cannot be used) is not announced; the speakers' reporter (below) records a
//     Warning Event NotAnnounced on the Service, and an InvalidAdvertisement
//     Event on an unusable IPPool. The address stays allocated (only the
//     controller releases addresses): recreate the pool and it is announced again.
//   - An address without a pool in the attribution annotation is not announced
//     (Event NotAnnounced); the controller writes it with the address.
//   - A Service being deleted (deletionTimestamp set) is no longer announced:
//     the update that sets the timestamp withdraws it, before the controller
//     removes its finalizer.
//   - No ready endpoint anywhere: not announced, for Cluster and Local alike
//     (package election).
//   - A BGPPeer that cannot be opened on this node (password Secret missing or
//     in another namespace, eBGP multihop on iBGP, an address another BGPPeer
//     already uses) is left out, the others are not affected; its BGPSession
//     says NotConfigured with the reason and an Event PeerNotConfigured is
//     recorded on the BGPPeer.
//
// The reporter is the alive speaker with the least node name: one speaker
// records the cluster-wide Events and removes the status objects of speakers
// that died.
//
// # Event loop
//
// Informer handlers and the other goroutines (memberlist events, the l2
// announcer's callbacks) only enqueue keys; one goroutine owns the election
// and processes them. Values that change faster than the loop reads them (a
// member's state, a VIP's placement, a conflict) wait in mailboxes under their
// key, so the queue holds each key once and memory is bounded by the number of
// objects. Each input recomputes only what it affects (package election's
// costs); the batched work (the BGP desired state, O(addresses advertised), and
// claim publication) runs when the queue is empty or every 50ms under load. A
// burst arrives as a stream of single changes, so the BGP desired state is
// rebuilt at most every 100ms: a change after a quiet spell at once, the ones
// that follow together at the end of the 100ms.
// API writes, GoBGP calls and memberlist metadata updates run on goroutines of
// their own, so none of them delays an ARP takeover.
//
// # Layer 2 protocol
//
// The speaker follows package election's protocol over package membership:
// after joining it settles for Config.Settle (300ms) before it announces or
// publishes; it announces exactly the addresses it owns in its own election
// (l2.Announcer.SetOwned with the pool's interfaces) and publishes them as its
// claims; it republishes when an address it owns is Contested. A conflict the
// l2 package reports (another MAC answering for an owned address) is resolved by
// the election alone: the elected owner re-announces (a gratuitous burst after
// the other claimant's last frame), a node that is not the owner or is leaving
// does nothing more (Event L2Conflict, metric
// ironlb_speaker_l2_conflicts_handled_total).
//
// # Stopping
//
// When Run's context ends (SIGTERM): layer 2 and publication freeze (the node
// keeps answering), BGP withdraws every path and closes its sessions
// (bgp.Manager.Stop, in parallel), memberlist Leave tells the others, who take
// the addresses over at once with gratuitous ARP/NA; the node keeps answering for
// Config.LeaveGrace (1s) so no client is left without an answer, then stops
// answering, leaves memberlist and deletes its status objects. With
// Config.Handover (--l2-handover-window, 60s by default), a node taking an
// address over from a speaker that left first has its kernel forward, for
// that window, the TCP connections it does not know to the old node, whose
// kernel still carries them (package handover), so connections opened
// before a planned restart survive it. A SIGKILLed
// speaker is replaced within memberlist's failure detection (about 0.8s, package
// membership), and its status objects are removed by the reporter.
//
// # What kubectl shows
//
// ServiceAnnouncement (cluster-scoped, short name svcann), layer 2 only: one
// object per address, written by the owner only when it starts, changes or
// stops answering (no write in steady state):
//
//	$ kubectl get svcann
//	NAME                   SERVICES          ADDRESS       NODE    INTERFACES   MODE   SINCE
//	l2.192-0-2-200.node2   ["default/web"]   192.0.2.200   node2   ["lan0"]     L2     3m
//
// BGPSession (short name bgps): per node and BGPPeer, the session state, BFD
// state, the number of prefixes the session carries and the prefixes the
// node advertises on it (status.prefixes, -o wide). A state change is written
// at once; prefixes at most once a second (sessionRefresh), so a burst of n
// Services costs each session a few writes, not n. BGP mode has no object
// per address and node: every node advertises every address, and such
// objects cost a burst of n Services n x nodes creates (and as many deletes
// later), trickling out for minutes at the client's rate, and n x nodes
// objects in etcd; a speaker of this version deletes the ones older speakers
// left.
//
//	$ kubectl get bgps -o wide
//	NAME           NODE    PEER     ADDRESS     STATE         BFD   PREFIXES   SINCE   MESSAGE   ADVERTISED
//	node1.router   node1   router   192.0.2.1   Established   Up    2          5m                ["203.0.113.10/32","203.0.113.11/32"]
//
// Events on Services: Announcing ("announcing 192.0.2.200 from node1 on lan0
// (ARP)"), NotAnnounced, AnnounceFailed (owned but no interface can answer),
// L2Conflict, Advertising ("advertising 203.0.113.10/32 from node1 by BGP to
// 192.0.2.1"), Withdrawn. Advertising and Withdrawn are per address and node:
// Config.AddressEventQPS (--address-event-qps, 5/s, bursts of 50) bounds them,
// the rest of a burst is counted in ironlb_speaker_address_events_skipped_total.
// On BGPPeers: SessionUp, SessionDown, BFDUp, BFDDown, PeerNotConfigured.
//
// # Metrics
//
// Besides ironlb_l2_* (requests, answers, gratuitous, conflicts, VIPs owned),
// ironlb_memberlist_* (members alive, events, probe failures) and ironlb_bgp_* /
// ironlb_bfd_* (session up, prefixes advertised, updates sent), registered on
// Config.Registerer: ironlb_speaker_ownership_moves_total{change},
// ironlb_speaker_bgp_addresses, ironlb_speaker_l2_conflicts_handled_total{action},
// ironlb_speaker_status_writes_total{resource,op,result},
// ironlb_speaker_inputs_total{kind}, ironlb_speaker_bgp_applies_total{result}
// and ironlb_speaker_address_events_skipped_total{reason}; with Config.Handover,
// ironlb_l2_handover_forwards and ironlb_l2_handover_started_total.
//
// # Costs
//
// Memory: the informer caches (managed fields stripped) plus O(addresses +
// Services) of indexes. Per input: one lookup for an EndpointSlice of a Service
// the speaker does not serve; O(addresses of the Service + its endpoints) to
// rebuild its view, then the election's incremental cost. The BGP desired state
// is rebuilt in O(P + A log A) per batch that changed it, at most every 100ms
// (bgp.Manager.Apply takes the whole state and diffs it). API writes, none while nothing changes: L2,
// one per change of what the owner answers for (and its Event); BGP, per
// session a write per state change and at most one a second while its
// prefixes change (O(A) bytes each), plus per-address Events within
// Config.AddressEventQPS.
package speaker
