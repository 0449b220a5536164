package allocator

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// Allocation is what a Service holds.
type Allocation struct {
	// IPs are the Service's addresses, ordered as its spec.ipFamilies (IPv4 first
	// when spec.ipFamilies is empty).
	IPs []netip.Addr
	// Pool is the pool the addresses came from ("" if no pool covered restored
	// addresses).
	Pool string
	// Orphaned is the subset of IPs that no pool covers any more. They are kept:
	// the Service is never re-IPed silently.
	Orphaned []netip.Addr
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
}

// ipUse records who holds an address.
type ipUse struct {
	pool    string // pool it was allocated through ("" if none covered it)
	key     string // sharing key of the holders (all holders share it)
	holders []*svcState
	one     [1]*svcState // backing array for the common single holder
}

// svcState is what one Service holds.
type svcState struct {
	key   string
	ips   []netip.Addr
	pool  string
	share shareMeta
}

// shareMeta is what decides whether two Services may share an address. It is
// only filled in when the Service has a sharing key.
type shareMeta struct {
	key      string
	ports    []portProto
	local    bool
	selector map[string]string
}

type portProto struct {
	port  int32
	proto v1.Protocol
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

func (a *Allocator) reorder() {
	a.order = slices.AppendSeq(a.order[:0], maps.Values(a.pools))
	slices.SortFunc(a.order, lessPool)
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
// preferring addresses the Service already holds. If the new allocation fails,
// the old one is kept and returned along with the error, an *Error.
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
	req, err := RequestFor(svc)
	if err != nil {
		return a.current(st), err
	}
	fn, ferr := familiesFor(svc, req, key)
	if ferr != nil {
		return a.current(st), ferr
	}
	meta := metaFor(svc, req.SharingKey)

	if st != nil && a.satisfied(st, req, fn, meta) {
		ips := slices.Clone(st.ips)
		poolName := st.pool
		if req.Pool != "" {
			poolName = req.Pool
		}
		// PreferDualStack is best effort: top up the missing family from the same
		// pool when it has one to give, never moving the address already held.
		if fn.policy == preferDualStack && len(req.IPs) == 0 && len(ips) == 1 {
			other := 1 - familyOf(ips[0])
			if p := a.pools[poolName]; p != nil && p.hasFamily(other) && p.allows(svc, a.nsLabels[svc.Namespace]) {
				if ip, _, ok := a.pick(p, other, st, meta); ok {
					ips = append(ips, ip)
				}
			}
		}
		a.commit(st, key, ips, nil, poolName, meta, fn)
		return a.current(st), nil
	}

	ips, ipPools, poolName, perr := a.plan(svc, key, st, req, fn, meta)
	if perr != nil {
		return a.current(st), perr
	}
	st = a.commit(st, key, ips, ipPools, poolName, meta, fn)
	return a.current(st), nil
}

// satisfied reports whether what st holds still fits the request.
func (a *Allocator) satisfied(st *svcState, req Request, fn familyNeed, meta shareMeta) bool {
	if len(st.ips) == 0 {
		return false
	}
	if len(req.IPs) > 0 {
		if !sameIPSet(st.ips, req.IPs) {
			return false
		}
	} else {
		var has [2]int
		for _, ip := range st.ips {
			has[familyOf(ip)]++
		}
		if has[fam4] > 1 || has[fam6] > 1 {
			return false
		}
		switch fn.policy {
		case singleStack:
			if len(st.ips) != 1 || has[fn.order[0]] != 1 {
				return false
			}
		case requireDualStack:
			if len(st.ips) != 2 {
				return false
			}
		}
	}
	if req.Pool != "" && st.pool != req.Pool {
		p := a.pools[req.Pool]
		if p == nil {
			return false
		}
		for _, ip := range st.ips {
			if !p.covers(ip) {
				return false
			}
		}
	}
	for _, ip := range st.ips {
		if h, _ := a.conflict(ip, st, meta); h != nil {
			return false
		}
	}
	return true
}

// plan chooses new addresses for a Service without changing any state.
func (a *Allocator) plan(svc *v1.Service, key string, st *svcState, req Request, fn familyNeed, meta shareMeta) ([]netip.Addr, []string, string, *Error) {
	nsl := a.nsLabels[svc.Namespace]
	var reqPool *pool
	if req.Pool != "" {
		reqPool = a.pools[req.Pool]
		if reqPool == nil {
			return nil, nil, "", newError(ReasonPoolNotFound, "service %s: requested pool %q does not exist", key, req.Pool)
		}
		if !reqPool.allows(svc, nsl) {
			return nil, nil, "", newError(ReasonPoolNotAllowed, "service %s: pool %q does not allow it (its namespaces, namespaceSelector or serviceSelector exclude the Service)", key, req.Pool)
		}
	}

	if len(req.IPs) > 0 {
		ips := slices.Clone(req.IPs)
		sortByFamily(ips, fn.order)
		ipPools := make([]string, len(ips))
		for i, ip := range ips {
			var p *pool
			if reqPool != nil {
				if !reqPool.covers(ip) {
					return nil, nil, "", newError(ReasonIPOutsidePools, "service %s: requested IP %s is not in pool %q", key, ip, req.Pool)
				}
				p = reqPool
			} else {
				denied := ""
				for _, q := range a.order {
					if !q.covers(ip) {
						continue
					}
					if q.allows(svc, nsl) {
						p = q
						break
					}
					if denied == "" {
						denied = q.name
					}
				}
				if p == nil {
					if denied != "" {
						return nil, nil, "", newError(ReasonIPOutsidePools, "service %s: requested IP %s is only in pools that do not allow the Service (such as %q)", key, ip, denied)
					}
					return nil, nil, "", newError(ReasonIPOutsidePools, "service %s: requested IP %s is in no pool", key, ip)
				}
			}
			if h, why := a.conflict(ip, st, meta); h != nil {
				return nil, nil, "", newError(ReasonIPInUse, "service %s: requested IP %s is held by %s and cannot be shared: %s", key, ip, h.key, why)
			}
			ipPools[i] = p.name
		}
		return ips, ipPools, ipPools[0], nil
	}

	var buf [16]*pool
	cands := buf[:0]
	if reqPool != nil {
		cands = append(cands, reqPool)
	} else {
		if len(a.order) == 0 {
			return nil, nil, "", newError(ReasonNoPools, "service %s: no IP pools are configured", key)
		}
		for _, q := range a.order {
			if q.autoAssign && q.allows(svc, nsl) {
				cands = append(cands, q)
			}
		}
		if len(cands) == 0 {
			return nil, nil, "", newError(ReasonNoPools, "service %s: no pool with autoAssign enabled allows it", key)
		}
	}

	// First pass: prefer a pool where the Service keeps an address it holds or
	// shares one of its sharing key; second pass: the first pool that can serve.
	canReuse := (st != nil && len(st.ips) > 0) || (meta.key != "" && len(a.byKey[meta.key]) > 0)
	famFails, exhausted := 0, family(-1)
	for pass := 0; pass < 2; pass++ {
		if pass == 0 && !canReuse {
			continue
		}
		for _, p := range cands {
			fams, n := p.familiesFor(fn)
			if n == 0 {
				if pass == 1 {
					famFails++
				}
				continue
			}
			ips := make([]netip.Addr, 0, n)
			reused, ok := false, true
			for _, f := range fams[:n] {
				ip, r, found := a.pick(p, f, st, meta)
				if !found {
					ok = false
					if pass == 1 && exhausted < 0 {
						exhausted = f
					}
					break
				}
				ips = append(ips, ip)
				reused = reused || r
			}
			if !ok || (pass == 0 && !reused) {
				continue
			}
			return ips, nil, p.name, nil
		}
	}

	tried := poolNames(cands)
	switch {
	case famFails == len(cands) && reqPool != nil:
		return nil, nil, "", newError(ReasonFamilyUnavailable, "service %s: pool %q has no %s addresses (ipFamilyPolicy %s)", key, req.Pool, fn.missing(reqPool), fn.policy)
	case famFails == len(cands):
		return nil, nil, "", newError(ReasonFamilyUnavailable, "service %s: no usable pool has the address families it needs (ipFamilyPolicy %s; tried %s)", key, fn.policy, tried)
	case reqPool != nil:
		return nil, nil, "", newError(ReasonPoolExhausted, "service %s: pool %q has no free %s address", key, req.Pool, exhausted)
	default:
		return nil, nil, "", newError(ReasonPoolExhausted, "service %s: no free address in the pools it may use (tried %s)", key, tried)
	}
}

// familiesFor returns the families the pool must supply for fn, in preference
// order; n == 0 means the pool cannot serve the policy.
func (p *pool) familiesFor(fn familyNeed) (fams [2]family, n int) {
	switch fn.policy {
	case singleStack:
		if !p.hasFamily(fn.order[0]) {
			return fams, 0
		}
		fams[0] = fn.order[0]
		return fams, 1
	case requireDualStack:
		if !p.hasFamily(fam4) || !p.hasFamily(fam6) {
			return fams, 0
		}
		return fn.order, 2
	default:
		for _, f := range fn.order {
			if p.hasFamily(f) {
				fams[n] = f
				n++
			}
		}
		return fams, n
	}
}

// missing names the family p lacks for fn (for messages).
func (fn familyNeed) missing(p *pool) string {
	switch {
	case fn.policy == preferDualStack:
		return "IPv4 or IPv6"
	case !p.hasFamily(fn.order[0]):
		return fn.order[0].String()
	}
	return fn.order[1].String()
}

func (p policy) String() string {
	switch p {
	case preferDualStack:
		return string(v1.IPFamilyPolicyPreferDualStack)
	case requireDualStack:
		return string(v1.IPFamilyPolicyRequireDualStack)
	}
	return string(v1.IPFamilyPolicySingleStack)
}

func poolNames(ps []*pool) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}
	return strings.Join(names, ", ")
}

