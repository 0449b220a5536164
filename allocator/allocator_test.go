package allocator

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

const (
	single  = "SingleStack"
	prefer  = "PreferDualStack"
	require = "RequireDualStack"
)

func TestAllocateFamilies(t *testing.T) {
	dual := mkPool("dual", []string{"10.0.0.0/30", "2001:db8::/126"})
	v4 := mkPool("v4", []string{"10.0.1.0/30"})
	v6 := mkPool("v6", []string{"2001:db8:1::/126"})
	tests := []struct {
		name   string
		pools  []*v1alpha1.IPPool
		opts   []svcOpt
		want   string
		reason string
	}{
		{"nil policy, no families: IPv4", []*v1alpha1.IPPool{dual}, nil, "10.0.0.0", ""},
		{"nil policy, IPv6", []*v1alpha1.IPPool{dual}, []svcOpt{fams("", "IPv6")}, "2001:db8::", ""},
		{"single IPv4", []*v1alpha1.IPPool{dual}, []svcOpt{fams(single, "IPv4")}, "10.0.0.0", ""},
		{"single IPv6", []*v1alpha1.IPPool{dual}, []svcOpt{fams(single, "IPv6")}, "2001:db8::", ""},
		{"single IPv6 from v4 pool", []*v1alpha1.IPPool{v4}, []svcOpt{fams(single, "IPv6")}, "", ReasonFamilyUnavailable},
		{"prefer, dual pool", []*v1alpha1.IPPool{dual}, []svcOpt{fams(prefer, "IPv4", "IPv6")}, "10.0.0.0,2001:db8::", ""},
		{"prefer, IPv6 first", []*v1alpha1.IPPool{dual}, []svcOpt{fams(prefer, "IPv6", "IPv4")}, "2001:db8::,10.0.0.0", ""},
		// PreferDualStack in a single-stack cluster: the API server lists one family,
		// and that is all kube-proxy forwards.
		{"prefer, one family listed", []*v1alpha1.IPPool{dual}, []svcOpt{fams(prefer, "IPv4")}, "10.0.0.0", ""},
		{"prefer, IPv6 only listed", []*v1alpha1.IPPool{dual}, []svcOpt{fams(prefer, "IPv6")}, "2001:db8::", ""},
		{"prefer, one family listed, pool lacks it", []*v1alpha1.IPPool{v6}, []svcOpt{fams(prefer, "IPv4")}, "", ReasonFamilyUnavailable},
		{"prefer, no families listed: both", []*v1alpha1.IPPool{dual}, []svcOpt{fams(prefer)}, "10.0.0.0,2001:db8::", ""},
		{"prefer, v4 pool", []*v1alpha1.IPPool{v4}, []svcOpt{fams(prefer, "IPv4", "IPv6")}, "10.0.1.0", ""},
		{"prefer, v6 pool", []*v1alpha1.IPPool{v6}, []svcOpt{fams(prefer, "IPv4", "IPv6")}, "2001:db8:1::", ""},
		{"require, dual pool", []*v1alpha1.IPPool{dual}, []svcOpt{fams(require, "IPv6", "IPv4")}, "2001:db8::,10.0.0.0", ""},
		{"require, v4 pool", []*v1alpha1.IPPool{v4}, []svcOpt{fams(require, "IPv4", "IPv6")}, "", ReasonFamilyUnavailable},
		{"require, split pools", []*v1alpha1.IPPool{v4, v6}, []svcOpt{fams(require, "IPv4", "IPv6")}, "", ReasonFamilyUnavailable},
		{"require, requested v4 pool", []*v1alpha1.IPPool{v4, dual}, []svcOpt{fams(require), inPool("v4")}, "", ReasonFamilyUnavailable},
		{"require skips v4 pool", []*v1alpha1.IPPool{v4, dual}, []svcOpt{fams(require)}, "10.0.0.0,2001:db8::", ""},
		{"single v4 skips v6 pool", []*v1alpha1.IPPool{v6, dual}, []svcOpt{fams(single, "IPv4")}, "10.0.0.0", ""},
		{"explicit two for dual prefer", []*v1alpha1.IPPool{dual}, []svcOpt{fams(prefer, "IPv4", "IPv6"), ips("2001:db8::2,10.0.0.3")}, "10.0.0.3,2001:db8::2", ""},
		{"explicit one for dual prefer", []*v1alpha1.IPPool{dual}, []svcOpt{fams(prefer, "IPv4", "IPv6"), ips("2001:db8::2")}, "2001:db8::2", ""},
		// A requested address of a family the Service does not have is refused:
		// nothing would forward it.
		{"explicit two for single-family prefer", []*v1alpha1.IPPool{dual}, []svcOpt{fams(prefer, "IPv4"), ips("2001:db8::2,10.0.0.3")}, "", ReasonIPFamilyMismatch},
		{"explicit v6 for single v4", []*v1alpha1.IPPool{dual}, []svcOpt{fams(single, "IPv4"), ips("2001:db8::2")}, "", ReasonIPFamilyMismatch},
		{"spec.loadBalancerIP v6 for single v4", []*v1alpha1.IPPool{dual}, []svcOpt{fams(single, "IPv4"), lbIP("2001:db8::2")}, "", ReasonIPFamilyMismatch},
		{"explicit v4 for single v6", []*v1alpha1.IPPool{dual}, []svcOpt{fams(single, "IPv6"), ips("10.0.0.1")}, "", ReasonIPFamilyMismatch},
		{"explicit v6, no families (IPv4)", []*v1alpha1.IPPool{dual}, []svcOpt{ips("2001:db8::2")}, "", ReasonIPFamilyMismatch},
		{"explicit two for single", []*v1alpha1.IPPool{dual}, []svcOpt{fams(single, "IPv4"), ips("10.0.0.1,2001:db8::2")}, "", ReasonInvalidRequest},
		{"explicit two for nil policy", []*v1alpha1.IPPool{dual}, []svcOpt{ips("10.0.0.1,2001:db8::2")}, "", ReasonInvalidRequest},
		{"explicit one for require", []*v1alpha1.IPPool{dual}, []svcOpt{fams(require), ips("10.0.0.1")}, "", ReasonInvalidRequest},
		{"explicit across split pools", []*v1alpha1.IPPool{v4, v6}, []svcOpt{fams(require, "IPv6", "IPv4"), ips("10.0.1.1,2001:db8:1::1")}, "2001:db8:1::1,10.0.1.1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAlloc(t, tt.pools...)
			al, err := a.Allocate(mkSvc("ns/svc", tt.opts...))
			if reason(err) != tt.reason {
				t.Fatalf("err = %v, want reason %q", err, tt.reason)
			}
			if got := fmtAddrs(al.IPs); got != tt.want {
				t.Fatalf("IPs = %q, want %q", got, tt.want)
			}
			checkInvariants(t, a)
		})
	}
}

