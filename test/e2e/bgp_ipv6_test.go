package e2e

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// IPv6 VIPs over IPv6 sessions: a dual-stack Service from a pool with both
// families, BGPPeers toward the router's IPv4 and IPv6 addresses. FRR gets
// the /32 from the IPv4 sessions via the nodes' IPv4 addresses and the /128
// from the IPv6 sessions via the nodes' IPv6 addresses, each family only on
// its own sessions, and curl from the client behind the router reaches every
// backend over both families.
func TestBGPIPv6Session(t *testing.T) {
	speakersUp(t)
	var neighbors []netip.Addr
	for i := 1; i <= env.Lab.Nodes(); i++ {
		neighbors = append(neighbors, env.Lab.NodeIP(i), env.Lab.NodeIPv6(i))
	}
	startRouterFRR(t, lab.RouterBGP{Neighbors: neighbors})
	mustCreatePeer(t, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: v6-router4}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600}}`)
	mustCreatePeer(t, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: v6-router6}, spec: {peerAddress: "2001:db8::1", peerASN: 64512, myASN: 64600}}`)
	_, vips, backends := bgpService(t, "bgp-v6", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bgp-v6}, spec: {addresses: ["203.0.113.40-203.0.113.49", "2001:db8:1::40-2001:db8:1::4f"], advertise: {bgp: {}}}}`, 8000, withDualStack)
	v4, v6 := hostPrefix(vips[0]), hostPrefix(vips[1])
	if !v4.Addr().Is4() || !v6.Addr().Is6() {
		t.Fatalf("dual-stack Service got %v", vips)
	}

	waitRoute(t, v6.String(), 30*time.Second, nodeHops(true, allNodes()...)...)
	waitRoute(t, v4.String(), 30*time.Second, nodeHops(false, allNodes()...)...)
	for _, c := range []struct {
		prefix netip.Prefix
		v6     bool
	}{{v4, false}, {v6, true}} {
		paths, err := env.RouterPaths(t.Context(), c.prefix)
		if err != nil {
			t.Fatal(err)
		}
		var from, hops []string
		for _, p := range paths {
			from = append(from, p.From.String())
			hops = append(hops, p.NextHop.String())
		}
		slices.Sort(from)
		slices.Sort(hops)
		if want := nodeHops(c.v6, allNodes()...); !slices.Equal(from, want) || !slices.Equal(hops, want) {
			t.Errorf("router's paths for %s from %v via %v, want from and via %v", c.prefix, from, hops, want)
		}
	}
	for _, peer := range []string{"v6-router4", "v6-router6"} {
		waitSessions(t, peer, "every node Established with 1 prefix", 10*time.Second, func(ss map[string]framework.BGPSession) bool {
			for i := 1; i <= env.Lab.Nodes(); i++ {
				if s := ss[env.Lab.NodeName(i)]; s.State != "Established" || s.Prefixes != 1 {
					return false
				}
			}
			return true
		})
	}
	curlVIP(t, vips[1], 8000, backends)
	curlVIP(t, vips[0], 8000, backends)
}
