package allocator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"strings"
)

// u128 is an address as an unsigned 128-bit number. IPv4 addresses use only lo, so
// arithmetic is the same for both families; the family is tracked by the caller.
type u128 struct{ hi, lo uint64 }

var maxU128 = u128{math.MaxUint64, math.MaxUint64}

func (a u128) cmp(b u128) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}

func (a u128) less(b u128) bool { return a.cmp(b) < 0 }

// addOne wraps at the top of the space; callers never add past the last address
// of an interval they hold.
func (a u128) addOne() u128 {
	lo, c := bits.Add64(a.lo, 1, 0)
	return u128{a.hi + c, lo}
}

func (a u128) subOne() u128 {
	lo, b := bits.Sub64(a.lo, 1, 0)
	return u128{a.hi - b, lo}
}

func (a u128) sub(b u128) u128 {
	lo, br := bits.Sub64(a.lo, b.lo, 0)
	return u128{a.hi - b.hi - br, lo}
}

// addSat adds and saturates at the largest u128.
func (a u128) addSat(b u128) u128 {
	lo, c := bits.Add64(a.lo, b.lo, 0)
	hi, c2 := bits.Add64(a.hi, b.hi, c)
	if c2 != 0 {
		return maxU128
	}
	return u128{hi, lo}
}

// int64Sat converts to int64, saturating at math.MaxInt64.
func (a u128) int64Sat() int64 {
	if a.hi != 0 || a.lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(a.lo)
}

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func fromU128(v u128, is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(v.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], v.hi)
	binary.BigEndian.PutUint64(b[8:], v.lo)
	return netip.AddrFrom16(b)
}

// family is an address family index: fam4 or fam6.
type family int

const (
	fam4 family = iota
	fam6
)

func (f family) String() string {
	if f == fam4 {
		return "IPv4"
	}
	return "IPv6"
}

func familyOf(a netip.Addr) family {
	if a.Is4() {
		return fam4
	}
	return fam6
}

// Range is an inclusive block of addresses of one family: First <= Last, both
// IPv4 or both IPv6, neither with a zone.
type Range struct {
	// First is the lowest address of the block.
	First netip.Addr
	// Last is the highest address of the block.
	Last netip.Addr
}

// ParseRange parses a pool address block: a CIDR without host bits
// ("192.0.2.0/24", "2001:db8::/64") or an inclusive range "first-last" of one
// family with first <= last ("192.0.2.10-192.0.2.20"). Spaces around the string
// and around either end of a range are allowed. IPv6 zones and IPv4-mapped IPv6
// addresses are refused.
func ParseRange(s string) (Range, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Range{}, errors.New("empty address range")
	}
	if strings.Contains(t, "/") {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			return Range{}, fmt.Errorf("invalid CIDR %q: %w", s, err)
		}
		if p.Addr().Is4In6() {
			return Range{}, fmt.Errorf("invalid CIDR %q: IPv4-mapped IPv6 addresses are not allowed, write the IPv4 form", s)
		}
		if m := p.Masked(); m != p {
			return Range{}, fmt.Errorf("invalid CIDR %q: host bits are set (did you mean %s?)", s, m)
		}
		return prefixRange(p), nil
	}
	first, last, ok := strings.Cut(t, "-")
	if !ok {
		return Range{}, fmt.Errorf("invalid address range %q: want a CIDR (192.0.2.0/24) or first-last (192.0.2.10-192.0.2.20)", s)
	}
	a, err := parseRangeEnd(first)
	if err != nil {
		return Range{}, fmt.Errorf("invalid address range %q: first address: %w", s, err)
	}
	b, err := parseRangeEnd(last)
	if err != nil {
		return Range{}, fmt.Errorf("invalid address range %q: last address: %w", s, err)
	}
	if a.Is4() != b.Is4() {
		return Range{}, fmt.Errorf("invalid address range %q: %s and %s are of different families", s, a, b)
	}
	if b.Less(a) {
		return Range{}, fmt.Errorf("invalid address range %q: first %s is greater than last %s", s, a, b)
	}
	return Range{First: a, Last: b}, nil
}

func parseRangeEnd(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%s: zones are not allowed", a)
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%s: IPv4-mapped IPv6 addresses are not allowed, write the IPv4 form", a)
	}
	return a, nil
}

func prefixRange(p netip.Prefix) Range {
	first := p.Addr()
	v := toU128(first)
	hostBits := first.BitLen() - p.Bits()
	var span u128 // 2^hostBits - 1
	switch {
	case hostBits >= 128:
		span = maxU128
	case hostBits >= 64:
		span = u128{1<<(hostBits-64) - 1, math.MaxUint64}
	default:
		span = u128{0, 1<<hostBits - 1}
	}
	last := u128{v.hi | span.hi, v.lo | span.lo}
	return Range{First: first, Last: fromU128(last, first.Is4())}
}

// Contains reports whether a is in r. An address of the other family (including
// an IPv4-mapped IPv6 address for an IPv4 range) is not.
func (r Range) Contains(a netip.Addr) bool {
	if !r.First.IsValid() || a.Is4() != r.First.Is4() || a.Zone() != "" {
		return false
	}
	return r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// String formats r as a CIDR when it is exactly one ("192.0.2.0/24",
// "192.0.2.7/32") and as "first-last" otherwise, so ParseRange(r.String()) == r.
func (r Range) String() string {
	if !r.First.IsValid() {
		return "invalid range"
	}
	if p, ok := r.prefix(); ok {
		return p.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// prefix returns r as a CIDR if it is exactly one.
func (r Range) prefix() (netip.Prefix, bool) {
	for bits := 0; bits <= r.First.BitLen(); bits++ {
		p := netip.PrefixFrom(r.First, bits)
		if p.Masked() != p {
			continue
		}
		if prefixRange(p).Last == r.Last {
			return p, true
		}
		// A longer prefix only shrinks the block; the first aligned one that does not
		// end at Last may still be too big, so keep going.
	}
	return netip.Prefix{}, false
}