func TestPoolOrderAndLowestFirst(t *testing.T) {
	a := newAlloc(t,
		mkPool("zz-noprio", []string{"10.9.0.0/31"}),
		mkPool("b-prio1", []string{"10.1.0.0/31"}, prio(1)),
		mkPool("a-prio1", []string{"10.0.0.0/31"}, prio(1)),
		mkPool("c-prio0", []string{"10.2.0.10-10.2.0.11", "10.2.0.1-10.2.0.2"}, prio(0)),
		mkPool("aa-noprio", []string{"10.8.0.0/31"}),
		mkPool("manual", []string{"10.7.0.0/31"}, prio(0), noAuto()),
	)
	want := []string{
		"10.2.0.1", "10.2.0.2", "10.2.0.10", "10.2.0.11", // priority 0, lowest first across ranges
		"10.0.0.0", "10.0.0.1", // priority 1, name a-prio1
		"10.1.0.0", "10.1.0.1", // priority 1, name b-prio1
		"10.8.0.0", "10.8.0.1", // no priority, name aa-noprio
		"10.9.0.0", "10.9.0.1",
	}
	for i, w := range want {
		if got := mustAlloc(t, a, mkSvc(fmt.Sprintf("ns/s%d", i))); got != w {
			t.Fatalf("allocation %d = %s, want %s", i, got, w)
		}
	}
	if _, err := a.Allocate(mkSvc("ns/more")); reason(err) != ReasonPoolExhausted {
		t.Fatalf("err = %v, want PoolExhausted", err)
	}
	// autoAssign=false pools still serve explicit requests.
	if got := mustAlloc(t, a, mkSvc("ns/manual", inPool("manual"))); got != "10.7.0.0" {
		t.Fatalf("manual pool: %s", got)
	}
	if got := mustAlloc(t, a, mkSvc("ns/manual-ip", ips("10.7.0.1"))); got != "10.7.0.1" {
		t.Fatalf("manual IP: %s", got)
	}
	// A freed address is the lowest again.
	a.Release("ns/s1", "")
	if got := mustAlloc(t, a, mkSvc("ns/again")); got != "10.2.0.2" {
		t.Fatalf("after release: %s", got)
	}
}

