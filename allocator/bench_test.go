package allocator

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
)

// BenchmarkAllocate100kSlash12 allocates 100,000 fresh Services from one IPv4 /12
// pool on a fresh allocator per iteration.
func BenchmarkAllocate100kSlash12(b *testing.B) {
	const n = 100_000
	svcs := make([]*v1.Service, n)
	for i := range svcs {
		svcs[i] = mkSvc(fmt.Sprintf("ns%d/svc%d", i%100, i))
	}
	pool := mkPool("big", []string{"10.0.0.0/12"})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		a := New()
		if err := a.SetPool(pool); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for _, svc := range svcs {
			if _, err := a.Allocate(svc); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/alloc")
}

// BenchmarkAllocate10kAcross50PoolsSelectors allocates 10,000 Services spread
// over 100 namespaces from 50 pools scoped by namespace selectors, namespace
// lists and Service selectors, on a fresh allocator per iteration.
func BenchmarkAllocate10kAcross50PoolsSelectors(b *testing.B) {
	const n, nPools, nNS = 10_000, 50, 100
	svcs := make([]*v1.Service, n)
	for i := range svcs {
		svcs[i] = mkSvc(fmt.Sprintf("ns%d/svc%d", i%nNS, i),
			svcLabels(map[string]string{"tier": fmt.Sprintf("t%d", i%5), "app": fmt.Sprintf("app%d", i)}))
	}
	build := func() *Allocator {
		a := New()
		for ns := 0; ns < nNS; ns++ {
			a.SetNamespaceLabels(fmt.Sprintf("ns%d", ns), map[string]string{"team": fmt.Sprintf("team%d", ns%10), "env": "prod"})
		}
		for p := 0; p < nPools; p++ {
			var opts []poolOpt
			switch p % 3 {
			case 0:
				opts = append(opts, nsSelector(map[string]string{"team": fmt.Sprintf("team%d", p%10)}))
			case 1:
				opts = append(opts, svcSelector(map[string]string{"tier": fmt.Sprintf("t%d", p%5)}))
			default:
				opts = append(opts, inNamespaces(fmt.Sprintf("ns%d", p), fmt.Sprintf("ns%d", p+50)),
					nsSelector(map[string]string{"env": "prod"}))
			}
			opts = append(opts, prio(int32(p%7)))
			if err := a.SetPool(mkPool(fmt.Sprintf("pool%02d", p), []string{fmt.Sprintf("10.%d.0.0/20", p)}, opts...)); err != nil {
				b.Fatal(err)
			}
		}
		return a
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		a := build()
		b.StartTimer()
		for _, svc := range svcs {
			if _, err := a.Allocate(svc); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/alloc")
}

// BenchmarkAllocateRelease measures one Allocate plus one Release in steady
// state: a /16 pool with 10,000 Services holding addresses and churn on top.
func BenchmarkAllocateRelease(b *testing.B) {
	a := New()
	if err := a.SetPool(mkPool("p", []string{"10.0.0.0/16"})); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 10_000; i++ {
		if _, err := a.Allocate(mkSvc(fmt.Sprintf("ns/base%d", i))); err != nil {
			b.Fatal(err)
		}
	}
	// Free every other address so the free space is fragmented.
	for i := 0; i < 10_000; i += 2 {
		a.Release(fmt.Sprintf("ns/base%d", i), "")
	}
	churn := make([]*v1.Service, 1024)
	for i := range churn {
		churn[i] = mkSvc(fmt.Sprintf("ns/churn%d", i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		svc := churn[i%len(churn)]
		if _, err := a.Allocate(svc); err != nil {
			b.Fatal(err)
		}
		a.Release(ServiceKey(svc), "")
	}
}

// BenchmarkAllocateIdempotent measures the common controller path: Allocate of a
// Service that already holds its address.
func BenchmarkAllocateIdempotent(b *testing.B) {
	a := New()
	if err := a.SetPool(mkPool("p", []string{"10.0.0.0/16"})); err != nil {
		b.Fatal(err)
	}
	svc := mkSvc("ns/svc")
	if _, err := a.Allocate(svc); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.Allocate(svc); err != nil {
			b.Fatal(err)
		}
	}
}
