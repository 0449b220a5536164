// Package allocator hands out LoadBalancer IP addresses to Kubernetes Services from
// ironlb IPPools. It is a pure library: it never talks to the API server or the
// network, so a controller (or a unit test) feeds it pools, namespace labels and
// Services and turns its answers into status updates and Events.
//
// Typical use by a controller:
//
//	a := allocator.New()
//	for _, p := range pools {
//		if err := a.SetPool(p); err != nil {
//			// report the invalid pool (condition Valid=false); it is not used
//		}
//	}
//	for _, ns := range namespaces {
//		a.SetNamespaceLabels(ns.Name, ns.Labels)
//	}
//	// Before the first new allocation, restore what Services already hold so a
//	// restart never hands out an address that is in use.
//	for _, svc := range services {
//		_ = a.Restore(svc, ipsFromStatus(svc))
//	}
//	// Then, for each Service event:
//	alloc, err := a.Allocate(svc)
//	var aerr *allocator.Error
//	if errors.As(err, &aerr) {
//		// aerr.Reason is a Kubernetes Event reason, aerr.Message its text
//	}
//	// Publish allocator.PoolAnnotation(alloc) as the Service's
//	// allocator.AnnotationAllocatedFromPool annotation (Restore reads it back).
//	// On deletion (or when the Service stops being a LoadBalancer), release what
//	// this incarnation holds: a late deletion of an old Service never frees the
//	// address of a new one with the same name.
//	a.Release(allocator.ServiceKey(svc), svc.UID)
//
// # Rules
//
// Pools are tried in order of spec.allocation.priority (lower first, pools without a
// priority after all others), then name; the first pool that can supply every
// needed address family wins (PreferDualStack: else the first that supplies one),
// and within a pool the lowest free address is taken.
// Requests come from annotations (ironlb.io/loadBalancerIPs, ironlb.io/pool,
// ironlb.io/allow-shared-ip and their metallb.io / metallb.universe.tf equivalents)
// and spec.loadBalancerIP; address families from spec.ipFamilies (what kube-proxy
// forwards: a requested address of another family is refused with
// ReasonIPFamilyMismatch) and spec.ipFamilyPolicy (PreferDualStack is best effort:
// one family free is success). Services may share an address when they carry the same
// sharing key, their ports do not collide and, with externalTrafficPolicy Local,
// their selectors are equal.
//
// A Service never changes address silently: Allocate keeps what a Service holds
// while it still satisfies the Service's request, and an address that a pool edit
// stopped covering is kept and reported in Allocation.Orphaned and Stats.Orphaned.
//
// # Costs
//
// Each pool keeps, per address family, its free addresses as ordered disjoint
// intervals in a treap (a randomised balanced search tree) keyed by interval start.
// Finding the lowest free address, taking a given address and freeing one are
// O(log n) expected in the number n of free intervals (not addresses), so a fresh
// IPv6 /64 costs one tree node. Ownership is a map keyed by netip.Addr. Allocate is
// O(P + log n) for P pools (a selector match per pool; selectors are parsed once in
// SetPool) plus the number of holders of a shared address. SetPool costs
// O(H log R) for H held addresses and R ranges of the pool, which is paid only on
// pool edits.
//
// All methods of Allocator are safe for concurrent use.
package allocator