func TestAvoidBuggyIPs(t *testing.T) {
	a := newAlloc(t, mkPool("p", []string{"10.0.0.254-10.0.2.1", "2001:db8::ff/128"}, avoidBuggy()))
	st, _ := a.Stats("p")
	if st.TotalIPv4 != 1+254+1 || st.TotalIPv6 != 1 { // .254, .1.1-.1.254, .2.1
		t.Fatalf("stats %+v", st)
	}
	var got []string
	for i := 0; i < 3; i++ {
		got = append(got, mustAlloc(t, a, mkSvc(fmt.Sprintf("ns/s%d", i))))
	}
	if want := []string{"10.0.0.254", "10.0.1.1", "10.0.1.2"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// An explicit request for a skipped address is outside the pool.
	if _, err := a.Allocate(mkSvc("ns/buggy", ips("10.0.1.0"))); reason(err) != ReasonIPOutsidePools {
		t.Fatalf("err = %v", err)
	}
	// IPv6 addresses ending in ff are fine.
	if got := mustAlloc(t, a, mkSvc("ns/v6", fams(single, "IPv6"))); got != "2001:db8::ff" {
		t.Fatalf("v6: %s", got)
	}
	for i := 3; i < 256; i++ {
		mustAlloc(t, a, mkSvc(fmt.Sprintf("ns/s%d", i)))
	}
	if _, err := a.Allocate(mkSvc("ns/full")); reason(err) != ReasonPoolExhausted {
		t.Fatalf("err = %v", err)
	}
	if st, _ := a.Stats("p"); st.AvailableIPv4 != 0 || st.AssignedIPv4 != 256 {
		t.Fatalf("stats %+v", st)
	}
}

func TestErrorReasons(t *testing.T) {
	pools := func() []*v1alpha1.IPPool {
		return []*v1alpha1.IPPool{
			mkPool("open", []string{"10.0.0.0/31"}),
			mkPool("team", []string{"10.1.0.0/31"}, inNamespaces("team")),
			mkPool("v6", []string{"2001:db8::/127"}),
		}
	}
	tests := []struct {
		name   string
		pools  []*v1alpha1.IPPool
		setup  []string // services (by IP annotation) allocated first
		opts   []svcOpt
		reason string
	}{
		{"no pools at all", nil, nil, nil, ReasonNoPools},
		{"no pool allows", []*v1alpha1.IPPool{mkPool("team", []string{"10.1.0.0/31"}, inNamespaces("team"))}, nil, nil, ReasonNoPools},
		{"only manual pools", []*v1alpha1.IPPool{mkPool("m", []string{"10.1.0.0/31"}, noAuto())}, nil, nil, ReasonNoPools},
		{"pool not found", pools(), nil, []svcOpt{inPool("nope")}, ReasonPoolNotFound},
		{"pool not allowed", pools(), nil, []svcOpt{inPool("team")}, ReasonPoolNotAllowed},
		{"pool exhausted", pools(), []string{"10.0.0.0", "10.0.0.1"}, []svcOpt{inPool("open")}, ReasonPoolExhausted},
		{"all exhausted", pools(), []string{"10.0.0.0", "10.0.0.1"}, nil, ReasonPoolExhausted},
		{"ip outside pools", pools(), nil, []svcOpt{ips("192.0.2.1")}, ReasonIPOutsidePools},
		{"ip in disallowed pool", pools(), nil, []svcOpt{ips("10.1.0.1")}, ReasonIPOutsidePools},
		{"ip outside requested pool", pools(), nil, []svcOpt{ips("10.1.0.1"), inPool("open")}, ReasonIPOutsidePools},
		{"ip of a family the Service lacks", pools(), nil, []svcOpt{ips("2001:db8::1")}, ReasonIPFamilyMismatch},
		{"ip in use", pools(), []string{"10.0.0.1"}, []svcOpt{ips("10.0.0.1")}, ReasonIPInUse},
		{"family unavailable", pools(), nil, []svcOpt{fams(require)}, ReasonFamilyUnavailable},
		{"family unavailable in requested pool", pools(), nil, []svcOpt{fams(single, "IPv6"), inPool("open")}, ReasonFamilyUnavailable},
		{"invalid request", pools(), nil, []svcOpt{ips("10.0.0.0.1")}, ReasonInvalidRequest},
		{"conflicting annotations", pools(), nil, []svcOpt{inPool("open"), ann("metallb.universe.tf/address-pool", "v6")}, ReasonInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAlloc(t, tt.pools...)
			for i, ip := range tt.setup {
				mustAlloc(t, a, mkSvc(fmt.Sprintf("other/s%d", i), ips(ip)))
			}
			svc := mkSvc("ns/svc", tt.opts...)
			al, err := a.Allocate(svc)
			var e *Error
			if !errors.As(err, &e) || e.Reason != tt.reason {
				t.Fatalf("err = %v, want reason %s", err, tt.reason)
			}
			if !errors.Is(err, &Error{Reason: tt.reason}) {
				t.Fatal("errors.Is does not match the reason")
			}
			if len(al.IPs) != 0 {
				t.Fatalf("got addresses %v with an error", al.IPs)
			}
			if _, ok := a.Lookup("ns/svc"); ok {
				t.Fatal("failed allocation left state")
			}
			if tt.pools != nil && !strings.Contains(e.Error(), "ns/svc") {
				t.Fatalf("message does not name the Service: %q", e.Error())
			}
			t.Log(e.Error())
			checkInvariants(t, a)
		})
	}
}

