package allocator

import (
	"fmt"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// BenchmarkIronlbAllocateBurst is the ironlb half of a head-to-head comparison
// with MetalLB's allocator: bench/metallb/run.sh runs BenchmarkMetalLBAllocateBurst
// (bench/metallb/metallb_bench_test.go.txt) on the same workload, with the same
// sub-benchmark and metric names so the outputs line up.
//
// Workload: N distinct Services ("ns<i%100>/svc<i>", type LoadBalancer, one TCP
// port 80, no sharing key, SingleStack IPv4 by default) allocated one after
// another from one auto-assign IPv4 /16 pool (10.0.0.0/16, avoidBuggyIPs off) on
// a fresh allocator per b.N iteration. Only the burst is timed; building the
// allocator and the pool is not. ns/alloc is the timed time per Allocate call.
//
// It uses only the exported API, as a controller would.
func BenchmarkIronlbAllocateBurst(b *testing.B) {
	// N=10000 was dropped because one MetalLB burst of 10,000 took 65.5 s on a
	// 2-core machine (over a ~60 s per iteration budget); keep the sizes in step
	// with bench/metallb/metallb_bench_test.go.txt.
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { ironlbAllocateBurst(b, n) })
	}
}

func ironlbAllocateBurst(b *testing.B, n int) {
	svcs := make([]*v1.Service, n)
	for i := range svcs {
		svcs[i] = &v1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns%d", i%100), Name: fmt.Sprintf("svc%d", i)},
			Spec: v1.ServiceSpec{
				Type:  v1.ServiceTypeLoadBalancer,
				Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}},
			},
		}
	}
	autoAssign := true
	pool := &v1alpha1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: v1alpha1.IPPoolSpec{
			Addresses:  []v1alpha1.AddressRange{"10.0.0.0/16"},
			AutoAssign: &autoAssign,
		},
	}
	// Addresses are handed out lowest first, so the last Service holds
	// 10.0.0.0 + (n-1), as with MetalLB.
	want := netip.AddrFrom4([4]byte{10, 0, byte((n - 1) >> 8), byte(n - 1)})
	b.ReportAllocs()
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		a := New()
		if err := a.SetPool(pool); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		var last Allocation
		for _, svc := range svcs {
			al, err := a.Allocate(svc)
			if err != nil {
				b.Fatal(err)
			}
			last = al
		}
		b.StopTimer()
		if len(last.IPs) != 1 || last.IPs[0] != want {
			b.Fatalf("last Service got %v, want [%v]", last.IPs, want)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/alloc")
}
