package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// birdRouterConf makes BIRD 2 the router: an eBGP session with every node,
// everything received imported, and the kernel protocol merging equal BGP
// routes into one ECMP route.
func birdRouterConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\nprotocol device {}\n", env.Lab.RouterLANAddr())
	b.WriteString("protocol kernel { ipv4 { export all; }; merge paths on; }\n")
	for i := 1; i <= env.Lab.Nodes(); i++ {
		fmt.Fprintf(&b, "protocol bgp %s {\n  local %s as %d;\n  neighbor %s as %d;\n  ipv4 { import all; export none; };\n}\n",
			env.Lab.NodeName(i), env.Lab.RouterLANAddr(), lab.RouterASN, env.Lab.NodeIP(i), lab.NodeASN)
	}
	return b.String()
}

// BIRD 2 as the router instead of FRR: every node's session comes up, BIRD
// installs an ECMP route to the VIP via all three nodes, curl from the client
// behind the router reaches every backend, and deleting the Service removes
// the route.
func TestBGPBIRDRouter(t *testing.T) {
	speakersUp(t)
	bird, err := env.Lab.StartBIRD(t.Context(), lab.HostRouter, birdRouterConf())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bird.Stop() })
	mustCreatePeer(t, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: bird}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600}}`)
	ns, vips, backends := bgpService(t, "bgp-bird", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bgp-bird}, spec: {addresses: ["203.0.113.20-203.0.113.29"], advertise: {bgp: {}}}}`, 8000)
	vip := hostPrefix(vips[0])

	waitKernelRoute(t, lab.HostRouter, vip, 30*time.Second, nodeHops(false, allNodes()...)...)
	out, err := env.Lab.Birdc(t.Context(), lab.HostRouter, "show", "route", "all", "for", vip.String())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= env.Lab.Nodes(); i++ {
		if !strings.Contains(out, "via "+env.Lab.NodeIP(i).String()) || !strings.Contains(out, "["+env.Lab.NodeName(i)+" ") {
			t.Errorf("BIRD has no route for %s from %s:\n%s", vip, env.Lab.NodeName(i), out)
		}
	}
	waitSessions(t, "bird", "every node Established with 1 prefix", 10*time.Second, func(ss map[string]framework.BGPSession) bool {
		for i := 1; i <= env.Lab.Nodes(); i++ {
			if s := ss[env.Lab.NodeName(i)]; s.State != "Established" || s.Prefixes != 1 {
				return false
			}
		}
		return true
	})
	curlVIP(t, vips[0], 8000, backends)

	deleteService(t, ns, "web")
	waitKernelRoute(t, lab.HostRouter, vip, 10*time.Second)
}

// iBGP and TCP MD5 with the router in the speakers' AS (64512): the pool's
// localPref arrives on the iBGP sessions. node3's BGPPeer names a Secret with
// a wrong password: the router's kernel drops node3's segments (its
// TCPMD5Failure counter grows), node3's session never reaches Established
// while node1's and node2's are, and the router routes the VIP via node1 and
// node2 only. Correcting the Secret brings node3 in.
func TestBGPiBGPLocalPrefAndWrongMD5(t *testing.T) {
	speakersUp(t)
	pw := map[netip.Addr]string{}
	for i := 1; i <= env.Lab.Nodes(); i++ {
		pw[env.Lab.NodeIP(i)] = "r1ght-md5"
	}
	startRouterFRR(t, lab.RouterBGP{ASN: lab.RouterASN, NeighborASN: lab.RouterASN, Passwords: pw})
	before, err := env.TCPMD5Failures(t.Context(), lab.HostRouter)
	if err != nil {
		t.Fatal(err)
	}
	createSecret(t, "ibgp-right", "r1ght-md5")
	createSecret(t, "ibgp-wrong", "wr0ng-md5")
	mustCreatePeer(t, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: ibgp}, spec: {nodeSelector: {matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [node1, node2]}]}, peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64512, passwordSecretRef: {name: ibgp-right}}}`)
	mustCreatePeer(t, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: ibgp-node3}, spec: {nodeSelector: {matchLabels: {kubernetes.io/hostname: node3}}, peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64512, passwordSecretRef: {name: ibgp-wrong}}}`)
	_, vips, backends := bgpService(t, "bgp-ibgp", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bgp-ibgp}, spec: {addresses: ["203.0.113.30-203.0.113.39"], advertise: {bgp: {localPref: 250, communities: ["64512:7"]}}}}`, 8000)
	vip := hostPrefix(vips[0])

	waitRoute(t, vip.String(), 30*time.Second, nodeHops(false, 1, 2)...)
	paths, err := env.RouterPaths(t.Context(), vip)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 {
		t.Fatalf("router's paths for %s: %+v, want two (node1, node2)", vip, paths)
	}
	for _, p := range paths {
		if !p.Internal || p.LocalPref != 250 || p.Communities != "64512:7" {
			t.Errorf("path from %s: internal %v, local-pref %d, communities %q; want iBGP, 250, 64512:7", p.From, p.Internal, p.LocalPref, p.Communities)
		}
	}
	curlVIP(t, vips[0], 8000, backends)

	// The positive signal that node3 tried and was refused for its password.
	eventually(t, "the router's kernel drops segments with a wrong MD5 signature", 30*time.Second, func() bool {
		n, err := env.TCPMD5Failures(t.Context(), lab.HostRouter)
		return err == nil && n > before
	})
	waitSessions(t, "ibgp", "node1 and node2 Established", 10*time.Second, func(ss map[string]framework.BGPSession) bool {
		return ss["node1"].State == "Established" && ss["node2"].State == "Established"
	})
	ss := waitSessions(t, "ibgp-node3", "node3's session reported", 10*time.Second, func(ss map[string]framework.BGPSession) bool {
		return ss["node3"].State != ""
	})
	if st := ss["node3"].State; st == "Established" {
		t.Fatalf("node3's session with the wrong password is %s", st)
	}
	if st := routerNeighbor(t, env.Lab.NodeIP(3)); strings.Contains(st, "Established") {
		t.Fatalf("router: neighbour node3 (wrong password): %s", st)
	}

	// The right password brings node3 in.
	sec, err := env.Cluster.Client.CoreV1().Secrets("ironlb-system").Get(t.Context(), "ibgp-wrong", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["password"] = []byte("r1ght-md5")
	if _, err := env.Cluster.Client.CoreV1().Secrets("ironlb-system").Update(t.Context(), sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, vip.String(), 30*time.Second, nodeHops(false, allNodes()...)...)
}
