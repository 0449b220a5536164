package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// BFD through the speaker: a BGPPeer with spec.bfd (100 ms x 3) and FRR's
// bfdd configured for the three nodes. FRR's BFD peers come up and every
// node's BGPSession says BFD Up. BFD is tied to the session: with a 30 s hold
// time, cutting node3 off the LAN removes its next hop at the router within
// seconds (BFD detects in 300 ms; the hold time would take 30 s); with the
// link back, node3's session and BFD come up again and the route has all
// three next hops.
func TestBGPBFD(t *testing.T) {
	sps := speakersUp(t)
	startRouterFRR(t, lab.RouterBGP{BFD: true, Keepalive: 10 * time.Second, Hold: 30 * time.Second})
	mustCreatePeer(t, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: bfd}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, holdTime: 30s, keepaliveTime: 10s, bfd: {minTx: 100ms, minRx: 100ms, multiplier: 3}}}`)
	_, vips, backends := bgpService(t, "bgp-bfd", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bgp-bfd}, spec: {addresses: ["203.0.113.50-203.0.113.59"], advertise: {bgp: {}}}}`, 8000)
	vip := hostPrefix(vips[0]).String()
	all := nodeHops(false, allNodes()...)

	waitRoute(t, vip, 30*time.Second, all...)
	bfdUp := func(what string) {
		t.Helper()
		eventually(t, "router: BFD up with "+what, 30*time.Second, func() bool {
			peers, err := env.RouterBFDPeers(t.Context())
			if err != nil {
				return false
			}
			for i := 1; i <= env.Lab.Nodes(); i++ {
				if peers[env.Lab.NodeIP(i)] != "up" {
					return false
				}
			}
			return true
		})
		waitSessions(t, "bfd", "every node Established with BFD Up ("+what+")", 30*time.Second, func(ss map[string]framework.BGPSession) bool {
			for i := 1; i <= env.Lab.Nodes(); i++ {
				if s := ss[env.Lab.NodeName(i)]; s.State != "Established" || s.BFD != "Up" {
					return false
				}
			}
			return true
		})
	}
	bfdUp("every node")
	curlVIP(t, vips[0], 8000, backends)
	for _, sp := range sps {
		eventually(t, sp.Name+": ironlb_bfd_session_up 1", 10*time.Second, func() bool {
			text, err := env.SpeakerMetrics(t.Context(), sp)
			v, ok := framework.MetricValue(text, `ironlb_bfd_session_up{peer="192.0.2.1"}`)
			return err == nil && ok && v == 1
		})
	}

	if err := env.SetSwitchPort(t.Context(), "node3", false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.SetSwitchPort(context.Background(), "node3", true) })
	took := waitRoute(t, vip, 10*time.Second, nodeHops(false, 1, 2)...)
	t.Logf("node3 cut off: its next hop left the router's route after %v (hold time 30s)", took.Round(time.Millisecond))
	if peers, err := env.RouterBFDPeers(t.Context()); err != nil || peers[env.Lab.NodeIP(3)] == "up" {
		t.Errorf("router: BFD with node3 after the cut: %v (%v)", peers, err)
	}

	if err := env.SetSwitchPort(t.Context(), "node3", true); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	waitRoute(t, vip, 60*time.Second, all...)
	bfdUp("node3 back")
	t.Logf("node3 back on the LAN: session, route and BFD up again after %v", time.Since(back).Round(time.Millisecond))
}
