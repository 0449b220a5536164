package allocator

import (
	"maps"
	"net/netip"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// Allocation is what a Service holds.
type Allocation struct {
	// IPs are the Service's addresses, ordered as its spec.ipFamilies (IPv4 first
	// when spec.ipFamilies is empty).
	IPs []netip.Addr
	// Pools[i] is the pool IPs[i] was allocated from ("" if no pool covered a
	// restored address).
	Pools []string
	// Pool is the pool of the first address (Pools[0]).
	Pool string
	// Orphaned is the subset of IPs that no pool covers any more. They are kept:
	// the Service is never re-IPed silently.
	Orphaned []netip.Addr
	// UID is the UID of the Service incarnation that holds the addresses ("" when
	// the Service had none).
	UID types.UID
}

// Stats are the counts of one pool. Counts saturate at math.MaxInt64 (an IPv6 /64
// alone has 2^64 addresses). Assigned counts every held address the pool covers,
// whichever pool it was allocated through, so Total = Assigned + Available.
type Stats struct {
	// TotalIPv4 is the number of IPv4 addresses the pool may hand out.
	TotalIPv4 int64
	// AssignedIPv4 is the number of those held by Services.
	AssignedIPv4 int64
	// AvailableIPv4 is the number of those free.
	AvailableIPv4 int64
	// TotalIPv6 is the number of IPv6 addresses the pool may hand out.
	TotalIPv6 int64
	// AssignedIPv6 is the number of those held by Services.
	AssignedIPv6 int64
	// AvailableIPv6 is the number of those free.
	AvailableIPv6 int64
	// Orphaned counts held addresses allocated from this pool that it no longer
	// covers.
	Orphaned int
}

// Allocator assigns addresses from pools to Services. The zero value is not
// usable; call New. All methods are safe for concurrent use (one mutex, held for
// the duration of each call).
type Allocator struct {
	mu       sync.Mutex
	pools    map[string]*pool
	order    []*pool // by priority, then name
	nsLabels map[string]labels.Set
	owners   map[netip.Addr]*ipUse
	services map[string]*svcState
	byKey    map[string]map[netip.Addr]struct{} // sharing key -> held addresses using it
	overlaps overlapCache
}

// New returns an empty Allocator.
func New() *Allocator {
	return &Allocator{
		pools:    make(map[string]*pool),
		nsLabels: make(map[string]labels.Set),
		owners:   make(map[netip.Addr]*ipUse),
		services: make(map[string]*svcState),
		byKey:    make(map[string]map[netip.Addr]struct{}),
	}
}

// SetPool adds or replaces the pool named p.Name. An invalid spec returns an error
// and the pool is removed from use; addresses it handed out stay with their
// Services (and become orphaned if no other pool covers them). Addresses already
// held are never free in the new pool, so a pool that covers an orphaned address
// again simply adopts it. Cost: O(H log R) for H held addresses and R ranges.
func (a *Allocator) SetPool(p *v1alpha1.IPPool) error {
	np, err := compilePool(p)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		if p != nil {
			a.removePool(p.Name)
		}
		return err
	}
	for ip, u := range a.owners {
		if np.covers(ip) {
			f := familyOf(ip)
			np.free[f].take(toU128(ip))
			np.assigned[f]++
		} else if u.pool == np.name {
			np.orphaned++
		}
	}
	a.pools[np.name] = np
	a.reorder()
	return nil
}

// DeletePool removes the named pool. Addresses it handed out stay with their
// Services and become orphaned unless another pool covers them.
func (a *Allocator) DeletePool(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.removePool(name)
}

func (a *Allocator) removePool(name string) {
	if _, ok := a.pools[name]; ok {
		delete(a.pools, name)
		a.reorder()
	}
}

// reorder re-sorts the pools after a change and invalidates the overlap cache.
// O(P log P).
func (a *Allocator) reorder() {
	a.order = slices.AppendSeq(a.order[:0], maps.Values(a.pools))
	slices.SortFunc(a.order, lessPool)
	a.overlaps.invalidate()
}

// SetNamespaceLabels records the labels of a namespace for namespaceSelector
// matching; a namespace never recorded has no labels. It does not move existing
// allocations.
func (a *Allocator) SetNamespaceLabels(namespace string, lbls map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(lbls) == 0 {
		delete(a.nsLabels, namespace)
		return
	}
	a.nsLabels[namespace] = labels.Set(maps.Clone(lbls))
}

