package bgp

import (
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// This file translates the normalised state into GoBGP API messages.

// connectRetry is how long GoBGP waits between attempts to open a session
// (it waits 1-2x this); GoBGP's default of 120s leaves a router that
// restarted without us for minutes.
const connectRetry = 5 * time.Second

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func apiFamily(f Family) *api.Family {
	if f == IPv4 {
		return familyIPv4
	}
	return familyIPv6
}

// apiPeer is the GoBGP neighbor configuration of c.
func apiPeer(c peerConf) *api.Peer {
	p := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: c.addr.String(),
			PeerAsn:         c.asn,
			LocalAsn:        c.localASN,
			AuthPassword:    c.password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      uint64(connectRetry / time.Second),
			HoldTime:          uint64(c.hold / time.Second),
			KeepaliveInterval: uint64(c.keepalive / time.Second),
			// After a reset (BFD down) try again as soon as a fresh
			// session is allowed, not after GoBGP's 30s.
			IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{RemotePort: uint32(c.port)},
	}
	if c.source.IsValid() {
		p.Transport.LocalAddress = c.source.String()
	}
	if c.multihopTTL > 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(c.multihopTTL)}
	}
	if c.gracefulRestart {
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(c.restartTime / time.Second)}
	}
	for _, f := range []Family{IPv4, IPv6} {
		if !c.families.has(f) {
			continue
		}
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: apiFamily(f), Enabled: true}}
		if c.gracefulRestart {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		p.AfiSafis = append(p.AfiSafis, af)
	}
	return p
}

// Per-peer announcements. All paths live in GoBGP's one global RIB; which
// sessions get a path is decided by the global export policy (default
// reject) from tags the path carries: large communities tagAdmin:tagMagic:N,
// where N is 0 for "every peer" and a peer's id otherwise. Each peer has a
// policy that accepts, on that peer's session only, paths of its families
// carrying its own tag or the "every peer" tag, strips all tags and, for the
// family that is not the session's, sets the configured next hop. Because the
// tags are part of the path, changing who gets a prefix is a new version of
// the path: GoBGP evaluates the old version against the same policy, so a
// peer that loses the prefix gets a withdrawal and the others an unchanged
// announcement.

// tagMagic is the Local Data Part 1 of the tags ("ilb" in ASCII).
const tagMagic = 0x696c62

// tagAll is the tag id meaning "every peer that carries the family".
const tagAll = 0

func tagRegexp(id uint32) string { return fmt.Sprintf("^%d:%d:%d$", uint32(tagAdmin), tagMagic, id) }

func policyName(id uint32) string { return fmt.Sprintf("ironlb-peer-%d", id) }

// peerPolicy returns the defined sets and the export policy of a peer.
func peerPolicy(id uint32, c peerConf) ([]*api.DefinedSet, *api.Policy) {
	name := policyName(id)
	bits := 32
	if c.addr.Is6() {
		bits = 128
	}
	sets := []*api.DefinedSet{
		{DefinedType: api.DefinedType_NEIGHBOR, Name: name, List: []string{netip.PrefixFrom(c.addr, bits).String()}},
		{DefinedType: api.DefinedType_LARGE_COMMUNITY, Name: name, List: []string{tagRegexp(id), tagRegexp(tagAll)}},
	}
	pol := &api.Policy{Name: name}
	for _, f := range []Family{IPv4, IPv6} {
		if !c.families.has(f) {
			continue
		}
		st := &api.Statement{
			Name: fmt.Sprintf("%s-%s", name, f),
			Conditions: &api.Conditions{
				NeighborSet:       &api.MatchSet{Type: api.MatchSet_ANY, Name: name},
				LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: name},
				AfiSafiIn:         []*api.Family{apiFamily(f)},
			},
			Actions: &api.Actions{
				RouteAction:    api.RouteAction_ACCEPT,
				LargeCommunity: &api.CommunityAction{Type: api.CommunityAction_REMOVE, Communities: []string{fmt.Sprintf("^%d:%d:", uint32(tagAdmin), tagMagic)}},
			},
		}
		if nh := c.nextHop(f); nh.IsValid() {
			st.Actions.Nexthop = &api.NexthopAction{Address: nh.String()}
		}
		pol.Statements = append(pol.Statements, st)
	}
	return sets, pol
}

// nextHop is the next hop configured for family f, zero when the session's
// local address is used.
func (c peerConf) nextHop(f Family) netip.Addr {
	if f == IPv4 {
		return c.nextHop4
	}
	return c.nextHop6
}

// apiPath builds the GoBGP path for prefix with r's attributes and the tags
// of tagIDs. The next hop is unspecified: GoBGP puts in the session's local
// address (or the peer policy a configured one). With withdraw, only what
// identifies the path is set.
func apiPath(prefix netip.Prefix, r route, tagIDs []uint32, withdraw bool) (*api.Path, error) {
	var nlri bgp.AddrPrefixInterface
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if prefix.Addr().Is4() {
		nlri = bgp.NewIPAddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeNextHop("0.0.0.0"))
	} else {
		nlri = bgp.NewIPv6AddrPrefix(uint8(prefix.Bits()), prefix.Addr().String())
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI("::", []bgp.AddrPrefixInterface{nlri}))
	}
	if !withdraw {
		if len(r.communities) > 0 {
			cs := make([]uint32, len(r.communities))
			for i, c := range r.communities {
				cs[i] = uint32(c)
			}
			attrs = append(attrs, bgp.NewPathAttributeCommunities(cs))
		}
		lcs := make([]*bgp.LargeCommunity, 0, len(r.large)+len(tagIDs))
		for _, c := range r.large {
			lcs = append(lcs, bgp.NewLargeCommunity(c.GlobalAdmin, c.LocalData1, c.LocalData2))
		}
		for _, id := range tagIDs {
			lcs = append(lcs, bgp.NewLargeCommunity(tagAdmin, tagMagic, id))
		}
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(lcs))
		if r.localPref != 0 {
			attrs = append(attrs, bgp.NewPathAttributeLocalPref(r.localPref))
		}
	}
	p, err := apiutil.NewPath(nlri, withdraw, attrs, time.Now())
	if err != nil {
		return nil, fmt.Errorf("bgp: path %s: %w", prefix, err)
	}
	return p, nil
}

// sessionState is GoBGP's FSM state as a SessionState.
func sessionState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_CONNECT:
		return StateConnect
	case api.PeerState_ACTIVE:
		return StateActive
	case api.PeerState_OPENSENT:
		return StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return StateEstablished
	}
	return StateIdle
}
