package election

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// model holds the inputs given to an Election and recomputes every answer from
// scratch, the slow obvious way, to check the incremental bookkeeping.
type model struct {
	self    string
	nodes   map[string]Node
	members map[string][]netip.Addr
	pools   map[string]Pool
	svcs    map[string]Service
}

func newModel(self string) *model {
	return &model{self: self, nodes: map[string]Node{}, members: map[string][]netip.Addr{},
		pools: map[string]Pool{}, svcs: map[string]Service{}}
}

type agg struct {
	pool  string
	all   bool
	local map[string]bool
}

func (m *model) aggregate() map[netip.Addr]*agg {
	out := map[netip.Addr]*agg{}
	keys := slices.Sorted(maps.Keys(m.svcs))
	for _, k := range keys {
		s := m.svcs[k]
		for _, a := range s.Addresses {
			g := out[a.IP]
			if g == nil {
				g = &agg{pool: a.Pool, local: map[string]bool{}}
				out[a.IP] = g
			}
			if len(s.EndpointNodes) == 0 {
				continue
			}
			if !s.Local {
				g.all = true
			}
			for _, n := range s.EndpointNodes {
				if s.Local && n != "" {
					g.local[n] = true
				}
			}
		}
	}
	return out
}

func hashOf(n string, ip netip.Addr) string {
	s := sha256.Sum256([]byte(n + "#" + ip.String()))
	return string(s[:])
}

func (m *model) owners() map[netip.Addr]string { return m.elect(true) }

// winners are the plain rendezvous winners, claims ignored.
func (m *model) winners() map[netip.Addr]string { return m.elect(false) }

func (m *model) elect(withClaims bool) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for ip, g := range m.aggregate() {
		p, ok := m.pools[g.pool]
		if !ok || p.L2 == nil {
			continue
		}
		best, bestKey := "", ""
		for name, n := range m.nodes {
			claims, alive := m.members[name]
			if !alive || !n.Ready || excluded(n.Labels) || !p.L2.Matches(labels.Set(n.Labels)) {
				continue
			}
			if !g.all && !g.local[name] {
				continue
			}
			k := "1"
			if withClaims && slices.Contains(claims, ip) {
				k = "0"
			}
			k += hashOf(name, ip) + name
			if best == "" || k < bestKey {
				best, bestKey = name, k
			}
		}
		if best != "" {
			out[ip] = best
		}
	}
	return out
}

