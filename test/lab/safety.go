package lab

import (
	"fmt"
	"net/netip"
)

// allowedRanges are the only address ranges the lab ever configures or probes
// (LAB.md, "Safety rules"): documentation and benchmark ranges.
var allowedRanges = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// mgmtRange holds the management /30s between the root namespace and cp. No
// lab route may use a gateway in it: the only way into the root namespace is
// the directly connected /30 in cp.
var mgmtRange = netip.MustParsePrefix("198.18.252.0/22")

// CheckAddr returns an error unless a is inside one of the lab's allowed
// ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 198.18.0.0/15,
// 2001:db8::/32).
func CheckAddr(a netip.Addr) error {
	if !a.IsValid() {
		return fmt.Errorf("lab: invalid address")
	}
	a = a.Unmap()
	for _, r := range allowedRanges {
		if r.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("lab: address %s is outside the lab's documentation ranges", a)
}

// CheckPrefix returns an error unless the whole prefix p lies inside one of
// the lab's allowed ranges.
func CheckPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("lab: invalid prefix")
	}
	m := p.Masked()
	for _, r := range allowedRanges {
		if r.Contains(m.Addr()) && m.Bits() >= r.Bits() {
			return nil
		}
	}
	return fmt.Errorf("lab: prefix %s is outside the lab's documentation ranges", p)
}

// mustAddr parses s and panics if it is not an allowed lab address. It is
// only used on addresses the lab computes itself, so a panic is a bug.
func mustAddr(s string) netip.Addr {
	a := netip.MustParseAddr(s)
	if err := CheckAddr(a); err != nil {
		panic(err)
	}
	return a
}
