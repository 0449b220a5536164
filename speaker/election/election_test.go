package election

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// byRank is the rendezvous order written out independently of the package:
// nodes sorted by the hex of sha256(node + "#" + ip).
func byRank(ip string, nodes ...string) []string {
	h := func(n string) string {
		s := sha256.Sum256([]byte(n + "#" + netip.MustParseAddr(ip).String()))
		return hex.EncodeToString(s[:])
	}
	out := slices.Clone(nodes)
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(h(a), h(b)) })
	return out
}

var (
	vip1 = netip.MustParseAddr("192.0.2.200")
	vip2 = netip.MustParseAddr("2001:db8::200")
)

func l2All() Pool { return Pool{L2: labels.Everything()} }

func ready(lbls ...string) Node {
	n := Node{Ready: true, Labels: map[string]string{}}
	for i := 0; i+1 < len(lbls); i += 2 {
		n.Labels[lbls[i]] = lbls[i+1]
	}
	return n
}

func cluster(ip netip.Addr, endpointNodes ...string) Service {
	return Service{Addresses: []Address{{IP: ip, Pool: "p"}}, EndpointNodes: endpointNodes}
}

func local(ip netip.Addr, endpointNodes ...string) Service {
	s := cluster(ip, endpointNodes...)
	s.Local = true
	return s
}

// world builds an Election with the given nodes Ready and alive (no claims),
// pool "p" as given, and the services.
func world(self string, p Pool, nodes []string, svcs map[string]Service) *Election {
	e := New(self)
	e.SetPool("p", p)
	for _, n := range nodes {
		e.SetNode(n, ready())
		e.SetMember(n, nil)
	}
	for k, s := range svcs {
		e.SetService(k, s)
	}
	return e
}

func owner(e *Election, ip netip.Addr) string {
	o, _ := e.Owner(ip)
	return o
}

func TestOwnerIsRendezvousWinnerOfEligibleAliveNodes(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4"}
	for _, ip := range []netip.Addr{vip1, vip2} {
		e := world("n1", l2All(), nodes, map[string]Service{"ns/a": cluster(ip, "n1")})
		want := byRank(ip.String(), nodes...)[0]
		if got := owner(e, ip); got != want {
			t.Fatalf("%s: owner %q, want the rendezvous winner %q", ip, got, want)
		}
	}
}

func TestEligibility(t *testing.T) {
	ip := vip1
	order := byRank(ip.String(), "n1", "n2", "n3")
	best, second := order[0], order[1]

	tests := []struct {
		name  string
		setup func(e *Election)
		want  string // "" = not announced
	}{
		{"all eligible", func(e *Election) {}, best},
		{"best not Ready", func(e *Election) { e.SetNode(best, Node{Ready: false}) }, second},
		{"best excluded from load balancers", func(e *Election) {
			e.SetNode(best, ready("node.kubernetes.io/exclude-from-external-load-balancers", ""))
		}, second},
		{"best not selected by the pool", func(e *Election) {
			sel, _ := labels.Parse("role!=edge")
			e.SetPool("p", Pool{L2: sel})
			e.SetNode(best, ready("role", "edge"))
		}, second},
		{"best's speaker not alive", func(e *Election) { e.DeleteMember(best) }, second},
		{"best's Node object gone", func(e *Election) { e.DeleteNode(best) }, second},
		{"pool without L2 (BGP only)", func(e *Election) { e.SetPool("p", Pool{BGP: labels.Everything()}) }, ""},
		{"pool deleted", func(e *Election) { e.DeletePool("p") }, ""},
		{"Cluster Service without a ready endpoint", func(e *Election) { e.SetService("ns/a", cluster(ip)) }, ""},
		{"Cluster Service whose only endpoint has no node name", func(e *Election) {
			e.SetService("ns/a", cluster(ip, ""))
		}, best},
		{"Local: only nodes with a local endpoint", func(e *Election) {
			e.SetService("ns/a", local(ip, second))
		}, second},
		{"Local: endpoint node's speaker dead", func(e *Election) {
			e.SetService("ns/a", local(ip, second))
			e.DeleteMember(second)
		}, ""},
		{"Local: no ready endpoint anywhere", func(e *Election) { e.SetService("ns/a", local(ip)) }, ""},
		{"Local: endpoint without node name", func(e *Election) { e.SetService("ns/a", local(ip, "")) }, ""},
		{"shared address: one Service with endpoints is enough", func(e *Election) {
			e.SetService("ns/a", cluster(ip))
			e.SetService("ns/b", cluster(ip, "n3"))
		}, best},
		{"Service deleted", func(e *Election) { e.DeleteService("ns/a") }, ""},
		{"unknown pool", func(e *Election) {
			e.SetService("ns/a", Service{Addresses: []Address{{IP: ip, Pool: "nope"}}, EndpointNodes: []string{"n1"}})
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := world("n1", l2All(), []string{"n1", "n2", "n3"}, map[string]Service{"ns/a": cluster(ip, "n1")})
			tt.setup(e)
			if got := owner(e, ip); got != tt.want {
				t.Fatalf("owner %q, want %q", got, tt.want)
			}
		})
	}
}

