package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/bgp/internal/nslab"
)

// Sessions of the FRR suite. The router has one address per session, so that
// each node session is a different FRR neighbor (FRR keys neighbors by the
// node's source address, this package by the router's address).
var (
	ebgpRouter  = nslab.RouterIP         // node 192.0.2.11, eBGP, IPv4 and IPv6
	ibgpRouter  = nslab.RouterExtraIP(1) // 192.0.2.2 <- node 192.0.2.12, iBGP
	md5Router   = nslab.RouterExtraIP(2) // 192.0.2.3 <- node 192.0.2.13, password right
	badMD5Rtr   = nslab.RouterExtraIP(3) // 192.0.2.4 <- node 192.0.2.14, we use a wrong password
	ebgpRouter6 = nslab.RouterIP6        // node 2001:db8::11, eBGP, IPv6 and IPv4
	ibgpSource  = nslab.NodeExtraIP(1)   // 192.0.2.12
	md5Source   = nslab.NodeExtraIP(2)   // 192.0.2.13
	badMD5Src   = nslab.NodeExtraIP(3)   // 192.0.2.14
)

const (
	routerASN = 64512
	nodeASN   = 64600
	md5Secret = "right-secret"
)

// frrSuiteConf is bgpd's configuration for the FRR suite.
const frrSuiteConf = `frr defaults datacenter
hostname router
!
router bgp 64512
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 192.0.2.11 remote-as 64600
 neighbor 192.0.2.12 remote-as 64512
 neighbor 192.0.2.13 remote-as 64600
 neighbor 192.0.2.13 password right-secret
 neighbor 192.0.2.14 remote-as 64600
 neighbor 192.0.2.14 password right-secret
 neighbor 2001:db8::11 remote-as 64600
 !
 address-family ipv4 unicast
  maximum-paths 8
  neighbor 192.0.2.11 activate
  neighbor 192.0.2.12 activate
  neighbor 192.0.2.13 activate
  neighbor 192.0.2.14 activate
  neighbor 2001:db8::11 activate
 exit-address-family
 !
 address-family ipv6 unicast
  maximum-paths 8
  neighbor 192.0.2.11 activate
  neighbor 2001:db8::11 activate
 exit-address-family
!
`

// frrPath is one path of "show bgp ... <prefix> json".
type frrPath struct {
	Valid     bool   `json:"valid"`
	LocPrf    uint32 `json:"locPrf"`
	Community struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
	Peer struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
}

// bgpPaths returns FRR's paths for prefix by the neighbor they came from.
func bgpPaths(ctx context.Context, f *nslab.FRR, prefix netip.Prefix) (map[string]frrPath, error) {
	afi := "ipv4"
	if prefix.Addr().Is6() {
		afi = "ipv6"
	}
	var out struct {
		Paths []frrPath `json:"paths"`
	}
	if err := f.JSON(ctx, fmt.Sprintf("show bgp %s unicast %s json", afi, prefix), &out); err != nil {
		return nil, err
	}
	m := map[string]frrPath{}
	for _, p := range out.Paths {
		m[p.Peer.PeerID] = p
	}
	return m, nil
}

// frrNeighbor is a part of "show bgp neighbors json".
type frrNeighbor struct {
	BGPState     string `json:"bgpState"`
	MessageStats struct {
		UpdatesRecv int `json:"updatesRecv"`
	} `json:"messageStats"`
	GracefulRestartInfo struct {
		RemoteGrMode string `json:"remoteGrMode"`
		Timers       struct {
			ReceivedRestartTimer int `json:"receivedRestartTimer"`
		} `json:"timers"`
	} `json:"gracefulRestartInfo"`
}

func neighbors(ctx context.Context, f *nslab.FRR) (map[string]frrNeighbor, error) {
	out := map[string]frrNeighbor{}
	err := f.JSON(ctx, "show bgp neighbors json", &out)
	return out, err
}