func TestSharing(t *testing.T) {
	sel := map[string]string{"app": "web"}
	other := map[string]string{"app": "db"}
	tests := []struct {
		name  string
		first []svcOpt
		then  []svcOpt
		share bool
	}{
		{"same key, distinct ports", []svcOpt{shareKey("k"), ports(tcp(80))}, []svcOpt{shareKey("k"), ports(tcp(443))}, true},
		{"same port, other protocol", []svcOpt{shareKey("k"), ports(tcp(53))}, []svcOpt{shareKey("k"), ports(udp(53))}, true},
		{"default protocol is TCP", []svcOpt{shareKey("k"), ports(tcp(80))}, []svcOpt{shareKey("k"), ports(v1ServicePort(80, ""))}, false},
		{"port collision", []svcOpt{shareKey("k"), ports(tcp(80), tcp(81))}, []svcOpt{shareKey("k"), ports(tcp(81))}, false},
		{"different keys", []svcOpt{shareKey("k"), ports(tcp(80))}, []svcOpt{shareKey("j"), ports(tcp(443))}, false},
		{"no key on second", []svcOpt{shareKey("k"), ports(tcp(80))}, []svcOpt{ports(tcp(443))}, false},
		{"no key on first", []svcOpt{ports(tcp(80))}, []svcOpt{shareKey("k"), ports(tcp(443))}, false},
		{"metallb key equals ironlb key", []svcOpt{shareKey("k"), ports(tcp(80))}, []svcOpt{ann("metallb.universe.tf/allow-shared-ip", "k"), ports(tcp(443))}, true},
		{"both Local, same selector", []svcOpt{shareKey("k"), local(sel), ports(tcp(80))}, []svcOpt{shareKey("k"), local(map[string]string{"app": "web"}), ports(tcp(443))}, true},
		{"both Local, other selector", []svcOpt{shareKey("k"), local(sel), ports(tcp(80))}, []svcOpt{shareKey("k"), local(other), ports(tcp(443))}, false},
		{"Local and Cluster", []svcOpt{shareKey("k"), local(sel), ports(tcp(80))}, []svcOpt{shareKey("k"), ports(tcp(443))}, false},
		{"Cluster and Local", []svcOpt{shareKey("k"), ports(tcp(80))}, []svcOpt{shareKey("k"), local(sel), ports(tcp(443))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Explicit request for the same address.
			a := newAlloc(t, mkPool("p", []string{"10.0.0.0/29"}))
			mustAlloc(t, a, mkSvc("ns/first", append(tt.first, ips("10.0.0.5"))...))
			_, err := a.Allocate(mkSvc("ns/then", append(tt.then, ips("10.0.0.5"))...))
			if tt.share && err != nil {
				t.Fatalf("explicit: %v", err)
			}
			if !tt.share && reason(err) != ReasonIPInUse {
				t.Fatalf("explicit: err = %v, want IPInUse", err)
			}
			if err != nil {
				t.Log(err)
			}
			checkInvariants(t, a)

			// Automatic: a compatible Service reuses the key's address, an
			// incompatible one gets a fresh address.
			a = newAlloc(t, mkPool("p", []string{"10.0.0.0/29"}))
			mustAlloc(t, a, mkSvc("ns/pad", ips("10.0.0.0")))
			mustAlloc(t, a, mkSvc("ns/first", append(tt.first, ips("10.0.0.5"))...))
			got := mustAlloc(t, a, mkSvc("ns/then", tt.then...))
			if want := map[bool]string{true: "10.0.0.5", false: "10.0.0.1"}[tt.share]; got != want {
				t.Fatalf("automatic: got %s, want %s", got, want)
			}
		})
	}
}

func TestSharedReleaseAfterLastHolder(t *testing.T) {
	a := newAlloc(t, mkPool("p", []string{"10.0.0.0/31"}))
	mustAlloc(t, a, mkSvc("ns/a", shareKey("k"), ports(tcp(80))))
	if got := mustAlloc(t, a, mkSvc("ns/b", shareKey("k"), ports(tcp(443)))); got != "10.0.0.0" {
		t.Fatalf("b = %s", got)
	}
	if st, _ := a.Stats("p"); st.AssignedIPv4 != 1 || st.AvailableIPv4 != 1 {
		t.Fatalf("stats %+v", st)
	}
	if !a.Release("ns/a", "") {
		t.Fatal("release a")
	}
	checkInvariants(t, a)
	if got := mustAlloc(t, a, mkSvc("ns/c")); got != "10.0.0.1" {
		t.Fatalf("c = %s (shared address still held by b)", got)
	}
	if !a.Release("ns/b", "") || a.Release("ns/b", "") {
		t.Fatal("release b")
	}
	if got := mustAlloc(t, a, mkSvc("ns/d")); got != "10.0.0.0" {
		t.Fatalf("d = %s (freed after last holder)", got)
	}
}

func TestIdempotentAndRequestChange(t *testing.T) {
	a := newAlloc(t,
		mkPool("p", []string{"10.0.0.0/29", "2001:db8::/125"}, prio(0)),
		mkPool("q", []string{"10.1.0.0/29"}, prio(1)),
	)
	svc := mkSvc("ns/svc")
	if got := mustAlloc(t, a, svc); got != "10.0.0.0" {
		t.Fatalf("first: %s", got)
	}
	for i := 0; i < 3; i++ {
		if got := mustAlloc(t, a, svc); got != "10.0.0.0" {
			t.Fatalf("idempotent: %s", got)
		}
	}
	steps := []struct {
		name   string
		opts   []svcOpt
		want   string
		reason string
	}{
		{"explicit IP", []svcOpt{ips("10.0.0.5")}, "10.0.0.5", ""},
		{"explicit IP via spec", []svcOpt{lbIP("10.0.0.5")}, "10.0.0.5", ""},
		{"explicit IP held by other", []svcOpt{ips("10.0.0.7")}, "10.0.0.5", ReasonIPInUse},
		{"annotation removed keeps address", nil, "10.0.0.5", ""},
		{"other pool", []svcOpt{inPool("q")}, "10.1.0.0", ""},
		{"requested pool missing keeps old", []svcOpt{inPool("gone")}, "10.1.0.0", ReasonPoolNotFound},
		{"RequireDualStack from q fails, old kept", []svcOpt{inPool("q"), fams(require)}, "10.1.0.0", ReasonFamilyUnavailable},
		{"back to p, dual", []svcOpt{inPool("p"), fams(require)}, "10.0.0.0,2001:db8::", ""},
		{"single IPv6 keeps the IPv6 address", []svcOpt{inPool("p"), fams(single, "IPv6")}, "2001:db8::", ""},
		{"prefer dual tops up", []svcOpt{fams(prefer, "IPv6", "IPv4")}, "2001:db8::,10.0.0.0", ""},
		{"single IPv4 keeps the IPv4 address", []svcOpt{fams(single, "IPv4")}, "10.0.0.0", ""},
		{"sharing key, sole holder keeps", []svcOpt{shareKey("k")}, "10.0.0.0", ""},
		{"ports collide with a co-holder", []svcOpt{shareKey("k"), ports(tcp(8080))}, "10.0.0.1", ""},
		{"other key than co-holder", []svcOpt{shareKey("j"), ports(tcp(9090))}, "10.0.0.1", ""},
	}
	mustAlloc(t, a, mkSvc("ns/holder", ips("10.0.0.7")))
	for _, s := range steps {
		if s.name == "ports collide with a co-holder" {
			// A co-holder joins on 10.0.0.0 with port 8080.
			if got := mustAlloc(t, a, mkSvc("ns/co", shareKey("k"), ports(tcp(8080)), ips("10.0.0.0"))); got != "10.0.0.0" {
				t.Fatalf("co-holder: %s", got)
			}
		}
		svc := mkSvc("ns/svc", s.opts...)
		al, err := a.Allocate(svc)
		if reason(err) != s.reason {
			t.Fatalf("%s: err = %v, want %q", s.name, err, s.reason)
		}
		if got := fmtAddrs(al.IPs); got != s.want {
			t.Fatalf("%s: got %s, want %s", s.name, got, s.want)
		}
		if l, _ := a.Lookup("ns/svc"); fmtAddrs(l.IPs) != s.want {
			t.Fatalf("%s: lookup %v", s.name, l.IPs)
		}
		checkInvariants(t, a)
	}
	// 10.0.0.5 was freed when the explicit request went away.
	if got := mustAlloc(t, a, mkSvc("ns/x", ips("10.0.0.5"))); got != "10.0.0.5" {
		t.Fatal(got)
	}
}

