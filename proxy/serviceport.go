package proxy

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// labelServiceProxyName marks a Service handled by another proxy (kube-proxy skips it too).
const labelServiceProxyName = "service.kubernetes.io/service-proxy-name"

// servicePortName names one port of a Service, the unit the rules are made for.
type servicePortName struct {
	types.NamespacedName
	Port     string
	Protocol v1.Protocol
}

func (n servicePortName) String() string {
	return n.Namespace + "/" + n.Name + ":" + n.Port
}

// servicePort is what the rules of one Service port depend on, for one family.
// It is comparable with ==-like equality through equal().
type servicePort struct {
	name                servicePortName
	clusterIP           netip.Addr
	port                uint16
	protocol            string // tcp, udp or sctp
	nodePort            uint16
	externalIPs         []netip.Addr
	lbIPs               []netip.Addr
	sourceRanges        []netip.Prefix
	healthCheckNodePort uint16
	affinitySeconds     int // 0: no ClientIP affinity
	externalLocal       bool
	internalLocal       bool
}

func (s *servicePort) equal(o *servicePort) bool {
	return s.name == o.name && s.clusterIP == o.clusterIP && s.port == o.port && s.protocol == o.protocol &&
		s.nodePort == o.nodePort && slices.Equal(s.externalIPs, o.externalIPs) && slices.Equal(s.lbIPs, o.lbIPs) &&
		slices.Equal(s.sourceRanges, o.sourceRanges) && s.healthCheckNodePort == o.healthCheckNodePort &&
		s.affinitySeconds == o.affinitySeconds && s.externalLocal == o.externalLocal && s.internalLocal == o.internalLocal
}

func (s *servicePort) externallyAccessible() bool {
	return s.nodePort != 0 || len(s.lbIPs) > 0 || len(s.externalIPs) > 0
}

// usesClusterEndpoints: Cluster policy is needed for internal traffic, and for
// external traffic even under Local policy (pods and the node short-circuit to it).
func (s *servicePort) usesClusterEndpoints() bool {
	return !s.internalLocal || s.externallyAccessible()
}

func (s *servicePort) usesLocalEndpoints() bool {
	return s.internalLocal || (s.externalLocal && s.externallyAccessible())
}

func addrFamily(a netip.Addr) iptables.Family {
	if a.Is4() {
		return iptables.IPv4
	}
	return iptables.IPv6
}

func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// skipService reports Services the proxy does not handle: headless and
// ExternalName Services, and Services of another proxy.
func skipService(svc *v1.Service) bool {
	if _, ok := svc.Labels[labelServiceProxyName]; ok {
		return true
	}
	if svc.Spec.Type == v1.ServiceTypeExternalName {
		return true
	}
	return svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == v1.ClusterIPNone
}

