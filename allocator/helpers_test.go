package allocator

import (
	"errors"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

type poolOpt func(*v1alpha1.IPPool)

func mkPool(name string, addrs []string, opts ...poolOpt) *v1alpha1.IPPool {
	p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func alloc(p *v1alpha1.IPPool) *v1alpha1.AllocationSpec {
	if p.Spec.Allocation == nil {
		p.Spec.Allocation = &v1alpha1.AllocationSpec{}
	}
	return p.Spec.Allocation
}

func prio(n int32) poolOpt { return func(p *v1alpha1.IPPool) { alloc(p).Priority = &n } }
func noAuto() poolOpt {
	return func(p *v1alpha1.IPPool) { f := false; p.Spec.AutoAssign = &f }
}
func avoidBuggy() poolOpt { return func(p *v1alpha1.IPPool) { p.Spec.AvoidBuggyIPs = true } }
func inNamespaces(ns ...string) poolOpt {
	return func(p *v1alpha1.IPPool) { alloc(p).Namespaces = ns }
}
func nsSelector(m map[string]string) poolOpt {
	return func(p *v1alpha1.IPPool) { alloc(p).NamespaceSelector = &metav1.LabelSelector{MatchLabels: m} }
}
func svcSelector(m map[string]string) poolOpt {
	return func(p *v1alpha1.IPPool) { alloc(p).ServiceSelector = &metav1.LabelSelector{MatchLabels: m} }
}

type svcOpt func(*v1.Service)

func mkSvc(nsName string, opts ...svcOpt) *v1.Service {
	ns, name := "default", nsName
	for i := range nsName {
		if nsName[i] == '/' {
			ns, name = nsName[:i], nsName[i+1:]
		}
	}
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.ServiceSpec{
			Type:  v1.ServiceTypeLoadBalancer,
			Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func ann(k, v string) svcOpt {
	return func(s *v1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}
func ips(v string) svcOpt      { return ann(AnnotationLoadBalancerIPs, v) }
func inPool(v string) svcOpt   { return ann(AnnotationPool, v) }
func shareKey(v string) svcOpt { return ann(AnnotationAllowSharedIP, v) }
func lbIP(v string) svcOpt     { return func(s *v1.Service) { s.Spec.LoadBalancerIP = v } }
func svcLabels(m map[string]string) svcOpt {
	return func(s *v1.Service) { s.Labels = m }
}
func ports(ps ...v1.ServicePort) svcOpt { return func(s *v1.Service) { s.Spec.Ports = ps } }
func tcp(n int32) v1.ServicePort        { return v1.ServicePort{Port: n, Protocol: v1.ProtocolTCP} }
func udp(n int32) v1.ServicePort        { return v1.ServicePort{Port: n, Protocol: v1.ProtocolUDP} }
func local(sel map[string]string) svcOpt {
	return func(s *v1.Service) {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		s.Spec.Selector = sel
	}
}

// fams sets the family policy ("" for nil) and spec.ipFamilies.
func fams(policy string, families ...string) svcOpt {
	return func(s *v1.Service) {
		if policy != "" {
			p := v1.IPFamilyPolicy(policy)
			s.Spec.IPFamilyPolicy = &p
		}
		s.Spec.IPFamilies = nil
		for _, f := range families {
			s.Spec.IPFamilies = append(s.Spec.IPFamilies, v1.IPFamily(f))
		}
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func fmtAddrs(s []netip.Addr) string {
	if len(s) == 0 {
		return ""
	}
	return joinAddrs(s)
}

// newAlloc returns an allocator with the given pools, failing the test on error.
func newAlloc(t testing.TB, pools ...*v1alpha1.IPPool) *Allocator {
	t.Helper()
	a := New()
	for _, p := range pools {
		if err := a.SetPool(p); err != nil {
			t.Fatalf("SetPool(%s): %v", p.Name, err)
		}
	}
	return a
}

// mustAlloc allocates and returns the IPs as a comma list.
func mustAlloc(t testing.TB, a *Allocator, svc *v1.Service) string {
	t.Helper()
	al, err := a.Allocate(svc)
	if err != nil {
		t.Fatalf("Allocate(%s): %v", ServiceKey(svc), err)
	}
	checkInvariants(t, a)
	return fmtAddrs(al.IPs)
}

// reason returns the Reason of an *Error ("" for nil, "?" for another error).
func reason(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if !errors.As(err, &e) {
		return "?" + err.Error()
	}
	return e.Reason
}

// checkInvariants checks, for small pools, that every pool's free tree is exactly
// its covered addresses minus the held ones, that intervals are disjoint and not
// adjacent, and that stats add up. Pools with more than 4096 addresses per family
// only get the structural checks.
func checkInvariants(t testing.TB, a *Allocator) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.order {
		for f := range p.free {
			var prev *interval
			var freeCount uint64
			p.free[f].walk(func(first, last u128) {
				if last.less(first) {
					t.Fatalf("pool %s: inverted interval", p.name)
				}
				if prev != nil && !prev.last.addOne().less(first) {
					t.Fatalf("pool %s: intervals overlap or touch", p.name)
				}
				prev = &interval{first, last}
				if last.sub(first).hi == 0 && last.sub(first).lo < 1<<20 {
					for v := first; ; v = v.addOne() {
						if !(p.avoidBuggy && family(f) == fam4 && buggy(v)) {
							freeCount++
						}
						if v == last {
							break
						}
					}
				} else {
					freeCount = 1 << 62
				}
			})
			if p.total[f].hi == 0 && p.total[f].lo <= 4096 {
				if got, want := freeCount, p.total[f].lo-uint64(p.assigned[f]); got != want {
					t.Fatalf("pool %s %s: %d free in tree, stats say %d", p.name, family(f), got, want)
				}
				for _, iv := range p.ranges[f] {
					for v := iv.first; ; v = v.addOne() {
						ip := fromU128(v, family(f) == fam4)
						if p.covers(ip) {
							_, held := a.owners[ip]
							if free := p.free[f].contains(v); free == held {
								t.Fatalf("pool %s: %s held=%v free=%v", p.name, ip, held, free)
							}
						}
						if v == iv.last {
							break
						}
					}
				}
			}
			var assigned int64
			for ip := range a.owners {
				if familyOf(ip) == family(f) && p.covers(ip) {
					assigned++
				}
			}
			if assigned != p.assigned[f] {
				t.Fatalf("pool %s %s: assigned %d, counted %d", p.name, family(f), p.assigned[f], assigned)
			}
		}
		orphans := 0
		for ip, u := range a.owners {
			if u.pool == p.name && !p.covers(ip) {
				orphans++
			}
		}
		if orphans != p.orphaned {
			t.Fatalf("pool %s: orphaned %d, counted %d", p.name, p.orphaned, orphans)
		}
	}
	for ip, u := range a.owners {
		if len(u.holders) == 0 {
			t.Fatalf("%s has no holders", ip)
		}
		for _, h := range u.holders {
			if !containsAddr(h.ips, ip) || a.services[h.key] != h {
				t.Fatalf("%s: holder %s does not hold it", ip, h.key)
			}
		}
		if u.key != "" {
			if _, ok := a.byKey[u.key][ip]; !ok {
				t.Fatalf("%s not indexed under key %q", ip, u.key)
			}
		}
	}
	for key, st := range a.services {
		if len(st.ips) == 0 {
			t.Fatalf("%s: state without addresses", key)
		}
		for _, ip := range st.ips {
			u := a.owners[ip]
			if u == nil || !containsStateP(u.holders, st) {
				t.Fatalf("%s: holds %s but is not its holder", key, ip)
			}
		}
	}
}

func containsStateP(hs []*svcState, st *svcState) bool {
	for _, h := range hs {
		if h == st {
			return true
		}
	}
	return false
}

func v1ServicePort(n int32, proto string) v1.ServicePort {
	return v1.ServicePort{Port: n, Protocol: v1.Protocol(proto)}
}