// pick chooses an address of family f in p for st: one it already holds, else
// the lowest compatible address of its sharing key, else the lowest free one.
// reused reports one of the first two cases.
func (a *Allocator) pick(p *pool, f family, st *svcState, meta shareMeta) (ip netip.Addr, reused, ok bool) {
	if st != nil {
		for _, ip := range st.ips {
			if familyOf(ip) == f && p.covers(ip) {
				if h, _ := a.conflict(ip, st, meta); h == nil {
					return ip, true, true
				}
			}
		}
	}
	if meta.key != "" {
		var best netip.Addr
		for ip := range a.byKey[meta.key] {
			if familyOf(ip) != f || (best.IsValid() && best.Less(ip)) || !p.covers(ip) {
				continue
			}
			if h, _ := a.conflict(ip, st, meta); h == nil {
				best = ip
			}
		}
		if best.IsValid() {
			return best, true, true
		}
	}
	v, found := p.free[f].lowest()
	if !found {
		return netip.Addr{}, false, false
	}
	return fromU128(v, f == fam4), false, true
}

// conflict returns a holder of ip, other than st, that a Service with meta may
// not share ip with, and why.
func (a *Allocator) conflict(ip netip.Addr, st *svcState, meta shareMeta) (*svcState, string) {
	u := a.owners[ip]
	if u == nil {
		return nil, ""
	}
	for _, h := range u.holders {
		if h == st {
			continue
		}
		if why := incompatible(meta, h.share); why != "" {
			return h, why
		}
	}
	return nil, ""
}

