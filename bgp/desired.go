package bgp

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Family is an address family a session carries (AFI/SAFI IPv4 or IPv6
// unicast).
type Family uint8

// The families a session can carry.
const (
	IPv4 Family = 1
	IPv6 Family = 2
)

// String returns "ipv4" or "ipv6".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// Defaults applied to zero fields of Peer.
const (
	DefaultPort        = 179
	DefaultHoldTime    = 90 * time.Second
	DefaultRestartTime = 120 * time.Second
)

// Peer is one BGP session, keyed by its Address. Zero fields take the
// defaults their comments give.
type Peer struct {
	// Address is the router's address (required).
	Address netip.Addr
	// ASN is the router's AS number (required). Equal to the local AS it
	// makes the session iBGP.
	ASN uint32
	// LocalASN is the AS this side speaks on this session; zero means
	// Config.ASN.
	LocalASN uint32
	// Port is the router's TCP port; zero means 179.
	Port uint16
	// SourceAddress is the local address of the session; zero means the one
	// the kernel picks. It must be of Address's family.
	SourceAddress netip.Addr
	// HoldTime is the proposed hold time, whole seconds of at least 3s; zero
	// means 90s (GoBGP cannot negotiate a hold time of 0).
	HoldTime time.Duration
	// KeepaliveTime is the keepalive interval, whole seconds below HoldTime;
	// zero means HoldTime/3.
	KeepaliveTime time.Duration
	// EBGPMultiHopTTL lets an eBGP router be up to this many hops away; zero
	// means directly connected (TTL 1). It cannot be combined with BFD, which
	// is single-hop here.
	EBGPMultiHopTTL uint8
	// Password enables TCP MD5 signatures (RFC 2385) with this key.
	Password string
	// GracefulRestart advertises the graceful restart capability (RFC 4724),
	// so the router keeps this node's routes for RestartTime when the session
	// drops without a NOTIFICATION (e.g. a crash).
	GracefulRestart bool
	// RestartTime is the graceful restart time; zero means 120s.
	RestartTime time.Duration
	// Families are the address families the session carries; empty means
	// the family of Address. A session may carry the other family too
	// (MP-BGP), which then needs its next hop: NextHopIPv4 or NextHopIPv6.
	Families []Family
	// NextHopIPv4 and NextHopIPv6 are the next hops announced for prefixes
	// of the family other than Address's, normally this node's address of
	// that family on the link to the router. For the session's own family
	// the next hop is always the session's local address.
	NextHopIPv4, NextHopIPv6 netip.Addr
	// BFD, if set, runs a single-hop BFD session with the router and resets
	// the BGP session when BFD goes down.
	BFD *BFD
}

// BFD are the timers of a peer's BFD session; zero fields take the defaults
// of package bfd (300ms, 300ms, 3).
type BFD struct {
	// MinTx is the desired interval between sent packets.
	MinTx time.Duration
	// MinRx is the shortest interval between received packets we accept.
	MinRx time.Duration
	// Multiplier is the number of missed packets after which the router
	// declares this node down.
	Multiplier uint8
}

// Path is a prefix to advertise.
type Path struct {
	// Prefix is what to announce: a VIP as /32 or /128, or aggregated (see
	// VIPPrefix). Host bits must be zero.
	Prefix netip.Prefix
	// Communities and LargeCommunities are attached to the announcement.
	Communities      []Community
	LargeCommunities []LargeCommunity
	// LocalPref is the LOCAL_PREF on iBGP sessions (eBGP sessions never carry
	// one); zero means none set, which GoBGP sends as 100.
	LocalPref uint32
	// Peers limits the announcement to these peers (by Address); empty means
	// every peer whose session carries the prefix's family.
	Peers []netip.Addr
}

// Desired is everything the Manager should announce: Apply makes the
// sessions and announcements match it.
type Desired struct {
	Peers []Peer
	Paths []Path
}

// VIPPrefix returns the prefix to announce for vip: vip itself (/32, /128)
// when the aggregation length of its family is zero, else vip masked to that
// length (e.g. 203.0.113.77 with lengthV4 24 gives 203.0.113.0/24).
func VIPPrefix(vip netip.Addr, lengthV4, lengthV6 int) (netip.Prefix, error) {
	if !vip.IsValid() {
		return netip.Prefix{}, errors.New("bgp: invalid VIP")
	}
	vip = vip.Unmap()
	bits := lengthV4
	if vip.Is6() {
		bits = lengthV6
	}
	if bits == 0 {
		bits = vip.BitLen()
	}
	p, err := vip.WithZone("").Prefix(bits)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bgp: aggregation length %d for %s: %w", bits, vip, err)
	}
	return p, nil
}

// The next part turns a Desired into the normalised form the diff works on.

// families is a set of Family values.
type families uint8

func (f families) has(x Family) bool { return f&families(x) != 0 }

// bfdConf is a peer's normalised BFD settings; the zero value means off.
type bfdConf struct {
	on           bool
	minTx, minRx time.Duration
	multiplier   uint8
}

