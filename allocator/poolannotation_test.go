package allocator

import (
	"testing"
)

func TestPoolAnnotationRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		al    Allocation
		want  string
		check map[string]string // ip -> pool read back
	}{
		{"none", Allocation{}, "", nil},
		{"one pool", Allocation{IPs: addrs("192.0.2.1"), Pools: []string{"lan"}}, "lan",
			map[string]string{"192.0.2.1": "lan"}},
		{"dual, same pool", Allocation{IPs: addrs("192.0.2.1", "2001:db8::1"), Pools: []string{"lan", "lan"}}, "lan",
			map[string]string{"192.0.2.1": "lan", "2001:db8::1": "lan"}},
		{"dual, pools differ", Allocation{IPs: addrs("2001:db8::1", "192.0.2.1"), Pools: []string{"v6", "v4"}}, "IPv4=v4,IPv6=v6",
			map[string]string{"192.0.2.1": "v4", "2001:db8::1": "v6"}},
		{"orphan without pool", Allocation{IPs: addrs("192.0.2.1", "2001:db8::1"), Pools: []string{"", "v6"}}, "IPv6=v6",
			map[string]string{"192.0.2.1": "", "2001:db8::1": "v6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PoolAnnotation(tt.al)
			if got != tt.want {
				t.Fatalf("PoolAnnotation = %q, want %q", got, tt.want)
			}
			p, err := ParsePoolAnnotation(got)
			if err != nil {
				t.Fatal(err)
			}
			for ip, pool := range tt.check {
				if g := p.For(addrs(ip)[0]); g != pool {
					t.Fatalf("For(%s) = %q, want %q", ip, g, pool)
				}
			}
		})
	}
	for _, bad := range []string{"IPv4=", "IPv5=a", "IPv4=a,IPv4=b", "a,b", "=a", "IPv4=a=b"} {
		if _, err := ParsePoolAnnotation(bad); err == nil {
			t.Errorf("ParsePoolAnnotation(%q) accepted", bad)
		}
	}
}

// Explicit addresses from two pools are attributed per family, and a restart
// (Restore) keeps the published attribution even where pools overlap.
func TestAttributionAcrossRestoreWithOverlaps(t *testing.T) {
	wide := mkPool("a-wide", []string{"10.0.0.0/24"})
	narrow := mkPool("b-narrow", []string{"10.0.0.0/28"}, prio(1))
	v6 := mkPool("v6", []string{"2001:db8::/120"})
	a := newAlloc(t, wide, narrow, v6)
	svc := mkSvc("ns/web", fams(require, "IPv4", "IPv6"), ips("10.0.0.5,2001:db8::5"), inPool(""))
	al, err := a.Allocate(svc)
	if err != nil {
		t.Fatal(err)
	}
	if got := PoolAnnotation(al); got != "IPv4=b-narrow,IPv6=v6" {
		t.Fatalf("annotation %q", got)
	}
	// Another Service explicitly from the lower-priority overlapping pool.
	other := mkSvc("ns/other", inPool("a-wide"), ips("10.0.0.6"))
	oal, err := a.Allocate(other)
	if err != nil || PoolAnnotation(oal) != "a-wide" {
		t.Fatalf("other: %v %q", err, PoolAnnotation(oal))
	}

	// Restart: a new allocator restores from status + the published annotation.
	b := newAlloc(t, wide, narrow, v6)
	other.Annotations[AnnotationAllocatedFromPool] = PoolAnnotation(oal)
	if err := b.Restore(other, oal.IPs); err != nil {
		t.Fatal(err)
	}
	got, _ := b.Lookup("ns/other")
	if PoolAnnotation(got) != "a-wide" {
		t.Fatalf("restored attribution %q, want a-wide (coverage alone would say b-narrow)", PoolAnnotation(got))
	}
	// A pool that no longer exists is ignored: attribution by coverage.
	gone := mkSvc("ns/gone", ann(AnnotationAllocatedFromPool, "deleted-pool"))
	if err := b.Restore(gone, addrs("10.0.0.200")); err != nil {
		t.Fatal(err)
	}
	if g, _ := b.Lookup("ns/gone"); g.Pool != "a-wide" {
		t.Fatalf("gone: pool %q", g.Pool)
	}
	// An orphaned address keeps the pool it came from, which counts it as orphaned.
	orphan := mkSvc("ns/orphan", ann(AnnotationAllocatedFromPool, "v6"))
	if err := b.Restore(orphan, addrs("2001:db8:ffff::1")); err != nil {
		t.Fatal(err)
	}
	if g, _ := b.Lookup("ns/orphan"); g.Pool != "v6" || len(g.Orphaned) != 1 {
		t.Fatalf("orphan: %+v", g)
	}
	if st, _ := b.Stats("v6"); st.Orphaned != 1 {
		t.Fatalf("v6 orphaned = %d, want 1", st.Orphaned)
	}
	checkInvariants(t, b)
}

func FuzzParsePoolAnnotation(f *testing.F) {
	for _, s := range []string{"", "lan", "IPv4=a,IPv6=b", "IPv6=b", "IPv4=,", "=", ",", "IPv4=a,IPv4=a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePoolAnnotation(s)
		if err != nil {
			return
		}
		// Whatever parses formats back to something that parses the same.
		var al Allocation
		if p.All != "" {
			al = Allocation{IPs: addrs("192.0.2.1"), Pools: []string{p.All}}
		} else {
			if p.IPv4 != "" {
				al.IPs, al.Pools = append(al.IPs, addrs("192.0.2.1")...), append(al.Pools, p.IPv4)
			}
			if p.IPv6 != "" {
				al.IPs, al.Pools = append(al.IPs, addrs("2001:db8::1")...), append(al.Pools, p.IPv6)
			}
		}
		q, err := ParsePoolAnnotation(PoolAnnotation(al))
		if err != nil {
			t.Fatalf("%q -> %+v -> %q: %v", s, p, PoolAnnotation(al), err)
		}
		for _, ip := range al.IPs {
			if p.For(ip) != q.For(ip) {
				t.Fatalf("%q: %s attributed %q then %q", s, ip, p.For(ip), q.For(ip))
			}
		}
	})
}