// incompatible says why two Services may not share an address ("" if they may).
func incompatible(a, b shareMeta) string {
	switch {
	case a.key == "" || b.key == "":
		return "sharing needs the same allow-shared-ip key on both Services"
	case a.key != b.key:
		return "sharing keys differ (" + a.key + " vs " + b.key + ")"
	}
	for _, p := range a.ports {
		if slices.Contains(b.ports, p) {
			return sprintfPort(p) + " is used by both"
		}
	}
	if a.local || b.local {
		if !(a.local && b.local) {
			return "externalTrafficPolicy differs (a Local Service can only share with Local Services)"
		}
		if !maps.Equal(a.selector, b.selector) {
			return "both are externalTrafficPolicy Local but their selectors differ"
		}
	}
	return ""
}

func sprintfPort(p portProto) string { return fmt.Sprintf("port %d/%s", p.port, p.proto) }

// metaFor extracts what sharing depends on; without a key nothing is needed.
func metaFor(svc *v1.Service, key string) shareMeta {
	if key == "" {
		return shareMeta{}
	}
	m := shareMeta{
		key:   key,
		local: svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal,
	}
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		m.ports = append(m.ports, portProto{p.Port, proto})
	}
	if m.local {
		m.selector = maps.Clone(svc.Spec.Selector)
	}
	return m
}

// commit makes st hold exactly ips and records its sharing metadata. ipPools[i]
// is the pool ips[i] is allocated through if it is not yet held (poolName for
// all when ipPools is nil). commit takes ownership of ips.
func (a *Allocator) commit(st *svcState, key string, ips []netip.Addr, ipPools []string, poolName string, meta shareMeta, fn familyNeed) *svcState {
	if st == nil {
		st = &svcState{key: key}
		a.services[key] = st
	}
	old := st.ips
	for _, ip := range old {
		if !slices.Contains(ips, ip) {
			a.unhold(ip, st)
		}
	}
	oldKey := st.share.key
	st.share = meta
	for i, ip := range ips {
		if !slices.Contains(old, ip) {
			through := poolName
			if ipPools != nil {
				through = ipPools[i]
			}
			a.hold(ip, st, through)
		} else if oldKey != meta.key {
			a.rekey(ip)
		}
	}
	sortByFamily(ips, fn.order)
	st.ips = ips
	st.pool = poolName
	return st
}

