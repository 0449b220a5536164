// Package migrate turns a MetalLB configuration into ironlb's: MetalLB's
// IPAddressPool, L2Advertisement, BGPAdvertisement, BGPPeer, Community and
// BFDProfile objects (group metallb.io, the fields of MetalLB v0.15) become
// ironlb IPPools, BGPPeers and, for BGP passwords, Secrets in ironlb's
// namespace, with a report of every setting that changed form or has no
// equivalent. `ironlb migrate-metallb` is its command line.
//
// # Use
//
//	var m migrate.MetalLB
//	skipped, err := m.Read(file, "metallb.yaml")    // or m.ReadCluster(ctx, dyn, "metallb-system")
//	res, err := migrate.Convert(&m, migrate.Options{Secret: getSecret})
//	err = res.WriteYAML(os.Stdout)                   // or migrate.Apply(ctx, dyn, objs)
//	err = res.WriteReport(os.Stderr)
//
// Convert is a pure function; reading and applying are the thin shell around
// it. Its cost is linear in the number of objects times the number of pools an
// advertisement selects.
//
// # What maps to what
//
//   - IPAddressPool -> IPPool of the same name (Services annotated
//     metallb.io/address-pool keep their pool): addresses (CIDRs with host bits
//     are written as their network, as MetalLB reads them), autoAssign,
//     avoidBuggyIPs, serviceAllocation -> allocation (priority, namespaces, and
//     one namespace and one Service selector: several MetalLB selectors are
//     merged into one when they test one label, else the first is kept and the
//     report says so; namespaces together with namespace selectors, a union in
//     MetalLB, cannot be written as ironlb's intersection and keep only the
//     namespaces).
//   - L2Advertisement -> advertise.l2 of each pool it selects (ipAddressPools,
//     ipAddressPoolSelectors, or all pools): nodeSelectors and interfaces, merged
//     over the advertisements of a pool (a node or interface any allows).
//   - BGPAdvertisement -> advertise.bgp: aggregation lengths, localPref,
//     communities (aliases from Community objects resolved, "large:" prefixes
//     moved to largeCommunities), nodeSelectors, and peers as a peerSelector on
//     the label LabelMetalLBPeer that every migrated BGPPeer carries.
//     Advertisements of one pool with different attributes cannot all be kept:
//     ironlb announces a pool one way; the first (by name) wins.
//   - BGPPeer -> BGPPeer of the same name: ASNs (dynamicASN internal becomes the
//     local ASN), addresses, port, hold and keepalive times (whole seconds,
//     hold time at least 3s), nodeSelectors, ebgpMultiHop,
//     enableGracefulRestart; the password moves into a Secret of ironlb's
//     namespace (plain-text password: a new Secret; passwordSecret: copied when
//     the Secret can be read, else the report asks for it); the BFDProfile's
//     transmit and receive intervals and multiplier become the peer's bfd
//     timers (single-hop only; echo and passive modes and minimumTtl have no
//     equivalent). routerID, connectTime, disableMP and dualStackAddressFamily
//     have no equivalent; unnumbered (interface), VRF and dynamicASN external
//     peers are not migrated.
//
// Service annotations need no migration: ironlb honours metallb.io/* and
// metallb.universe.tf/* (loadBalancerIPs, address-pool, allow-shared-ip), and
// ironlb-controller keeps every address a Service already publishes in its
// status when it starts, so switching controllers changes no Service's IP.
package migrate
