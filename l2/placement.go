package l2

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// hwAddr is an Ethernet (EUI-48) address as a comparable value, so it can
// key maps and be compared with ==.
type hwAddr [6]byte

func hwAddrFrom(b net.HardwareAddr) (hwAddr, bool) {
	var h hwAddr
	if len(b) != len(h) {
		return h, false
	}
	copy(h[:], b)
	return h, true
}

func (h hwAddr) String() string { return net.HardwareAddr(h[:]).String() }

// link is one network interface as the announcer sees it: the facts that
// decide whether it may answer for a VIP. It is filled from netlink by the
// kernel shell and by hand in tests.
type link struct {
	index int
	name  string
	mac   hwAddr
	// up is IFF_UP (administratively up); running is IFF_RUNNING, which
	// Linux sets only while the link is operationally up (carrier present).
	up, running bool
	loopback    bool
	// noARP is IFF_NOARP: the kernel does no ARP or NDP on this link
	// (tunnels, kube-ipvs0), so neither must we.
	noARP bool
	// masterKind is the kind of the link's master device ("bridge",
	// "bond", "team", "vrf", ...), empty when it has none.
	masterKind string
	// prefixes are the configured addresses with their prefix lengths.
	prefixes []netip.Prefix
	// linkLocal is the IPv6 link-local address used as the source of
	// Neighbor Advertisements; invalid when the link has none.
	linkLocal netip.Addr
}

// refusal says why a link must not answer, or "" when it may. Links enslaved
// to a bridge, bond or team are ports of another device: an answer sent there
// would carry the port's own MAC, not the MAC that traffic for the VIP must be
// sent to (the master's). VRF members are ordinary layer-3 interfaces and may
// answer.
func (l link) refusal() string {
	switch {
	case l.loopback:
		return "loopback"
	case !l.up:
		return "administratively down"
	case !l.running:
		return "operationally down (no carrier)"
	case l.noARP:
		return "NOARP link"
	case l.mac == hwAddr{}:
		return "no Ethernet address"
	case l.masterKind != "" && l.masterKind != "vrf":
		return "member of a " + l.masterKind
	}
	return ""
}

// placement is where one owned VIP is answered: the links (by index, sorted)
// or, when there are none, why not.
type placement struct {
	links  []int
	reason string
}

// place decides, for every owned VIP, which links answer for it:
//   - with Interfaces named, every named link that exists and may answer
//     (see refusal);
//   - with none named, the single link that may answer and holds the most
//     specific configured subnet containing the VIP (ties: the smallest
//     name). Host routes (/32, /128) are not subnets and are ignored, so a
//     VIP assigned to a dummy or kube-ipvs0 device never pulls the answer
//     there.
//
// It costs O(V·(L+A)) for V VIPs, L links and A addresses, run only when the
// owned set or the links change.
func place(links []link, owned []Announcement) map[netip.Addr]placement {
	byName := make(map[string]*link, len(links))
	for i := range links {
		byName[links[i].name] = &links[i]
	}
	out := make(map[netip.Addr]placement, len(owned))
	for _, ann := range owned {
		if len(ann.Interfaces) > 0 {
			out[ann.VIP] = placeNamed(byName, ann.Interfaces)
		} else {
			out[ann.VIP] = placeBySubnet(links, ann.VIP)
		}
	}
	return out
}

func placeNamed(byName map[string]*link, names []string) placement {
	var p placement
	var refused []string
	for _, name := range names {
		l, ok := byName[name]
		if !ok {
			refused = append(refused, name+": not found")
			continue
		}
		if why := l.refusal(); why != "" {
			refused = append(refused, name+": "+why)
			continue
		}
		p.links = append(p.links, l.index)
	}
	slices.Sort(p.links)
	p.links = slices.Compact(p.links)
	if len(p.links) == 0 {
		p.reason = "no configured interface can answer (" + strings.Join(refused, "; ") + ")"
	}
	return p
}

func placeBySubnet(links []link, vip netip.Addr) placement {
	var best *link
	bestBits := -1
	var refused []string
	for i := range links {
		l := &links[i]
		bits := longestSubnet(l.prefixes, vip)
		if bits < 0 {
			continue
		}
		if why := l.refusal(); why != "" {
			refused = append(refused, l.name+": "+why)
			continue
		}
		if bits > bestBits || bits == bestBits && l.name < best.name {
			best, bestBits = l, bits
		}
	}
	if best != nil {
		return placement{links: []int{best.index}}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return placement{reason: fmt.Sprintf("the subnet of %s is only on links that cannot answer (%s)", vip, strings.Join(refused, "; "))}
	}
	return placement{reason: fmt.Sprintf("no interface has a subnet containing %s", vip)}
}

// longestSubnet returns the length of the longest prefix in ps that contains
// vip and is a subnet (not a single host), or -1.
func longestSubnet(ps []netip.Prefix, vip netip.Addr) int {
	best := -1
	for _, p := range ps {
		if p.Addr().BitLen() != vip.BitLen() || p.Bits() >= p.Addr().BitLen() {
			continue
		}
		if p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			continue
		}
		if p.Contains(vip) && p.Bits() > best {
			best = p.Bits()
		}
	}
	return best
}