// peerConf is a Peer with defaults applied, comparable so that the diff can
// tell a changed session from an unchanged one.
type peerConf struct {
	addr               netip.Addr
	asn, localASN      uint32
	port               uint16
	source             netip.Addr
	hold, keepalive    time.Duration
	multihopTTL        uint8
	password           string
	gracefulRestart    bool
	restartTime        time.Duration
	families           families
	nextHop4, nextHop6 netip.Addr
	bfd                bfdConf
}

// sessionPart is conf without what can change without restarting the BGP
// session.
func (c peerConf) sessionPart() peerConf {
	c.bfd = bfdConf{}
	return c
}

// ibgp reports whether the session is internal.
func (c peerConf) ibgp() bool { return c.asn == c.localASN }

// route is what is announced for one prefix: attributes in canonical order,
// and the peers it goes to (nil: all peers carrying its family).
type route struct {
	communities []Community
	large       []LargeCommunity
	localPref   uint32
	peers       []netip.Addr // sorted, unique; nil means all
}

func (r route) equal(o route) bool {
	return r.localPref == o.localPref && slices.Equal(r.communities, o.communities) &&
		slices.Equal(r.large, o.large) && slices.Equal(r.peers, o.peers) && (r.peers == nil) == (o.peers == nil)
}

// goesTo reports whether r is announced on the session of c.
func (r route) goesTo(c *peerConf, prefix netip.Prefix) bool {
	if !c.families.has(familyOf(prefix.Addr())) {
		return false
	}
	if r.peers == nil {
		return true
	}
	_, found := slices.BinarySearchFunc(r.peers, c.addr, netip.Addr.Compare)
	return found
}

// state is a normalised desired (or applied) state.
type state struct {
	peers  map[netip.Addr]peerConf
	routes map[netip.Prefix]route
}

// tagAdmin is the Global Administrator of the large communities that mark
// which peers a path goes to inside GoBGP (AS 4294967295 is reserved, RFC
// 7300); the export policy strips them, and users may not use it.
const tagAdmin = 4294967295

