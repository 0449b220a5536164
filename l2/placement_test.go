package l2

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestPlace(t *testing.T) {
	bridge := link{index: 10, name: "br0", mac: hwAddr{2, 0, 0, 0, 0, 0xbb}, up: true, running: true,
		prefixes: []netip.Prefix{mp("192.0.2.1/24")}}
	port := link{index: 11, name: "veth0", mac: hwAddr{2, 0, 0, 0, 0, 0xbc}, up: true, running: true, masterKind: "bridge",
		prefixes: []netip.Prefix{mp("192.0.2.2/24")}}
	vrfMember := link{index: 12, name: "eth5", mac: hwAddr{2, 0, 0, 0, 0, 0x15}, up: true, running: true, masterKind: "vrf"}
	wide := withLink(eth1, func(l *link) { l.prefixes = []netip.Prefix{mp("192.0.0.0/16")} })
	twin := withLink(eth1, func(l *link) { l.name = "eth9"; l.index = 9; l.prefixes = eth0.prefixes })
	adminDown := withLink(eth1, func(l *link) { l.up = false })
	noMAC := withLink(eth1, func(l *link) { l.mac = hwAddr{} })

	tests := []struct {
		name  string
		links []link
		ann   Announcement
		want  []int  // link indexes that answer
		why   string // when want is empty: a word the reason must contain
	}{
		{"auto IPv4: the link whose subnet holds the VIP", node, Announcement{VIP: vip4}, []int{eth0.index}, ""},
		{"auto IPv6: the link whose subnet holds the VIP", node, Announcement{VIP: vip6}, []int{eth0.index}, ""},
		{"auto: a /32 holding the VIP itself is not a subnet", []link{ipvs}, Announcement{VIP: vip4}, nil, "no interface"},
		{"auto: the most specific subnet wins", []link{wide, eth0}, Announcement{VIP: vip4}, []int{eth0.index}, ""},
		{"auto: one link only, the smaller name on a tie", []link{twin, eth0}, Announcement{VIP: vip4}, []int{eth0.index}, ""},
		{"auto: outside every subnet", node, Announcement{VIP: ma("203.0.114.9")}, nil, "no interface"},
		{"auto: the subnet is only on a down link", node, Announcement{VIP: ma("198.18.0.200")}, nil, "down0"},
		{"auto: the bridge answers, not its port", []link{port, bridge}, Announcement{VIP: vip4}, []int{bridge.index}, ""},
		{"auto: the bond answers", node, Announcement{VIP: ma("203.0.113.200")}, []int{bond0.index}, ""},
		{"auto: a link-local prefix never holds a VIP", []link{withLink(eth0, func(l *link) { l.prefixes = []netip.Prefix{mp("fe80::10/10")} })},
			Announcement{VIP: vip6}, nil, "no interface"},
		{"named: answered there even outside its subnets", node, Announcement{VIP: vip4, Interfaces: []string{"eth1"}}, []int{eth1.index}, ""},
		{"named: several links", node, Announcement{VIP: vip4, Interfaces: []string{"eth1", "eth0"}}, []int{eth0.index, eth1.index}, ""},
		{"named: a bond member never answers", node, Announcement{VIP: vip4, Interfaces: []string{"eth2"}}, nil, "eth2"},
		{"named: a bridge port never answers", []link{port, bridge}, Announcement{VIP: vip4, Interfaces: []string{"veth0"}}, nil, "bridge"},
		{"named: a VRF member answers", []link{vrfMember}, Announcement{VIP: vip4, Interfaces: []string{"eth5"}}, []int{vrfMember.index}, ""},
		{"named: a link without carrier never answers", node, Announcement{VIP: vip4, Interfaces: []string{"down0"}}, nil, "down0"},
		{"named: an administratively down link never answers", []link{adminDown}, Announcement{VIP: vip4, Interfaces: []string{"eth1"}}, nil, "down"},
		{"named: loopback never answers", node, Announcement{VIP: vip4, Interfaces: []string{"lo"}}, nil, "loopback"},
		{"named: a NOARP link never answers", node, Announcement{VIP: vip4, Interfaces: []string{"kube-ipvs0"}}, nil, "NOARP"},
		{"named: a link without Ethernet address never answers", []link{noMAC}, Announcement{VIP: vip4, Interfaces: []string{"eth1"}}, nil, "Ethernet"},
		{"named: a missing link", node, Announcement{VIP: vip4, Interfaces: []string{"eth7"}}, nil, "eth7"},
		{"named: the usable ones of a mixed list", node, Announcement{VIP: vip4, Interfaces: []string{"eth2", "down0", "lo", "eth0", "eth7"}}, []int{eth0.index}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := place(tt.links, []Announcement{tt.ann})[tt.ann.VIP]
			if !slices.Equal(got.links, tt.want) {
				t.Fatalf("answering links = %v, want %v (reason %q)", got.links, tt.want, got.reason)
			}
			if len(tt.want) == 0 && !strings.Contains(got.reason, tt.why) {
				t.Errorf("reason %q does not name %q", got.reason, tt.why)
			}
			if len(tt.want) > 0 && got.reason != "" {
				t.Errorf("answered, yet reason %q", got.reason)
			}
		})
	}
}

func TestPlaceKeepsVIPsApart(t *testing.T) {
	got := place(node, []Announcement{{VIP: vip4}, {VIP: ma("198.51.100.200")}, {VIP: vip6, Interfaces: []string{"eth1"}}})
	want := map[netip.Addr][]int{vip4: {eth0.index}, ma("198.51.100.200"): {eth1.index}, vip6: {eth1.index}}
	for vip, links := range want {
		if !slices.Equal(got[vip].links, links) {
			t.Errorf("%s answered on %v, want %v", vip, got[vip].links, links)
		}
	}
}

func TestNormalise(t *testing.T) {
	got, err := normalise([]Announcement{
		{VIP: vip6},
		{VIP: netip.AddrFrom16(vip4.As16()), Interfaces: []string{"eth1", "eth0", "eth1"}}, // 4-in-6 form
		{VIP: vip4, Interfaces: []string{"eth0", "eth1"}},                                  // same again
		{VIP: vip4, Interfaces: []string{"eth2"}},                                          // contradicts
		{},
		{VIP: ma("224.0.0.5")},
		{VIP: ma("fe80::1")},
		{VIP: ma("2001:db8::1%eth0")},
		{VIP: vip4b, Interfaces: []string{""}},
	})
	want := []Announcement{{VIP: vip4, Interfaces: []string{"eth0", "eth1"}}, {VIP: vip6}}
	if len(got) != len(want) {
		t.Fatalf("normalise kept %v, want %v", got, want)
	}
	for i := range want {
		if got[i].VIP != want[i].VIP || !slices.Equal(got[i].Interfaces, want[i].Interfaces) {
			t.Errorf("entry %d = %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"192.0.2.200 listed twice", "zero", "224.0.0.5", "fe80::1", "zone", "empty interface"} {
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("error %v does not report %q", err, bad)
		}
	}
}
