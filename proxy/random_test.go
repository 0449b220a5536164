package proxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// world is the set of objects a randomised test has created.
type world struct {
	rng      *rand.Rand
	services map[int]*v1.Service
	slices   map[int][]*discovery.EndpointSlice
	zone     string
}

const randomServices = 60

func (w *world) clusterIP(i int) string {
	// Spread over a few /24s, unevenly, so dispatch leaves split and merge.
	return fmt.Sprintf("198.19.%d.%d", i%3, 1+(i*37)%250)
}

func (w *world) randomService(i int) *v1.Service {
	r := w.rng
	proto := []v1.Protocol{v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP}[r.IntN(3)]
	ports := []v1.ServicePort{{Name: "p", Port: int32(80 + r.IntN(3)), Protocol: proto}}
	if r.IntN(3) == 0 {
		ports = append(ports, v1.ServicePort{Name: "q", Port: 443, Protocol: v1.ProtocolTCP})
	}
	s := service("r", fmt.Sprintf("s%d", i), w.clusterIP(i), withPorts(ports...))
	switch r.IntN(3) {
	case 1:
		s.Spec.Type = v1.ServiceTypeNodePort
	case 2:
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		// Some Services share an address (different ports), as allow-shared-ip does.
		vip := fmt.Sprintf("203.0.113.%d", 1+i%20)
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: vip}}
		if r.IntN(4) == 0 {
			s.Spec.LoadBalancerSourceRanges = []string{"198.51.100.0/25"}
		}
		if r.IntN(3) == 0 {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = int32(32000 + i)
		}
	}
	if s.Spec.Type != v1.ServiceTypeClusterIP {
		for k := range s.Spec.Ports {
			s.Spec.Ports[k].NodePort = int32(30000 + 2*i + k)
		}
	}
	if r.IntN(6) == 0 {
		s.Spec.ExternalIPs = []string{fmt.Sprintf("192.0.2.%d", 200+i%10)}
	}
	if r.IntN(5) == 0 {
		itpLocal()(s)
	}
	if r.IntN(5) == 0 {
		affinity(int32(10 + r.IntN(100)))(s)
	}
	if r.IntN(4) == 0 {
		dualStack(fmt.Sprintf("2001:db8:1::%x", i+1))(s)
	}
	return s
}

func (w *world) randomSlices(i int) []*discovery.EndpointSlice {
	r := w.rng
	svc := fmt.Sprintf("s%d", i)
	var ports []discovery.EndpointPort
	for _, p := range []struct {
		n string
		v v1.Protocol
	}{{"p", v1.ProtocolTCP}, {"p", v1.ProtocolUDP}, {"p", v1.ProtocolSCTP}, {"q", v1.ProtocolTCP}} {
		if r.IntN(2) == 0 {
			ports = append(ports, epPort(p.n, int32(8000+r.IntN(2)), p.v))
		}
	}
	var out []*discovery.EndpointSlice
	for k := range r.IntN(3) {
		var eps []ep
		for range r.IntN(5) {
			e := ep{ip: fmt.Sprintf("198.18.%d.%d", 1+r.IntN(3), 10+r.IntN(6)), node: fmt.Sprintf("node%d", 1+r.IntN(3))}
			e.notReady = r.IntN(4) == 0
			e.terminating = e.notReady && r.IntN(2) == 0
			e.notServing = e.notReady && r.IntN(2) == 0
			if r.IntN(5) == 0 {
				e.zones = []string{[]string{"a", "b"}[r.IntN(2)]}
			}
			eps = append(eps, e)
		}
		es := slice("r", svc, fmt.Sprintf("%s-%d", svc, k), ports, eps...)
		if k == 1 {
			// A second slice of IPv6 endpoints.
			es.AddressType = discovery.AddressTypeIPv6
			for j := range es.Endpoints {
				es.Endpoints[j].Addresses = []string{fmt.Sprintf("2001:db8:42::%x", 16+r.IntN(6))}
			}
		}
		out = append(out, es)
	}
	return out
}

func (w *world) node() *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{v1.LabelTopologyZone: w.zone}}}
}

// replay gives a fresh env the world's current objects.
func (w *world) replay(e *env) {
	e.add(w.node())
	for _, s := range w.services {
		e.add(s)
	}
	for _, ss := range w.slices {
		for _, s := range ss {
			e.add(s)
		}
	}
}

