package l2

import (
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// A small node: eth0 on the LAN 192.0.2.0/24 and 2001:db8::/64, eth1 on
// 198.51.100.0/24, a bond (bond0, 203.0.113.0/24) over eth2, a down link,
// loopback and a kube-ipvs0-like dummy holding a VIP as /32.
var (
	macEth0   = hwAddr{0x02, 0, 0, 0, 0, 0x10}
	macEth1   = hwAddr{0x02, 0, 0, 0, 0, 0x11}
	macBond   = hwAddr{0x02, 0, 0, 0, 0, 0xb0}
	macEth2   = hwAddr{0x02, 0, 0, 0, 0, 0x12}
	macDown   = hwAddr{0x02, 0, 0, 0, 0, 0xdd}
	macClient = hwAddr{0x02, 0, 0, 0, 0, 0xc1}
	macOther  = hwAddr{0x02, 0, 0, 0, 0, 0x99} // another node claiming our VIP

	lo = link{index: 1, name: "lo", up: true, running: true, loopback: true,
		prefixes: []netip.Prefix{mp("127.0.0.1/8"), mp("::1/128")}}
	eth0 = link{index: 2, name: "eth0", mac: macEth0, up: true, running: true,
		prefixes:  []netip.Prefix{mp("192.0.2.11/24"), mp("2001:db8::11/64"), mp("fe80::10/64")},
		linkLocal: ma("fe80::10")}
	eth1 = link{index: 3, name: "eth1", mac: macEth1, up: true, running: true,
		prefixes: []netip.Prefix{mp("198.51.100.11/24")}}
	bond0 = link{index: 4, name: "bond0", mac: macBond, up: true, running: true,
		prefixes: []netip.Prefix{mp("203.0.113.11/24")}}
	eth2 = link{index: 5, name: "eth2", mac: macEth2, up: true, running: true, masterKind: "bond"}
	down = link{index: 6, name: "down0", mac: macDown, up: true, running: false,
		prefixes: []netip.Prefix{mp("198.18.0.11/24")}}
	ipvs = link{index: 7, name: "kube-ipvs0", mac: hwAddr{0x02, 0, 0, 0, 0, 0x77}, up: true, running: true, noARP: true,
		prefixes: []netip.Prefix{mp("192.0.2.200/32")}}

	node = []link{lo, eth0, eth1, bond0, eth2, down, ipvs}

	vip4      = ma("192.0.2.200")
	vip4b     = ma("192.0.2.201")
	vip6      = ma("2001:db8::200")
	vip6b     = ma("2001:db8::1:201") // another solicited-node group than vip6
	client4   = ma("192.0.2.100")
	client6   = ma("2001:db8::100")
	clientLL6 = ma("fe80::c1")
)

func mp(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ma(s string) netip.Addr   { return netip.MustParseAddr(s) }

func withLink(l link, f func(*link)) link {
	f(&l)
	return l
}

// arpRequest is what a client on the LAN broadcasts to resolve target.
func arpRequest(from hwAddr, fromIP, target netip.Addr) []byte {
	return arpFrame(broadcastMAC, arp.OperationRequest, from, fromIP, hwAddr{}, target)
}

// solicitation is a Neighbor Solicitation for target from src (:: for
// duplicate address detection) at mac, sent to dst (the solicited-node group
// of target unless given).
func solicitation(mac hwAddr, src, dst, target netip.Addr, withSLLAO bool) []byte {
	if !dst.IsValid() {
		dst, _ = ndp.SolicitedNodeMulticast(target)
	}
	ethDst := multicastMAC(dst)
	if !dst.IsMulticast() {
		ethDst = macEth0
	}
	ns := &ndp.NeighborSolicitation{TargetAddress: target}
	if withSLLAO {
		ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: mac[:]}}
	}
	f, err := ndpFrame(ethDst, mac, src, dst, ns)
	if err != nil {
		panic(err)
	}
	return f
}

// advertisement is an unsolicited Neighbor Advertisement of target at mac.
func advertisement(mac hwAddr, target netip.Addr) []byte {
	f, err := unsolicitedNA(mac, ma("fe80::99"), target)
	if err != nil {
		panic(err)
	}
	return f
}

// na is a parsed Neighbor Advertisement frame, for assertions.
type na struct {
	eth              ethHeader
	src, dst, target netip.Addr
	solicited        bool
	override         bool
	router           bool
	tlla             hwAddr
	hasTLLA          bool
}

func mustNA(frame []byte) na {
	m, err := parseNDPFrame(frame)
	if err != nil {
		panic("not an NDP frame: " + err.Error())
	}
	a, ok := m.msg.(*ndp.NeighborAdvertisement)
	if !ok {
		panic("not a Neighbor Advertisement")
	}
	tlla, has := linkLayerOption(a.Options, ndp.Target)
	return na{eth: m.eth, src: m.src, dst: m.dst, target: a.TargetAddress, solicited: a.Solicited,
		override: a.Override, router: a.Router, tlla: tlla, hasTLLA: has}
}

func mustARP(frame []byte) arpMessage {
	m, err := parseARPFrame(frame)
	if err != nil {
		panic("not an ARP frame: " + err.Error())
	}
	return m
}
