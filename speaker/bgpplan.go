package speaker

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/bgp"
)

// PasswordKey is the key of a BGPPeer's password Secret that holds the TCP MD5
// password (the key of a kubernetes.io/basic-auth Secret).
const PasswordKey = corev1.BasicAuthPasswordKey

// multihopTTL is the TTL of eBGP multihop sessions (ebgpMultiHop: true).
const multihopTTL = 255

// bgpInputs is everything the BGP desired state of one node depends on.
type bgpInputs struct {
	node       string
	nodeLabels labels.Set
	// namespace is the speaker's namespace: the only one it reads Secrets from.
	namespace string
	peers     []*v1alpha1.BGPPeer
	secret    func(name string) *corev1.Secret // in namespace; nil if absent
	pools     map[string]poolConfig
	// advertised are the addresses the election has this node advertise, with
	// their pools.
	advertised map[netip.Addr]string
}

// bgpPlan is the node's BGP desired state and what explains it.
type bgpPlan struct {
	desired bgp.Desired
	// peerNames maps each configured session to its BGPPeer.
	peerNames map[netip.Addr]string
	// refused are the BGPPeers selected for this node that are not opened, with
	// the reason (a missing Secret, an address another BGPPeer took...).
	refused map[string]string
	// paths are where each advertised address goes.
	paths map[netip.Addr]pathPlan
}

// pathPlan is the advertisement of one address.
type pathPlan struct {
	prefix netip.Prefix
	peers  []netip.Addr // sessions that carry it
}