func TestPoolEditOrphans(t *testing.T) {
	a := newAlloc(t, mkPool("p", []string{"10.0.0.0/30"}))
	svc := mkSvc("ns/a")
	mustAlloc(t, a, svc) // 10.0.0.0
	mustAlloc(t, a, mkSvc("ns/b"))

	if err := a.SetPool(mkPool("p", []string{"10.0.0.1-10.0.0.3"})); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, a)
	al, err := a.Allocate(svc)
	if err != nil || fmtAddrs(al.IPs) != "10.0.0.0" || fmtAddrs(al.Orphaned) != "10.0.0.0" || al.Pool != "p" {
		t.Fatalf("after shrink: %+v %v", al, err)
	}
	if st, _ := a.Stats("p"); st.Orphaned != 1 || st.AssignedIPv4 != 1 || st.AvailableIPv4 != 2 || st.TotalIPv4 != 3 {
		t.Fatalf("stats %+v", st)
	}
	if got := mustAlloc(t, a, mkSvc("ns/c")); got != "10.0.0.2" {
		t.Fatalf("c = %s", got)
	}

	// Covering it again adopts it: not orphaned, not free.
	if err := a.SetPool(mkPool("p", []string{"10.0.0.0/29"})); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, a)
	if al, _ := a.Lookup("ns/a"); len(al.Orphaned) != 0 {
		t.Fatalf("still orphaned: %+v", al)
	}
	if st, _ := a.Stats("p"); st.Orphaned != 0 || st.AssignedIPv4 != 3 || st.AvailableIPv4 != 5 {
		t.Fatalf("stats %+v", st)
	}
	if got := mustAlloc(t, a, mkSvc("ns/d")); got != "10.0.0.3" {
		t.Fatalf("d = %s", got)
	}

	// Another pool covering it: no longer orphaned globally, but still counted as
	// orphaned by the pool it came from.
	if err := a.SetPool(mkPool("p", []string{"10.0.0.1/32"})); err != nil {
		t.Fatal(err)
	}
	if err := a.SetPool(mkPool("other", []string{"10.0.0.0/32"})); err != nil {
		t.Fatal(err)
	}
	if al, _ := a.Lookup("ns/a"); len(al.Orphaned) != 0 {
		t.Fatalf("covered by other: %+v", al)
	}
	if st, _ := a.Stats("p"); st.Orphaned != 3 {
		t.Fatalf("p stats %+v", st)
	}
	if st, _ := a.Stats("other"); st.AssignedIPv4 != 1 || st.AvailableIPv4 != 0 || st.Orphaned != 0 {
		t.Fatalf("other stats %+v", st)
	}
	checkInvariants(t, a)

	// Invalid spec: pool removed from use, addresses kept.
	if err := a.SetPool(mkPool("other", []string{"10.0.0.1/24"})); err == nil {
		t.Fatal("invalid pool accepted")
	}
	if names := a.PoolNames(); !slices.Equal(names, []string{"p"}) {
		t.Fatalf("pools %v", names)
	}
	if _, ok := a.Stats("other"); ok {
		t.Fatal("stats of invalid pool")
	}
	a.DeletePool("p")
	al, err = a.Allocate(svc)
	if err != nil || fmtAddrs(al.Orphaned) != "10.0.0.0" {
		t.Fatalf("after delete: %+v %v", al, err)
	}
	checkInvariants(t, a)
	// Releasing orphans keeps counters consistent when the pool returns.
	a.Release("ns/b", "")
	if err := a.SetPool(mkPool("p", []string{"10.0.0.2/31"})); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, a)
	if st, _ := a.Stats("p"); st.Orphaned != 1 || st.AssignedIPv4 != 2 {
		t.Fatalf("stats %+v", st) // a (10.0.0.0) orphaned; c, d assigned
	}
}

