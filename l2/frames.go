package l2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// Ethernet, IPv6 and ICMPv6 constants used to build and check frames.
const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd

	ethHeaderLen = 14
	// ethMinFrame is the shortest Ethernet frame without its FCS; shorter
	// frames are zero-padded as a NIC would.
	ethMinFrame = 60

	ipv6HeaderLen  = 40
	protoICMPv6    = 58
	ndpHopLimit    = 255
	icmpTypeNS     = 135
	icmpTypeNA     = 136
	arpHardwareEth = 1
)

var (
	broadcastMAC = hwAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodes     = netip.MustParseAddr("ff02::1")

	errShortFrame = errors.New("frame too short")
)

// isGroup reports whether h is a broadcast or multicast address (the I/G bit).
func (h hwAddr) isGroup() bool { return h[0]&1 == 1 }

// multicastMAC is the Ethernet group address an IPv6 multicast address maps
// to (RFC 2464, section 7).
func multicastMAC(ip netip.Addr) hwAddr {
	b := ip.As16()
	return hwAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// ethernetFrame builds an untagged Ethernet frame, padded to the minimum
// length.
func ethernetFrame(dst, src hwAddr, etherType uint16, payload []byte) []byte {
	b := make([]byte, max(ethHeaderLen+len(payload), ethMinFrame))
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:14], etherType)
	copy(b[ethHeaderLen:], payload)
	return b
}

// ethHeader is the part of an Ethernet header the responders look at.
type ethHeader struct {
	dst, src  hwAddr
	etherType uint16
}

// parseEthernet splits an untagged Ethernet frame of the given EtherType
// into its header and payload.
func parseEthernet(b []byte, etherType uint16) (ethHeader, []byte, error) {
	if len(b) < ethHeaderLen {
		return ethHeader{}, nil, errShortFrame
	}
	var h ethHeader
	copy(h.dst[:], b[0:6])
	copy(h.src[:], b[6:12])
	h.etherType = binary.BigEndian.Uint16(b[12:14])
	if h.etherType != etherType {
		return ethHeader{}, nil, fmt.Errorf("EtherType %#04x, want %#04x", h.etherType, etherType)
	}
	return h, b[ethHeaderLen:], nil
}

// arpMessage is a parsed Ethernet/IPv4 ARP frame.
type arpMessage struct {
	eth      ethHeader
	op       arp.Operation
	sha, tha hwAddr
	spa, tpa netip.Addr
}

