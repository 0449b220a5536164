package l2

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// Seeds: the frames below, plus testdata/fuzz/<target>.

func arpSeeds() [][]byte {
	req, rep := gratuitousARP(macOther, vip4)
	return [][]byte{arpRequest(macClient, client4, vip4), req, rep, arpRequest(macClient, ma("0.0.0.0"), vip4)}
}

func ndpSeeds() [][]byte {
	snm, _ := ndp.SolicitedNodeMulticast(vip6)
	return [][]byte{
		{},
		solicitation(macClient, client6, snm, vip6, true),
		solicitation(macClient, ma("::"), snm, vip6, false),
		solicitation(macClient, client6, vip6, vip6, false),
		advertisement(macOther, vip6),
	}
}

func FuzzParseARPFrame(f *testing.F) {
	for _, s := range arpSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseARPFrame(b)
		if err != nil {
			return
		}
		// What was accepted survives a rebuild unchanged.
		again, err := parseARPFrame(arpFrame(m.eth.dst, m.op, m.sha, m.spa, m.tha, m.tpa))
		if err != nil {
			t.Fatalf("rebuilt frame refused: %v", err)
		}
		again.eth.src = m.eth.src
		if again != m {
			t.Fatalf("rebuilt %+v, parsed %+v", again, m)
		}
		if !m.spa.Is4() || !m.tpa.Is4() {
			t.Fatalf("accepted non-IPv4 addresses %s, %s", m.spa, m.tpa)
		}
	})
}

func FuzzParseNDPFrame(f *testing.F) {
	for _, s := range ndpSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseNDPFrame(b)
		if err != nil {
			return
		}
		ip := b[ethHeaderLen:]
		if ip[7] != ndpHopLimit {
			t.Fatalf("accepted hop limit %d", ip[7])
		}
		if !bytes.Equal(m.src.AsSlice(), ip[8:24]) || !bytes.Equal(m.dst.AsSlice(), ip[24:40]) {
			t.Fatalf("addresses %s -> %s do not match the header", m.src, m.dst)
		}
		switch m.msg.(type) {
		case *ndp.NeighborSolicitation, *ndp.NeighborAdvertisement:
		default:
			t.Fatalf("accepted a %T", m.msg)
		}
	})
}

// FuzzAnswer feeds arbitrary frames to both responders: they never panic,
// and whatever they send is a well-formed answer for an owned VIP from the
// receiving link's MAC.
func FuzzAnswer(f *testing.F) {
	for _, s := range append(arpSeeds(), ndpSeeds()...) {
		f.Add(s)
	}
	tbl := lanTable()
	owned := tbl.links[eth0.index].vips
	f.Fuzz(func(t *testing.T, b []byte) {
		if r := tbl.answerARP(eth0.index, b); r.reply != nil {
			m, err := parseARPFrame(r.reply)
			if err != nil {
				t.Fatalf("ARP answer does not parse: %v", err)
			}
			if m.op != arp.OperationReply || m.sha != macEth0 || !owned[m.spa] {
				t.Fatalf("ARP answer %+v", m)
			}
		}
		// Random bytes rarely carry a correct checksum; fixing it lets the
		// fuzzer reach the NDP decisions behind the check.
		for _, frame := range [][]byte{b, withICMPv6Checksum(b)} {
			if r := tbl.answerNDP(eth0.index, frame); r.reply != nil {
				m, err := parseNDPFrame(r.reply)
				if err != nil {
					t.Fatalf("NDP answer does not parse: %v", err)
				}
				a, ok := m.msg.(*ndp.NeighborAdvertisement)
				if !ok || m.eth.src != macEth0 || !owned[a.TargetAddress] || !a.Override {
					t.Fatalf("NDP answer %+v", m)
				}
			}
		}
	})
}

// withICMPv6Checksum returns a copy of b with the ICMPv6 checksum set, when b
// is long enough to hold one.
func withICMPv6Checksum(b []byte) []byte {
	b = bytes.Clone(b)
	const icmpOff = ethHeaderLen + ipv6HeaderLen
	if len(b) < icmpOff+4 {
		return b
	}
	plen := int(binary.BigEndian.Uint16(b[ethHeaderLen+4:]))
	if plen < 4 || icmpOff+plen > len(b) {
		return b
	}
	src := netip.AddrFrom16([16]byte(b[ethHeaderLen+8:]))
	dst := netip.AddrFrom16([16]byte(b[ethHeaderLen+24:]))
	msg := b[icmpOff : icmpOff+plen]
	msg[2], msg[3] = 0, 0
	binary.BigEndian.PutUint16(msg[2:], icmpv6Checksum(src, dst, msg))
	return b
}