// hold adds st to the holders of ip, taking ip out of every pool covering it
// when it was free. O(P log n).
func (a *Allocator) hold(ip netip.Addr, st *svcState, poolName string) {
	u := a.owners[ip]
	if u == nil {
		u = &ipUse{pool: poolName, key: st.share.key}
		u.holders = u.one[:0]
		a.owners[ip] = u
		f, v := familyOf(ip), toU128(ip)
		for _, p := range a.order {
			if p.covers(ip) {
				p.free[f].take(v)
				p.assigned[f]++
			}
		}
		if u.key != "" {
			a.indexKey(u.key, ip)
		}
	}
	u.holders = append(u.holders, st)
}

// unhold removes st from the holders of ip and frees ip in every pool covering
// it when st was the last holder. O(P log n).
func (a *Allocator) unhold(ip netip.Addr, st *svcState) {
	u := a.owners[ip]
	if u == nil {
		return
	}
	u.holders = slices.DeleteFunc(u.holders, func(h *svcState) bool { return h == st })
	if len(u.holders) > 0 {
		return
	}
	delete(a.owners, ip)
	f, v := familyOf(ip), toU128(ip)
	for _, p := range a.order {
		if p.covers(ip) {
			p.free[f].free(v)
			p.assigned[f]--
		}
	}
	if p := a.pools[u.pool]; p != nil && !p.covers(ip) {
		p.orphaned--
	}
	if u.key != "" {
		a.unindexKey(u.key, ip)
	}
}

// rekey follows a sole holder's change of sharing key.
func (a *Allocator) rekey(ip netip.Addr) {
	u := a.owners[ip]
	if u == nil || len(u.holders) == 0 {
		return
	}
	k := u.holders[0].share.key
	if k == u.key {
		return
	}
	if u.key != "" {
		a.unindexKey(u.key, ip)
	}
	u.key = k
	if k != "" {
		a.indexKey(k, ip)
	}
}

func (a *Allocator) indexKey(k string, ip netip.Addr) {
	s := a.byKey[k]
	if s == nil {
		s = make(map[netip.Addr]struct{})
		a.byKey[k] = s
	}
	s[ip] = struct{}{}
}

func (a *Allocator) unindexKey(k string, ip netip.Addr) {
	if s := a.byKey[k]; s != nil {
		delete(s, ip)
		if len(s) == 0 {
			delete(a.byKey, k)
		}
	}
}

// sortByFamily orders ips with order[0]'s family first (stable otherwise).
func sortByFamily(ips []netip.Addr, order [2]family) {
	slices.SortStableFunc(ips, func(x, y netip.Addr) int {
		rx, ry := 0, 0
		if familyOf(x) != order[0] {
			rx = 1
		}
		if familyOf(y) != order[0] {
			ry = 1
		}
		return rx - ry
	})
}

// current returns a copy of what st holds.
func (a *Allocator) current(st *svcState) Allocation {
	if st == nil || len(st.ips) == 0 {
		return Allocation{}
	}
	al := Allocation{IPs: slices.Clone(st.ips), Pool: st.pool}
	for _, ip := range st.ips {
		if a.orphan(ip) {
			al.Orphaned = append(al.Orphaned, ip)
		}
	}
	return al
}

// orphan reports whether no pool covers the held address ip.
func (a *Allocator) orphan(ip netip.Addr) bool {
	if u := a.owners[ip]; u != nil {
		if p := a.pools[u.pool]; p != nil && p.covers(ip) {
			return false
		}
	}
	for _, p := range a.order {
		if p.covers(ip) {
			return false
		}
	}
	return true
}

// Restore records that svc already holds ips (from status.loadBalancer.ingress at
// start-up), replacing whatever it held before; call it for every Service before
// the first Allocate so that no held address is handed out again. Addresses
// outside every pool are accepted and reported as Orphaned. It fails with an
// *Error of reason ReasonIPInUse, changing nothing, if another Service holds one
// of the addresses and the two may not share it, and with ReasonInvalidRequest for
// an invalid address. Each address is attributed to the first pool (by priority,
// then name) that covers it and allows svc, else to the first that covers it.
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
	// a conflicting sharing annotation simply means "no sharing key".
	share, _ := agreeing(svcName{svc}, svc.Annotations, shareAnnotations[:])
	req := Request{SharingKey: share}
	fn, _ := familiesFor(svc, req, key)
	meta := metaFor(svc, req.SharingKey)

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
	a.commit(st, key, clean, ipPools, ipPools[0], meta, fn)
	return nil
}

// Release frees what the Service "namespace/name" holds and reports whether it
// held anything. A shared address is freed when its last holder releases it.
func (a *Allocator) Release(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
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
// pool, sorted. O(P·R).
func (a *Allocator) Overlaps(name string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.pools[name]
	if p == nil {
		return nil
	}
	var out []string
	for _, q := range a.order {
		if q != p && p.overlaps(q) {
			out = append(out, q.name)
		}
	}
	slices.Sort(out)
	return out
}
