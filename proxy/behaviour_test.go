package proxy

import (
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// Three nginx backends, one on this node (node1).
var (
	ep1 = ep{ip: "198.18.1.10", node: "node1"}
	ep2 = ep{ip: "198.18.2.10", node: "node2"}
	ep3 = ep{ip: "198.18.3.10", node: "node3"}
	all = []string{"198.18.1.10:8080", "198.18.2.10:8080", "198.18.3.10:8080"}
)

func nginx(opts ...svcOpt) *v1.Service { return service("web", "nginx", "198.19.0.10", opts...) }

func nginxSlice(eps ...ep) *discovery.EndpointSlice {
	return slice("web", "nginx", "nginx-a", httpPort(8080), eps...)
}

func TestBehaviour(t *testing.T) {
	type tc struct {
		name string
		mods []func(*Config)
		objs []any
		pkt  iptables.Packet
		want verdict
	}
	none := func(eps ...string) verdict { return verdict{endpoints: eps, masq: "none"} }
	masq := func(eps ...string) verdict { return verdict{endpoints: eps, masq: "all"} }
	just := func(v ...string) verdict { return verdict{other: v} }
	cases := []tc{
		{name: "ClusterIP from a pod: every endpoint, source kept",
			objs: []any{nginx(), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.18.1.5", "198.19.0.10", 80), want: none(all...)},
		{name: "ClusterIP from the node itself (OUTPUT): masqueraded",
			objs: []any{nginx(), nginxSlice(ep1, ep2, ep3)},
			pkt:  fromNode("198.19.0.10", 80), want: masq(all...)},
		{name: "ClusterIP from outside the cluster: masqueraded",
			objs: []any{nginx(), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "198.19.0.10", 80), want: masq(all...)},
		{name: "ClusterIP with masqueradeAll: pods masqueraded too",
			mods: []func(*Config){func(c *Config) { c.MasqueradeAll = true }},
			objs: []any{nginx(), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.18.1.5", "198.19.0.10", 80), want: masq(all...)},
		{name: "ClusterIP on another port: not touched",
			objs: []any{nginx(), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.18.1.5", "198.19.0.10", 81), want: just("FORWARD")},
		{name: "hairpin: an endpoint reaching itself through the ClusterIP is masqueraded",
			objs: []any{nginx(), nginxSlice(ep1)},
			pkt:  pkt("198.18.1.10", "198.19.0.10", 80), want: masq("198.18.1.10:8080")},
		{name: "NodePort on the node address from outside",
			objs: []any{nginx(nodePort(30080)), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "192.0.2.11", 30080), want: masq(all...)},
		{name: "NodePort from the node itself",
			objs: []any{nginx(nodePort(30080)), nginxSlice(ep1, ep2, ep3)},
			pkt:  fromNode("192.0.2.11", 30080), want: masq(all...)},
		{name: "NodePort port on an address that is not the node's: not touched",
			objs: []any{nginx(nodePort(30080)), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "192.0.2.99", 30080), want: just("FORWARD")},
		{name: "NodePort limited by NodePortAddresses: other node address not served",
			mods: []func(*Config){func(c *Config) { c.NodePortAddresses = []netip.Prefix{netip.MustParsePrefix("192.0.2.128/25")} }},
			objs: []any{nginx(nodePort(30080)), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "192.0.2.11", 30080), want: just("LOCAL")},
		{name: "NodePort of a ClusterIP Service does not exist",
			objs: []any{nginx(), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "192.0.2.11", 30080), want: just("LOCAL")},
		{name: "load balancer IP from outside",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7")), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "203.0.113.7", 80), want: masq(all...)},
		{name: "load balancer IP in Proxy ipMode is not captured",
			objs: []any{nginx(nodePort(30080), func(s *v1.Service) {
				s.Spec.Type = v1.ServiceTypeLoadBalancer
				mode := v1.LoadBalancerIPModeProxy
				s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.7", IPMode: &mode}}
			}), nginxSlice(ep1, ep2, ep3)},
			pkt: pkt("198.51.100.10", "203.0.113.7", 80), want: just("FORWARD")},
		{name: "externalIP from outside",
			objs: []any{nginx(externalIPs("192.0.2.200")), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "192.0.2.200", 80), want: masq(all...)},
		{name: "UDP Service",
			objs: []any{
				service("kube-system", "dns", "198.19.0.53", withPorts(v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP})),
				slice("kube-system", "dns", "dns-a", []discovery.EndpointPort{epPort("dns", 5353, v1.ProtocolUDP)}, ep{ip: "198.18.2.53", node: "node2"})},
			pkt:  iptables.Packet{Src: localPod, Dst: netip.MustParseAddr("198.19.0.53"), DstPort: 53, Protocol: "udp"},
			want: none("198.18.2.53:5353")},
		{name: "UDP Service does not capture TCP",
			objs: []any{
				service("kube-system", "dns", "198.19.0.53", withPorts(v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP})),
				slice("kube-system", "dns", "dns-a", []discovery.EndpointPort{epPort("dns", 5353, v1.ProtocolUDP)}, ep{ip: "198.18.2.53", node: "node2"})},
			pkt:  iptables.Packet{Src: localPod, Dst: netip.MustParseAddr("198.19.0.53"), DstPort: 53, Protocol: "tcp"},
			want: just("FORWARD")},
		{name: "SCTP NodePort",
			objs: []any{
				service("tel", "sig", "198.19.0.60", withPorts(v1.ServicePort{Name: "s", Port: 3868, Protocol: v1.ProtocolSCTP, NodePort: 31868}),
					func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeNodePort }),
				slice("tel", "sig", "sig-a", []discovery.EndpointPort{epPort("s", 3868, v1.ProtocolSCTP)}, ep{ip: "198.18.2.60", node: "node2"})},
			pkt:  iptables.Packet{Src: extIP, Dst: nodeIP, DstPort: 31868, Protocol: "sctp"},
			want: masq("198.18.2.60:3868")},
		{name: "IPv6 ClusterIP from a pod",
			objs: []any{
				service("web", "v6", "2001:db8:1::10"),
				slice("web", "v6", "v6-a", httpPort(8080), ep{ip: "2001:db8:42::10", node: "node2"}, ep{ip: "2001:db8:42::11", node: "node1"})},
			pkt: pkt("2001:db8:42::5", "2001:db8:1::10", 80), want: none("[2001:db8:42::10]:8080", "[2001:db8:42::11]:8080")},
		{name: "IPv6 NodePort from outside",
			objs: []any{
				service("web", "v6", "2001:db8:1::10", nodePort(30081)),
				slice("web", "v6", "v6-a", httpPort(8080), ep{ip: "2001:db8:42::10", node: "node2"})},
			pkt: pkt("2001:db8:99::10", "2001:db8::11", 30081), want: masq("[2001:db8:42::10]:8080")},
		{name: "dual-stack Service: the IPv6 ClusterIP reaches IPv6 endpoints only",
			objs: []any{
				nginx(dualStack("2001:db8:1::10")),
				nginxSlice(ep1, ep2),
				slice("web", "nginx", "nginx-v6", httpPort(8080), ep{ip: "2001:db8:42::10", node: "node2"})},
			pkt: pkt("2001:db8:42::5", "2001:db8:1::10", 80), want: none("[2001:db8:42::10]:8080")},

		// Endpoint conditions.
		{name: "not-ready endpoints are not used",
			objs: []any{nginx(), nginxSlice(ep1, ep{ip: "198.18.2.10", node: "node2", notReady: true})},
			pkt:  pkt("198.18.1.5", "198.19.0.10", 80), want: none("198.18.1.10:8080")},
		{name: "serving terminating endpoints are the fallback when none is ready",
			objs: []any{nginx(), nginxSlice(
				ep{ip: "198.18.1.10", node: "node1", notReady: true, terminating: true},
				ep{ip: "198.18.2.10", node: "node2", notReady: true, terminating: true, notServing: true})},
			pkt: pkt("198.18.1.5", "198.19.0.10", 80), want: none("198.18.1.10:8080")},
		{name: "no endpoints: ClusterIP rejected from a pod",
			objs: []any{nginx()},
			pkt:  pkt("198.18.1.5", "198.19.0.10", 80), want: just("REJECT")},
		{name: "no endpoints: ClusterIP rejected from the node",
			objs: []any{nginx(), nginxSlice(ep{ip: "198.18.2.10", node: "node2", notReady: true, notServing: true})},
			pkt:  fromNode("198.19.0.10", 80), want: just("REJECT")},
		{name: "no endpoints: NodePort rejected",
			objs: []any{nginx(nodePort(30080))},
			pkt:  pkt("198.51.100.10", "192.0.2.11", 30080), want: just("REJECT")},
		{name: "no endpoints: load balancer IP rejected",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"))},
			pkt:  pkt("198.51.100.10", "203.0.113.7", 80), want: just("REJECT")},
		{name: "no endpoints: externalIP rejected",
			objs: []any{nginx(externalIPs("192.0.2.200"))},
			pkt:  pkt("198.51.100.10", "192.0.2.200", 80), want: just("REJECT")},

		// externalTrafficPolicy: Local.
		{name: "ETP Local: external client reaches only the local endpoint, source kept",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "203.0.113.7", 80), want: none("198.18.1.10:8080")},
		{name: "ETP Local: NodePort from outside, local endpoint only, source kept",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "192.0.2.11", 30080), want: none("198.18.1.10:8080")},
		{name: "ETP Local without a local endpoint: external traffic dropped",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep2, ep3)},
			pkt:  pkt("198.51.100.10", "203.0.113.7", 80), want: just("DROP")},
		{name: "ETP Local without a local endpoint: NodePort dropped",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep2, ep3)},
			pkt:  pkt("198.51.100.10", "192.0.2.11", 30080), want: just("DROP")},
		{name: "ETP Local: a pod reaching the VIP short-circuits to every endpoint",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep2, ep3)},
			pkt:  pkt("198.18.1.5", "203.0.113.7", 80), want: none("198.18.2.10:8080", "198.18.3.10:8080")},
		{name: "ETP Local: the node reaching the VIP goes to every endpoint, masqueraded",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep2, ep3)},
			pkt:  fromNode("203.0.113.7", 80), want: masq("198.18.2.10:8080", "198.18.3.10:8080")},
		{name: "ETP Local: the ClusterIP still uses every endpoint",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.18.1.5", "198.19.0.10", 80), want: none(all...)},
		{name: "ETP Local: the health check node port is accepted",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep2)},
			pkt:  pkt("198.51.100.10", "192.0.2.11", 32000), want: just("LOCAL")},

		// internalTrafficPolicy: Local.
		{name: "ITP Local: only the local endpoint",
			objs: []any{nginx(itpLocal()), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.18.1.5", "198.19.0.10", 80), want: none("198.18.1.10:8080")},
		{name: "ITP Local without a local endpoint: dropped",
			objs: []any{nginx(itpLocal()), nginxSlice(ep2, ep3)},
			pkt:  pkt("198.18.1.5", "198.19.0.10", 80), want: just("DROP")},
		{name: "ITP Local does not limit the NodePort",
			objs: []any{nginx(itpLocal(), nodePort(30080)), nginxSlice(ep2, ep3)},
			pkt:  pkt("198.51.100.10", "192.0.2.11", 30080), want: masq("198.18.2.10:8080", "198.18.3.10:8080")},

		// loadBalancerSourceRanges.
		{name: "source ranges: a client inside is served",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), sourceRanges("198.51.100.0/24")), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.10", "203.0.113.7", 80), want: masq(all...)},
		{name: "source ranges: a client outside is dropped",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), sourceRanges("198.51.100.0/28")), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.99", "203.0.113.7", 80), want: just("DROP")},
		{name: "source ranges do not apply to the NodePort (as in kube-proxy)",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), sourceRanges("198.51.100.0/28")), nginxSlice(ep1, ep2, ep3)},
			pkt:  pkt("198.51.100.99", "192.0.2.11", 30080), want: masq(all...)},
		{name: "source ranges containing the node admit the node with the VIP as source",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), sourceRanges("192.0.2.0/24")), nginxSlice(ep1, ep2, ep3)},
			pkt:  iptables.Packet{Src: netip.MustParseAddr("203.0.113.7"), Dst: netip.MustParseAddr("203.0.113.7"), DstPort: 80, Protocol: "tcp", FromLocal: true},
			want: masq(all...)},
		{name: "source range 0.0.0.0/0 allows everyone",
			objs: []any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), sourceRanges("0.0.0.0/0")), nginxSlice(ep1)},
			pkt:  pkt("198.51.100.99", "203.0.113.7", 80), want: masq("198.18.1.10:8080")},

		// Topology.
		{name: "zone hints: endpoints hinted for this node's zone only",
			objs: []any{
				&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{v1.LabelTopologyZone: "a"}}},
				nginx(), nginxSlice(ep{ip: "198.18.1.10", node: "node1", zones: []string{"a"}}, ep{ip: "198.18.2.10", node: "node2", zones: []string{"b"}})},
			pkt: pkt("198.18.1.5", "198.19.0.10", 80), want: none("198.18.1.10:8080")},
		{name: "Services of another proxy are ignored",
			objs: []any{nginx(func(s *v1.Service) { s.Labels = map[string]string{labelServiceProxyName: "other"} }), nginxSlice(ep1)},
			pkt:  pkt("198.18.1.5", "198.19.0.10", 80), want: just("FORWARD")},
		{name: "headless Services are ignored",
			objs: []any{service("web", "hl", "None"), slice("web", "hl", "hl-a", httpPort(8080), ep1)},
			pkt:  pkt("198.18.1.5", "198.18.1.10", 8080), want: just("FORWARD")},
		{name: "traffic to no Service passes untouched",
			objs: []any{nginx(), nginxSlice(ep1)},
			pkt:  pkt("198.18.1.5", "203.0.113.99", 443), want: just("FORWARD")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.mods...)
			e.add(c.objs...)
			e.sync()
			checkConsistent(t, e.m4)
			checkConsistent(t, e.m6)
			got := summarize(e.trace(c.pkt))
			if got.String() != c.want.String() {
				t.Errorf("got  %v\nwant %v", got, c.want)
			}
		})
	}
}