// servicePortsFor converts a Service into its ports for one family; nil when
// the Service has no ClusterIP of that family or is not proxied.
func servicePortsFor(svc *v1.Service, family iptables.Family) []servicePort {
	if svc == nil || skipService(svc) {
		return nil
	}
	var clusterIP netip.Addr
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if a, ok := parseAddr(s); ok && addrFamily(a) == family {
			clusterIP = a
			break
		}
	}
	if !clusterIP.IsValid() {
		return nil
	}
	base := servicePort{clusterIP: clusterIP}
	for _, s := range svc.Spec.ExternalIPs {
		if a, ok := parseAddr(s); ok && addrFamily(a) == family {
			base.externalIPs = append(base.externalIPs, a)
		}
	}
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer {
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IPMode != nil && *ing.IPMode != v1.LoadBalancerIPModeVIP {
				continue // Proxy mode: the load balancer sends to the node, not the VIP
			}
			if a, ok := parseAddr(ing.IP); ok && addrFamily(a) == family {
				base.lbIPs = append(base.lbIPs, a)
			}
		}
		for _, s := range svc.Spec.LoadBalancerSourceRanges {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil || addrFamily(p.Addr()) != family {
				continue
			}
			if p.Bits() == 0 {
				base.sourceRanges = nil // 0.0.0.0/0 allows all: no filtering at all
				break
			}
			base.sourceRanges = append(base.sourceRanges, p.Masked())
		}
	}
	slices.SortFunc(base.externalIPs, netip.Addr.Compare)
	base.externalIPs = slices.Compact(base.externalIPs)
	slices.SortFunc(base.lbIPs, netip.Addr.Compare)
	base.lbIPs = slices.Compact(base.lbIPs)
	slices.SortFunc(base.sourceRanges, netip.Prefix.Compare)
	base.sourceRanges = slices.Compact(base.sourceRanges)

	externalCapable := svc.Spec.Type == v1.ServiceTypeNodePort || svc.Spec.Type == v1.ServiceTypeLoadBalancer
	etpApplies := externalCapable || (svc.Spec.Type == v1.ServiceTypeClusterIP && len(svc.Spec.ExternalIPs) > 0)
	base.externalLocal = etpApplies && svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal
	base.internalLocal = svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == v1.ServiceInternalTrafficPolicyLocal
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer && base.externalLocal {
		base.healthCheckNodePort = uint16(svc.Spec.HealthCheckNodePort)
	}
	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		base.affinitySeconds = int(v1.DefaultClientIPServiceAffinitySeconds)
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			base.affinitySeconds = int(*c.ClientIP.TimeoutSeconds)
		}
	}
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	out := make([]servicePort, 0, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		proto := strings.ToLower(string(p.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" && proto != "sctp" {
			continue
		}
		if p.Port <= 0 || p.Port > 65535 {
			continue
		}
		sp := base
		sp.name = servicePortName{NamespacedName: nn, Port: p.Name, Protocol: v1.Protocol(strings.ToUpper(proto))}
		sp.port = uint16(p.Port)
		sp.protocol = proto
		if externalCapable && p.NodePort > 0 && p.NodePort <= 65535 {
			sp.nodePort = uint16(p.NodePort)
		}
		out = append(out, sp)
	}
	return out
}

// endpoint is one backend of a Service port.
type endpoint struct {
	addr        netip.AddrPort
	local       bool // on this node
	remote      bool // on another node (neither: the slice does not say)
	ready       bool
	serving     bool
	terminating bool
	zoneHints   []string
	nodeHints   []string
}

func (e endpoint) equal(o endpoint) bool {
	return e.addr == o.addr && e.local == o.local && e.remote == o.remote && e.ready == o.ready && e.serving == o.serving &&
		e.terminating == o.terminating && slices.Equal(e.zoneHints, o.zoneHints) && slices.Equal(e.nodeHints, o.nodeHints)
}

// portKey identifies a Service port in an EndpointSlice: by name and protocol.
type portKey struct {
	name     string
	protocol v1.Protocol
}

