package speaker

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/bgp"
	"github.com/ironlb/ironlb/speaker/election"
)

func ptr[T any](v T) *T { return &v }

func lbService(class *string, pools string, ips ...string) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc", Annotations: map[string]string{}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class},
	}
	if pools != "" {
		s.Annotations[allocator.AnnotationAllocatedFromPool] = pools
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func TestHandled(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  *corev1.Service
		want bool
	}{
		{"no class", lbService(nil, ""), true},
		{"ironlb class", lbService(ptr(DefaultLoadBalancerClass), ""), true},
		{"other class", lbService(ptr("metallb.io/metallb"), ""), false},
		{"ClusterIP", &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}, false},
		{"NodePort", &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort}}, false},
	} {
		if got := handled(tc.svc, DefaultLoadBalancerClass); got != tc.want {
			t.Errorf("%s: handled = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestViewOf(t *testing.T) {
	a := func(ip, pool string) election.Address {
		return election.Address{IP: netip.MustParseAddr(ip), Pool: pool}
	}
	ready := func(node string, r *bool) discoveryv1.Endpoint {
		e := discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: r}}
		if node != "" {
			e.NodeName = ptr(node)
		}
		return e
	}
	for _, tc := range []struct {
		name         string
		svc          *corev1.Service
		eps          []discoveryv1.Endpoint
		want         []election.Address
		unattributed []string
		nodes        []string
	}{
		{name: "one pool for both families", svc: lbService(nil, "lan", "192.0.2.200", "2001:db8::200"),
			want: []election.Address{a("192.0.2.200", "lan"), a("2001:db8::200", "lan")}},
		{name: "a pool per family", svc: lbService(nil, "IPv4=v4,IPv6=v6", "192.0.2.200", "2001:db8::200"),
			want: []election.Address{a("192.0.2.200", "v4"), a("2001:db8::200", "v6")}},
		{name: "family without attribution is not announced", svc: lbService(nil, "IPv4=v4", "192.0.2.200", "2001:db8::200"),
			want: []election.Address{a("192.0.2.200", "v4")}, unattributed: []string{"2001:db8::200"}},
		{name: "no annotation", svc: lbService(nil, "", "192.0.2.200"), unattributed: []string{"192.0.2.200"}},
		{name: "annotation that does not parse", svc: lbService(nil, "IPv4=a=b", "192.0.2.200"), unattributed: []string{"192.0.2.200"}},
		{name: "junk and repeats skipped", svc: lbService(nil, "lan", "not-an-ip", "192.0.2.200", "192.0.2.200", "fe80::1%eth0"),
			want: []election.Address{a("192.0.2.200", "lan")}},
		{name: "4-in-6 unmapped", svc: lbService(nil, "lan", "::ffff:192.0.2.9"), want: []election.Address{a("192.0.2.9", "lan")}},
		{name: "ready endpoint nodes", svc: lbService(nil, "lan", "192.0.2.200"),
			eps:   []discoveryv1.Endpoint{ready("n2", nil), ready("n1", ptr(true)), ready("n3", ptr(false)), ready("n1", nil)},
			want:  []election.Address{a("192.0.2.200", "lan")},
			nodes: []string{"n1", "n2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := viewOf(tc.svc, []*discoveryv1.EndpointSlice{{Endpoints: tc.eps}})
			if !slices.Equal(v.election.Addresses, tc.want) {
				t.Errorf("addresses %v, want %v", v.election.Addresses, tc.want)
			}
			var un []string
			for _, ip := range v.unattributed {
				un = append(un, ip.String())
			}
			if !slices.Equal(un, tc.unattributed) {
				t.Errorf("unattributed %v, want %v", un, tc.unattributed)
			}
			if !slices.Equal(v.election.EndpointNodes, tc.nodes) {
				t.Errorf("endpoint nodes %v, want %v", v.election.EndpointNodes, tc.nodes)
			}
		})
	}
	local := lbService(nil, "lan", "192.0.2.200")
	local.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if !viewOf(local, nil).election.Local {
		t.Error("externalTrafficPolicy Local not seen")
	}
}

func pool(adv *v1alpha1.AdvertiseSpec) *v1alpha1.IPPool {
	return &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1alpha1.IPPoolSpec{Advertise: adv}}
}

