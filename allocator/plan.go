package allocator

import (
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Planning: whether what a Service holds still fits its request, and which
// addresses to give it when not.

// satisfied reports whether what st holds still fits the request, checked as a
// new request would be: the Service's families, its explicit addresses, and a
// requested pool that must allow the Service (a Service may keep an address
// whose pool stopped selecting it, but it cannot switch to a pool that refuses
// it).
func (a *Allocator) satisfied(svc *v1.Service, nsl labels.Set, st *svcState, req Request, fn familyNeed, meta shareMeta) bool {
	if len(st.ips) == 0 {
		return false
	}
	var has [2]int
	for _, ip := range st.ips {
		f := familyOf(ip)
		if !fn.allows(f) {
			return false
		}
		has[f]++
	}
	if has[fam4] > 1 || has[fam6] > 1 {
		return false
	}
	if len(req.IPs) > 0 {
		if !sameIPSet(st.ips, req.IPs) {
			return false
		}
	} else if fn.policy == requireDualStack && len(st.ips) != 2 {
		return false
	}
	if req.Pool != "" && st.pool != req.Pool {
		p := a.pools[req.Pool]
		if p == nil || !p.allows(svc, nsl) {
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
func (a *Allocator) plan(svc *v1.Service, nsl labels.Set, key string, st *svcState, req Request, fn familyNeed, meta shareMeta) ([]netip.Addr, []string, string, *Error) {
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
		return a.planExplicit(svc, nsl, key, st, req, reqPool, fn, meta)
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

	// Pass 0: prefer a pool where the Service keeps an address it holds or shares
	// one of its sharing key. Pass 1: the first pool that supplies every family
	// the Service needs. Pass 2 (PreferDualStack with two families, best effort):
	// the first pool that supplies at least one of them.
	canReuse := (st != nil && len(st.ips) > 0) || (meta.key != "" && len(a.byKey[meta.key]) > 0)
	bestEffort := fn.policy == preferDualStack && fn.n == 2
	famFails, exhausted := 0, family(-1)
	for pass := 0; pass < 3; pass++ {
		if (pass == 0 && !canReuse) || (pass == 2 && !bestEffort) {
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
			reused := false
			for _, f := range fams[:n] {
				ip, r, found := a.pick(p, f, st, meta)
				if !found {
					if pass == 1 && exhausted < 0 {
						exhausted = f
					}
					continue
				}
				ips = append(ips, ip)
				reused = reused || r
			}
			complete := len(ips) == fn.n
			switch {
			case len(ips) == 0:
				continue
			case pass == 0 && (!reused || !(complete || bestEffort)):
				continue
			case pass == 1 && !complete:
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
		return nil, nil, "", newError(ReasonFamilyUnavailable, "service %s: no usable pool has the address families it needs (%s, ipFamilyPolicy %s; tried %s)", key, fn.names(), fn.policy, tried)
	case reqPool != nil:
		return nil, nil, "", newError(ReasonPoolExhausted, "service %s: pool %q has no free %s address", key, req.Pool, exhausted)
	default:
		return nil, nil, "", newError(ReasonPoolExhausted, "service %s: no free address in the pools it may use (tried %s)", key, tried)
	}
}

// planExplicit checks requested addresses: each must be in a pool that allows
// the Service (the requested one, if any) and not held by a Service it may not
// share with.
func (a *Allocator) planExplicit(svc *v1.Service, nsl labels.Set, key string, st *svcState, req Request, reqPool *pool, fn familyNeed, meta shareMeta) ([]netip.Addr, []string, string, *Error) {
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

// familiesFor returns the families the pool can supply for fn, in preference
// order; n == 0 means the pool cannot serve the Service at all.
func (p *pool) familiesFor(fn familyNeed) (fams [2]family, n int) {
	switch {
	case fn.policy == requireDualStack:
		if !p.hasFamily(fam4) || !p.hasFamily(fam6) {
			return fams, 0
		}
		return fn.order, 2
	case fn.n == 1:
		if !p.hasFamily(fn.order[0]) {
			return fams, 0
		}
		fams[0] = fn.order[0]
		return fams, 1
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
	case fn.policy == preferDualStack && fn.n == 2:
		return "IPv4 or IPv6"
	case !p.hasFamily(fn.order[0]):
		return fn.order[0].String()
	}
	return fn.order[1].String()
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
