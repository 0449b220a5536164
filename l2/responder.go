package l2

import (
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// table is what the responders answer from: for every link that answers for
// at least one VIP, the link and its VIPs. It is immutable once built;
// the announcer swaps in a new one on every change.
type table struct {
	links map[int]*answeringLink
	// ours holds the MACs of every local link, so announcements sent by
	// this node on another link of the same LAN are not taken for a
	// conflict.
	ours map[hwAddr]bool
}

type answeringLink struct {
	link link
	vips map[netip.Addr]bool
}

// buildTable turns placements into a table. links must contain every link
// the placements refer to.
func buildTable(links []link, placements map[netip.Addr]placement) *table {
	t := &table{links: map[int]*answeringLink{}, ours: map[hwAddr]bool{}}
	byIndex := make(map[int]link, len(links))
	for _, l := range links {
		byIndex[l.index] = l
		if l.mac != (hwAddr{}) {
			t.ours[l.mac] = true
		}
	}
	for vip, p := range placements {
		for _, idx := range p.links {
			al := t.links[idx]
			if al == nil {
				al = &answeringLink{link: byIndex[idx], vips: map[netip.Addr]bool{}}
				t.links[idx] = al
			}
			al.vips[vip] = true
		}
	}
	return t
}

// response is what the responders decided about one received frame.
type response struct {
	// request is set when the frame asked for an address (ARP request or
	// Neighbor Solicitation), whoever it was for.
	request bool
	// reply is the frame to send back on the same link, nil for none.
	reply []byte
	// conflict is set when the frame shows another MAC claiming a VIP
	// this link answers for.
	conflict *sighting
}

// sighting is one frame in which another MAC claims an owned VIP.
type sighting struct {
	vip    netip.Addr
	link   int
	theirs hwAddr
	ours   hwAddr
	packet string
}

// addressedToUs reports whether a frame with Ethernet destination dst was
// sent to this link rather than captured in promiscuous mode (bridge ports,
// tcpdump): only those get an answer.
func (al *answeringLink) addressedToUs(dst hwAddr) bool {
	return dst == al.link.mac || dst.isGroup()
}

// answerARP decides what to do with an ARP frame received on link ifindex.
// It answers requests (including RFC 5227 probes from 0.0.0.0) for the
// link's VIPs with a unicast reply from the link's MAC, and reports any ARP
// packet from a foreign MAC whose sender address is one of them.
func (t *table) answerARP(ifindex int, frame []byte) response {
	m, err := parseARPFrame(frame)
	if err != nil {
		return response{}
	}
	var r response
	r.request = m.op == arp.OperationRequest
	al := t.links[ifindex]
	if al == nil {
		return r
	}
	mac := al.link.mac
	if al.vips[m.spa] && !t.ours[m.sha] {
		r.conflict = &sighting{vip: m.spa, link: ifindex, theirs: m.sha, ours: mac, packet: arpKind(m)}
	}
	// A request whose sender is its own target is an announcement (or a
	// defence) by its sender, not a question: reported above, not answered.
	if !r.request || !al.vips[m.tpa] || m.spa == m.tpa || t.ours[m.sha] || !al.addressedToUs(m.eth.dst) {
		return r
	}
	r.reply = arpFrame(m.eth.src, arp.OperationReply, mac, m.tpa, m.sha, m.spa)
	return r
}

func arpKind(m arpMessage) string {
	switch {
	case m.spa == m.tpa:
		return "gratuitous ARP"
	case m.op == arp.OperationReply:
		return "ARP reply"
	default:
		return "ARP request"
	}
}

// answerNDP decides what to do with an IPv6 NDP frame received on link
// ifindex. It answers Neighbor Solicitations for the link's VIPs — address
// resolution to the solicited-node group, unicast reachability probes, and
// duplicate address detection from :: (answered to all nodes, which defends
// the VIP) — with a Neighbor Advertisement carrying the link's MAC and the
// Override flag. It reports Neighbor Advertisements for the link's VIPs from
// a foreign MAC, and solicitations sent from one of the VIPs by a foreign MAC.
func (t *table) answerNDP(ifindex int, frame []byte) response {
	m, err := parseNDPFrame(frame)
	if err != nil {
		return response{}
	}
	al := t.links[ifindex]
	switch msg := m.msg.(type) {
	case *ndp.NeighborSolicitation:
		r := response{request: true}
		if al != nil {
			r.conflict, r.reply = al.solicitation(t, m, msg)
		}
		return r
	case *ndp.NeighborAdvertisement:
		if al == nil || !al.vips[msg.TargetAddress] {
			return response{}
		}
		theirs, ok := linkLayerOption(msg.Options, ndp.Target)
		if !ok {
			theirs = m.eth.src
		}
		if t.ours[theirs] {
			return response{}
		}
		return response{conflict: &sighting{vip: msg.TargetAddress, link: ifindex, theirs: theirs, ours: al.link.mac, packet: "Neighbor Advertisement"}}
	}
	return response{}
}

func (al *answeringLink) solicitation(t *table, m ndpMessage, ns *ndp.NeighborSolicitation) (*sighting, []byte) {
	var conflict *sighting
	if al.vips[m.src] && !t.ours[m.eth.src] {
		conflict = &sighting{vip: m.src, link: al.link.index, theirs: m.eth.src, ours: al.link.mac, packet: "Neighbor Solicitation"}
	}
	target := ns.TargetAddress
	if !al.vips[target] || t.ours[m.eth.src] || !al.addressedToUs(m.eth.dst) {
		return conflict, nil
	}
	sllao, hasSLLAO := linkLayerOption(ns.Options, ndp.Source)
	snm, _ := ndp.SolicitedNodeMulticast(target) // target is a VIP: valid IPv6
	switch {
	case m.src.IsUnspecified():
		// Duplicate address detection (RFC 4861 7.1.1: only to the
		// solicited-node group, without a source link-layer option).
		if m.dst != snm || hasSLLAO {
			return conflict, nil
		}
		reply, err := neighborAdvertisement(multicastMAC(allNodes), al.link.mac, al.source(target), allNodes, target, false)
		if err != nil {
			return conflict, nil
		}
		return conflict, reply
	case m.dst.IsMulticast() && m.dst != snm:
		return conflict, nil
	}
	ethDst := m.eth.src
	if hasSLLAO {
		ethDst = sllao
	}
	reply, err := neighborAdvertisement(ethDst, al.link.mac, al.source(target), m.src, target, true)
	if err != nil {
		return conflict, nil
	}
	return conflict, reply
}

// source is the IPv6 source of advertisements for vip: the link-local
// address of the link (RFC 4861 requires an address of the sending
// interface), or vip itself when the link has none.
func (al *answeringLink) source(vip netip.Addr) netip.Addr {
	if al.link.linkLocal.IsValid() {
		return al.link.linkLocal
	}
	return vip
}

// solicitedGroups returns the solicited-node multicast groups of the IPv6
// VIPs a link answers for: the groups it must join so switches doing MLD
// snooping forward the solicitations, and the NIC accepts them.
func (al *answeringLink) solicitedGroups() map[netip.Addr]bool {
	g := map[netip.Addr]bool{}
	for vip := range al.vips {
		if vip.Is6() {
			snm, _ := ndp.SolicitedNodeMulticast(vip)
			g[snm] = true
		}
	}
	return g
}

// families reports whether the link answers for any IPv4 or IPv6 VIP.
func (al *answeringLink) families() (v4, v6 bool) {
	for vip := range al.vips {
		if vip.Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return v4, v6
}