func TestBalancingIsUniform(t *testing.T) {
	for n := 1; n <= 7; n++ {
		e := newEnv(t)
		var eps []ep
		for i := range n {
			eps = append(eps, ep{ip: netip.AddrFrom4([4]byte{198, 18, 2, byte(10 + i)}).String(), node: "node2"})
		}
		e.add(nginx(), nginxSlice(eps...))
		e.sync()
		outs := e.trace(pkt("198.18.1.5", "198.19.0.10", 80))
		if len(outs) != n {
			t.Fatalf("%d endpoints: %d outcomes", n, len(outs))
		}
		for _, o := range outs {
			if math.Abs(o.Probability-1/float64(n)) > 1e-9 {
				t.Errorf("%d endpoints: %v chosen with probability %v, want %v", n, o.Dst, o.Probability, 1/float64(n))
			}
		}
	}
}

func TestMasqueradeRandomFully(t *testing.T) {
	for _, rf := range []bool{true, false} {
		e := newEnv(t, func(c *Config) { c.RandomFully = &rf })
		e.add(nginx(), nginxSlice(ep2))
		e.sync()
		for _, o := range e.trace(fromNode("198.19.0.10", 80)) {
			if !o.Masquerade || o.RandomFully != rf {
				t.Errorf("RandomFully=%v: outcome masquerade=%v randomFully=%v", rf, o.Masquerade, o.RandomFully)
			}
		}
	}
}