// waitFRR retries check against FRR until it passes (30s at most).
func waitFRR(t *testing.T, what string, check func(ctx context.Context) error) {
	t.Helper()
	err := nslab.Eventually(30*time.Second, 100*time.Millisecond, func() error { return check(context.Background()) })
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// expectPaths waits until FRR has prefix from exactly the given neighbors
// (none: the prefix is gone) and returns the paths.
func expectPaths(t *testing.T, f *nslab.FRR, prefix netip.Prefix, from ...netip.Addr) map[string]frrPath {
	t.Helper()
	var got map[string]frrPath
	want := make([]string, len(from))
	for i, a := range from {
		want[i] = a.String()
	}
	slices.Sort(want)
	waitFRR(t, fmt.Sprintf("%s from %v", prefix, want), func(ctx context.Context) error {
		var err error
		if got, err = bgpPaths(ctx, f, prefix); err != nil {
			return err
		}
		var have []string
		for p := range got {
			have = append(have, p)
		}
		slices.Sort(have)
		if !slices.Equal(have, want) {
			return fmt.Errorf("from %v", have)
		}
		return nil
	})
	return got
}

func tcpMD5Failures(t *testing.T, l *nslab.Lab) int {
	t.Helper()
	out, err := l.Exec(context.Background(), l.Router, "cat", "/proc/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for j, n := range names {
			if n == "TCPMD5Failure" {
				var v int
				fmt.Sscan(values[j], &v)
				return v
			}
		}
	}
	t.Fatal("no TcpExt TCPMD5Failure counter")
	return 0
}

