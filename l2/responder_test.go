package l2

import (
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// lanTable answers for vip4 and vip6 on eth0 and for 198.51.100.200 on eth1.
func lanTable() *table {
	owned := []Announcement{{VIP: vip4}, {VIP: vip6}, {VIP: ma("198.51.100.200")}}
	return buildTable(node, place(node, owned))
}

func TestAnswerARP(t *testing.T) {
	tbl := lanTable()
	unicastToOther := arpFrame(macClient, arp.OperationRequest, hwAddr{2, 0, 0, 0, 0, 0x55}, client4, hwAddr{}, vip4)
	copy(unicastToOther[0:6], []byte{2, 0, 0, 0, 0, 0x42}) // captured in promiscuous mode
	unicastToUs := arpRequest(macClient, client4, vip4)
	copy(unicastToUs[0:6], macEth0[:]) // a reachability probe sent to our MAC

	tests := []struct {
		name     string
		link     int
		frame    []byte
		answer   bool
		conflict bool
	}{
		{"request for an owned VIP on its link", eth0.index, arpRequest(macClient, client4, vip4), true, false},
		{"unicast probe for an owned VIP", eth0.index, unicastToUs, true, false},
		{"RFC 5227 probe from 0.0.0.0", eth0.index, arpRequest(macClient, ma("0.0.0.0"), vip4), true, false},
		{"request for an owned VIP on another link", eth1.index, arpRequest(macClient, client4, vip4), false, false},
		{"request for an owned VIP on a link that answers nothing", bond0.index, arpRequest(macClient, client4, vip4), false, false},
		{"request for an address not owned", eth0.index, arpRequest(macClient, client4, vip4b), false, false},
		{"request for a node address (the kernel answers)", eth0.index, arpRequest(macClient, client4, ma("192.0.2.11")), false, false},
		{"request for an owned VIP sent to another host", eth0.index, unicastToOther, false, false},
		{"request sent by this node's own MAC", eth0.index, arpRequest(macEth1, ma("192.0.2.12"), vip4), false, false},
		{"gratuitous request by another MAC", eth0.index, arpRequest(macOther, vip4, vip4), false, true},
		{"gratuitous reply by another MAC", eth0.index, arpFrame(broadcastMAC, arp.OperationReply, macOther, vip4, macOther, vip4), false, true},
		{"reply by another MAC to a client", eth0.index, arpFrame(macClient, arp.OperationReply, macOther, vip4, macClient, client4), false, true},
		{"request from the VIP by another MAC", eth0.index, arpRequest(macOther, vip4, client4), false, true},
		{"gratuitous request by this node on another link of the LAN", eth0.index, arpRequest(macEth1, vip4, vip4), false, false},
		{"claim of a VIP owned on another link only", eth0.index, arpRequest(macOther, ma("198.51.100.200"), ma("198.51.100.200")), false, false},
		{"IPv6 frame on the ARP socket", eth0.index, solicitation(macClient, client6, netip.Addr{}, vip6, true), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tbl.answerARP(tt.link, tt.frame)
			if (r.reply != nil) != tt.answer {
				t.Fatalf("answered = %v, want %v", r.reply != nil, tt.answer)
			}
			if (r.conflict != nil) != tt.conflict {
				t.Fatalf("conflict = %+v, want %v", r.conflict, tt.conflict)
			}
			if r.conflict != nil && (r.conflict.vip != vip4 || r.conflict.theirs != macOther || r.conflict.ours != macEth0 || r.conflict.link != eth0.index) {
				t.Errorf("conflict = %+v, want %s claimed by %s against %s on link %d", r.conflict, vip4, macOther, macEth0, eth0.index)
			}
			if !tt.answer {
				return
			}
			req := mustARP(tt.frame)
			rep := mustARP(r.reply)
			// What the client needs: a reply for the VIP, at eth0's MAC,
			// sent to the client itself.
			if rep.op != arp.OperationReply || rep.spa != req.tpa || rep.sha != macEth0 {
				t.Errorf("reply says %s is at %s (op %v), want %s at %s", rep.spa, rep.sha, rep.op, req.tpa, macEth0)
			}
			if rep.eth.dst != req.eth.src || rep.eth.src != macEth0 || rep.tha != req.sha || rep.tpa != req.spa {
				t.Errorf("reply goes to %s/%s (%s), want %s/%s (from %s)", rep.tha, rep.tpa, rep.eth.dst, req.sha, req.spa, macEth0)
			}
		})
	}
}