func TestSessionAffinity(t *testing.T) {
	e := newEnv(t)
	e.add(nginx(affinity(60)), nginxSlice(ep1, ep2, ep3))
	e.sync()
	client := pkt("198.18.1.5", "198.19.0.10", 80)
	first := e.trace(client)
	if got := summarize(first); len(got.endpoints) != 3 {
		t.Fatalf("first connection: %v, want any of three", got)
	}
	// The connection went to the second endpoint: the kernel remembers the client.
	var chosen iptables.Outcome
	for _, o := range first {
		if o.Dst.String() == all[1] {
			chosen = o
		}
	}
	if len(chosen.Recent) != 1 {
		t.Fatalf("outcome to %s records %v in recent lists, want one list", all[1], chosen.Recent)
	}
	now := time.Now()
	e.m4.RecordRecent(chosen.Recent[0], client.Src, now)
	tr := iptables.Tracer{Model: e.m4, LocalAddrs: []netip.Addr{nodeIP}, Now: now.Add(59 * time.Second)}
	outs, err := tr.Trace(client)
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(outs); !slices.Equal(got.endpoints, []string{all[1]}) {
		t.Errorf("within the timeout: %v, want only %s", got, all[1])
	}
	// The connection that stuck renews the client's entry (the timeout counts
	// from the last new connection, as with kube-proxy).
	for _, o := range outs {
		if !slices.Equal(o.Recent, chosen.Recent) {
			t.Errorf("a connection within the timeout records %v in recent lists, want %v", o.Recent, chosen.Recent)
		}
	}
	other := client
	other.Src = netip.MustParseAddr("198.18.1.6")
	outs, _ = tr.Trace(other)
	if got := summarize(outs); len(got.endpoints) != 3 {
		t.Errorf("another client: %v, want any of three", got)
	}
	tr.Now = now.Add(61 * time.Second)
	outs, _ = tr.Trace(client)
	if got := summarize(outs); len(got.endpoints) != 3 {
		t.Errorf("after the timeout: %v, want any of three again", got)
	}
}

