package bgp

import (
	"net/netip"
	"slices"
)

// plan is what Apply must do to move GoBGP from one state to another. Every
// list is sorted, so a plan is deterministic.
type plan struct {
	addPeers     []netip.Addr // sessions to open
	removePeers  []netip.Addr // sessions to close for good
	restartPeers []netip.Addr // sessions whose BGP settings changed: close and open again
	bfdPeers     []netip.Addr // kept sessions whose BFD settings changed (including on/off)
	announce     []netip.Prefix
	withdraw     []netip.Prefix
}

func (p plan) empty() bool {
	return len(p.addPeers)+len(p.removePeers)+len(p.restartPeers)+len(p.bfdPeers)+len(p.announce)+len(p.withdraw) == 0
}

// diff computes the plan from cur (what is applied) to want. It is pure and
// costs O((P + R) log(P + R)) for P peers and R routes: one map lookup per
// peer and route, then sorting what changed.
//
// A route is announced again when its attributes or the peers it goes to
// change; GoBGP replaces the old announcement (an implicit withdraw), and a
// peer that no longer gets the route receives a withdrawal. A session is
// restarted only when a setting negotiated or used when connecting changed;
// BFD changes leave the BGP session alone.
func diff(cur, want state) plan {
	var p plan
	for addr, w := range want.peers {
		c, ok := cur.peers[addr]
		switch {
		case !ok:
			p.addPeers = append(p.addPeers, addr)
		case c.sessionPart() != w.sessionPart():
			p.restartPeers = append(p.restartPeers, addr)
		case c.bfd != w.bfd:
			p.bfdPeers = append(p.bfdPeers, addr)
		}
	}
	for addr := range cur.peers {
		if _, ok := want.peers[addr]; !ok {
			p.removePeers = append(p.removePeers, addr)
		}
	}
	for prefix, w := range want.routes {
		if c, ok := cur.routes[prefix]; !ok || !c.equal(w) {
			p.announce = append(p.announce, prefix)
		}
	}
	for prefix := range cur.routes {
		if _, ok := want.routes[prefix]; !ok {
			p.withdraw = append(p.withdraw, prefix)
		}
	}
	for _, s := range [][]netip.Addr{p.addPeers, p.removePeers, p.restartPeers, p.bfdPeers} {
		slices.SortFunc(s, netip.Addr.Compare)
	}
	slices.SortFunc(p.announce, netip.Prefix.Compare)
	slices.SortFunc(p.withdraw, netip.Prefix.Compare)
	return p
}
