package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	router4 = netip.MustParseAddr("192.0.2.1")
	router6 = netip.MustParseAddr("2001:db8::1")
	other4  = netip.MustParseAddr("192.0.2.2")
	cfg     = Config{RouterID: netip.MustParseAddr("192.0.2.11"), ASN: 64600}
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestCompileDefaults(t *testing.T) {
	st, err := compile(cfg, Desired{Peers: []Peer{{Address: router4, ASN: 64512}}})
	if err != nil {
		t.Fatal(err)
	}
	got := st.peers[router4]
	want := peerConf{addr: router4, asn: 64512, localASN: 64600, port: 179, hold: 90 * time.Second,
		keepalive: 30 * time.Second, families: families(IPv4)}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got.ibgp() {
		t.Fatal("64512 -> 64600 is eBGP")
	}
	st, err = compile(Config{RouterID: cfg.RouterID}, Desired{Peers: []Peer{{Address: router6, ASN: 65000, LocalASN: 65000,
		HoldTime: 3 * time.Second, GracefulRestart: true}}})
	if err != nil {
		t.Fatal(err)
	}
	got = st.peers[router6]
	if !got.ibgp() || got.keepalive != time.Second || got.restartTime != DefaultRestartTime || got.families != families(IPv6) {
		t.Fatalf("iBGP IPv6 peer with short timers: %+v", got)
	}
}

func TestCompileRejects(t *testing.T) {
	ok := Peer{Address: router4, ASN: 64512}
	with := func(f func(*Peer)) Peer { p := ok; f(&p); return p }
	for _, tc := range []struct {
		name string
		cfg  Config
		d    Desired
		want string // part of the error
	}{
		{"no address", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.Address = netip.Addr{} })}}, "unicast"},
		{"multicast", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.Address = netip.MustParseAddr("224.0.0.5") })}}, "unicast"},
		{"no ASN", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.ASN = 0 })}}, "ASN is required"},
		{"no local ASN", Config{RouterID: cfg.RouterID}, Desired{Peers: []Peer{ok}}, "no local ASN"},
		{"twice", cfg, Desired{Peers: []Peer{ok, ok}}, "listed twice"},
		{"source family", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.SourceAddress = router6 })}}, "source address"},
		{"hold too short", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.HoldTime = 2 * time.Second })}}, "hold time"},
		{"hold fraction", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.HoldTime = 3500 * time.Millisecond })}}, "hold time"},
		{"keepalive not below hold", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.HoldTime = 3 * time.Second; p.KeepaliveTime = 3 * time.Second })}}, "keepalive"},
		{"multihop iBGP", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.ASN = 64600; p.EBGPMultiHopTTL = 2 })}}, "multihop"},
		{"BFD multihop", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.EBGPMultiHopTTL = 2; p.BFD = &BFD{} })}}, "single-hop"},
		{"BFD interval", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.BFD = &BFD{MinTx: time.Microsecond} })}}, "BFD interval"},
		{"IPv6 over IPv4 without next hop", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.Families = []Family{IPv4, IPv6} })}}, "needs NextHopIPv6"},
		{"wrong next hop family", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.Families = []Family{IPv4, IPv6}; p.NextHopIPv6 = other4 })}}, "not a unicast ipv6"},
		{"unknown family", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.Families = []Family{3} })}}, "unknown family"},
		{"password too long", cfg, Desired{Peers: []Peer{with(func(p *Peer) { p.Password = strings.Repeat("x", 81) })}}, "password"},
		{"host bits", cfg, Desired{Paths: []Path{{Prefix: pfx("203.0.113.7/24")}}}, "host bits"},
		{"invalid prefix", cfg, Desired{Paths: []Path{{}}}, "invalid prefix"},
		{"unknown peer", cfg, Desired{Peers: []Peer{ok}, Paths: []Path{{Prefix: pfx("203.0.113.7/32"), Peers: []netip.Addr{other4}}}}, "not in Desired.Peers"},
		{"peer without family", cfg, Desired{Peers: []Peer{ok}, Paths: []Path{{Prefix: pfx("2001:db8:1::7/128"), Peers: []netip.Addr{router4}}}}, "does not carry ipv6"},
		{"reserved large community", cfg, Desired{Paths: []Path{{Prefix: pfx("203.0.113.7/32"), LargeCommunities: []LargeCommunity{{tagAdmin, 1, 1}}}}}, "reserved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compile(tc.cfg, tc.d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestCompileReportsAll: one bad peer and one bad path give one error that
// names both, so an operator fixes everything in one go.
func TestCompileReportsAll(t *testing.T) {
	_, err := compile(cfg, Desired{
		Peers: []Peer{{Address: router4}},
		Paths: []Path{{Prefix: pfx("203.0.113.7/24")}},
	})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1") || !strings.Contains(err.Error(), "203.0.113.7/24") {
		t.Fatalf("got %v", err)
	}
}