func (m *model) advertised() []netip.Addr {
	var out []netip.Addr
	self, ok := m.nodes[m.self]
	if !ok || !self.Ready || excluded(self.Labels) {
		return nil
	}
	for ip, g := range m.aggregate() {
		p, ok := m.pools[g.pool]
		if ok && p.BGP != nil && p.BGP.Matches(labels.Set(self.Labels)) && (g.all || g.local[m.self]) {
			out = append(out, ip)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func (e *Election) allOwners() map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for ip, v := range e.vips {
		if v.owner != "" {
			out[ip] = v.owner
		}
	}
	return out
}

// randomInputs draws one input change, applies it to both the model and the
// Election, and returns the Election's answer and a description.
type randomInputs struct {
	r     *rand.Rand
	names []string
	ips   []netip.Addr
}

func newRandomInputs(seed uint64, nodes, ips int) *randomInputs {
	ri := &randomInputs{r: rand.New(rand.NewPCG(seed, 1))}
	for i := range nodes {
		ri.names = append(ri.names, fmt.Sprintf("node-%d", i))
	}
	for i := range ips {
		if i%3 == 2 {
			ri.ips = append(ri.ips, netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", 0x200+i)))
		} else {
			ri.ips = append(ri.ips, netip.AddrFrom4([4]byte{192, 0, 2, byte(200 + i)}))
		}
	}
	return ri
}

func (ri *randomInputs) subset(names []string, p float64) []string {
	var out []string
	for _, n := range names {
		if ri.r.Float64() < p {
			out = append(out, n)
		}
	}
	return out
}

func (ri *randomInputs) step(e *Election, m *model) (Changes, string) {
	r := ri.r
	name := ri.names[r.IntN(len(ri.names))]
	switch op := r.IntN(10); op {
	case 0, 1:
		n := Node{Ready: r.IntN(5) > 0, Labels: map[string]string{"zone": []string{"a", "b"}[r.IntN(2)]}}
		if r.IntN(8) == 0 {
			n.Labels[excludeLabel] = ""
		}
		m.nodes[name] = n
		return e.SetNode(name, n), fmt.Sprintf("SetNode %s %+v", name, n)
	case 2:
		delete(m.nodes, name)
		return e.DeleteNode(name), "DeleteNode " + name
	case 3, 4:
		// Mostly what the speaker would publish, sometimes stale or random claims.
		var claims []netip.Addr
		if r.IntN(3) > 0 {
			claims = e.Claims(name)
		} else {
			for _, ip := range ri.ips {
				if r.IntN(4) == 0 {
					claims = append(claims, ip)
				}
			}
		}
		m.members[name] = claims
		return e.SetMember(name, claims), fmt.Sprintf("SetMember %s %v", name, claims)
	case 5:
		delete(m.members, name)
		return e.DeleteMember(name), "DeleteMember " + name
	case 6:
		pn := fmt.Sprintf("p%d", r.IntN(4))
		if r.IntN(4) == 0 {
			delete(m.pools, pn)
			return e.DeletePool(pn), "DeletePool " + pn
		}
		var p Pool
		zone, _ := labels.Parse("zone=" + []string{"a", "b"}[r.IntN(2)])
		switch r.IntN(4) {
		case 0:
			p.L2 = labels.Everything()
		case 1:
			p.L2 = zone
		case 2:
			p.BGP = zone
		case 3:
			p.L2, p.BGP = labels.Everything(), labels.Everything()
		}
		m.pools[pn] = p
		return e.SetPool(pn, p), fmt.Sprintf("SetPool %s %v/%v", pn, p.L2, p.BGP)
	default:
		key := fmt.Sprintf("ns/s%d", r.IntN(12))
		if r.IntN(6) == 0 {
			delete(m.svcs, key)
			return e.DeleteService(key), "DeleteService " + key
		}
		s := Service{Local: r.IntN(2) == 0}
		for range 1 + r.IntN(2) {
			s.Addresses = append(s.Addresses, Address{IP: ri.ips[r.IntN(len(ri.ips))], Pool: fmt.Sprintf("p%d", r.IntN(4))})
		}
		s.EndpointNodes = ri.subset(append(ri.names, ""), 0.3)
		m.svcs[key] = s
		return e.SetService(key, s), fmt.Sprintf("SetService %s %+v", key, s)
	}
}

func TestIncrementalMatchesRecomputation(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			ri := newRandomInputs(seed, 7, 9)
			e, m := New("node-0"), newModel("node-0")
			for i := range 3000 {
				before := e.allOwners()
				ch, what := ri.step(e, m)

				want := m.owners()
				got := e.allOwners()
				if !maps.Equal(got, want) {
					t.Fatalf("step %d (%s): owners\n got %v\nwant %v", i, what, got, want)
				}
				var moves []Move
				for _, ip := range ri.ips {
					if before[ip] != got[ip] {
						moves = append(moves, Move{IP: ip, From: before[ip], To: got[ip]})
					}
				}
				slices.SortFunc(moves, func(a, b Move) int { return a.IP.Compare(b.IP) })
				if !slices.Equal(ch.Moves, moves) {
					t.Fatalf("step %d (%s): moves %v, want %v", i, what, ch.Moves, moves)
				}
				if adv := m.advertised(); !slices.Equal(e.Advertised(), adv) {
					t.Fatalf("step %d (%s): advertised %v, want %v", i, what, e.Advertised(), adv)
				}
				winners := m.winners()
				for _, n := range ri.names {
					var held, won []netip.Addr
					for ip, o := range want {
						switch {
						case o != n:
						case winners[ip] == n:
							won = append(won, ip)
						default:
							held = append(held, ip)
						}
					}
					slices.SortFunc(held, netip.Addr.Compare)
					slices.SortFunc(won, netip.Addr.Compare)
					if claims, want := e.Claims(n), append(held, won...); !slices.Equal(claims, want) {
						t.Fatalf("step %d (%s): Claims(%s) %v, want %v (held first)", i, what, n, claims, want)
					}
				}
				if strings.Contains(what, "Delete") {
					checkNoLeftovers(t, e, m)
				}
			}
		})
	}
}

// checkNoLeftovers asserts that forgotten inputs leave no state behind, so a
// long-running speaker does not grow.
func checkNoLeftovers(t *testing.T, e *Election, m *model) {
	t.Helper()
	for n := range e.nodes {
		_, known := m.nodes[n]
		_, member := m.members[n]
		if !known && !member {
			t.Fatalf("node %s kept after it was deleted and left", n)
		}
	}
	vips := m.aggregate()
	for ip := range e.vips {
		if _, ok := vips[ip]; !ok {
			t.Fatalf("address %s kept after its Services were deleted", ip)
		}
	}
	for name, p := range e.pools {
		if _, ok := m.pools[name]; !ok && len(p.vips) == 0 {
			t.Fatalf("pool %s kept after it was deleted and unused", name)
		}
	}
}