// endpointsFor merges the EndpointSlices of one Service into endpoints per
// port, for one family, sorted by address. An address seen in two slices is
// kept once, preferring a non-terminating copy (as kube-proxy does), else the
// copy in the slice whose name sorts first, so the result does not depend on
// the order the slices are given in.
func endpointsFor(slicesOfService []*discovery.EndpointSlice, family iptables.Family, nodeName string) map[portKey][]endpoint {
	slicesOfService = slices.Clone(slicesOfService)
	slices.SortFunc(slicesOfService, func(a, b *discovery.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	want := discovery.AddressTypeIPv4
	if family == iptables.IPv6 {
		want = discovery.AddressTypeIPv6
	}
	byPort := map[portKey]map[netip.AddrPort]endpoint{}
	for _, es := range slicesOfService {
		if es == nil || es.AddressType != want {
			continue
		}
		for _, p := range es.Ports {
			if p.Name == nil || p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
				continue
			}
			proto := v1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			k := portKey{name: *p.Name, protocol: proto}
			set := byPort[k]
			if set == nil {
				set = map[netip.AddrPort]endpoint{}
				byPort[k] = set
			}
			for _, e := range es.Endpoints {
				if len(e.Addresses) == 0 {
					continue
				}
				a, ok := parseAddr(e.Addresses[0])
				if !ok || addrFamily(a) != family {
					continue
				}
				ep := endpoint{
					addr:        netip.AddrPortFrom(a, uint16(*p.Port)),
					local:       e.NodeName != nil && *e.NodeName == nodeName,
					remote:      e.NodeName != nil && *e.NodeName != nodeName,
					ready:       e.Conditions.Ready == nil || *e.Conditions.Ready,
					serving:     e.Conditions.Serving == nil || *e.Conditions.Serving,
					terminating: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
				}
				if e.Hints != nil {
					for _, z := range e.Hints.ForZones {
						ep.zoneHints = append(ep.zoneHints, z.Name)
					}
					for _, n := range e.Hints.ForNodes {
						ep.nodeHints = append(ep.nodeHints, n.Name)
					}
					slices.Sort(ep.zoneHints)
					slices.Sort(ep.nodeHints)
				}
				if old, dup := set[ep.addr]; dup && (!old.terminating || ep.terminating) {
					continue
				}
				set[ep.addr] = ep
			}
		}
	}
	out := make(map[portKey][]endpoint, len(byPort))
	for k, set := range byPort {
		eps := make([]endpoint, 0, len(set))
		for _, e := range set {
			eps = append(eps, e)
		}
		slices.SortFunc(eps, func(a, b endpoint) int { return a.addr.Compare(b.addr) })
		out[k] = eps
	}
	return out
}

// categorized is the outcome of applying traffic policies and topology to the
// endpoints of one Service port on this node.
type categorized struct {
	cluster   []endpoint // endpoints for Cluster policy
	local     []endpoint // endpoints for Local policy
	reachable []endpoint // union: every endpoint a rule may DNAT to, sorted
	hasAny    bool       // usable endpoints exist somewhere in the cluster
}

// categorize picks usable endpoints the way kube-proxy does: ready endpoints,
// or serving-and-terminating ones when none is ready (separately for Cluster
// and Local); topology hints narrow Cluster endpoints to this node or zone when
// every ready endpoint carries a hint and one names this node (zone).
func categorize(sp *servicePort, eps []endpoint, nodeName, zone string) categorized {
	var c categorized
	if len(eps) == 0 {
		return c
	}
	if sp.usesClusterEndpoints() {
		mode := topologyMode(eps, nodeName, zone)
		c.cluster = filterEndpoints(eps, func(e endpoint) bool {
			if !e.ready {
				return false
			}
			switch mode {
			case "node":
				return slices.Contains(e.nodeHints, nodeName)
			case "zone":
				return slices.Contains(e.zoneHints, zone)
			}
			return true
		})
		if len(c.cluster) == 0 {
			c.cluster = filterEndpoints(eps, func(e endpoint) bool { return e.serving && e.terminating })
		}
		c.hasAny = len(c.cluster) > 0
	}
	if !sp.usesLocalEndpoints() {
		c.reachable = c.cluster
		return c
	}
	var localReady, localServingTerminating bool
	for _, e := range eps {
		switch {
		case e.ready:
			c.hasAny = true
			localReady = localReady || e.local
		case e.serving && e.terminating:
			c.hasAny = true
			localServingTerminating = localServingTerminating || e.local
		}
	}
	switch {
	case localReady:
		c.local = filterEndpoints(eps, func(e endpoint) bool { return e.local && e.ready })
	case localServingTerminating:
		c.local = filterEndpoints(eps, func(e endpoint) bool { return e.local && e.serving && e.terminating })
	}
	if !sp.usesClusterEndpoints() {
		c.reachable = c.local
		return c
	}
	seen := map[netip.AddrPort]bool{}
	for _, list := range [][]endpoint{c.cluster, c.local} {
		for _, e := range list {
			if !seen[e.addr] {
				seen[e.addr] = true
				c.reachable = append(c.reachable, e)
			}
		}
	}
	slices.SortFunc(c.reachable, func(a, b endpoint) int { return a.addr.Compare(b.addr) })
	return c
}

func topologyMode(eps []endpoint, nodeName, zone string) string {
	anyReady, allNode, forNode, allZone, forZone := false, true, false, true, false
	for _, e := range eps {
		if !e.ready {
			continue
		}
		anyReady = true
		if len(e.nodeHints) == 0 {
			allNode = false
		} else if slices.Contains(e.nodeHints, nodeName) {
			forNode = true
		}
		if len(e.zoneHints) == 0 {
			allZone = false
		} else if slices.Contains(e.zoneHints, zone) {
			forZone = true
		}
	}
	switch {
	case !anyReady:
		return ""
	case allNode && forNode:
		return "node"
	case zone != "" && allZone && forZone:
		return "zone"
	}
	return ""
}

func filterEndpoints(eps []endpoint, keep func(endpoint) bool) []endpoint {
	var out []endpoint
	for _, e := range eps {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func compareNames(a, b servicePortName) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol))
}