func TestCompileNextHops(t *testing.T) {
	nh6 := netip.MustParseAddr("2001:db8::11")
	st, err := compile(cfg, Desired{Peers: []Peer{
		// Dual-family session over IPv4: the IPv6 next hop is needed and kept.
		{Address: router4, ASN: 64512, Families: []Family{IPv6, IPv4}, NextHopIPv6: nh6, NextHopIPv4: other4},
		// Single-family session: next hops it cannot use do not count.
		{Address: router6, ASN: 64512, NextHopIPv6: nh6, NextHopIPv4: other4},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c := st.peers[router4]; c.families != families(IPv4|IPv6) || c.nextHop6 != nh6 || c.nextHop4.IsValid() {
		t.Fatalf("dual-family peer %+v", c)
	}
	if c := st.peers[router6]; c.nextHop6.IsValid() || c.nextHop4.IsValid() {
		t.Fatalf("IPv6-only peer keeps unused next hops: %+v", c)
	}
}

func TestCompilePaths(t *testing.T) {
	peers := []Peer{{Address: router4, ASN: 64512}, {Address: other4, ASN: 64512}}
	mine := []Community{CommunityNoExport, 65000<<16 | 100}
	st, err := compile(cfg, Desired{Peers: peers, Paths: []Path{
		{Prefix: pfx("203.0.113.10/32"), Communities: mine, LocalPref: 100},
		{Prefix: pfx("203.0.113.0/24"), Peers: []netip.Addr{other4, router4, other4}},
		// Two VIPs aggregated into one prefix: merged.
		{Prefix: pfx("198.51.100.0/24"), Communities: []Community{1}, Peers: []netip.Addr{router4}, LocalPref: 50},
		{Prefix: pfx("198.51.100.0/24"), Communities: []Community{2, 1}, Peers: []netip.Addr{other4}, LocalPref: 200},
		// Merged with a path for every peer: every peer.
		{Prefix: pfx("192.0.2.128/25"), Peers: []netip.Addr{router4}},
		{Prefix: pfx("192.0.2.128/25")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if mine[0] != CommunityNoExport {
		t.Fatal("compile reordered the caller's slice")
	}
	r := st.routes[pfx("203.0.113.10/32")]
	if r.peers != nil || len(r.communities) != 2 || r.communities[0] != 65000<<16|100 || r.localPref != 100 {
		t.Fatalf("route for every peer: %+v", r)
	}
	if r := st.routes[pfx("203.0.113.0/24")]; len(r.peers) != 2 || r.peers[0] != router4 || r.peers[1] != other4 {
		t.Fatalf("peers not sorted and unique: %v", r.peers)
	}
	if r := st.routes[pfx("198.51.100.0/24")]; len(r.peers) != 2 || len(r.communities) != 2 || r.localPref != 200 {
		t.Fatalf("merged route %+v", r)
	}
	r = st.routes[pfx("192.0.2.128/25")]
	if r.peers != nil {
		t.Fatalf("a path for every peer merged with one for some: %v", r.peers)
	}
	c := st.peers[router4]
	if !r.goesTo(&c, pfx("192.0.2.128/25")) || r.goesTo(&c, pfx("2001:db8:1::/64")) {
		t.Fatal("goesTo ignores families")
	}
}

func TestVIPPrefix(t *testing.T) {
	for _, tc := range []struct {
		vip      string
		v4, v6   int
		want     string
		wantFail bool
	}{
		{"203.0.113.77", 0, 0, "203.0.113.77/32", false},
		{"203.0.113.77", 24, 64, "203.0.113.0/24", false},
		{"2001:db8:1::77", 24, 0, "2001:db8:1::77/128", false},
		{"2001:db8:1::77", 24, 64, "2001:db8:1::/64", false},
		{"::ffff:203.0.113.77", 28, 0, "203.0.113.64/28", false},
		{"203.0.113.77", 33, 0, "", true},
	} {
		got, err := VIPPrefix(netip.MustParseAddr(tc.vip), tc.v4, tc.v6)
		if (err != nil) != tc.wantFail || (!tc.wantFail && got.String() != tc.want) {
			t.Errorf("VIPPrefix(%s, %d, %d) = %v, %v; want %s", tc.vip, tc.v4, tc.v6, got, err, tc.want)
		}
	}
}
