package election

import (
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const excludeLabel = corev1.LabelNodeExcludeBalancers

// Election is one speaker's view of the inputs and the owners it derives from
// them. The zero value is not usable; call New. An Election is not safe for
// concurrent use: drive it from one goroutine (the speaker's event loop).
type Election struct {
	self     string
	nodes    map[string]*node
	pools    map[string]*pool
	services map[string]*service
	vips     map[netip.Addr]*vip
	// owned indexes owners: node -> addresses it owns.
	owned map[string]map[netip.Addr]struct{}
	// local indexes Local Services' endpoints: node -> addresses whose Local
	// Services have a ready endpoint on the node.
	local map[string]map[netip.Addr]struct{}

	pending pending
	// work counts the evaluations of one address for one changed node (touch)
	// and full re-evaluations over all candidates (rescan); tests read them to
	// check that an event costs what the package documentation says.
	touches, rescans int
}

type node struct {
	name   string
	known  bool // a Kubernetes Node exists
	labels labels.Set
	ready  bool
	member bool // alive in memberlist
	claims map[netip.Addr]struct{}
}

// eligible is the node-level part of L2 eligibility: the rest depends on the
// pool and the Service.
func (n *node) eligible() bool { return n.known && n.ready && !excluded(n.labels) }

type pool struct {
	name    string
	defined bool
	l2, bgp labels.Selector
	// l2Nodes are the nodes that are eligible, alive and selected by l2: the
	// candidates of every announced Cluster address of the pool.
	l2Nodes map[string]struct{}
	vips    map[netip.Addr]struct{}
	// all are the addresses of vips that have a Cluster Service with a ready
	// endpoint: every node in l2Nodes is their candidate.
	all map[netip.Addr]struct{}
}

type service struct {
	key   string
	addrs []Address
	local bool
	nodes []string // sorted, unique
}

type vip struct {
	ip       netip.Addr
	services map[string]*service
	pool     string
	all      bool                // a Cluster Service with a ready endpoint uses it
	local    map[string]struct{} // nodes with a ready endpoint of a Local Service using it
	owner    string
	ownerKey key
	winner   string // the candidate of least rank, claims ignored
	winRank  rank
	bgp      bool // the local node advertises it by BGP
}

// New returns an empty Election for the speaker on node self (the name
// memberlist uses for it, which is the Node name).
func New(self string) *Election {
	return &Election{
		self:     self,
		nodes:    map[string]*node{},
		pools:    map[string]*pool{},
		services: map[string]*service{},
		vips:     map[netip.Addr]*vip{},
		owned:    map[string]map[netip.Addr]struct{}{},
		local:    map[string]map[netip.Addr]struct{}{},
		pending:  newPending(),
	}
}

// SetNode records a Kubernetes Node (added or updated).
func (e *Election) SetNode(name string, n Node) Changes {
	e.updateNode(name, func(nd *node) {
		nd.known = true
		nd.labels = labels.Set(maps.Clone(n.Labels))
		nd.ready = n.Ready
	})
	return e.pending.flush()
}

// DeleteNode forgets a Kubernetes Node.
func (e *Election) DeleteNode(name string) Changes {
	e.updateNode(name, func(nd *node) {
		nd.known = false
		nd.labels = nil
		nd.ready = false
	})
	return e.pending.flush()
}

// SetMember records a speaker that memberlist reports alive (joined or updated),
// with the addresses its metadata claims. Feed the local node too: its claims
// are what it published, which may be fewer than Claims(self) when its metadata
// was full.
func (e *Election) SetMember(name string, claims []netip.Addr) Changes {
	set := make(map[netip.Addr]struct{}, len(claims))
	for _, ip := range claims {
		set[ip] = struct{}{}
	}
	e.updateNode(name, func(nd *node) {
		nd.member = true
		nd.claims = set
	})
	return e.pending.flush()
}

// DeleteMember records a speaker that memberlist reports dead or gone.
func (e *Election) DeleteMember(name string) Changes {
	e.updateNode(name, func(nd *node) {
		nd.member = false
		nd.claims = nil
	})
	return e.pending.flush()
}

// SetPool records an IPPool's announcement settings (added or updated).
func (e *Election) SetPool(name string, p Pool) Changes {
	e.updatePool(name, true, p)
	return e.pending.flush()
}

// DeletePool forgets an IPPool; its addresses are no longer announced.
func (e *Election) DeletePool(name string) Changes {
	e.updatePool(name, false, Pool{})
	return e.pending.flush()
}

// SetService records a LoadBalancer Service (added or updated). key identifies
// it (e.g. namespace/name).
func (e *Election) SetService(key string, s Service) Changes {
	e.updateService(key, &s)
	return e.pending.flush()
}

// DeleteService forgets a Service.
func (e *Election) DeleteService(key string) Changes {
	e.updateService(key, nil)
	return e.pending.flush()
}

// Owner returns the node that announces ip by layer 2, if any.
func (e *Election) Owner(ip netip.Addr) (string, bool) {
	v := e.vips[ip]
	if v == nil || v.owner == "" {
		return "", false
	}
	return v.owner, true
}

// Claims returns the addresses node owns: what it announces by layer 2 and
// publishes as its claims. Addresses it holds only by its claim (a plain
// rendezvous over the current candidates would pick another node) come first,
// then the others, each part sorted: when not all fit in the node's metadata the
// first ones matter most, since an unpublished address of the first part moves
// at once and one of the second part only when a better-ranked node becomes a
// candidate.
func (e *Election) Claims(node string) []netip.Addr {
	var held, won []netip.Addr
	for ip := range e.owned[node] {
		if e.vips[ip].winner == node {
			won = append(won, ip)
		} else {
			held = append(held, ip)
		}
	}
	slices.SortFunc(held, netip.Addr.Compare)
	slices.SortFunc(won, netip.Addr.Compare)
	return append(held, won...)
}

// Advertised returns the addresses the local node advertises by BGP, sorted.
func (e *Election) Advertised() []netip.Addr {
	var out []netip.Addr
	for ip, v := range e.vips {
		if v.bgp {
			out = append(out, ip)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// updateNode applies mutate to one node and re-evaluates the addresses whose
// candidate set or claimants it changes: per pool whose candidate set the node
// enters or leaves, the pool's announced Cluster addresses and the Local
// addresses with an endpoint on the node; and the addresses the node's claims
// gained or lost.
func (e *Election) updateNode(name string, mutate func(*node)) {
	n := e.nodes[name]
	if n == nil {
		n = &node{name: name}
		e.nodes[name] = n
	}
	oldClaims := n.claims
	mutate(n)
	alive := n.eligible() && n.member

	affected := map[netip.Addr]struct{}{}
	for _, p := range e.pools {
		_, was := p.l2Nodes[name]
		is := alive && p.l2 != nil && p.l2.Matches(n.labels)
		if was == is {
			continue
		}
		if is {
			p.l2Nodes[name] = struct{}{}
		} else {
			delete(p.l2Nodes, name)
		}
		for ip := range p.all {
			affected[ip] = struct{}{}
		}
		for ip := range e.local[name] {
			if e.vips[ip].pool == p.name {
				affected[ip] = struct{}{}
			}
		}
	}
	for ip := range oldClaims {
		if _, ok := n.claims[ip]; !ok {
			affected[ip] = struct{}{}
		}
	}
	for ip := range n.claims {
		if _, ok := oldClaims[ip]; !ok {
			affected[ip] = struct{}{}
		}
	}
	for ip := range affected {
		if v := e.vips[ip]; v != nil {
			e.touch(v, name)
		}
	}
	if name == e.self {
		for _, v := range e.vips {
			e.evalBGP(v)
		}
	}
	if !n.known && !n.member {
		delete(e.nodes, name)
	}
}

func (e *Election) updatePool(name string, defined bool, spec Pool) {
	p := e.pool(name)
	p.defined, p.l2, p.bgp = defined, spec.L2, spec.BGP
	clear(p.l2Nodes)
	if p.l2 != nil {
		for nn, n := range e.nodes {
			if n.eligible() && n.member && p.l2.Matches(n.labels) {
				p.l2Nodes[nn] = struct{}{}
			}
		}
	}
	for ip := range p.vips {
		v := e.vips[ip]
		e.rescan(v)
		e.evalBGP(v)
	}
	e.dropPoolIfUnused(p)
}

func (e *Election) pool(name string) *pool {
	p := e.pools[name]
	if p == nil {
		p = &pool{
			name:    name,
			l2Nodes: map[string]struct{}{},
			vips:    map[netip.Addr]struct{}{},
			all:     map[netip.Addr]struct{}{},
		}
		e.pools[name] = p
	}
	return p
}

func (e *Election) dropPoolIfUnused(p *pool) {
	if !p.defined && len(p.vips) == 0 {
		delete(e.pools, p.name)
	}
}

func (e *Election) updateService(key string, spec *Service) {
	old := e.services[key]
	var s *service
	if spec != nil {
		s = &service{key: key, local: spec.Local}
		for _, a := range spec.Addresses {
			if a.IP.IsValid() && !slices.ContainsFunc(s.addrs, func(b Address) bool { return b.IP == a.IP }) {
				s.addrs = append(s.addrs, a)
			}
		}
		s.nodes = slices.Compact(slices.Sorted(slices.Values(spec.EndpointNodes)))
		e.services[key] = s
	} else {
		delete(e.services, key)
	}
	ips := map[netip.Addr]struct{}{}
	if old != nil {
		for _, a := range old.addrs {
			ips[a.IP] = struct{}{}
		}
	}
	if s != nil {
		for _, a := range s.addrs {
			ips[a.IP] = struct{}{}
		}
	}
	for ip := range ips {
		v := e.vips[ip]
		if v == nil {
			v = &vip{ip: ip, services: map[string]*service{}, local: map[string]struct{}{}}
			e.vips[ip] = v
		}
		delete(v.services, key)
		if s != nil && slices.ContainsFunc(s.addrs, func(a Address) bool { return a.IP == ip }) {
			v.services[key] = s
		}
		e.reaggregate(v)
		e.evalBGP(v)
		if len(v.services) == 0 {
			delete(e.vips, ip)
		}
	}
}

// reaggregate recomputes what an address's Services say about it (pool,
// Cluster or Local candidates) and re-evaluates its owner: fully when the pool
// or the Cluster part changed, else only for the nodes whose Local endpoints
// changed.
func (e *Election) reaggregate(v *vip) {
	var (
		poolName string
		first    string
		all      bool
		local    = map[string]struct{}{}
	)
	for key, s := range v.services {
		if first == "" || key < first {
			first = key
			for _, a := range s.addrs {
				if a.IP == v.ip {
					poolName = a.Pool
				}
			}
		}
		if len(s.nodes) == 0 {
			continue
		}
		if !s.local {
			all = true
			continue
		}
		for _, n := range s.nodes {
			if n != "" {
				local[n] = struct{}{}
			}
		}
	}
	oldLocal := v.local
	v.local = local
	for n := range oldLocal {
		if _, ok := local[n]; !ok {
			delete(e.local[n], v.ip)
			if len(e.local[n]) == 0 {
				delete(e.local, n)
			}
		}
	}
	for n := range local {
		if _, ok := oldLocal[n]; !ok {
			if e.local[n] == nil {
				e.local[n] = map[netip.Addr]struct{}{}
			}
			e.local[n][v.ip] = struct{}{}
		}
	}

	if len(v.services) == 0 {
		poolName = ""
	}
	if poolName != v.pool {
		if p := e.pools[v.pool]; p != nil {
			delete(p.vips, v.ip)
			delete(p.all, v.ip)
			e.dropPoolIfUnused(p)
		}
		v.pool = poolName
		if poolName != "" {
			e.pool(poolName).vips[v.ip] = struct{}{}
		}
		v.all = !all // forces the Cluster bookkeeping below
	}
	if all != v.all {
		v.all = all
		if p := e.pools[v.pool]; p != nil {
			if all {
				p.all[v.ip] = struct{}{}
			} else {
				delete(p.all, v.ip)
			}
		}
		e.rescan(v)
		return
	}
	if all {
		return // Local endpoints do not matter while every pool node is a candidate
	}
	for n := range oldLocal {
		if _, ok := local[n]; !ok {
			e.touch(v, n)
		}
	}
	for n := range local {
		if _, ok := oldLocal[n]; !ok {
			e.touch(v, n)
		}
	}
}

// candidate reports whether node n may own v: alive, eligible, selected by the
// pool's L2 selector, and either v has a Cluster Service with a ready endpoint
// or n hosts a ready endpoint of one of v's Local Services.
func (e *Election) candidate(v *vip, n string) bool {
	p := e.pools[v.pool]
	if p == nil {
		return false
	}
	if _, ok := p.l2Nodes[n]; !ok {
		return false
	}
	if v.all {
		return true
	}
	_, ok := v.local[n]
	return ok
}

func (e *Election) keyOf(v *vip, n string) key {
	_, claimed := e.nodes[n].claims[v.ip]
	return key{unclaimed: !claimed, rank: rankOf(n, v.ip)}
}

// touch re-evaluates v after something about node n changed. It costs one hash
// unless n was the owner or the rank winner and got worse, which needs a rescan.
func (e *Election) touch(v *vip, n string) {
	e.touches++
	if !e.candidate(v, n) {
		if v.owner == n || v.winner == n {
			e.rescan(v)
		}
		return
	}
	k := e.keyOf(v, n)
	switch {
	case v.owner == n && v.ownerKey.less(k):
		e.rescan(v) // lost its claim: someone else may come first now
		return
	case v.owner == n:
		v.ownerKey = k
	case v.owner == "" || k.less(v.ownerKey):
		if !k.unclaimed && v.owner != "" && !v.ownerKey.unclaimed {
			// Two claimants: the loser has not seen the owner's claim yet.
			e.pending.contest(v.ip)
		}
		e.setOwner(v, n, k)
	case !k.unclaimed && !v.ownerKey.unclaimed:
		e.pending.contest(v.ip)
	}
	if v.winner == "" || k.rank.less(v.winRank) {
		v.winner, v.winRank = n, k.rank
	}
}

// rescan re-evaluates v over all its candidates: O(candidates) hashes.
func (e *Election) rescan(v *vip) {
	e.rescans++
	var (
		owner, winner string
		ok            key
		wr            rank
	)
	consider := func(n string) {
		if !e.candidate(v, n) {
			return
		}
		k := e.keyOf(v, n)
		if owner == "" || k.less(ok) {
			owner, ok = n, k
		}
		if winner == "" || k.rank.less(wr) {
			winner, wr = n, k.rank
		}
	}
	if p := e.pools[v.pool]; p != nil && v.all {
		for n := range p.l2Nodes {
			consider(n)
		}
	} else {
		for n := range v.local {
			consider(n)
		}
	}
	v.winner, v.winRank = winner, wr
	e.setOwner(v, owner, ok)
}

func (e *Election) setOwner(v *vip, n string, k key) {
	if v.owner != n {
		e.pending.move(v.ip, v.owner, n)
		if v.owner != "" {
			delete(e.owned[v.owner], v.ip)
			if len(e.owned[v.owner]) == 0 {
				delete(e.owned, v.owner)
			}
		}
		if n != "" {
			if e.owned[n] == nil {
				e.owned[n] = map[netip.Addr]struct{}{}
			}
			e.owned[n][v.ip] = struct{}{}
		}
	}
	v.owner, v.ownerKey = n, k
}

// evalBGP decides whether the local node advertises v by BGP: eligible (known,
// Ready, not excluded), selected by the pool's BGP selector, and a ready
// endpoint anywhere (Cluster) or on this node (Local). Memberlist is not
// consulted: every eligible node advertises and routers spread the traffic.
func (e *Election) evalBGP(v *vip) {
	adv := false
	if self := e.nodes[e.self]; self != nil && self.eligible() && len(v.services) > 0 {
		if p := e.pools[v.pool]; p != nil && p.bgp != nil && p.bgp.Matches(self.labels) {
			_, onSelf := v.local[e.self]
			adv = v.all || onSelf
		}
	}
	if adv != v.bgp {
		v.bgp = adv
		e.pending.bgp(v.ip, adv)
	}
}

// pending accumulates the net effect of one call.
type pending struct {
	moves     map[netip.Addr]*Move
	contested map[netip.Addr]struct{}
	bgpFrom   map[netip.Addr]bool // state before the call
	bgpTo     map[netip.Addr]bool
}

func newPending() pending {
	return pending{
		moves:     map[netip.Addr]*Move{},
		contested: map[netip.Addr]struct{}{},
		bgpFrom:   map[netip.Addr]bool{},
		bgpTo:     map[netip.Addr]bool{},
	}
}

func (p *pending) move(ip netip.Addr, from, to string) {
	if m := p.moves[ip]; m != nil {
		m.To = to
		return
	}
	p.moves[ip] = &Move{IP: ip, From: from, To: to}
}

func (p *pending) contest(ip netip.Addr) { p.contested[ip] = struct{}{} }

func (p *pending) bgp(ip netip.Addr, adv bool) {
	if _, ok := p.bgpFrom[ip]; !ok {
		p.bgpFrom[ip] = !adv
	}
	p.bgpTo[ip] = adv
}

func (p *pending) flush() Changes {
	var c Changes
	for _, m := range p.moves {
		if m.From != m.To {
			c.Moves = append(c.Moves, *m)
		}
	}
	for ip := range p.contested {
		c.Contested = append(c.Contested, ip)
	}
	for ip, to := range p.bgpTo {
		switch {
		case to == p.bgpFrom[ip]:
		case to:
			c.Advertise = append(c.Advertise, ip)
		default:
			c.Withdraw = append(c.Withdraw, ip)
		}
	}
	slices.SortFunc(c.Moves, func(a, b Move) int { return a.IP.Compare(b.IP) })
	slices.SortFunc(c.Contested, netip.Addr.Compare)
	slices.SortFunc(c.Advertise, netip.Addr.Compare)
	slices.SortFunc(c.Withdraw, netip.Addr.Compare)
	clear(p.moves)
	clear(p.contested)
	clear(p.bgpFrom)
	clear(p.bgpTo)
	return c
}
