package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// discardIPT accepts every restore without applying it: it measures rule
// generation alone.
type discardIPT struct{ fam iptables.Family }

func (d discardIPT) Family() iptables.Family                              { return d.fam }
func (d discardIPT) Restore(context.Context, []byte) error                { return nil }
func (d discardIPT) RandomFully(context.Context) bool                     { return true }
func (d discardIPT) Save(context.Context, iptables.Table) ([]byte, error) { return nil, nil }
func (d discardIPT) EnsureRule(context.Context, iptables.Table, string, ...string) error {
	return nil
}
func (d discardIPT) HasRule(context.Context, iptables.Table, string, ...string) (bool, error) {
	return true, nil
}
func (d discardIPT) DeleteRule(context.Context, iptables.Table, string, ...string) error {
	return nil
}

// benchServices adds n Services with k endpoints each: ClusterIPs spread
// over 198.19.0.0/16 (a /16 Service CIDR), endpoints on three nodes. With
// lb, every tenth Service is a LoadBalancer with its own NodePort and VIP
// (address and port), as in a cluster where most Services are internal.
func benchServices(p *Proxier, n, k int, lb bool) {
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		ip := netip.AddrFrom4([4]byte{198, 19, byte(i * 7 / 256 % 256), byte(i * 7 % 256)})
		var opts []svcOpt
		if lb && i%10 == 0 {
			j := i / 10
			opts = append(opts, nodePort(int32(30000+j)), loadBalancer(fmt.Sprintf("203.0.113.%d", 1+j%250)),
				func(s *v1.Service) { s.Spec.Ports[0].Port = int32(80 + j/250) })
		}
		p.tracker.setService(service("bench", name, ip.String(), opts...))
		var eps []ep
		for j := range k {
			eps = append(eps, ep{ip: fmt.Sprintf("198.18.%d.%d", (i*k+j)/250%250, 1+(i*k+j)%250), node: fmt.Sprintf("node%d", j%3)})
		}
		p.tracker.setSlice(slice("bench", name, name+"-a", httpPort(8080), eps...))
	}
}

func benchProxier(b *testing.B, ipt iptables.Interface) *Proxier {
	p, err := New(Config{NodeName: "node1", IPTables: []iptables.Interface{ipt},
		ClusterCIDRs: []netip.Prefix{podCIDR}, Conntrack: &fakeConntrack{flows: map[iptables.Family][]Flow{}},
		HealthCheckListen: newMemNet().listen})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkFullSync10kServices10Endpoints: a full sync of 10,000 Services x 10
// endpoints (IPv4), rule generation alone and generation plus the in-memory
// model applying the input.
func BenchmarkFullSync10kServices10Endpoints(b *testing.B) {
	for _, c := range []struct {
		name string
		ipt  func() iptables.Interface
	}{
		{"generate", func() iptables.Interface { return discardIPT{iptables.IPv4} }},
		{"generate+model", func() iptables.Interface { return iptables.NewModel(iptables.IPv4) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := benchProxier(b, c.ipt())
			benchServices(p, 10000, 10, true)
			ctx := context.Background()
			if err := p.syncOnce(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				p.markFull()
				if err := p.syncOnce(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.families[0].lastBytes), "restore-bytes")
		})
	}
}

// BenchmarkOneServiceChangeAt10k: one Service's endpoints change, and one
// Service is added or removed (which moves dispatch entries), among 10,000
// Services x 10 endpoints, applied to the in-memory model.
func BenchmarkOneServiceChangeAt10k(b *testing.B) {
	m := iptables.NewModel(iptables.IPv4)
	p := benchProxier(b, m)
	benchServices(p, 10000, 10, true)
	ctx := context.Background()
	if err := p.syncOnce(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("endpoints", func(b *testing.B) {
		total := 0
		for i := range b.N {
			var eps []ep
			for j := range 10 {
				eps = append(eps, ep{ip: fmt.Sprintf("198.18.251.%d", 1+(i%2)*100+j), node: "node2"})
			}
			p.tracker.setSlice(slice("bench", "s4242", "s4242-a", httpPort(8080), eps...))
			if err := p.syncOnce(ctx); err != nil {
				b.Fatal(err)
			}
			total += p.families[0].lastBytes
		}
		b.ReportMetric(float64(total)/float64(b.N), "restore-bytes/op")
	})
	b.Run("add-or-delete-service", func(b *testing.B) {
		total := 0
		for i := range b.N {
			if i%2 == 0 {
				p.tracker.setService(service("bench", "extra", "198.19.200.77", nodePort(32700)))
				p.tracker.setSlice(slice("bench", "extra", "extra-a", httpPort(8080), ep{ip: "198.18.252.1", node: "node2"}))
			} else {
				p.tracker.deleteService(typesName("bench", "extra"))
			}
			if err := p.syncOnce(ctx); err != nil {
				b.Fatal(err)
			}
			total += p.families[0].lastBytes
		}
		b.ReportMetric(float64(total)/float64(b.N), "restore-bytes/op")
	})
}

// BenchmarkFirstPacketRules reports how many nat rules the first packet of a
// connection evaluates (the tracer counts them) at 100 and 10,000 Services:
// to a Service (mean and worst over Services and endpoint choices), and to an
// address that is no Service (pod to the Internet: every new connection of a
// node pays it).
func BenchmarkFirstPacketRules(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprint(n, "services"), func(b *testing.B) {
			m := iptables.NewModel(iptables.IPv4)
			p := benchProxier(b, m)
			benchServices(p, n, 10, true)
			if err := p.syncOnce(context.Background()); err != nil {
				b.Fatal(err)
			}
			tr := iptables.Tracer{Model: m, LocalAddrs: []netip.Addr{nodeIP}}
			sum, cnt, worst := 0, 0, 0
			b.ResetTimer()
			for range b.N {
				sum, cnt, worst = 0, 0, 0
				for i := 0; i < n; i += max(1, n/200) {
					dst := netip.AddrFrom4([4]byte{198, 19, byte(i * 7 / 256 % 256), byte(i * 7 % 256)})
					outs, err := tr.Trace(iptables.Packet{Src: localPod, Dst: dst, DstPort: 80, Protocol: "tcp", InInterface: "veth0"})
					if err != nil {
						b.Fatal(err)
					}
					for _, o := range outs {
						sum += o.NATRules
						cnt++
						worst = max(worst, o.NATRules)
					}
				}
			}
			b.StopTimer()
			outs, _ := tr.Trace(iptables.Packet{Src: localPod, Dst: netip.MustParseAddr("198.51.100.77"), DstPort: 443, Protocol: "tcp", InInterface: "veth0"})
			b.ReportMetric(float64(sum)/float64(cnt), "rules-mean")
			b.ReportMetric(float64(worst), "rules-worst")
			b.ReportMetric(float64(outs[0].NATRules), "rules-non-service")
		})
	}
}

func typesName(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}
