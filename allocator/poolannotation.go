package allocator

import (
	"fmt"
	"net/netip"
	"strings"
)

// AnnotationAllocatedFromPool is written on a Service by the controller (only the
// controller) and names the pool each of its addresses came from, so speakers
// apply that pool's advertisement settings without recomputing the allocation
// (which they could not do for overlapping pools or orphaned addresses).
//
// The value is one pool name when every address came from the same pool
// ("public"), else one entry per family: "IPv4=public-v4,IPv6=public-v6".
// Parse it with ParsePoolAnnotation; format it with PoolAnnotation.
const AnnotationAllocatedFromPool = "ironlb.io/ip-allocated-from-pool"

// PoolAttribution is a parsed AnnotationAllocatedFromPool value.
type PoolAttribution struct {
	// All is the pool of every address when one pool gave them all.
	All string
	// IPv4 and IPv6 are the pools per family otherwise.
	IPv4, IPv6 string
}

// For returns the pool ip came from ("" if the attribution does not say).
func (p PoolAttribution) For(ip netip.Addr) string {
	switch {
	case p.All != "":
		return p.All
	case ip.Unmap().Is4():
		return p.IPv4
	default:
		return p.IPv6
	}
}

// PoolAnnotation formats the attribution of an allocation ("" for none).
func PoolAnnotation(al Allocation) string {
	var v4, v6 string
	same := true
	for i, ip := range al.IPs {
		if i >= len(al.Pools) {
			break
		}
		if al.Pools[i] != al.Pools[0] {
			same = false
		}
		if ip.Is4() {
			v4 = al.Pools[i]
		} else {
			v6 = al.Pools[i]
		}
	}
	switch {
	case len(al.Pools) == 0 || len(al.IPs) == 0:
		return ""
	case same:
		return al.Pools[0]
	}
	var parts []string
	if v4 != "" {
		parts = append(parts, "IPv4="+v4)
	}
	if v6 != "" {
		parts = append(parts, "IPv6="+v6)
	}
	return strings.Join(parts, ",")
}

// ParsePoolAnnotation parses an AnnotationAllocatedFromPool value. The empty
// string parses to an empty attribution. Pool names are Kubernetes object names,
// so they never contain '=' or ','.
func ParsePoolAnnotation(v string) (PoolAttribution, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return PoolAttribution{}, nil
	}
	if !strings.ContainsAny(v, "=,") {
		return PoolAttribution{All: v}, nil
	}
	var p PoolAttribution
	for item := range strings.SplitSeq(v, ",") {
		fam, name, ok := strings.Cut(strings.TrimSpace(item), "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.Contains(name, "=") {
			return PoolAttribution{}, fmt.Errorf("%s: %q is not FAMILY=POOL", AnnotationAllocatedFromPool, item)
		}
		switch strings.TrimSpace(fam) {
		case "IPv4":
			if p.IPv4 != "" {
				return PoolAttribution{}, fmt.Errorf("%s: IPv4 named twice", AnnotationAllocatedFromPool)
			}
			p.IPv4 = name
		case "IPv6":
			if p.IPv6 != "" {
				return PoolAttribution{}, fmt.Errorf("%s: IPv6 named twice", AnnotationAllocatedFromPool)
			}
			p.IPv6 = name
		default:
			return PoolAttribution{}, fmt.Errorf("%s: unknown family %q (want IPv4 or IPv6)", AnnotationAllocatedFromPool, fam)
		}
	}
	return p, nil
}