// TestFRR runs a Manager against FRR: sessions of every kind come up (and
// the one with a wrong MD5 password does not), paths arrive with their next
// hops and attributes at exactly the peers they are for, changes withdraw
// what they should, and Stop withdraws everything before the sessions close.
func TestFRR(t *testing.T) {
	l := nslab.New(t)
	f := l.StartFRR(t, map[string]string{"bgpd": frrSuiteConf})
	n := startNode(t, l, "node")
	nh6 := nslab.NodeIP6
	peers := []Peer{
		{Address: ebgpRouter, ASN: routerASN, HoldTime: 3 * time.Second, KeepaliveTime: time.Second,
			Families: []Family{IPv4, IPv6}, NextHopIPv6: nh6, GracefulRestart: true},
		{Address: ibgpRouter, ASN: routerASN, LocalASN: routerASN, SourceAddress: ibgpSource},
		{Address: md5Router, ASN: routerASN, SourceAddress: md5Source, Password: md5Secret},
		{Address: badMD5Rtr, ASN: routerASN, SourceAddress: badMD5Src, Password: "wrong-secret"},
		{Address: ebgpRouter6, ASN: routerASN, Families: []Family{IPv6, IPv4}, NextHopIPv4: nslab.NodeIP},
	}
	vip := pfx("203.0.113.10/32")
	only := pfx("203.0.113.20/32")
	agg, err := VIPPrefix(netip.MustParseAddr("203.0.113.77"), 28, 0)
	if err != nil {
		t.Fatal(err)
	}
	vip6 := pfx("2001:db8:1::10/128")
	attrs := Path{Prefix: vip, Communities: []Community{65000<<16 | 100, CommunityNoExport},
		LargeCommunities: []LargeCommunity{{nodeASN, 1, 2}}, LocalPref: 250}
	md5Before := tcpMD5Failures(t, l)
	n.apply(Desired{Peers: peers, Paths: []Path{
		attrs,
		{Prefix: only, Peers: []netip.Addr{ebgpRouter}},
		{Prefix: agg},
		{Prefix: vip6},
	}})

	t.Run("sessions", func(t *testing.T) {
		for _, a := range []netip.Addr{ebgpRouter, ibgpRouter, md5Router, ebgpRouter6} {
			n.waitEvent(0, 30*time.Second, a, EventSessionUp)
		}
		waitFRR(t, "FRR sees the sessions", func(ctx context.Context) error {
			nb, err := neighbors(ctx, f)
			if err != nil {
				return err
			}
			for _, a := range []netip.Addr{nslab.NodeIP, ibgpSource, md5Source, nslab.NodeIP6} {
				if nb[a.String()].BGPState != "Established" {
					return fmt.Errorf("%s is %q", a, nb[a.String()].BGPState)
				}
			}
			// Graceful restart is negotiated where asked for, only there.
			if gr := nb[nslab.NodeIP.String()].GracefulRestartInfo; gr.RemoteGrMode != "Restart" || gr.Timers.ReceivedRestartTimer != 120 {
				return fmt.Errorf("graceful restart from %s: %+v", nslab.NodeIP, gr)
			}
			if gr := nb[ibgpSource.String()].GracefulRestartInfo; gr.RemoteGrMode == "Restart" {
				return fmt.Errorf("graceful restart from %s, which did not ask for it: %+v", ibgpSource, gr)
			}
			return nil
		})
	})

	t.Run("wrong MD5 password", func(t *testing.T) {
		// The router's kernel dropping our segments for their signature is
		// the positive signal that the attempt was made and refused.
		waitFRR(t, "segments with a bad MD5 signature", func(context.Context) error {
			if got := tcpMD5Failures(t, l); got <= md5Before {
				return fmt.Errorf("TCPMD5Failure %d, was %d", got, md5Before)
			}
			return nil
		})
		nb, err := neighbors(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if s := nb[badMD5Src.String()].BGPState; s == "Established" {
			t.Fatal("session with a wrong password is Established")
		}
		if s := n.status()[badMD5Rtr].State; s == StateEstablished {
			t.Fatal("node reports the wrong-password session Established")
		}
	})

	t.Run("next hops and attributes", func(t *testing.T) {
		// IPv4 over the IPv4 sessions and over the IPv6 session (MP-BGP,
		// next hop configured).
		got := expectPaths(t, f, vip, nslab.NodeIP, ibgpSource, md5Source, nslab.NodeIP6)
		for from, p := range got {
			want := from
			if from == nslab.NodeIP6.String() {
				want = nslab.NodeIP.String()
			}
			if len(p.Nexthops) == 0 || p.Nexthops[0].IP != want {
				t.Errorf("path from %s: next hop %+v, want %s, the node's IPv4 address on that link", from, p.Nexthops, want)
			}
			if p.Community.String != "65000:100 no-export" {
				t.Errorf("path from %s: communities %q", from, p.Community.String)
			}
			// Exactly the configured large community: the tags that pick
			// peers inside GoBGP must never leave it.
			if p.LargeCommunity.String != "64600:1:2" {
				t.Errorf("path from %s: large communities %q", from, p.LargeCommunity.String)
			}
		}
		if lp := got[ibgpSource.String()].LocPrf; lp != 250 {
			t.Errorf("iBGP path local-pref %d, want 250", lp)
		}
		expectPaths(t, f, agg, nslab.NodeIP, ibgpSource, md5Source, nslab.NodeIP6)
		// IPv6 over the IPv6 session and over the IPv4 session (MP-BGP),
		// both with the node's IPv6 address as next hop.
		got = expectPaths(t, f, vip6, nslab.NodeIP, nslab.NodeIP6)
		for from, p := range got {
			if len(p.Nexthops) == 0 || p.Nexthops[0].IP != nh6.String() {
				t.Errorf("IPv6 path from %s: next hop %+v, want %s", from, p.Nexthops, nh6)
			}
		}
	})

	t.Run("per-peer path", func(t *testing.T) {
		expectPaths(t, f, only, nslab.NodeIP)
	})

	t.Run("routes installed", func(t *testing.T) {
		// The iBGP path wins for vip: its local-pref 250 beats the eBGP
		// paths' 100, so the local-pref took effect. The per-peer path has
		// only the eBGP session.
		for prefix, via := range map[netip.Prefix]netip.Addr{vip: ibgpSource, only: nslab.NodeIP, vip6: nh6} {
			waitFRR(t, "kernel route "+prefix.String(), func(ctx context.Context) error {
				fam := "-4"
				if prefix.Addr().Is6() {
					fam = "-6"
				}
				out, err := l.Exec(ctx, l.Router, "ip", fam, "route", "show", prefix.String())
				if err != nil {
					return err
				}
				if f := strings.Fields(out); len(f) < 5 || !slices.Contains(f, "via") || f[slices.Index(f, "via")+1] != via.String() {
					return fmt.Errorf("route %q, want via %s", out, via)
				}
				return nil
			})
		}
	})

	t.Run("status and metrics", func(t *testing.T) {
		st := n.status()
		// eBGP over IPv4: vip, only, agg, vip6; iBGP: vip, agg; over IPv6:
		// vip6, vip, agg.
		for a, want := range map[netip.Addr]int{ebgpRouter: 4, ibgpRouter: 2, md5Router: 2, ebgpRouter6: 3, badMD5Rtr: 0} {
			if got := st[a].PrefixesAdvertised; got != want {
				t.Errorf("%s: %d prefixes advertised, want %d", a, got, want)
			}
		}
		if st[ebgpRouter].UpdatesSent == 0 || st[ebgpRouter].BFD != nil {
			t.Errorf("eBGP status %+v", st[ebgpRouter])
		}
		want := map[string]float64{
			"ironlb_bgp_session_up/192.0.2.1":          1,
			"ironlb_bgp_session_up/192.0.2.4":          0,
			"ironlb_bgp_prefixes_advertised/192.0.2.1": 4,
		}
		for _, s := range n.metrics() {
			k := s.Name + "/" + s.Peer
			if v, ok := want[k]; ok {
				if s.Value != v {
					t.Errorf("%s = %v, want %v", k, s.Value, v)
				}
				delete(want, k)
			}
			if s.Name == "ironlb_bgp_updates_sent_total" && s.Peer == "192.0.2.1" && s.Value == 0 {
				t.Error("no updates counted for 192.0.2.1")
			}
		}
		if len(want) > 0 {
			t.Errorf("missing series %v", want)
		}
	})

	t.Run("changes", func(t *testing.T) {
		// The per-peer path moves to the iBGP peer only (a withdrawal for
		// the eBGP peer while the prefix stays), the aggregate goes.
		n.apply(Desired{Peers: peers, Paths: []Path{attrs, {Prefix: only, Peers: []netip.Addr{ibgpRouter}}, {Prefix: vip6}}})
		expectPaths(t, f, only, ibgpSource)
		expectPaths(t, f, agg)
		expectPaths(t, f, vip, nslab.NodeIP, ibgpSource, md5Source, nslab.NodeIP6)
	})

	t.Run("stop withdraws first", func(t *testing.T) {
		expectPaths(t, f, vip, nslab.NodeIP, ibgpSource, md5Source, nslab.NodeIP6)
		nb, err := neighbors(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		before := nb[nslab.NodeIP.String()].MessageStats.UpdatesRecv
		var took time.Duration
		n.call("stop", nil, &took)
		t.Logf("Stop took %v", took)
		waitFRR(t, "sessions closed", func(ctx context.Context) error {
			nb, err = neighbors(ctx, f)
			if err != nil {
				return err
			}
			if s := nb[nslab.NodeIP.String()].BGPState; s == "Established" {
				return fmt.Errorf("still %s", s)
			}
			return nil
		})
		// The session closed with graceful restart negotiated; the
		// withdrawals arrived before, as UPDATEs.
		if got := nb[nslab.NodeIP.String()].MessageStats.UpdatesRecv; got <= before {
			t.Errorf("FRR received %d updates from the node, %d before Stop: no withdrawal was sent", got, before)
		}
		expectPaths(t, f, vip)
		expectPaths(t, f, vip6)
	})
}