func TestOverlappingPools(t *testing.T) {
	a := newAlloc(t,
		mkPool("big", []string{"10.0.0.0/29"}, prio(2)),
		mkPool("small", []string{"10.0.0.4/30", "2001:db8::/127"}, prio(1)),
		mkPool("apart", []string{"10.1.0.0/30"}, prio(3)),
	)
	if got := a.Overlaps("big"); !slices.Equal(got, []string{"small"}) {
		t.Fatalf("overlaps(big) = %v", got)
	}
	if got := a.Overlaps("apart"); len(got) != 0 {
		t.Fatalf("overlaps(apart) = %v", got)
	}
	if got := a.Overlaps("nope"); got != nil {
		t.Fatalf("overlaps(nope) = %v", got)
	}
	var got []string
	for i := 0; i < 9; i++ {
		got = append(got, mustAlloc(t, a, mkSvc(fmt.Sprintf("ns/s%d", i))))
	}
	want := []string{"10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.1.0.0"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	big, _ := a.Stats("big")
	small, _ := a.Stats("small")
	if big.AssignedIPv4 != 8 || big.AvailableIPv4 != 0 || small.AssignedIPv4 != 4 || small.AvailableIPv4 != 0 {
		t.Fatalf("big %+v small %+v", big, small)
	}
	if _, err := a.Allocate(mkSvc("ns/x", inPool("small"))); reason(err) != ReasonPoolExhausted {
		t.Fatalf("small should be exhausted: %v", err)
	}
	// Freed through big's allocation, it is free in small again.
	a.Release("ns/s1", "") // 10.0.0.5
	if got := mustAlloc(t, a, mkSvc("ns/y", inPool("small"))); got != "10.0.0.5" {
		t.Fatalf("y = %s", got)
	}
	// An explicit IP in both pools is taken from both.
	a.Release("ns/s2", "") // 10.0.0.6
	if got := mustAlloc(t, a, mkSvc("ns/z", ips("10.0.0.6"), inPool("big"))); got != "10.0.0.6" {
		t.Fatal(got)
	}
	if s, _ := a.Stats("small"); s.AvailableIPv4 != 0 {
		t.Fatalf("small %+v", s)
	}
	// Adding a pool over held addresses does not make them free.
	if err := a.SetPool(mkPool("late", []string{"10.0.0.0/28"})); err != nil {
		t.Fatal(err)
	}
	if s, _ := a.Stats("late"); s.AssignedIPv4 != 8 || s.AvailableIPv4 != 8 {
		t.Fatalf("late %+v", s)
	}
	if got := mustAlloc(t, a, mkSvc("ns/w", inPool("late"))); got != "10.0.0.8" {
		t.Fatal(got)
	}
}

func TestRestore(t *testing.T) {
	a := newAlloc(t, mkPool("p", []string{"10.0.0.0/30", "2001:db8::/126"}), mkPool("q", []string{"10.0.1.0/30"}, inNamespaces("q")))
	restored := mkSvc("ns/old", fams(prefer, "IPv4", "IPv6"))
	if err := a.Restore(restored, addrs("2001:db8::1", "10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Restore(mkSvc("ns/outside"), addrs("192.0.2.1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Restore(mkSvc("ns/qq"), addrs("10.0.1.1")); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, a)
	al, ok := a.Lookup("ns/old")
	if !ok || fmtAddrs(al.IPs) != "10.0.0.1,2001:db8::1" || al.Pool != "p" {
		t.Fatalf("lookup %+v", al)
	}
	if al, _ := a.Lookup("ns/outside"); fmtAddrs(al.Orphaned) != "192.0.2.1" || al.Pool != "" {
		t.Fatalf("outside %+v", al)
	}
	if al, _ := a.Lookup("ns/qq"); al.Pool != "q" {
		t.Fatalf("qq %+v", al)
	}
	if err := a.Restore(mkSvc("ns/clash"), addrs("10.0.0.1")); reason(err) != ReasonIPInUse {
		t.Fatalf("clash: %v", err)
	}
	if _, ok := a.Lookup("ns/clash"); ok {
		t.Fatal("failed restore left state")
	}
	if err := a.Restore(mkSvc("ns/bad"), []netip.Addr{{}}); reason(err) != ReasonInvalidRequest {
		t.Fatalf("bad: %v", err)
	}
	// Allocate of the restored Services keeps their addresses, orphans included.
	if al, err := a.Allocate(restored); err != nil || fmtAddrs(al.IPs) != "10.0.0.1,2001:db8::1" {
		t.Fatalf("%+v %v", al, err)
	}
	if al, err := a.Allocate(mkSvc("ns/outside")); err != nil || fmtAddrs(al.IPs) != "192.0.2.1" || len(al.Orphaned) != 1 {
		t.Fatalf("%+v %v", al, err)
	}
	// New Services never get a restored address.
	var got []string
	for i := 0; i < 3; i++ {
		got = append(got, mustAlloc(t, a, mkSvc(fmt.Sprintf("ns/new%d", i))))
	}
	if want := []string{"10.0.0.0", "10.0.0.2", "10.0.0.3"}; !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
	// Restoring a shared address needs compatible sharing.
	a2 := newAlloc(t, mkPool("p", []string{"10.0.0.0/30"}))
	if err := a2.Restore(mkSvc("ns/a", shareKey("k"), ports(tcp(80))), addrs("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := a2.Restore(mkSvc("ns/b", shareKey("k"), ports(tcp(443))), addrs("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := a2.Restore(mkSvc("ns/c", shareKey("k"), ports(tcp(443))), addrs("10.0.0.1")); reason(err) != ReasonIPInUse {
		t.Fatalf("port clash: %v", err)
	}
	// Restore replaces; an empty restore releases.
	if err := a2.Restore(mkSvc("ns/a", shareKey("k"), ports(tcp(80))), addrs("10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	if err := a2.Restore(mkSvc("ns/b"), nil); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, a2)
	if st, _ := a2.Stats("p"); st.AssignedIPv4 != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStatsIPv6AndSaturation(t *testing.T) {
	a := newAlloc(t,
		mkPool("v6-64", []string{"2001:db8::/64"}),
		mkPool("all", []string{"::/0", "0.0.0.0/0"}, noAuto()),
		mkPool("mixed", []string{"10.0.0.0/24", "2001:db8:1::/120", "2001:db8:1::100-2001:db8:1::1ff"}, noAuto()),
	)
	st, _ := a.Stats("v6-64")
	if st.TotalIPv6 != math.MaxInt64 || st.AvailableIPv6 != math.MaxInt64 || st.TotalIPv4 != 0 {
		t.Fatalf("v6-64 %+v", st)
	}
	if st, _ := a.Stats("all"); st.TotalIPv6 != math.MaxInt64 || st.TotalIPv4 != 1<<32 {
		t.Fatalf("all %+v", st)
	}
	for i := 0; i < 3; i++ {
		want := fmt.Sprintf("2001:db8::%d", i)
		if i == 0 {
			want = "2001:db8::"
		}
		if got := mustAlloc(t, a, mkSvc(fmt.Sprintf("ns/s%d", i), fams(single, "IPv6"))); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	if st, _ := a.Stats("v6-64"); st.AssignedIPv6 != 3 || st.AvailableIPv6 != math.MaxInt64 {
		t.Fatalf("v6-64 %+v", st)
	}
	if got := mustAlloc(t, a, mkSvc("ns/m", inPool("mixed"), fams(require, "IPv6", "IPv4"))); got != "2001:db8:1::,10.0.0.0" {
		t.Fatal(got)
	}
	st, _ = a.Stats("mixed")
	want := Stats{TotalIPv4: 256, AssignedIPv4: 1, AvailableIPv4: 255, TotalIPv6: 512, AssignedIPv6: 1, AvailableIPv6: 511}
	if st != want {
		t.Fatalf("mixed %+v, want %+v", st, want)
	}
	if _, ok := a.Stats("nope"); ok {
		t.Fatal("stats of missing pool")
	}
	if got := a.PoolNames(); !slices.Equal(got, []string{"all", "mixed", "v6-64"}) {
		t.Fatal(got)
	}
}

func TestSelectors(t *testing.T) {
	a := newAlloc(t,
		mkPool("prod", []string{"10.0.0.0/30"}, prio(1), nsSelector(map[string]string{"env": "prod"})),
		mkPool("web", []string{"10.1.0.0/30"}, prio(2), svcSelector(map[string]string{"tier": "web"})),
		mkPool("teams", []string{"10.2.0.0/30"}, prio(3), inNamespaces("team-a", "team-b")),
		mkPool("bad", []string{"10.3.0.0/30"}, prio(4), inNamespaces("x"), svcSelector(map[string]string{"never": "true"})),
	)
	a.SetNamespaceLabels("shop", map[string]string{"env": "prod"})
	tests := []struct {
		svc    string
		opts   []svcOpt
		want   string
		reason string
	}{
		{"shop/a", nil, "10.0.0.0", ""},
		{"dev/a", []svcOpt{svcLabels(map[string]string{"tier": "web"})}, "10.1.0.0", ""},
		{"team-b/a", nil, "10.2.0.0", ""},
		{"dev/b", nil, "", ReasonNoPools},
		{"dev/c", []svcOpt{inPool("prod")}, "", ReasonPoolNotAllowed},
		{"x/a", []svcOpt{inPool("bad")}, "", ReasonPoolNotAllowed},
		{"shop/b", []svcOpt{inPool("teams")}, "", ReasonPoolNotAllowed},
		{"team-a/b", []svcOpt{ips("10.0.0.3")}, "", ReasonIPOutsidePools},
		{"shop/c", []svcOpt{ips("10.0.0.3")}, "10.0.0.3", ""},
	}
	for _, tt := range tests {
		al, err := a.Allocate(mkSvc(tt.svc, tt.opts...))
		if reason(err) != tt.reason || fmtAddrs(al.IPs) != tt.want {
			t.Fatalf("%s: %v %v, want %s %s", tt.svc, al.IPs, err, tt.want, tt.reason)
		}
	}
	// Relabelling the namespace does not move existing allocations but changes
	// where new ones go.
	a.SetNamespaceLabels("shop", nil)
	if al, _ := a.Allocate(mkSvc("shop/a")); fmtAddrs(al.IPs) != "10.0.0.0" {
		t.Fatalf("moved: %v", al.IPs)
	}
	if _, err := a.Allocate(mkSvc("shop/new")); reason(err) != ReasonNoPools {
		t.Fatalf("shop/new: %v", err)
	}
	// Invalid selector is refused by SetPool.
	p := mkPool("sel", []string{"10.9.0.0/30"}, svcSelector(map[string]string{"bad key!": "x"}))
	if err := a.SetPool(p); err == nil {
		t.Fatal("invalid selector accepted")
	}
	for _, p := range []*v1alpha1.IPPool{nil, mkPool("", []string{"10.0.0.0/30"}), mkPool("empty", nil)} {
		if err := a.SetPool(p); err == nil {
			t.Fatalf("accepted %v", p)
		}
	}
}

func TestMetalLBAnnotations(t *testing.T) {
	a := newAlloc(t, mkPool("p", []string{"10.0.0.0/29"}), mkPool("q", []string{"10.1.0.0/29"}, noAuto()))
	if got := mustAlloc(t, a, mkSvc("ns/a", ann("metallb.universe.tf/address-pool", "q"))); got != "10.1.0.0" {
		t.Fatal(got)
	}
	if got := mustAlloc(t, a, mkSvc("ns/b", ann("metallb.io/loadBalancerIPs", "10.0.0.5"))); got != "10.0.0.5" {
		t.Fatal(got)
	}
	if got := mustAlloc(t, a, mkSvc("ns/c", ann("metallb.io/allow-shared-ip", "k"), ann("metallb.io/loadBalancerIPs", "10.0.0.6"))); got != "10.0.0.6" {
		t.Fatal(got)
	}
	if got := mustAlloc(t, a, mkSvc("ns/d", shareKey("k"), ports(tcp(443)))); got != "10.0.0.6" {
		t.Fatal(got)
	}
	_, err := a.Allocate(mkSvc("ns/e", ips("10.0.0.1"), ann("metallb.io/loadBalancerIPs", "10.0.0.2")))
	if reason(err) != ReasonInvalidRequest {
		t.Fatal(err)
	}
}

func TestNilService(t *testing.T) {
	a := New()
	if _, err := a.Allocate(nil); reason(err) != ReasonInvalidRequest {
		t.Fatal(err)
	}
	if err := a.Restore(nil, nil); reason(err) != ReasonInvalidRequest {
		t.Fatal(err)
	}
	if _, ok := a.Lookup("ns/none"); ok || a.Release("ns/none", "") {
		t.Fatal("unknown service")
	}
}

// TestRandomOperations runs random pool edits, allocations, restores and releases
// over small overlapping pools and checks the invariants after every step.
func TestRandomOperations(t *testing.T) {
	rngSeed := uint64(1)
	next := func(n int) int {
		rngSeed = rngSeed*6364136223846793005 + 1442695040888963407
		return int((rngSeed >> 33) % uint64(n))
	}
	ranges := []string{"10.0.0.0/28", "10.0.0.8/29", "10.0.0.250-10.0.1.5", "2001:db8::/124", "2001:db8::8/125", "10.0.0.16/30"}
	a := New()
	for step := 0; step < 4000; step++ {
		svc := fmt.Sprintf("ns/s%d", next(40))
		switch op := next(10); {
		case op == 0:
			var rs []string
			for _, r := range ranges {
				if next(2) == 0 {
					rs = append(rs, r)
				}
			}
			if len(rs) == 0 {
				rs = ranges[:1]
			}
			opts := []poolOpt{prio(int32(next(3)))}
			if next(3) == 0 {
				opts = append(opts, avoidBuggy())
			}
			if err := a.SetPool(mkPool(fmt.Sprintf("p%d", next(4)), rs, opts...)); err != nil {
				t.Fatal(err)
			}
		case op == 1:
			a.DeletePool(fmt.Sprintf("p%d", next(4)))
		case op == 2:
			a.Release(svc, "")
		case op == 3:
			ip := fmt.Sprintf("10.0.0.%d", next(20))
			_ = a.Restore(mkSvc(svc, shareKey([]string{"", "k"}[next(2)]), ports(tcp(int32(next(3))))), addrs(ip))
		default:
			var opts []svcOpt
			switch next(6) {
			case 0:
				opts = append(opts, fams(require))
			case 1:
				opts = append(opts, fams(prefer, "IPv6", "IPv4"))
			case 2:
				opts = append(opts, fams(single, "IPv6"))
			}
			if next(3) == 0 {
				opts = append(opts, shareKey([]string{"k", "j"}[next(2)]), ports(tcp(int32(next(3)))))
			}
			if next(5) == 0 {
				opts = append(opts, ips(fmt.Sprintf("10.0.0.%d", next(20))))
			}
			if next(5) == 0 {
				opts = append(opts, inPool(fmt.Sprintf("p%d", next(4))))
			}
			before, _ := a.Lookup(svc)
			al, err := a.Allocate(mkSvc(svc, opts...))
			if err != nil && !slices.Equal(al.IPs, before.IPs) {
				t.Fatalf("step %d: failed allocation changed %v to %v", step, before.IPs, al.IPs)
			}
		}
		checkInvariants(t, a)
	}
}

func TestConcurrentUse(t *testing.T) {
	a := newAlloc(t, mkPool("p", []string{"10.0.0.0/22"}))
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[netip.Addr]string{}
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				key := fmt.Sprintf("g%d/s%d", g, i)
				al, err := a.Allocate(mkSvc(key))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if other, dup := seen[al.IPs[0]]; dup {
					t.Errorf("%s given to %s and %s", al.IPs[0], other, key)
				}
				seen[al.IPs[0]] = key
				mu.Unlock()
				_ = a.PoolNames()
				_, _ = a.Stats("p")
				if i%2 == 0 {
					mu.Lock()
					delete(seen, al.IPs[0])
					mu.Unlock()
					a.Release(key, "")
				}
			}
		}()
	}
	wg.Wait()
	checkInvariants(t, a)
	if st, _ := a.Stats("p"); st.AssignedIPv4 != 400 {
		t.Fatalf("stats %+v", st)
	}
}