// publish feeds back what a speaker would publish: its claims.
func publish(e *Election, n string) Changes { return e.SetMember(n, e.Claims(n)) }

func TestNoFailback(t *testing.T) {
	ip := vip1
	order := byRank(ip.String(), "n1", "n2", "n3")
	best, second := order[0], order[1]
	e := world("n1", l2All(), []string{"n1", "n2", "n3"}, map[string]Service{"ns/a": cluster(ip, "n1")})
	publish(e, best)

	ch := e.DeleteMember(best)
	if want := []Move{{IP: ip, From: best, To: second}}; !slices.Equal(ch.Moves, want) {
		t.Fatalf("owner death: moves %v, want %v", ch.Moves, want)
	}
	publish(e, second)

	// best comes back (a restarted speaker publishes no claims).
	if ch := e.SetMember(best, nil); len(ch.Moves) != 0 {
		t.Fatalf("rejoin moved the address back: %v", ch.Moves)
	}
	if got := owner(e, ip); got != second {
		t.Fatalf("owner %q after rejoin, want the healthy current owner %q", got, second)
	}
	// So does a Node flapping NotReady/Ready.
	e.SetNode(best, Node{Ready: false})
	e.SetNode(best, ready())
	if got := owner(e, ip); got != second {
		t.Fatalf("owner %q after best flapped, want %q", got, second)
	}

	// The claim is what keeps it: had second not published, best wins again.
	e.SetMember(second, nil)
	if got := owner(e, ip); got != best {
		t.Fatalf("owner %q without claims, want the rendezvous winner %q", got, best)
	}
}

func TestOwnerLosingEligibilityMovesEvenWithClaim(t *testing.T) {
	ip := vip1
	order := byRank(ip.String(), "n1", "n2", "n3")
	e := world("n1", l2All(), []string{"n1", "n2", "n3"}, map[string]Service{"ns/a": local(ip, order[0], order[2])})
	publish(e, order[0])
	ch := e.SetService("ns/a", local(ip, order[2])) // the endpoint left the owner's node
	if want := []Move{{IP: ip, From: order[0], To: order[2]}}; !slices.Equal(ch.Moves, want) {
		t.Fatalf("moves %v, want %v", ch.Moves, want)
	}
}

func TestClaimantsTieBreakByRankAndReportContest(t *testing.T) {
	ip := vip1
	order := byRank(ip.String(), "n1", "n2", "n3")
	e := world("n1", l2All(), []string{"n1", "n2", "n3"}, map[string]Service{"ns/a": cluster(ip, "n1")})
	// After a partition heals, order[2] and order[1] both claim the address.
	e.SetMember(order[2], []netip.Addr{ip})
	if got := owner(e, ip); got != order[2] {
		t.Fatalf("owner %q, want the only claimant %q", got, order[2])
	}
	ch := e.SetMember(order[1], []netip.Addr{ip})
	if got := owner(e, ip); got != order[1] {
		t.Fatalf("owner %q, want the better-ranked claimant %q", got, order[1])
	}
	if !slices.Equal(ch.Contested, []netip.Addr{ip}) {
		t.Fatalf("contested %v, want [%s]", ch.Contested, ip)
	}
	// A repeated identical update is not a new contest.
	if ch := e.SetMember(order[2], []netip.Addr{ip}); !ch.Empty() {
		t.Fatalf("repeated claims changed %+v", ch)
	}
	ch = e.SetMember(order[2], nil)
	if !ch.Empty() {
		t.Fatalf("the loser dropping its claim changed %+v", ch)
	}
}

func TestClaimsListsHeldAddressesFirst(t *testing.T) {
	// Find two addresses where n2 is second and first in rank respectively.
	var heldIP, wonIP netip.Addr
	for i := 1; i < 255 && (!heldIP.IsValid() || !wonIP.IsValid()); i++ {
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		switch byRank(ip.String(), "n1", "n2")[0] {
		case "n1":
			if !heldIP.IsValid() {
				heldIP = ip
			}
		case "n2":
			if !wonIP.IsValid() {
				wonIP = ip
			}
		}
	}
	e := world("n1", l2All(), []string{"n2"}, map[string]Service{
		"ns/held": cluster(heldIP, "x"), "ns/won": cluster(wonIP, "x"),
	})
	publish(e, "n2")
	e.SetNode("n1", ready())
	e.SetMember("n1", nil) // n1 would win heldIP, but n2 holds it by its claim
	if got, want := e.Claims("n2"), []netip.Addr{heldIP, wonIP}; !slices.Equal(got, want) {
		t.Fatalf("Claims(n2) = %v, want %v (held first)", got, want)
	}
}