// compile validates d and normalises it with defaults from cfg. It is pure.
// Errors name the peer or prefix at fault; all problems are reported at once.
func compile(cfg Config, d Desired) (state, error) {
	st := state{peers: make(map[netip.Addr]peerConf, len(d.Peers)), routes: make(map[netip.Prefix]route, len(d.Paths))}
	var errs []error
	for _, p := range d.Peers {
		c, err := normalisePeer(cfg, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := st.peers[c.addr]; dup {
			errs = append(errs, fmt.Errorf("peer %s: listed twice", c.addr))
			continue
		}
		st.peers[c.addr] = c
	}
	for _, p := range d.Paths {
		prefix, r, err := normalisePath(st.peers, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if old, ok := st.routes[prefix]; ok {
			r = merge(old, r)
		}
		st.routes[prefix] = r
	}
	if len(errs) > 0 {
		return state{}, fmt.Errorf("bgp: invalid desired state: %w", errors.Join(errs...))
	}
	return st, nil
}

func normalisePeer(cfg Config, p Peer) (peerConf, error) {
	fail := func(format string, args ...any) (peerConf, error) {
		return peerConf{}, fmt.Errorf("peer %s: %s", p.Address, fmt.Sprintf(format, args...))
	}
	addr := p.Address.Unmap()
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsMulticast() || addr.Zone() != "" {
		return fail("address must be a unicast IP without zone")
	}
	c := peerConf{
		addr: addr, asn: p.ASN, localASN: p.LocalASN, port: p.Port,
		source: p.SourceAddress.Unmap(), hold: p.HoldTime, keepalive: p.KeepaliveTime,
		multihopTTL: p.EBGPMultiHopTTL, password: p.Password,
		gracefulRestart: p.GracefulRestart, restartTime: p.RestartTime,
		nextHop4: p.NextHopIPv4, nextHop6: p.NextHopIPv6,
	}
	if c.asn == 0 {
		return fail("ASN is required")
	}
	if c.localASN == 0 {
		c.localASN = cfg.ASN
	}
	if c.localASN == 0 {
		return fail("no local ASN (set Peer.LocalASN or Config.ASN)")
	}
	if c.port == 0 {
		c.port = DefaultPort
	}
	if c.source.IsValid() && (c.source.Is4() != addr.Is4() || c.source.IsUnspecified() || c.source.IsMulticast()) {
		return fail("source address %s must be a unicast address of the peer's family", c.source)
	}
	if c.hold == 0 {
		c.hold = DefaultHoldTime
	}
	if c.hold < 3*time.Second || c.hold > 65535*time.Second || c.hold%time.Second != 0 {
		return fail("hold time %v must be whole seconds between 3s and 65535s", c.hold)
	}
	if c.keepalive == 0 {
		c.keepalive = (c.hold / 3).Truncate(time.Second)
	}
	if c.keepalive < time.Second || c.keepalive >= c.hold || c.keepalive%time.Second != 0 {
		return fail("keepalive time %v must be whole seconds, at least 1s and below the hold time %v", c.keepalive, c.hold)
	}
	if c.multihopTTL > 0 && c.ibgp() {
		return fail("eBGP multihop on an iBGP session")
	}
	if len(c.password) > 80 {
		return fail("TCP MD5 password longer than 80 bytes")
	}
	if c.gracefulRestart {
		if c.restartTime == 0 {
			c.restartTime = DefaultRestartTime
		}
		if c.restartTime < time.Second || c.restartTime > 4095*time.Second || c.restartTime%time.Second != 0 {
			return fail("restart time %v must be whole seconds between 1s and 4095s", c.restartTime)
		}
	} else {
		c.restartTime = 0
	}
	if len(p.Families) == 0 {
		c.families = families(familyOf(addr))
	}
	for _, f := range p.Families {
		if f != IPv4 && f != IPv6 {
			return fail("unknown family %v", f)
		}
		c.families |= families(f)
	}
	for _, nh := range []struct {
		f    Family
		addr *netip.Addr
	}{{IPv4, &c.nextHop4}, {IPv6, &c.nextHop6}} {
		*nh.addr = nh.addr.Unmap()
		switch {
		case nh.f == familyOf(addr) || !c.families.has(nh.f):
			*nh.addr = netip.Addr{} // unused: keep it out of the comparison
		case !nh.addr.IsValid():
			return fail("carries %s over an %s session and needs NextHop%s", nh.f, familyOf(addr), map[Family]string{IPv4: "IPv4", IPv6: "IPv6"}[nh.f])
		case familyOf(*nh.addr) != nh.f || nh.addr.IsUnspecified() || nh.addr.IsMulticast():
			return fail("next hop %s for %s is not a unicast %s address", *nh.addr, nh.f, nh.f)
		}
	}
	if b := p.BFD; b != nil {
		if c.multihopTTL > 0 {
			return fail("BFD is single-hop (RFC 5881) and cannot run on an eBGP multihop session")
		}
		c.bfd = bfdConf{on: true, minTx: b.MinTx, minRx: b.MinRx, multiplier: b.Multiplier}
		for _, d := range []time.Duration{b.MinTx, b.MinRx} {
			if d != 0 && (d < time.Millisecond || d > time.Hour) {
				return fail("BFD interval %v outside 1ms..1h", d)
			}
		}
	}
	return c, nil
}

func normalisePath(peers map[netip.Addr]peerConf, p Path) (netip.Prefix, route, error) {
	fail := func(format string, args ...any) (netip.Prefix, route, error) {
		return netip.Prefix{}, route{}, fmt.Errorf("path %s: %s", p.Prefix, fmt.Sprintf(format, args...))
	}
	if !p.Prefix.IsValid() || p.Prefix.Addr().Zone() != "" || p.Prefix.Addr().Is4In6() {
		return fail("invalid prefix")
	}
	if p.Prefix.Masked() != p.Prefix {
		return fail("host bits set (want %s)", p.Prefix.Masked())
	}
	fam := familyOf(p.Prefix.Addr())
	r := route{localPref: p.LocalPref}
	r.communities = sortedUnique(slices.Clone(p.Communities), cmp.Compare[Community])
	r.large = sortedUnique(slices.Clone(p.LargeCommunities), LargeCommunity.compare)
	for _, lc := range r.large {
		if lc.GlobalAdmin == tagAdmin {
			return fail("large community %s: global administrator %d is reserved", lc, uint32(tagAdmin))
		}
	}
	if len(p.Peers) > 0 {
		r.peers = make([]netip.Addr, 0, len(p.Peers))
		for _, a := range p.Peers {
			a = a.Unmap()
			c, ok := peers[a]
			if !ok {
				return fail("peer %s is not in Desired.Peers", a)
			}
			if !c.families.has(fam) {
				return fail("peer %s does not carry %s", a, fam)
			}
			r.peers = append(r.peers, a)
		}
		r.peers = sortedUnique(r.peers, netip.Addr.Compare)
	}
	return p.Prefix, r, nil
}

// merge combines two paths for one prefix (e.g. VIPs of one aggregate): the
// union of communities and of peers, the higher LOCAL_PREF.
func merge(a, b route) route {
	out := route{
		communities: sortedUnique(append(slices.Clone(a.communities), b.communities...), cmp.Compare[Community]),
		large:       sortedUnique(append(slices.Clone(a.large), b.large...), LargeCommunity.compare),
		localPref:   max(a.localPref, b.localPref),
	}
	if a.peers != nil && b.peers != nil {
		out.peers = sortedUnique(append(slices.Clone(a.peers), b.peers...), netip.Addr.Compare)
	}
	return out
}

// sortedUnique sorts s in place and drops repeats; nil and empty give nil.
// Callers pass a slice they own.
func sortedUnique[T any](s []T, cmp func(a, b T) int) []T {
	if len(s) == 0 {
		return nil
	}
	slices.SortFunc(s, cmp)
	return slices.CompactFunc(s, func(a, b T) bool { return cmp(a, b) == 0 })
}