func TestPoolOf(t *testing.T) {
	node := labels.Set{"zone": "a"}
	t.Run("not announced", func(t *testing.T) {
		c, err := poolOf(pool(nil))
		if err != nil || c.election.L2 != nil || c.election.BGP != nil || c.bgp != nil {
			t.Fatalf("%+v %v", c, err)
		}
	})
	t.Run("l2 with interfaces", func(t *testing.T) {
		c, err := poolOf(pool(&v1alpha1.AdvertiseSpec{L2: &v1alpha1.L2Advertisement{
			Interfaces:   []string{"eth1", "bond0", "eth1"},
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"zone": "b"}},
		}}))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.interfaces, []string{"bond0", "eth1"}) {
			t.Errorf("interfaces %v", c.interfaces)
		}
		if c.election.L2 == nil || c.election.L2.Matches(node) || c.election.BGP != nil {
			t.Errorf("selectors %v %v", c.election.L2, c.election.BGP)
		}
	})
	t.Run("bgp", func(t *testing.T) {
		c, err := poolOf(pool(&v1alpha1.AdvertiseSpec{BGP: &v1alpha1.BGPAdvertisement{
			PeerSelector:      &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "1"}},
			AggregationLength: ptr(int32(32)), AggregationLengthV6: ptr(int32(64)),
			LocalPref: ptr(uint32(200)), Communities: []v1alpha1.Community{"64600:1", "no-export"},
			LargeCommunities: []v1alpha1.LargeCommunity{"64600:1:2"},
		}}))
		if err != nil {
			t.Fatal(err)
		}
		b := c.bgp
		if !c.election.BGP.Matches(node) || b.aggregationLength != 0 || b.aggregationLengthV6 != 64 || b.localPref != 200 {
			t.Errorf("%+v", b)
		}
		if !slices.Equal(b.communities, []bgp.Community{64600<<16 | 1, bgp.CommunityNoExport}) ||
			!slices.Equal(b.large, []bgp.LargeCommunity{{GlobalAdmin: 64600, LocalData1: 1, LocalData2: 2}}) {
			t.Errorf("communities %v %v", b.communities, b.large)
		}
		if !b.peers.Matches(labels.Set{"rack": "1"}) || b.peers.Matches(labels.Set{"rack": "2"}) {
			t.Errorf("peer selector %v", b.peers)
		}
	})
	for name, adv := range map[string]*v1alpha1.AdvertiseSpec{
		"bad community":            {BGP: &v1alpha1.BGPAdvertisement{Communities: []v1alpha1.Community{"65536:1"}}},
		"reserved large community": {BGP: &v1alpha1.BGPAdvertisement{LargeCommunities: []v1alpha1.LargeCommunity{"4294967295:1:1"}}},
		"bad peer selector": {BGP: &v1alpha1.BGPAdvertisement{PeerSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "k", Operator: "Nope"}}}}},
		"bad node selector": {L2: &v1alpha1.L2Advertisement{NodeSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "k", Operator: "In"}}}}},
		"aggregation out of range": {BGP: &v1alpha1.BGPAdvertisement{AggregationLength: ptr(int32(40))}},
	} {
		if _, err := poolOf(pool(adv)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPoolConfigEqual(t *testing.T) {
	mk := func(adv *v1alpha1.AdvertiseSpec) poolConfig {
		c, err := poolOf(pool(adv))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	l2 := &v1alpha1.AdvertiseSpec{L2: &v1alpha1.L2Advertisement{Interfaces: []string{"eth0"}}}
	if !mk(l2).equal(mk(l2)) {
		t.Error("same spec unequal")
	}
	for name, other := range map[string]*v1alpha1.AdvertiseSpec{
		"interfaces": {L2: &v1alpha1.L2Advertisement{Interfaces: []string{"eth1"}}},
		"bgp added":  {L2: l2.L2, BGP: &v1alpha1.BGPAdvertisement{}},
		"selector":   {L2: &v1alpha1.L2Advertisement{Interfaces: []string{"eth0"}, NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}}},
		"none":       nil,
	} {
		if mk(l2).equal(mk(other)) {
			t.Errorf("%s: change not seen", name)
		}
	}
	b1 := &v1alpha1.AdvertiseSpec{BGP: &v1alpha1.BGPAdvertisement{LocalPref: ptr(uint32(100))}}
	b2 := &v1alpha1.AdvertiseSpec{BGP: &v1alpha1.BGPAdvertisement{LocalPref: ptr(uint32(200))}}
	if mk(b1).equal(mk(b2)) || !mk(b1).equal(mk(b1)) {
		t.Error("localPref change")
	}
}

func TestNodeAddresses(t *testing.T) {
	n := &corev1.Node{Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: "2001:db8::11"},
		{Type: corev1.NodeHostName, Address: "node1"},
		{Type: corev1.NodeExternalIP, Address: "198.51.100.7"},
		{Type: corev1.NodeInternalIP, Address: "192.0.2.11"},
		{Type: corev1.NodeInternalIP, Address: "bogus"},
	}}}
	got := nodeAddresses(n)
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.11"), netip.MustParseAddr("2001:db8::11")}; !slices.Equal(got, want) {
		t.Errorf("nodeAddresses = %v, want %v", got, want)
	}
	if a, ok := memberAddr(n, netip.MustParseAddr("2001:db8::12")); !ok || a != netip.MustParseAddr("2001:db8::11") {
		t.Errorf("IPv6 speaker gossips with %v %v", a, ok)
	}
	if a, ok := memberAddr(n, netip.MustParseAddr("192.0.2.12")); !ok || a != netip.MustParseAddr("192.0.2.11") {
		t.Errorf("IPv4 speaker gossips with %v %v", a, ok)
	}
	if _, ok := memberAddr(&corev1.Node{}, netip.MustParseAddr("192.0.2.12")); ok {
		t.Error("a Node without addresses has a member address")
	}
}

func TestObjectNames(t *testing.T) {
	if got := announcementName(v1alpha1.AnnouncementL2, dashed(netip.MustParseAddr("192.0.2.200")), "node1"); got != "l2.192-0-2-200.node1" {
		t.Errorf("got %q", got)
	}
	if got := announcementName(v1alpha1.AnnouncementBGP, dashed(netip.MustParseAddr("2001:db8::200")), "Node-A.example"); got != "bgp.2001-db8--200.node-a.example" {
		t.Errorf("got %q", got)
	}
	long := strings.Repeat("n", 250)
	a := announcementName(v1alpha1.AnnouncementL2, "192-0-2-1", long)
	b := announcementName(v1alpha1.AnnouncementL2, "192-0-2-2", long)
	if len(a) > 253 || a == b || !regexp.MustCompile(`^l2\.192-0-2-1\.n+\.[0-9a-f]{16}$`).MatchString(a) {
		t.Errorf("long names %q %q", a, b)
	}
}