func TestBGPAdvertisement(t *testing.T) {
	sel, _ := labels.Parse("bgp=yes")
	tests := []struct {
		name  string
		self  Node
		pool  Pool
		svc   Service
		alive bool
		want  bool
	}{
		{"Cluster with endpoints elsewhere", ready("bgp", "yes"), Pool{BGP: sel}, cluster(vip1, "n2"), true, true},
		{"not a memberlist member: still advertises", ready("bgp", "yes"), Pool{BGP: sel}, cluster(vip1, "n2"), false, true},
		{"Cluster without endpoints", ready("bgp", "yes"), Pool{BGP: sel}, cluster(vip1), true, false},
		{"Local with an endpoint here", ready("bgp", "yes"), Pool{BGP: sel}, local(vip1, "n1"), true, true},
		{"Local with endpoints elsewhere only", ready("bgp", "yes"), Pool{BGP: sel}, local(vip1, "n2"), true, false},
		{"not selected", ready("bgp", "no"), Pool{BGP: sel}, cluster(vip1, "n2"), true, false},
		{"not Ready", Node{Labels: map[string]string{"bgp": "yes"}}, Pool{BGP: sel}, cluster(vip1, "n2"), true, false},
		{"excluded", ready("bgp", "yes", excludeLabel, "true"), Pool{BGP: sel}, cluster(vip1, "n2"), true, false},
		{"L2-only pool", ready("bgp", "yes"), l2All(), cluster(vip1, "n2"), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New("n1")
			e.SetPool("p", tt.pool)
			e.SetNode("n1", tt.self)
			if tt.alive {
				e.SetMember("n1", nil)
			}
			ch := e.SetService("ns/a", tt.svc)
			var want []netip.Addr
			if tt.want {
				want = []netip.Addr{vip1}
			}
			if !slices.Equal(e.Advertised(), want) || !slices.Equal(ch.Advertise, want) {
				t.Fatalf("Advertised %v, change %v; want %v", e.Advertised(), ch.Advertise, want)
			}
			if tt.want {
				ch = e.DeleteService("ns/a")
				if !slices.Equal(ch.Withdraw, want) || len(e.Advertised()) != 0 {
					t.Fatalf("after delete: withdraw %v, advertised %v", ch.Withdraw, e.Advertised())
				}
			}
		})
	}
}

func TestBGPFollowsLocalEndpoints(t *testing.T) {
	e := New("n1")
	e.SetPool("p", Pool{BGP: labels.Everything()})
	e.SetNode("n1", ready())
	if ch := e.SetService("ns/a", local(vip1, "n2")); !ch.Empty() {
		t.Fatalf("endpoint elsewhere: %+v", ch)
	}
	if ch := e.SetService("ns/a", local(vip1, "n1", "n2")); !slices.Equal(ch.Advertise, []netip.Addr{vip1}) {
		t.Fatalf("endpoint arrives here: %+v", ch)
	}
	if ch := e.SetNode("n1", Node{}); !slices.Equal(ch.Withdraw, []netip.Addr{vip1}) {
		t.Fatalf("node NotReady: %+v", ch)
	}
}

func TestMovesReportNetChangePerCall(t *testing.T) {
	e := world("n1", l2All(), []string{"n1", "n2"}, nil)
	ch := e.SetService("ns/a", cluster(vip1, "n1"))
	want := byRank(vip1.String(), "n1", "n2")[0]
	if !slices.Equal(ch.Moves, []Move{{IP: vip1, From: "", To: want}}) {
		t.Fatalf("moves %v", ch.Moves)
	}
	// A pool edit that keeps the same owner reports nothing.
	if ch := e.SetPool("p", l2All()); !ch.Empty() {
		t.Fatalf("no-op pool edit: %+v", ch)
	}
	ch = e.DeleteService("ns/a")
	if !slices.Equal(ch.Moves, []Move{{IP: vip1, From: want, To: ""}}) {
		t.Fatalf("moves %v", ch.Moves)
	}
	if len(e.vips) != 0 || len(e.owned) != 0 || len(e.local) != 0 {
		t.Fatalf("state left behind: vips %d owned %d local %d", len(e.vips), len(e.owned), len(e.local))
	}
}
