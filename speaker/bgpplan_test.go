package speaker

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/bgp"
)

func bgpPeer(name, addr string, lbls map[string]string, mod func(*v1alpha1.BGPPeerSpec)) *v1alpha1.BGPPeer {
	p := &v1alpha1.BGPPeer{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Spec:       v1alpha1.BGPPeerSpec{PeerAddress: addr, PeerASN: 64512, MyASN: 64600},
	}
	if mod != nil {
		mod(&p.Spec)
	}
	return p
}

func secrets(m map[string]string) func(string) *corev1.Secret {
	return func(name string) *corev1.Secret {
		pw, ok := m[name]
		if !ok {
			return nil
		}
		return &corev1.Secret{Data: map[string][]byte{PasswordKey: []byte(pw)}}
	}
}

var (
	vip4  = netip.MustParseAddr("203.0.113.10")
	vip4b = netip.MustParseAddr("203.0.113.77")
	vip6  = netip.MustParseAddr("2001:db8:1::10")
	r1    = netip.MustParseAddr("192.0.2.1")
	r2    = netip.MustParseAddr("192.0.2.2")
	r6    = netip.MustParseAddr("2001:db8::1")
)

// Which sessions a node opens: the BGPPeers selecting it, each checked so a
// bad one never blocks the others.
func TestPlanBGPPeers(t *testing.T) {
	peers := []*v1alpha1.BGPPeer{
		bgpPeer("a-rack1", "192.0.2.1", nil, func(s *v1alpha1.BGPPeerSpec) {
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "1"}}
			s.HoldTime = &metav1.Duration{Duration: 9500 * time.Millisecond}
			s.KeepaliveTime = &metav1.Duration{Duration: 3 * time.Second}
			s.BFD = &v1alpha1.BFDSettings{MinTx: &metav1.Duration{Duration: 100 * time.Millisecond}, Multiplier: ptr(int32(3))}
			s.PasswordSecretRef = &v1alpha1.SecretReference{Name: "pw"}
			s.EBGPMultiHop = false
			s.GracefulRestart = true
			s.PeerPort = 1179
		}),
		bgpPeer("b-rack2", "192.0.2.2", nil, func(s *v1alpha1.BGPPeerSpec) {
			s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "2"}}
		}),
		bgpPeer("c-dup", "192.0.2.1", nil, nil),
		bgpPeer("d-other-ns", "192.0.2.4", nil, func(s *v1alpha1.BGPPeerSpec) {
			s.PasswordSecretRef = &v1alpha1.SecretReference{Name: "pw", Namespace: "default"}
		}),
		bgpPeer("e-no-secret", "192.0.2.5", nil, func(s *v1alpha1.BGPPeerSpec) { s.PasswordSecretRef = &v1alpha1.SecretReference{Name: "missing"} }),
		bgpPeer("f-ibgp-multihop", "192.0.2.6", nil, func(s *v1alpha1.BGPPeerSpec) { s.PeerASN = 64600; s.EBGPMultiHop = true }),
		bgpPeer("g-multihop", "198.51.100.1", nil, func(s *v1alpha1.BGPPeerSpec) {
			s.EBGPMultiHop = true
			s.SourceAddress = "192.0.2.11"
		}),
		bgpPeer("h-v6", "2001:db8::1", nil, nil),
		bgpPeer("i-long-pw", "192.0.2.9", nil, func(s *v1alpha1.BGPPeerSpec) { s.PasswordSecretRef = &v1alpha1.SecretReference{Name: "long"} }),
		bgpPeer("j-keepalive", "192.0.2.10", nil, func(s *v1alpha1.BGPPeerSpec) {
			s.HoldTime = &metav1.Duration{Duration: 3 * time.Second}
			s.KeepaliveTime = &metav1.Duration{Duration: 3500 * time.Millisecond}
		}),
	}
	plan := planBGP(bgpInputs{
		node: "node1", nodeLabels: labels.Set{"rack": "1"}, namespace: "ironlb-system", peers: peers,
		secret: secrets(map[string]string{"pw": "s3cret", "long": strings.Repeat("x", 81)}),
	})
	var got []netip.Addr
	for _, p := range plan.desired.Peers {
		got = append(got, p.Address)
	}
	want := []netip.Addr{r1, netip.MustParseAddr("198.51.100.1"), r6}
	if !slices.Equal(got, want) {
		t.Fatalf("sessions %v, want %v (refused: %v)", got, want, plan.refused)
	}
	a := plan.desired.Peers[0]
	if a.Password != "s3cret" || a.HoldTime != 9*time.Second || a.KeepaliveTime != 3*time.Second || a.Port != 1179 ||
		!a.GracefulRestart || a.LocalASN != 64600 || a.ASN != 64512 ||
		a.BFD == nil || a.BFD.MinTx != 100*time.Millisecond || a.BFD.MinRx != 0 || a.BFD.Multiplier != 3 {
		t.Errorf("session with a-rack1: %+v (BFD %+v)", a, a.BFD)
	}
	if g := plan.desired.Peers[1]; g.EBGPMultiHopTTL != 255 || g.SourceAddress != netip.MustParseAddr("192.0.2.11") {
		t.Errorf("multihop session: %+v", g)
	}
	if plan.peerNames[r1] != "a-rack1" || plan.peerNames[r6] != "h-v6" {
		t.Errorf("peer names %v", plan.peerNames)
	}
	wantRefused := map[string]string{
		"c-dup":           "same peerAddress",
		"d-other-ns":      "outside the speakers' namespace",
		"e-no-secret":     "not found",
		"f-ibgp-multihop": "iBGP",
		"i-long-pw":       "longer than 80",
		"j-keepalive":     "below the hold time",
	}
	for name, why := range wantRefused {
		if !strings.Contains(plan.refused[name], why) {
			t.Errorf("%s: refused %q, want it to say %q", name, plan.refused[name], why)
		}
	}
	if _, ok := plan.refused["b-rack2"]; ok || len(plan.refused) != len(wantRefused) {
		t.Errorf("refused %v", plan.refused)
	}
}

