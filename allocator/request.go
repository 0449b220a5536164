package allocator

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// Annotation keys read by RequestFor. The MetalLB keys with the same suffixes
// (metallb.io/... and metallb.universe.tf/...) are honoured as well, so a cluster
// can migrate without editing its Services; when several are set they must agree.
const (
	// AnnotationLoadBalancerIPs requests explicit addresses: a comma-separated
	// list with at most one IPv4 and one IPv6 address.
	AnnotationLoadBalancerIPs = "ironlb.io/loadBalancerIPs"
	// AnnotationPool requests a pool by name.
	AnnotationPool = "ironlb.io/pool"
	// AnnotationAllowSharedIP is a sharing key: Services with the same key may
	// share an address when their ports do not collide.
	AnnotationAllowSharedIP = "ironlb.io/allow-shared-ip"
)

var (
	ipAnnotations    = [...]string{AnnotationLoadBalancerIPs, "metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"}
	poolAnnotations  = [...]string{AnnotationPool, "metallb.io/address-pool", "metallb.universe.tf/address-pool"}
	shareAnnotations = [...]string{AnnotationAllowSharedIP, "metallb.io/allow-shared-ip", "metallb.universe.tf/allow-shared-ip"}
)

// Request is what a Service asks for, from its annotations and spec.
type Request struct {
	// IPs are explicit addresses (at most one per family), from the
	// loadBalancerIPs annotations or spec.loadBalancerIP.
	IPs []netip.Addr
	// Pool is the requested pool name, from the pool / address-pool annotations.
	Pool string
	// SharingKey is the allow-shared-ip annotation value.
	SharingKey string
}

// svcName formats as the Service's key without building the string up front.
type svcName struct{ svc *v1.Service }

func (n svcName) String() string { return ServiceKey(n.svc) }

// ServiceKey returns the key of svc used by Release and Lookup: "namespace/name".
func ServiceKey(svc *v1.Service) string { return svc.Namespace + "/" + svc.Name }

// RequestFor parses the request of svc. It fails with an *Error of reason
// ReasonInvalidRequest when an address does not parse, when more than one address
// of a family is requested, when the ironlb and MetalLB annotations disagree, or
// when a loadBalancerIPs annotation and spec.loadBalancerIP are both set and
// spec.loadBalancerIP is not among the annotated addresses. IPv4-mapped IPv6
// addresses are read as IPv4. Empty annotation values count as unset.
func RequestFor(svc *v1.Service) (Request, error) {
	if svc == nil {
		return Request{}, newError(ReasonInvalidRequest, "nil Service")
	}
	var req Request
	key := svcName{svc} // formatted only for error messages
	ann := svc.Annotations

	ipsFrom := ""
	for _, k := range ipAnnotations {
		v, ok := ann[k]
		if !ok || strings.TrimSpace(v) == "" {
			continue
		}
		ips, err := parseIPList(v)
		if err != nil {
			return Request{}, newError(ReasonInvalidRequest, "service %s: annotation %s: %v", key, k, err)
		}
		if ipsFrom == "" {
			req.IPs, ipsFrom = ips, k
		} else if !sameIPSet(req.IPs, ips) {
			return Request{}, newError(ReasonInvalidRequest, "service %s: annotations %s (%s) and %s (%s) disagree",
				key, ipsFrom, joinAddrs(req.IPs), k, joinAddrs(ips))
		}
	}
	if s := strings.TrimSpace(svc.Spec.LoadBalancerIP); s != "" {
		ip, err := parseIP(s)
		if err != nil {
			return Request{}, newError(ReasonInvalidRequest, "service %s: spec.loadBalancerIP: %v", key, err)
		}
		if ipsFrom == "" {
			req.IPs = []netip.Addr{ip}
		} else if !containsAddr(req.IPs, ip) {
			return Request{}, newError(ReasonInvalidRequest, "service %s: spec.loadBalancerIP %s is not among annotation %s (%s)",
				key, ip, ipsFrom, joinAddrs(req.IPs))
		}
	}

	var err error
	if req.Pool, err = agreeing(key, ann, poolAnnotations[:]); err != nil {
		return Request{}, err
	}
	if req.SharingKey, err = agreeing(key, ann, shareAnnotations[:]); err != nil {
		return Request{}, err
	}
	return req, nil
}

// agreeing returns the trimmed value of the first set annotation of keys and
// fails if another one is set to something else.
func agreeing(svcKey svcName, ann map[string]string, keys []string) (string, error) {
	val, from := "", ""
	for _, k := range keys {
		v := strings.TrimSpace(ann[k])
		if v == "" {
			continue
		}
		if from == "" {
			val, from = v, k
		} else if v != val {
			return "", newError(ReasonInvalidRequest, "service %s: annotations %s (%q) and %s (%q) disagree", svcKey, from, val, k, v)
		}
	}
	return val, nil
}

func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s: zones are not allowed", a)
	}
	return a.Unmap(), nil
}

// parseIPList parses "ip[,ip]" with at most one address per family; empty items
// (a trailing comma) are ignored.
func parseIPList(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for item := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		a, err := parseIP(item)
		if err != nil {
			return nil, err
		}
		for _, b := range out {
			if b == a {
				return nil, fmt.Errorf("address %s is listed twice", a)
			}
			if b.Is4() == a.Is4() {
				return nil, fmt.Errorf("two %s addresses (%s, %s): at most one per family", familyOf(a), b, a)
			}
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no address in %q", s)
	}
	return out, nil
}

func sameIPSet(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !containsAddr(b, x) {
			return false
		}
	}
	return true
}

func containsAddr(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

func joinAddrs(s []netip.Addr) string {
	parts := make([]string, len(s))
	for i, a := range s {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
}