// Allocate returns the addresses of svc, allocating them if needed. It does not
// look at svc.Spec.Type or loadBalancerClass; the caller decides which Services
// are ironlb's.
//
// It is idempotent: a Service that already holds addresses satisfying its current
// request keeps them, even if its pool was edited or its selectors stopped
// matching (addresses no pool covers are reported in Allocation.Orphaned, without
// error). A changed request (other addresses, another pool, other families,
// another sharing key, ports that now collide with a co-holder) reallocates,
// preferring addresses the Service already holds, and is checked exactly as a
// new Service's request would be. If the new allocation fails, the old one is
// kept and returned along with the error, an *Error.
//
// Ownership follows the Service's UID: when the name is held by another
// incarnation (the Service was deleted and created again before the deletion
// was processed), the old incarnation's addresses are released first.
//
// Cost: O(P) pool filtering for P pools plus O(log n) in the free intervals of the
// chosen pool, plus the holders of a shared address.
func (a *Allocator) Allocate(svc *v1.Service) (Allocation, error) {
	if svc == nil {
		return Allocation{}, newError(ReasonInvalidRequest, "nil Service")
	}
	key := ServiceKey(svc)
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.services[key]
	if st != nil && st.uid != "" && svc.UID != "" && st.uid != svc.UID {
		a.release(key)
		st = nil
	}
	req, err := RequestFor(svc)
	if err != nil {
		return a.current(st), err
	}
	fn, ferr := familiesFor(svc, req, key)
	if ferr != nil {
		return a.current(st), ferr
	}
	meta := metaFor(svc, req.SharingKey)
	nsl := a.nsLabels[svc.Namespace]

	if st != nil && a.satisfied(svc, nsl, st, req, fn, meta) {
		ips := slices.Clone(st.ips)
		poolName := st.pool
		if req.Pool != "" {
			poolName = req.Pool
		}
		// PreferDualStack is best effort: top up the missing family from the same
		// pool when it has one to give, never moving the address already held.
		if fn.policy == preferDualStack && fn.n == 2 && len(req.IPs) == 0 && len(ips) == 1 {
			other := 1 - familyOf(ips[0])
			if p := a.pools[poolName]; p != nil && p.hasFamily(other) && p.allows(svc, nsl) {
				if ip, _, ok := a.pick(p, other, st, meta); ok {
					ips = append(ips, ip)
				}
			}
		}
		a.commit(st, key, ips, nil, poolName, meta, fn)
		st.uid = svc.UID
		return a.current(st), nil
	}

	ips, ipPools, poolName, perr := a.plan(svc, nsl, key, st, req, fn, meta)
	if perr != nil {
		return a.current(st), perr
	}
	st = a.commit(st, key, ips, ipPools, poolName, meta, fn)
	st.uid = svc.UID
	return a.current(st), nil
}