func TestAnswerNDP(t *testing.T) {
	tbl := lanTable()
	snm, _ := ndp.SolicitedNodeMulticast(vip6)
	wrongGroup, _ := ndp.SolicitedNodeMulticast(vip6b)
	hop254 := solicitation(macClient, client6, netip.Addr{}, vip6, true)
	hop254[ethHeaderLen+7] = 254
	badSum := solicitation(macClient, client6, netip.Addr{}, vip6, true)
	badSum[len(badSum)-1] ^= 0xff
	ownNA := advertisement(macEth1, vip6)
	naNoOption, _ := ndpFrame(multicastMAC(allNodes), macOther, ma("fe80::99"), allNodes,
		&ndp.NeighborAdvertisement{Override: true, TargetAddress: vip6})

	type want struct {
		answer   bool
		to       hwAddr     // Ethernet destination of the answer
		dst      netip.Addr // IPv6 destination of the answer
		solicit  bool
		conflict bool
		request  bool
	}
	tests := []struct {
		name  string
		link  int
		frame []byte
		want  want
	}{
		{"address resolution to the solicited-node group", eth0.index, solicitation(macClient, client6, netip.Addr{}, vip6, true),
			want{answer: true, to: macClient, dst: client6, solicit: true, request: true}},
		{"resolution from a link-local source", eth0.index, solicitation(macClient, clientLL6, netip.Addr{}, vip6, true),
			want{answer: true, to: macClient, dst: clientLL6, solicit: true, request: true}},
		{"unicast reachability probe without source option", eth0.index, solicitation(macClient, client6, vip6, vip6, false),
			want{answer: true, to: macClient, dst: client6, solicit: true, request: true}},
		{"duplicate address detection for an owned VIP", eth0.index, solicitation(macClient, ma("::"), snm, vip6, false),
			want{answer: true, to: multicastMAC(allNodes), dst: allNodes, solicit: false, request: true}},
		{"DAD with a source option is invalid", eth0.index, solicitation(macClient, ma("::"), snm, vip6, true), want{request: true}},
		{"solicitation to another group", eth0.index, solicitation(macClient, client6, wrongGroup, vip6, true), want{request: true}},
		{"solicitation for an address not owned", eth0.index, solicitation(macClient, client6, netip.Addr{}, vip6b, true), want{request: true}},
		{"solicitation on a link that does not answer for it", eth1.index, solicitation(macClient, client6, netip.Addr{}, vip6, true), want{request: true}},
		{"solicitation from this node's own MAC", eth0.index, solicitation(macEth1, ma("2001:db8::12"), netip.Addr{}, vip6, true), want{request: true}},
		{"solicitation sent from the VIP by another MAC", eth0.index, solicitation(macOther, vip6, netip.Addr{}, client6, true), want{request: true, conflict: true}},
		{"hop limit below 255 (forwarded: not NDP)", eth0.index, hop254, want{}},
		{"bad checksum", eth0.index, badSum, want{}},
		{"advertisement of an owned VIP by another MAC", eth0.index, advertisement(macOther, vip6), want{conflict: true}},
		{"advertisement without target option: the Ethernet source claims", eth0.index, naNoOption, want{conflict: true}},
		{"advertisement by this node on another link", eth0.index, ownNA, want{}},
		{"advertisement of an address not owned", eth0.index, advertisement(macOther, vip6b), want{}},
		{"ARP frame on the NDP socket", eth0.index, arpRequest(macClient, client4, vip4), want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tbl.answerNDP(tt.link, tt.frame)
			if r.request != tt.want.request {
				t.Errorf("counted as request = %v, want %v", r.request, tt.want.request)
			}
			if (r.conflict != nil) != tt.want.conflict {
				t.Fatalf("conflict = %+v, want %v", r.conflict, tt.want.conflict)
			}
			if r.conflict != nil && (r.conflict.vip != vip6 || r.conflict.theirs != macOther || r.conflict.ours != macEth0) {
				t.Errorf("conflict = %+v, want %s claimed by %s", r.conflict, vip6, macOther)
			}
			if (r.reply != nil) != tt.want.answer {
				t.Fatalf("answered = %v, want %v", r.reply != nil, tt.want.answer)
			}
			if !tt.want.answer {
				return
			}
			a := mustNA(r.reply)
			if a.target != vip6 || !a.hasTLLA || a.tlla != macEth0 || a.eth.src != macEth0 {
				t.Errorf("advertises %s at %s (from %s), want %s at %s", a.target, a.tlla, a.eth.src, vip6, macEth0)
			}
			if !a.override || a.router || a.solicited != tt.want.solicit {
				t.Errorf("flags O=%v R=%v S=%v, want O=true R=false S=%v", a.override, a.router, a.solicited, tt.want.solicit)
			}
			if a.eth.dst != tt.want.to || a.dst != tt.want.dst {
				t.Errorf("sent to %s/%s, want %s/%s", a.eth.dst, a.dst, tt.want.to, tt.want.dst)
			}
			if a.src != eth0.linkLocal {
				t.Errorf("source %s, want eth0's link-local %s", a.src, eth0.linkLocal)
			}
		})
	}
}

func TestAnswerNDPWithoutLinkLocal(t *testing.T) {
	bare := withLink(eth0, func(l *link) { l.linkLocal = netip.Addr{} })
	tbl := buildTable([]link{bare}, place([]link{bare}, []Announcement{{VIP: vip6}}))
	r := tbl.answerNDP(bare.index, solicitation(macClient, client6, netip.Addr{}, vip6, true))
	if r.reply == nil {
		t.Fatal("no answer")
	}
	if a := mustNA(r.reply); a.src != vip6 {
		t.Errorf("source %s, want the VIP itself when the link has no link-local address", a.src)
	}
}

func TestSolicitedGroups(t *testing.T) {
	tbl := buildTable(node, place(node, []Announcement{{VIP: vip4}, {VIP: vip6}, {VIP: vip6b}, {VIP: ma("2001:db8::1:0:0:200")}}))
	got := tbl.links[eth0.index].solicitedGroups()
	// vip6 and 2001:db8::1:0:0:200 share their low 24 bits, hence one group.
	want := []netip.Addr{ma("ff02::1:ff00:200"), ma("ff02::1:ff01:201")}
	if len(got) != len(want) {
		t.Fatalf("groups %v, want %v", got, want)
	}
	for _, g := range want {
		if !got[g] {
			t.Errorf("group %s not joined (have %v)", g, got)
		}
	}
}
