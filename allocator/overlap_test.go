package allocator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

// The sweep finds exactly the pairs the pairwise check finds.
func TestOverlapsMatchPairwise(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		a := New()
		var pools []*v1alpha1.IPPool
		for i := range 1 + r.IntN(30) {
			var specs []string
			for range 1 + r.IntN(3) {
				lo := r.IntN(200)
				hi := lo + r.IntN(20)
				if r.IntN(4) == 0 {
					specs = append(specs, fmt.Sprintf("2001:db8::%x-2001:db8::%x", lo, hi))
				} else {
					specs = append(specs, fmt.Sprintf("10.0.0.%d-10.0.0.%d", lo, min(hi, 255)))
				}
			}
			p := mkPool(fmt.Sprintf("p%02d", i), specs)
			pools = append(pools, p)
			if err := a.SetPool(p); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range pools {
			var want []string
			for _, q := range pools {
				if q != p && a.pools[p.Name].overlaps(a.pools[q.Name]) {
					want = append(want, q.Name)
				}
			}
			if got := a.Overlaps(p.Name); !slices.Equal(got, want) {
				t.Fatalf("trial %d: Overlaps(%s) = %v, want %v", trial, p.Name, got, want)
			}
		}
		// A pool edit invalidates the cache.
		a.DeletePool(pools[0].Name)
		for _, p := range pools[1:] {
			if slices.Contains(a.Overlaps(p.Name), pools[0].Name) {
				t.Fatalf("deleted pool still overlaps %s", p.Name)
			}
		}
	}
}

func TestPoolsCovering(t *testing.T) {
	a := newAlloc(t,
		mkPool("wide", []string{"10.0.0.0/24"}),
		mkPool("narrow", []string{"10.0.0.0/28"}),
		mkPool("v6", []string{"2001:db8::/64"}),
		mkPool("buggy", []string{"10.0.0.0/24"}, avoidBuggy()),
	)
	if got := a.PoolsCovering(addrs("10.0.0.5")...); !slices.Equal(got, []string{"buggy", "narrow", "wide"}) {
		t.Fatalf("10.0.0.5: %v", got)
	}
	// .0 is not handed out by an avoidBuggyIPs pool, so its counts never include it.
	if got := a.PoolsCovering(addrs("10.0.0.0", "2001:db8::1")...); !slices.Equal(got, []string{"narrow", "v6", "wide"}) {
		t.Fatalf("10.0.0.0 + v6: %v", got)
	}
}

// BenchmarkLoadPoolsAndOverlaps loads P pools and asks each for its overlaps, as
// the controller does when it starts (status for every pool).
func BenchmarkLoadPoolsAndOverlaps(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		pools := make([]*v1alpha1.IPPool, n)
		for i := range pools {
			pools[i] = mkPool(fmt.Sprintf("pool-%05d", i), []string{fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)})
		}
		b.Run(fmt.Sprintf("P=%d", n), func(b *testing.B) {
			for b.Loop() {
				a := New()
				for _, p := range pools {
					_ = a.SetPool(p)
				}
				for _, p := range pools {
					_ = a.Overlaps(p.Name)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/pool")
		})
	}
}