// probes are packets that exercise every frontend of the world's Services.
func (w *world) probes() []iptables.Packet {
	var out []iptables.Packet
	add := func(dst string, port uint16, proto string) {
		d := netip.MustParseAddr(dst)
		src, pod := extIP, localPod
		if d.Is6() {
			src, pod = extIP6, netip.MustParseAddr("2001:db8:42::5")
		}
		for _, p := range []iptables.Packet{
			{Src: src, Dst: d, DstPort: port, Protocol: proto, InInterface: "eth0"},
			{Src: pod, Dst: d, DstPort: port, Protocol: proto, InInterface: "veth1"},
			{Src: nodeIP, Dst: d, DstPort: port, Protocol: proto, FromLocal: true},
		} {
			if p.FromLocal && d.Is6() {
				p.Src = nodeIP6
			}
			out = append(out, p)
		}
	}
	for i := range randomServices {
		for _, proto := range []string{"tcp", "udp", "sctp"} {
			add(w.clusterIP(i), 80+uint16(i%3), proto)
			add(w.clusterIP(i), 443, proto)
			add(fmt.Sprintf("2001:db8:1::%x", i+1), 80+uint16(i%3), proto)
			add("192.0.2.11", 30000+2*uint16(i), proto)
			add("2001:db8::11", 30001+2*uint16(i), proto)
		}
		add(fmt.Sprintf("203.0.113.%d", 1+i%20), 80+uint16(i%3), "tcp")
		add(fmt.Sprintf("192.0.2.%d", 200+i%10), 80+uint16(i%3), "udp")
		add("192.0.2.11", 32000+uint16(i), "tcp")
	}
	add("198.19.1.251", 80, "tcp") // no Service
	return out
}

// TestRandomIncrementalEqualsFull applies random changes and, after every
// sync, checks the consistency rules and that the rules equal those of a
// fresh full sync of the same objects, both as text (the chains are a pure
// function of the objects) and by where every probe packet goes.
func TestRandomIncrementalEqualsFull(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4}
	steps := 150
	if testing.Short() {
		seeds = seeds[:2]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			if seed%2 == 0 {
				// Tiny batches: big syncs are split into several restores.
				old := maxChainsPerRestore
				maxChainsPerRestore = 7
				t.Cleanup(func() { maxChainsPerRestore = old })
			}
			w := &world{rng: rand.New(rand.NewPCG(seed, 7)), services: map[int]*v1.Service{}, slices: map[int][]*discovery.EndpointSlice{}}
			e := newEnv(t)
			e.add(w.node())
			e.sync()
			for step := range steps {
				for range 1 + w.rng.IntN(4) {
					w.change(e)
				}
				if w.rng.IntN(15) == 0 {
					e.p.markFull() // as after a lost canary
				}
				e.sync()
				checkConsistent(t, e.m4)
				checkConsistent(t, e.m6)
				fresh := newEnv(t)
				w.replay(fresh)
				fresh.sync()
				for _, pair := range [][2]*iptables.Model{{e.m4, fresh.m4}, {e.m6, fresh.m6}} {
					for _, tb := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
						a, _ := pair[0].Save(context.Background(), tb)
						b, _ := pair[1].Save(context.Background(), tb)
						if string(a) != string(b) {
							t.Fatalf("step %d: %s %s differs from a fresh full sync:\nincremental:\n%s\nfull:\n%s", step, pair[0].Family(), tb, a, b)
						}
					}
				}
				probes := w.probes()
				if step%25 != 24 {
					// Every probe now and then; a random sample in between.
					w.rng.Shuffle(len(probes), func(a, b int) { probes[a], probes[b] = probes[b], probes[a] })
					probes = probes[:150]
				}
				for _, p := range probes {
					got, want := summarize(e.trace(p)), summarize(fresh.trace(p))
					if got.String() != want.String() {
						t.Fatalf("step %d: %+v: incremental %v, full %v", step, p, got, want)
					}
				}
			}
		})
	}
}

func (w *world) change(e *env) {
	r := w.rng
	i := r.IntN(randomServices)
	switch r.IntN(10) {
	case 0, 1, 2:
		s := w.randomService(i)
		w.services[i] = s
		e.add(s)
	case 3:
		if _, ok := w.services[i]; ok {
			delete(w.services, i)
			e.deleteService("r", fmt.Sprintf("s%d", i))
		}
	case 4, 5, 6, 7:
		for _, old := range w.slices[i] {
			e.p.tracker.deleteSlice(old)
		}
		w.slices[i] = w.randomSlices(i)
		for _, s := range w.slices[i] {
			e.add(s)
		}
	case 8:
		for _, old := range w.slices[i] {
			e.p.tracker.deleteSlice(old)
		}
		delete(w.slices, i)
	case 9:
		w.zone = []string{"", "a", "b"}[r.IntN(3)]
		e.add(w.node())
	}
}