// What each advertised address becomes: its pool's prefix length,
// communities, local preference and peers.
func TestPlanBGPPaths(t *testing.T) {
	peers := []*v1alpha1.BGPPeer{
		bgpPeer("tor1", "192.0.2.1", map[string]string{"role": "tor"}, nil),
		bgpPeer("tor2", "192.0.2.2", map[string]string{"role": "tor"}, nil),
		bgpPeer("edge", "192.0.2.3", map[string]string{"role": "edge"}, nil),
		bgpPeer("tor6", "2001:db8::1", map[string]string{"role": "tor"}, nil),
	}
	mkPool := func(b *v1alpha1.BGPAdvertisement) poolConfig {
		c, err := poolOf(pool(&v1alpha1.AdvertiseSpec{BGP: b}))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pools := map[string]poolConfig{
		"all":  mkPool(&v1alpha1.BGPAdvertisement{Communities: []v1alpha1.Community{"64600:7"}, LocalPref: ptr(uint32(150))}),
		"tors": mkPool(&v1alpha1.BGPAdvertisement{PeerSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "tor"}}, AggregationLength: ptr(int32(24)), AggregationLengthV6: ptr(int32(64))}),
		"none": mkPool(&v1alpha1.BGPAdvertisement{PeerSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "spine"}}}),
		"l2":   {},
	}
	plan := planBGP(bgpInputs{
		node: "node1", namespace: "ironlb-system", peers: peers, secret: secrets(nil), pools: pools,
		advertised: map[netip.Addr]string{
			vip4:                               "all",
			vip4b:                              "tors",
			vip6:                               "tors",
			netip.MustParseAddr("203.0.113.5"): "none",    // selects none of this node's peers
			netip.MustParseAddr("203.0.113.6"): "l2",      // no advertise.bgp
			netip.MustParseAddr("203.0.113.7"): "missing", // pool gone
		},
	})
	want := []bgp.Path{
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Peers: []netip.Addr{r1, r2}},
		{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Communities: []bgp.Community{64600<<16 | 7}, LocalPref: 150},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), Peers: []netip.Addr{r6}},
	}
	if len(plan.desired.Paths) != len(want) {
		t.Fatalf("paths %+v, want %+v", plan.desired.Paths, want)
	}
	slices.SortFunc(plan.desired.Paths, func(a, b bgp.Path) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	for i, w := range want {
		g := plan.desired.Paths[i]
		if g.Prefix != w.Prefix || !slices.Equal(g.Peers, w.Peers) || !slices.Equal(g.Communities, w.Communities) || g.LocalPref != w.LocalPref {
			t.Errorf("path %d: %+v, want %+v", i, g, w)
		}
	}
	if pp := plan.paths[vip4]; !slices.Equal(pp.peers, []netip.Addr{r1, r2, netip.MustParseAddr("192.0.2.3")}) {
		t.Errorf("status peers of %s: %v (an every-peer path goes to every session of its family)", vip4, pp.peers)
	}
	if len(plan.paths) != 3 {
		t.Errorf("plan.paths %v", plan.paths)
	}
}
