package speaker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/bgp"
	"github.com/ironlb/ironlb/speaker/election"
)

// DefaultLoadBalancerClass is the spec.loadBalancerClass the speaker serves
// besides an unset class (the controller's default too).
const DefaultLoadBalancerClass = "ironlb.io/lb"

// serviceView is what the speaker keeps of one LoadBalancer Service.
type serviceView struct {
	election election.Service
	// unattributed are addresses the Service publishes without a pool in
	// ironlb.io/ip-allocated-from-pool: they are not announced.
	unattributed []netip.Addr
}

// handled reports whether the speaker announces svc's addresses: a
// LoadBalancer Service whose class is unset or lbClass.
func handled(svc *corev1.Service, lbClass string) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	return svc.Spec.LoadBalancerClass == nil || *svc.Spec.LoadBalancerClass == lbClass
}

// viewOf returns the election's view of a handled Service: its published
// addresses with the pool the controller attributed to each, its traffic policy
// and the nodes of its ready endpoints. Addresses that do not parse are
// skipped (the controller never writes them); an attribution that does not
// parse leaves every address unattributed.
func viewOf(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) serviceView {
	var v serviceView
	attr, err := allocator.ParsePoolAnnotation(svc.Annotations[allocator.AnnotationAllocatedFromPool])
	if err != nil {
		attr = allocator.PoolAttribution{}
	}
	seen := map[netip.Addr]bool{}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(in.IP)
		if err != nil || ip.Zone() != "" {
			continue
		}
		ip = ip.Unmap()
		if seen[ip] {
			continue
		}
		seen[ip] = true
		pool := attr.For(ip)
		if pool == "" {
			v.unattributed = append(v.unattributed, ip)
			continue
		}
		v.election.Addresses = append(v.election.Addresses, election.Address{IP: ip, Pool: pool})
	}
	v.election.Local = svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	v.election.EndpointNodes = election.ReadyEndpointNodes(slices)
	return v
}

// poolConfig is what the speaker keeps of one IPPool.
type poolConfig struct {
	election   election.Pool
	interfaces []string // advertise.l2.interfaces
	bgp        *bgpAdvert
}

// bgpAdvert is a pool's advertise.bgp, parsed.
type bgpAdvert struct {
	peers               labels.Selector // nil: every peer
	aggregationLength   int
	aggregationLengthV6 int
	localPref           uint32
	communities         []bgp.Community
	large               []bgp.LargeCommunity
}

// reservedLargeAdmin is the large-community global administrator the bgp
// package uses for its own tags.
const reservedLargeAdmin = 4294967295

// poolOf parses an IPPool's announcement settings. An error means the pool
// cannot be announced at all (its addresses are then treated as if the pool
// did not exist); the API server's validation makes it rare.
func poolOf(p *v1alpha1.IPPool) (poolConfig, error) {
	var c poolConfig
	var err error
	if c.election, err = election.PoolFromSpec(p.Spec.Advertise); err != nil {
		return poolConfig{}, err
	}
	adv := p.Spec.Advertise
	if adv == nil {
		return c, nil
	}
	if adv.L2 != nil {
		c.interfaces = slices.Clone(adv.L2.Interfaces)
		slices.Sort(c.interfaces)
		c.interfaces = slices.Compact(c.interfaces)
	}
	if b := adv.BGP; b != nil {
		a := &bgpAdvert{}
		if b.PeerSelector != nil {
			if a.peers, err = metav1.LabelSelectorAsSelector(b.PeerSelector); err != nil {
				return poolConfig{}, fmt.Errorf("advertise.bgp.peerSelector: %w", err)
			}
		}
		if b.AggregationLength != nil {
			a.aggregationLength = int(*b.AggregationLength)
			if a.aggregationLength == 32 {
				a.aggregationLength = 0
			}
		}
		if b.AggregationLengthV6 != nil {
			a.aggregationLengthV6 = int(*b.AggregationLengthV6)
			if a.aggregationLengthV6 == 128 {
				a.aggregationLengthV6 = 0
			}
		}
		if a.aggregationLength < 0 || a.aggregationLength > 32 || a.aggregationLengthV6 < 0 || a.aggregationLengthV6 > 128 {
			return poolConfig{}, fmt.Errorf("advertise.bgp: aggregation lengths %d/%d out of range", a.aggregationLength, a.aggregationLengthV6)
		}
		if b.LocalPref != nil {
			a.localPref = *b.LocalPref
		}
		for _, s := range b.Communities {
			cm, err := bgp.ParseCommunity(string(s))
			if err != nil {
				return poolConfig{}, fmt.Errorf("advertise.bgp.communities: %w", err)
			}
			a.communities = append(a.communities, cm)
		}
		for _, s := range b.LargeCommunities {
			lc, err := bgp.ParseLargeCommunity(string(s))
			if err != nil {
				return poolConfig{}, fmt.Errorf("advertise.bgp.largeCommunities: %w", err)
			}
			if lc.GlobalAdmin == reservedLargeAdmin {
				return poolConfig{}, fmt.Errorf("advertise.bgp.largeCommunities: %s: global administrator %d is reserved by ironlb", lc, uint32(reservedLargeAdmin))
			}
			a.large = append(a.large, lc)
		}
		c.bgp = a
	}
	return c, nil
}

// equal reports whether two pool configurations announce alike.
func (c poolConfig) equal(o poolConfig) bool {
	selEq := func(a, b labels.Selector) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return a.String() == b.String()
	}
	if !selEq(c.election.L2, o.election.L2) || !selEq(c.election.BGP, o.election.BGP) || !slices.Equal(c.interfaces, o.interfaces) {
		return false
	}
	if c.bgp == nil || o.bgp == nil {
		return c.bgp == nil && o.bgp == nil
	}
	a, b := c.bgp, o.bgp
	return selEq(a.peers, b.peers) && a.aggregationLength == b.aggregationLength &&
		a.aggregationLengthV6 == b.aggregationLengthV6 && a.localPref == b.localPref &&
		slices.Equal(a.communities, b.communities) && slices.Equal(a.large, b.large)
}

// nodeAddresses returns a Node's InternalIPs (IPv4 first when both exist).
func nodeAddresses(n *corev1.Node) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Zone() == "" {
			out = append(out, ip.Unmap())
		}
	}
	slices.SortStableFunc(out, func(a, b netip.Addr) int {
		switch {
		case a.Is4() == b.Is4():
			return 0
		case a.Is4():
			return -1
		}
		return 1
	})
	return out
}

// memberAddr picks the address a Node's speaker listens on for memberlist:
// its first InternalIP of the family of this speaker's own address (speakers
// gossip over one family).
func memberAddr(n *corev1.Node, family netip.Addr) (netip.Addr, bool) {
	for _, a := range nodeAddresses(n) {
		if a.Is4() == family.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// dashed writes an address for an object name: dots and colons become dashes
// (192-0-2-200, 2001-db8--200).
func dashed(ip netip.Addr) string {
	return strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
}