// Restore records that svc already holds ips (from status.loadBalancer.ingress at
// start-up), replacing whatever it held before; call it for every Service before
// the first Allocate so that no held address is handed out again. Addresses
// outside every pool are accepted and reported as Orphaned. It fails with an
// *Error of reason ReasonIPInUse, changing nothing, if another Service holds one
// of the addresses and the two may not share it, and with ReasonInvalidRequest for
// an invalid address.
//
// Each address is attributed to the pool the Service's
// AnnotationAllocatedFromPool names for its family when that pool exists (so
// overlapping pools and orphaned addresses keep their attribution across
// restarts); otherwise to the first pool (by priority, then name) that covers it
// and allows svc, else to the first that covers it.
func (a *Allocator) Restore(svc *v1.Service, ips []netip.Addr) error {
	if svc == nil {
		return newError(ReasonInvalidRequest, "nil Service")
	}
	key := ServiceKey(svc)
	var clean []netip.Addr
	for _, ip := range ips {
		if !ip.IsValid() || ip.Zone() != "" {
			return newError(ReasonInvalidRequest, "service %s: cannot restore invalid address %q", key, ip)
		}
		ip = ip.Unmap()
		if !slices.Contains(clean, ip) {
			clean = append(clean, ip)
		}
	}
	// Restore must not fail on annotations edited since the address was published:
	// a conflicting sharing annotation simply means "no sharing key", and an
	// unreadable pool annotation means "attribute by coverage".
	share, _ := agreeing(svcName{svc}, svc.Annotations, shareAnnotations[:])
	req := Request{SharingKey: share}
	fn, _ := familiesFor(svc, req, key)
	meta := metaFor(svc, req.SharingKey)
	published, _ := ParsePoolAnnotation(svc.Annotations[AnnotationAllocatedFromPool])

	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.services[key]
	if len(clean) == 0 {
		a.release(key)
		return nil
	}
	for _, ip := range clean {
		if h, why := a.conflict(ip, st, meta); h != nil {
			return newError(ReasonIPInUse, "service %s: restored IP %s is held by %s and cannot be shared: %s", key, ip, h.key, why)
		}
	}
	sortByFamily(clean, fn.order)
	nsl := a.nsLabels[svc.Namespace]
	ipPools := make([]string, len(clean))
	for i, ip := range clean {
		if name := published.For(ip); name != "" && a.pools[name] != nil {
			ipPools[i] = name
			continue
		}
		for _, p := range a.order {
			if !p.covers(ip) {
				continue
			}
			if p.allows(svc, nsl) {
				ipPools[i] = p.name
				break
			}
			if ipPools[i] == "" {
				ipPools[i] = p.name
			}
		}
	}
	st = a.commit(st, key, clean, ipPools, ipPools[0], meta, fn)
	st.uid = svc.UID
	return nil
}

// Release frees what the Service "namespace/name" holds and reports whether it
// held anything. With a non-empty uid it releases only what that incarnation of
// the Service holds, so a late deletion of an old Service never frees the
// addresses of a new Service with the same name. A shared address is freed when
// its last holder releases it.
func (a *Allocator) Release(key string, uid types.UID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st := a.services[key]; st != nil && uid != "" && st.uid != "" && st.uid != uid {
		return false
	}
	return a.release(key)
}

func (a *Allocator) release(key string) bool {
	st := a.services[key]
	if st == nil {
		return false
	}
	for _, ip := range st.ips {
		a.unhold(ip, st)
	}
	delete(a.services, key)
	return len(st.ips) > 0
}

// Lookup returns what the Service "namespace/name" holds.
func (a *Allocator) Lookup(key string) (Allocation, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.services[key]
	if st == nil {
		return Allocation{}, false
	}
	return a.current(st), true
}

// Stats returns the counts of the named pool, or false if there is no such
// (valid) pool. O(1).
func (a *Allocator) Stats(name string) (Stats, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pools[name]
	if p == nil {
		return Stats{}, false
	}
	avail := func(f family) int64 {
		return p.total[f].sub(u128{0, uint64(p.assigned[f])}).int64Sat()
	}
	return Stats{
		TotalIPv4:     p.total[fam4].int64Sat(),
		AssignedIPv4:  p.assigned[fam4],
		AvailableIPv4: avail(fam4),
		TotalIPv6:     p.total[fam6].int64Sat(),
		AssignedIPv6:  p.assigned[fam6],
		AvailableIPv6: avail(fam6),
		Orphaned:      p.orphaned,
	}, true
}

// PoolNames returns the names of the pools in use, sorted.
func (a *Allocator) PoolNames() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.pools))
}

// Overlaps returns the other pools that share at least one address with the named
// pool, sorted. The overlap relation of all pools is computed once after pool
// changes by a sweep over every range (O(N log N + K) for N ranges and K
// overlapping pairs) and cached, so loading P pools and then asking each for its
// overlaps costs O(P log P), not O(P²).
func (a *Allocator) Overlaps(name string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pools[name] == nil {
		return nil
	}
	return slices.Clone(a.overlaps.of(a.order, name))
}

// PoolsCovering returns the names of the pools that cover any of ips (that may
// hand them out), sorted: the pools whose counts change when those addresses
// are taken or freed. O(P log R) per address.
func (a *Allocator) PoolsCovering(ips ...netip.Addr) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, p := range a.order {
		for _, ip := range ips {
			if p.covers(ip.Unmap()) {
				out = append(out, p.name)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}
