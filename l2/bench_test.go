package l2

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkAnswer is the per-frame cost of the responders: the work done for
// every ARP frame on an answering link and every NS/NA the filter passes.
func BenchmarkAnswer(b *testing.B) {
	tbl := lanTable()
	frames := []struct {
		name string
		arp  bool
		f    []byte
	}{
		{"ARP request for an owned VIP", true, arpRequest(macClient, client4, vip4)},
		{"ARP request for another address", true, arpRequest(macClient, client4, ma("192.0.2.77"))},
		{"NS for an owned VIP", false, solicitation(macClient, client6, netip.Addr{}, vip6, true)},
		{"NS for another address", false, solicitation(macClient, client6, netip.Addr{}, ma("2001:db8::77"), true)},
	}
	for _, fr := range frames {
		b.Run(fr.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if fr.arp {
					tbl.answerARP(eth0.index, fr.f)
				} else {
					tbl.answerNDP(eth0.index, fr.f)
				}
			}
		})
	}
}

// BenchmarkPlace is the cost of re-placing every owned VIP after a link
// change, for a node with many links (pod veths) and VIPs.
func BenchmarkPlace(b *testing.B) {
	for _, size := range []struct{ links, vips int }{{10, 100}, {200, 1000}} {
		b.Run(fmt.Sprintf("%d links %d VIPs", size.links, size.vips), func(b *testing.B) {
			links := []link{lo, eth0, eth1}
			for i := range size.links {
				links = append(links, link{index: 100 + i, name: fmt.Sprintf("veth%d", i), mac: hwAddr{2, 1, 0, 0, byte(i >> 8), byte(i)},
					up: true, running: true, prefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)}})
			}
			var owned []Announcement
			base := netip.MustParseAddr("192.0.2.0")
			for i := range size.vips {
				owned = append(owned, Announcement{VIP: base})
				if i%2 == 1 {
					owned[i].VIP = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
				}
				base = base.Next()
			}
			b.ReportAllocs()
			for b.Loop() {
				buildTable(links, place(links, owned))
			}
		})
	}
}
