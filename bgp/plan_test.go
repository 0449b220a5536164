package bgp

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	a, b, c := router4, other4, netip.MustParseAddr("192.0.2.3")
	peer := func(addr netip.Addr, f func(*Peer)) Peer {
		p := Peer{Address: addr, ASN: 64512}
		if f != nil {
			f(&p)
		}
		return p
	}
	vip := func(s string, f func(*Path)) Path {
		p := Path{Prefix: pfx(s)}
		if f != nil {
			f(&p)
		}
		return p
	}
	base := Desired{
		Peers: []Peer{peer(a, nil), peer(b, func(p *Peer) { p.BFD = &BFD{} })},
		Paths: []Path{vip("203.0.113.1/32", nil), vip("203.0.113.2/32", func(p *Path) { p.Peers = []netip.Addr{a} })},
	}
	for _, tc := range []struct {
		name      string
		cur, want Desired
		plan      plan
	}{
		{name: "nothing to do", cur: base, want: base},
		{name: "from nothing", cur: Desired{}, want: base, plan: plan{
			addPeers: []netip.Addr{a, b}, announce: []netip.Prefix{pfx("203.0.113.1/32"), pfx("203.0.113.2/32")},
		}},
		{name: "to nothing", cur: base, want: Desired{}, plan: plan{
			removePeers: []netip.Addr{a, b}, withdraw: []netip.Prefix{pfx("203.0.113.1/32"), pfx("203.0.113.2/32")},
		}},
		{
			name: "peer added and removed, paths follow",
			cur:  base,
			want: Desired{
				Peers: []Peer{peer(a, nil), peer(c, nil)},
				Paths: []Path{vip("203.0.113.1/32", nil), vip("203.0.113.2/32", func(p *Path) { p.Peers = []netip.Addr{a, c} })},
			},
			// The path for every peer needs no change: the new peer's
			// policy accepts it. The path listing peers changed.
			plan: plan{addPeers: []netip.Addr{c}, removePeers: []netip.Addr{b}, announce: []netip.Prefix{pfx("203.0.113.2/32")}},
		},
		{
			name: "session settings restart, BFD settings do not",
			cur:  base,
			want: Desired{
				Peers: []Peer{peer(a, func(p *Peer) { p.HoldTime = 3 * time.Second }), peer(b, func(p *Peer) { p.BFD = &BFD{MinTx: 100 * time.Millisecond} })},
				Paths: base.Paths,
			},
			plan: plan{restartPeers: []netip.Addr{a}, bfdPeers: []netip.Addr{b}},
		},
		{
			name: "BFD switched off",
			cur:  base,
			want: Desired{Peers: []Peer{peer(a, nil), peer(b, nil)}, Paths: base.Paths},
			plan: plan{bfdPeers: []netip.Addr{b}},
		},
		{
			name: "password, ASN, source, families each restart",
			cur:  Desired{Peers: []Peer{peer(a, nil), peer(b, nil), peer(c, nil), peer(netip.MustParseAddr("192.0.2.4"), nil)}},
			want: Desired{Peers: []Peer{
				peer(a, func(p *Peer) { p.Password = "x" }),
				peer(b, func(p *Peer) { p.ASN = 64513 }),
				peer(c, func(p *Peer) { p.SourceAddress = netip.MustParseAddr("192.0.2.11") }),
				peer(netip.MustParseAddr("192.0.2.4"), func(p *Peer) {
					p.Families = []Family{IPv4, IPv6}
					p.NextHopIPv6 = netip.MustParseAddr("2001:db8::11")
				}),
			}},
			plan: plan{restartPeers: []netip.Addr{a, b, c, netip.MustParseAddr("192.0.2.4")}},
		},
		{
			name: "attributes change, order of communities does not",
			cur: Desired{Peers: base.Peers, Paths: []Path{
				vip("203.0.113.1/32", func(p *Path) { p.Communities = []Community{1, 2} }),
				vip("203.0.113.2/32", func(p *Path) { p.LocalPref = 100 }),
				vip("203.0.113.3/32", func(p *Path) { p.LargeCommunities = []LargeCommunity{{1, 2, 3}} }),
				vip("203.0.113.4/32", func(p *Path) { p.Peers = []netip.Addr{a} }),
			}},
			want: Desired{Peers: base.Peers, Paths: []Path{
				vip("203.0.113.1/32", func(p *Path) { p.Communities = []Community{2, 1, 2} }),
				vip("203.0.113.2/32", func(p *Path) { p.LocalPref = 200 }),
				vip("203.0.113.3/32", func(p *Path) { p.LargeCommunities = []LargeCommunity{{1, 2, 4}} }),
				vip("203.0.113.4/32", func(p *Path) { p.Peers = []netip.Addr{a, b} }),
			}},
			plan: plan{announce: []netip.Prefix{pfx("203.0.113.2/32"), pfx("203.0.113.3/32"), pfx("203.0.113.4/32")}},
		},
		{
			name: "every peer versus all peers listed",
			cur:  Desired{Peers: base.Peers, Paths: []Path{vip("203.0.113.1/32", nil)}},
			want: Desired{Peers: base.Peers, Paths: []Path{vip("203.0.113.1/32", func(p *Path) { p.Peers = []netip.Addr{a, b} })}},
			// Same peers today, but only the first follows future peers.
			plan: plan{announce: []netip.Prefix{pfx("203.0.113.1/32")}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur, err := compile(cfg, tc.cur)
			if err != nil {
				t.Fatal(err)
			}
			want, err := compile(cfg, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			got := diff(cur, want)
			if !reflect.DeepEqual(got, tc.plan) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.plan)
			}
			if got.empty() != reflect.DeepEqual(tc.plan, plan{}) {
				t.Fatal("empty() disagrees with the plan")
			}
		})
	}
}