// parseARPFrame parses an Ethernet frame carrying an Ethernet/IPv4 ARP
// packet. Any other frame is an error.
func parseARPFrame(b []byte) (arpMessage, error) {
	eth, payload, err := parseEthernet(b, etherTypeARP)
	if err != nil {
		return arpMessage{}, err
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(payload); err != nil {
		return arpMessage{}, fmt.Errorf("ARP packet: %w", err)
	}
	if p.HardwareType != arpHardwareEth || p.ProtocolType != etherTypeIPv4 || p.HardwareAddrLength != 6 || p.IPLength != 4 {
		return arpMessage{}, fmt.Errorf("ARP packet is not Ethernet/IPv4 (hardware %d/%d, protocol %#04x/%d)",
			p.HardwareType, p.HardwareAddrLength, p.ProtocolType, p.IPLength)
	}
	m := arpMessage{eth: eth, op: p.Operation, spa: p.SenderIP, tpa: p.TargetIP}
	copy(m.sha[:], p.SenderHardwareAddr)
	copy(m.tha[:], p.TargetHardwareAddr)
	return m, nil
}

// arpFrame builds an Ethernet frame carrying one ARP packet.
func arpFrame(ethDst hwAddr, op arp.Operation, sha hwAddr, spa netip.Addr, tha hwAddr, tpa netip.Addr) []byte {
	p := arp.Packet{
		HardwareType:       arpHardwareEth,
		ProtocolType:       etherTypeIPv4,
		HardwareAddrLength: 6,
		IPLength:           4,
		Operation:          op,
		SenderHardwareAddr: sha[:],
		SenderIP:           spa,
		TargetHardwareAddr: tha[:],
		TargetIP:           tpa,
	}
	b, _ := p.MarshalBinary() // documented to never fail
	return ethernetFrame(ethDst, sha, etherTypeARP, b)
}

// gratuitousARP returns the two broadcast frames that announce vip at mac: a
// request and a reply with sender and target protocol address both vip. The
// reply's target hardware address is mac too: Linux only treats a reply as
// gratuitous (and overrides a fresh entry) when it equals the sender's.
func gratuitousARP(mac hwAddr, vip netip.Addr) (request, reply []byte) {
	request = arpFrame(broadcastMAC, arp.OperationRequest, mac, vip, hwAddr{}, vip)
	reply = arpFrame(broadcastMAC, arp.OperationReply, mac, vip, mac, vip)
	return request, reply
}

// ndpMessage is a parsed Ethernet/IPv6 frame carrying a Neighbor Solicitation
// or Neighbor Advertisement.
type ndpMessage struct {
	eth      ethHeader
	src, dst netip.Addr
	msg      ndp.Message
}

// parseNDPFrame parses an Ethernet frame carrying an IPv6 packet whose
// payload is an ICMPv6 Neighbor Solicitation or Advertisement, with the
// checks of RFC 4861 section 7.1 that do not need state: hop limit 255, a
// correct ICMPv6 checksum, code 0. IPv6 extension headers are not followed
// (NDP messages carry none in practice); such packets are refused.
func parseNDPFrame(b []byte) (ndpMessage, error) {
	eth, payload, err := parseEthernet(b, etherTypeIPv6)
	if err != nil {
		return ndpMessage{}, err
	}
	if len(payload) < ipv6HeaderLen {
		return ndpMessage{}, fmt.Errorf("IPv6 header: %w", errShortFrame)
	}
	if v := payload[0] >> 4; v != 6 {
		return ndpMessage{}, fmt.Errorf("IP version %d in an IPv6 frame", v)
	}
	plen := int(binary.BigEndian.Uint16(payload[4:6]))
	if next := payload[6]; next != protoICMPv6 {
		return ndpMessage{}, fmt.Errorf("IPv6 next header %d is not ICMPv6", next)
	}
	if hl := payload[7]; hl != ndpHopLimit {
		return ndpMessage{}, fmt.Errorf("hop limit %d, NDP requires %d", hl, ndpHopLimit)
	}
	// Frames may carry Ethernet padding after the IPv6 payload; a payload
	// length beyond the frame is a truncated packet.
	if plen > len(payload)-ipv6HeaderLen {
		return ndpMessage{}, fmt.Errorf("IPv6 payload length %d exceeds the frame (%d): %w", plen, len(payload)-ipv6HeaderLen, errShortFrame)
	}
	src := netip.AddrFrom16([16]byte(payload[8:24]))
	dst := netip.AddrFrom16([16]byte(payload[24:40]))
	icmp := payload[ipv6HeaderLen : ipv6HeaderLen+plen]
	if len(icmp) < 4 {
		return ndpMessage{}, fmt.Errorf("ICMPv6 header: %w", errShortFrame)
	}
	if t := icmp[0]; t != icmpTypeNS && t != icmpTypeNA {
		return ndpMessage{}, fmt.Errorf("ICMPv6 type %d is not a Neighbor Solicitation or Advertisement", t)
	}
	if code := icmp[1]; code != 0 {
		return ndpMessage{}, fmt.Errorf("ICMPv6 code %d, NDP requires 0", code)
	}
	if icmpv6Checksum(src, dst, icmp) != 0 {
		return ndpMessage{}, errors.New("bad ICMPv6 checksum")
	}
	msg, err := ndp.ParseMessage(icmp)
	if err != nil {
		return ndpMessage{}, err
	}
	return ndpMessage{eth: eth, src: src, dst: dst, msg: msg}, nil
}

// ndpFrame builds an Ethernet frame carrying m in an IPv6 packet with hop
// limit 255 and a correct ICMPv6 checksum.
func ndpFrame(ethDst, ethSrc hwAddr, src, dst netip.Addr, m ndp.Message) ([]byte, error) {
	icmp, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		return nil, err
	}
	pkt := make([]byte, ipv6HeaderLen+len(icmp))
	pkt[0] = 6 << 4
	binary.BigEndian.PutUint16(pkt[4:6], uint16(len(icmp)))
	pkt[6] = protoICMPv6
	pkt[7] = ndpHopLimit
	s, d := src.As16(), dst.As16()
	copy(pkt[8:24], s[:])
	copy(pkt[24:40], d[:])
	copy(pkt[ipv6HeaderLen:], icmp)
	return ethernetFrame(ethDst, ethSrc, etherTypeIPv6, pkt), nil
}

// neighborAdvertisement builds the frame that tells ethDst/dst that target is
// at mac, with the Override flag so the receiver replaces what it cached.
func neighborAdvertisement(ethDst, mac hwAddr, src, dst, target netip.Addr, solicited bool) ([]byte, error) {
	na := &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: target,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      mac[:],
		}},
	}
	return ndpFrame(ethDst, mac, src, dst, na)
}

// unsolicitedNA is the gratuitous IPv6 announcement of vip at mac: an
// unsolicited Neighbor Advertisement with the Override flag to all nodes.
func unsolicitedNA(mac hwAddr, src, vip netip.Addr) ([]byte, error) {
	return neighborAdvertisement(multicastMAC(allNodes), mac, src, allNodes, vip, false)
}

// icmpv6Checksum returns the one's complement sum over the IPv6 pseudo-header
// and msg, complemented: 0 for a message whose checksum field is correct.
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	var lenNext [8]byte
	binary.BigEndian.PutUint32(lenNext[0:4], uint32(len(msg)))
	lenNext[7] = protoICMPv6
	add(lenNext[:])
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// linkLayerOption returns the first link-layer address option of direction
// d in opts.
func linkLayerOption(opts []ndp.Option, d ndp.Direction) (hwAddr, bool) {
	for _, o := range opts {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == d {
			return hwAddrFrom(lla.Addr)
		}
	}
	return hwAddr{}, false
}