// planBGP computes the node's BGP desired state: the sessions of every BGPPeer
// whose nodeSelector selects the node, and a path for every advertised address
// per its pool's advertise.bgp. It never returns a state bgp.Manager.Apply
// refuses: a BGPPeer that could not be configured is left out and listed in
// refused, and an address whose pool's peerSelector selects none of the node's
// sessions is not advertised. Cost: O(P log P + A log A) for P BGPPeers and A
// addresses.
func planBGP(in bgpInputs) bgpPlan {
	plan := bgpPlan{peerNames: map[netip.Addr]string{}, refused: map[string]string{}, paths: map[netip.Addr]pathPlan{}}
	peers := slices.Clone(in.peers)
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	byAddr := map[netip.Addr]*v1alpha1.BGPPeer{}
	for _, p := range peers {
		sel, err := nodeSelectorOf(p.Spec.NodeSelector)
		if err != nil {
			plan.refused[p.Name] = fmt.Sprintf("nodeSelector: %v", err)
			continue
		}
		if !sel.Matches(in.nodeLabels) {
			continue
		}
		bp, err := peerOf(p, in.namespace, in.secret)
		if err != nil {
			plan.refused[p.Name] = err.Error()
			continue
		}
		if other, dup := byAddr[bp.Address]; dup {
			plan.refused[p.Name] = fmt.Sprintf("BGPPeer %s has the same peerAddress %s", other.Name, bp.Address)
			continue
		}
		byAddr[bp.Address] = p
		plan.peerNames[bp.Address] = p.Name
		plan.desired.Peers = append(plan.desired.Peers, bp)
	}
	vips := make([]netip.Addr, 0, len(in.advertised))
	for ip := range in.advertised {
		vips = append(vips, ip)
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	for _, ip := range vips {
		pool, ok := in.pools[in.advertised[ip]]
		if !ok || pool.bgp == nil {
			continue
		}
		adv := pool.bgp
		prefix, err := bgp.VIPPrefix(ip, adv.aggregationLength, adv.aggregationLengthV6)
		if err != nil {
			continue
		}
		path := bgp.Path{Prefix: prefix, Communities: adv.communities, LargeCommunities: adv.large, LocalPref: adv.localPref}
		var carriers []netip.Addr
		for _, bp := range plan.desired.Peers {
			if bp.Address.Is4() != ip.Is4() {
				continue
			}
			if adv.peers != nil && !adv.peers.Matches(labels.Set(byAddr[bp.Address].Labels)) {
				continue
			}
			carriers = append(carriers, bp.Address)
		}
		slices.SortFunc(carriers, netip.Addr.Compare)
		if adv.peers != nil {
			if len(carriers) == 0 {
				continue // the pool wants none of this node's sessions
			}
			path.Peers = carriers
		}
		plan.desired.Paths = append(plan.desired.Paths, path)
		plan.paths[ip] = pathPlan{prefix: prefix, peers: carriers}
	}
	return plan
}

// nodeSelectorOf is a BGPPeer's nodeSelector: nil or empty selects every node.
func nodeSelectorOf(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

// peerOf converts a BGPPeer into a session, checking what bgp.Manager would
// refuse so that one bad BGPPeer never blocks the others.
func peerOf(p *v1alpha1.BGPPeer, namespace string, secret func(string) *corev1.Secret) (bgp.Peer, error) {
	s := p.Spec
	addr, err := netip.ParseAddr(s.PeerAddress)
	if err != nil || addr.Zone() != "" {
		return bgp.Peer{}, fmt.Errorf("peerAddress %q is not an IP address", s.PeerAddress)
	}
	addr = addr.Unmap()
	if addr.IsUnspecified() || addr.IsMulticast() {
		return bgp.Peer{}, fmt.Errorf("peerAddress %s is not unicast", addr)
	}
	if s.PeerASN < 1 || s.PeerASN > 4294967295 || s.MyASN < 1 || s.MyASN > 4294967295 {
		return bgp.Peer{}, fmt.Errorf("ASNs %d/%d out of range", s.PeerASN, s.MyASN)
	}
	bp := bgp.Peer{
		Address:         addr,
		ASN:             uint32(s.PeerASN),
		LocalASN:        uint32(s.MyASN),
		GracefulRestart: s.GracefulRestart,
	}
	if s.PeerPort != 0 {
		if s.PeerPort < 1 || s.PeerPort > 65535 {
			return bgp.Peer{}, fmt.Errorf("peerPort %d out of range", s.PeerPort)
		}
		bp.Port = uint16(s.PeerPort)
	}
	if s.SourceAddress != "" {
		src, err := netip.ParseAddr(s.SourceAddress)
		if err != nil || src.Zone() != "" {
			return bgp.Peer{}, fmt.Errorf("sourceAddress %q is not an IP address", s.SourceAddress)
		}
		src = src.Unmap()
		if src.Is4() != addr.Is4() || src.IsUnspecified() || src.IsMulticast() {
			return bgp.Peer{}, fmt.Errorf("sourceAddress %s must be a unicast address of the peer's family", src)
		}
		bp.SourceAddress = src
	}
	if s.HoldTime != nil {
		bp.HoldTime = s.HoldTime.Duration.Truncate(time.Second)
		if bp.HoldTime < 3*time.Second || bp.HoldTime > 65535*time.Second {
			return bgp.Peer{}, fmt.Errorf("holdTime %v must be between 3s and 65535s", s.HoldTime.Duration)
		}
	}
	if s.KeepaliveTime != nil {
		bp.KeepaliveTime = s.KeepaliveTime.Duration.Truncate(time.Second)
		hold := bp.HoldTime
		if hold == 0 {
			hold = bgp.DefaultHoldTime
		}
		if bp.KeepaliveTime < time.Second || bp.KeepaliveTime >= hold {
			return bgp.Peer{}, fmt.Errorf("keepaliveTime %v must be at least 1s and below the hold time %v", s.KeepaliveTime.Duration, hold)
		}
	}
	if s.EBGPMultiHop {
		if bp.ASN == bp.LocalASN {
			return bgp.Peer{}, fmt.Errorf("ebgpMultiHop on an iBGP session (peerASN = myASN = %d)", bp.ASN)
		}
		bp.EBGPMultiHopTTL = multihopTTL
	}
	if b := s.BFD; b != nil {
		if s.EBGPMultiHop {
			return bgp.Peer{}, fmt.Errorf("bfd is single-hop and cannot run with ebgpMultiHop")
		}
		bp.BFD = &bgp.BFD{}
		if b.MinTx != nil {
			bp.BFD.MinTx = b.MinTx.Duration
		}
		if b.MinRx != nil {
			bp.BFD.MinRx = b.MinRx.Duration
		}
		if b.Multiplier != nil {
			if *b.Multiplier < 1 || *b.Multiplier > 255 {
				return bgp.Peer{}, fmt.Errorf("bfd.multiplier %d out of range", *b.Multiplier)
			}
			bp.BFD.Multiplier = uint8(*b.Multiplier)
		}
		for _, d := range []time.Duration{bp.BFD.MinTx, bp.BFD.MinRx} {
			if d != 0 && (d < time.Millisecond || d > time.Hour) {
				return bgp.Peer{}, fmt.Errorf("bfd interval %v out of range", d)
			}
		}
	}
	if ref := s.PasswordSecretRef; ref != nil {
		if ref.Namespace != "" && ref.Namespace != namespace {
			return bgp.Peer{}, fmt.Errorf("passwordSecretRef: Secret %s/%s is outside the speakers' namespace %s (speakers read Secrets only there)", ref.Namespace, ref.Name, namespace)
		}
		sec := secret(ref.Name)
		if sec == nil {
			return bgp.Peer{}, fmt.Errorf("passwordSecretRef: Secret %s/%s not found", namespace, ref.Name)
		}
		pw, ok := sec.Data[PasswordKey]
		if !ok || len(pw) == 0 {
			return bgp.Peer{}, fmt.Errorf("passwordSecretRef: Secret %s/%s has no %q key", namespace, ref.Name, PasswordKey)
		}
		if len(pw) > 80 {
			return bgp.Peer{}, fmt.Errorf("passwordSecretRef: the password in Secret %s/%s is longer than 80 bytes (TCP MD5 limit)", namespace, ref.Name)
		}
		bp.Password = string(pw)
	}
	return bp, nil
}
