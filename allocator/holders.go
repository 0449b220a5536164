package allocator

import (
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/types"
)

// Bookkeeping: who holds which address, and the pools' free sets and counts that
// follow from it.

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
	uid   types.UID
	ips   []netip.Addr
	pool  string
	share shareMeta
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
		} else {
			if oldKey != meta.key {
				a.rekey(ip)
			}
			if ipPools == nil {
				a.reattribute(ip, poolName)
			}
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
		if p := a.pools[poolName]; p != nil && !p.covers(ip) {
			p.orphaned++
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

// reattribute moves a kept address to poolName when the Service now asks for
// that pool and the pool covers the address (pools overlap), so the published
// attribution names the pool whose settings apply.
func (a *Allocator) reattribute(ip netip.Addr, poolName string) {
	u := a.owners[ip]
	np := a.pools[poolName]
	if u == nil || u.pool == poolName || np == nil || !np.covers(ip) {
		return
	}
	if old := a.pools[u.pool]; old != nil && !old.covers(ip) {
		old.orphaned--
	}
	u.pool = poolName
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
	al := Allocation{IPs: slices.Clone(st.ips), UID: st.uid, Pools: make([]string, len(st.ips))}
	for i, ip := range st.ips {
		if u := a.owners[ip]; u != nil {
			al.Pools[i] = u.pool
		}
		if a.orphan(ip) {
			al.Orphaned = append(al.Orphaned, ip)
		}
	}
	al.Pool = al.Pools[0]
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