// TestHairpin: a new connection that an endpoint makes to its own Service
// and that is DNATed back to the same endpoint is masqueraded (else the
// endpoint would answer itself directly and the client would drop the
// answer); the same client reaching another endpoint keeps its address.
func TestHairpin(t *testing.T) {
	noNode := ep{ip: "198.18.1.12"}
	cases := []struct {
		name string
		objs []any
		pkt  iptables.Packet
	}{
		{"ClusterIP, endpoint on this node",
			[]any{nginx(), nginxSlice(ep1, ep2)}, pkt("198.18.1.10", "198.19.0.10", 80)},
		{"ClusterIP, endpoint of no known node",
			[]any{nginx(), nginxSlice(noNode, ep2)}, pkt("198.18.1.12", "198.19.0.10", 80)},
		{"ClusterIP with affinity, endpoint on this node",
			[]any{nginx(affinity(60)), nginxSlice(ep1, ep2)}, pkt("198.18.1.10", "198.19.0.10", 80)},
		{"ITP Local, endpoint on this node",
			[]any{nginx(itpLocal()), nginxSlice(ep1, ep{ip: "198.18.1.11", node: "node1"})}, pkt("198.18.1.10", "198.19.0.10", 80)},
		{"ETP Local NodePort reached by an endpoint on another node (pod traffic goes to every endpoint)",
			[]any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep1, ep2)},
			pkt("198.18.2.10", "192.0.2.11", 30080)},
		{"ETP Local VIP reached by an endpoint on another node",
			[]any{nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000)), nginxSlice(ep1, ep2)},
			pkt("198.18.2.10", "203.0.113.7", 80)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.add(c.objs...)
			e.sync()
			self, other := 0, 0
			for _, o := range e.trace(c.pkt) {
				if o.Verdict != iptables.Accept || !o.DNAT {
					t.Fatalf("outcome %+v, want a DNAT", o)
				}
				if o.Dst.Addr() == c.pkt.Src {
					self++
					if !o.Masquerade {
						t.Errorf("to itself (%v): not masqueraded", o.Dst)
					}
				} else {
					other++
					if o.Masquerade {
						t.Errorf("to another endpoint (%v): masqueraded", o.Dst)
					}
				}
			}
			if self == 0 || other == 0 {
				t.Errorf("%d outcomes to itself and %d to others: the case proves nothing", self, other)
			}
		})
	}
}
