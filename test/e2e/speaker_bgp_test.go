package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// waitRoute waits until the router's selected route to prefix has exactly the
// next hops want (none: no route) and returns how long it took.
func waitRoute(t *testing.T, prefix string, within time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	slices.Sort(want)
	var last map[string][]string
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		routes, err := env.Lab.RouterRoutes(ctx)
		if err != nil {
			return false, nil
		}
		last = routes
		return slices.Equal(routes[prefix], want), nil
	})
	if err != nil {
		t.Fatalf("router: route %s via %v not seen within %v; routes: %v", prefix, want, within, last)
	}
	return time.Since(start)
}

// BGP mode: every eligible node advertises the VIP, FRR on the router installs
// an ECMP route via all of them, and curl from the client behind the router
// reaches every backend. Local policy advertises only from nodes with
// endpoints, and the next hops follow the endpoints; deleting the Service
// withdraws the route. Sessions and prefixes
// show in BGPSession objects, the pool's communities arrive at the router, and
// the sessions use TCP MD5 with the password from a Secret in the speakers'
// namespace (a Secret elsewhere is refused).
func TestSpeakerBGPECMP(t *testing.T) {
	sps := speakersUp(t)
	var nodes []netip.Addr
	var hops []string
	for i := 1; i <= env.Lab.Nodes(); i++ {
		nodes = append(nodes, env.Lab.NodeIP(i))
		hops = append(hops, env.Lab.NodeIP(i).String())
	}
	// The router wants TCP MD5 on every session; the password reaches the
	// speakers only through a Secret in their namespace.
	conf := lab.DefaultFRRConfig(env.Lab, 0, nodes...)
	for _, n := range nodes {
		line := fmt.Sprintf(" neighbor %s remote-as %d\n", n, lab.NodeASN)
		conf = strings.Replace(conf, line, line+" neighbor "+n.String()+" password s3cret-md5\n", 1)
	}
	if err := env.Lab.StartFRR(t.Context(), conf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Lab.StopFRR() })
	_, err := env.Cluster.Client.CoreV1().Secrets("ironlb-system").Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bgp-router", Namespace: "ironlb-system"},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "unused", "password": "s3cret-md5"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Cluster.Client.CoreV1().Secrets("ironlb-system").Delete(context.Background(), "bgp-router", metav1.DeleteOptions{})
	})
	if _, err := createYAML(t, bgppeers, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: router, labels: {rack: a}}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, holdTime: 9s, keepaliveTime: 3s, passwordSecretRef: {name: bgp-router}}}`); err != nil {
		t.Fatal(err)
	}
	// A password Secret outside the speakers' namespace is never read.
	if _, err := createYAML(t, bgppeers, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: elsewhere}, spec: {nodeSelector: {matchLabels: {kubernetes.io/hostname: node1}}, peerAddress: 192.0.2.99, peerASN: 64512, myASN: 64600, passwordSecretRef: {name: bgp-router, namespace: default}}}`); err != nil {
		t.Fatal(err)
	}
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: spk-bgp}, spec: {addresses: ["203.0.113.10-203.0.113.19"], advertise: {bgp: {peerSelector: {matchLabels: {rack: a}}, communities: ["64600:100"], largeCommunities: ["64600:1:2"]}}}}`)
	ns := namespace(t, "spk-bgp")
	createService(t, ns, "ecmp", 8000)
	backends, err := env.StartBackendsOn(t.Context(), ns, "ecmp", "ecmp", 3, 80)
	if err != nil {
		t.Fatal(err)
	}
	vip, _ := waitIngress(t, ns, "ecmp", 5*time.Second)
	took := waitRoute(t, vip+"/32", 30*time.Second, hops...)
	t.Logf("router has %s/32 via %v after %v", vip, hops, took.Round(time.Millisecond))
	curlBackends(t, lab.HostClient, urlFor(vip, 8000), backendNames(backends), 60)

	out, err := env.Lab.Vtysh(t.Context(), "show bgp ipv4 unicast "+vip+"/32 json")
	if err != nil {
		t.Fatal(err)
	}
	var detail struct {
		Paths []struct {
			Community      struct{ String string } `json:"community"`
			LargeCommunity struct{ String string } `json:"largeCommunity"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &detail); err != nil || len(detail.Paths) != env.Lab.Nodes() {
		t.Fatalf("router's paths for %s: %v %s", vip, err, out)
	}
	for _, p := range detail.Paths {
		if p.Community.String != "64600:100" || p.LargeCommunity.String != "64600:1:2" {
			t.Errorf("path communities %q / %q, want 64600:100 / 64600:1:2", p.Community.String, p.LargeCommunity.String)
		}
	}

	eventually(t, "every node's BGPSession Established with 1 prefix", 10*time.Second, func() bool {
		ss, err := env.BGPSessions(t.Context())
		if err != nil {
			return false
		}
		up := 0
		for _, s := range ss {
			if s.Peer == "router" && s.State == "Established" && s.Prefixes == 1 && s.PeerAddress == "192.0.2.1" {
				up++
			}
		}
		return up == env.Lab.Nodes()
	})
	// Every speaker's metrics show the session, its one prefix, the updates
	// that carried it and the applied desired state.
	for _, sp := range sps {
		eventually(t, sp.Name+"'s BGP metrics show the session and its prefix", 10*time.Second, func() bool {
			text, err := env.SpeakerMetrics(t.Context(), sp)
			if err != nil {
				return false
			}
			up, _ := framework.MetricValue(text, `ironlb_bgp_session_up{peer="192.0.2.1"}`)
			prefixes, _ := framework.MetricValue(text, `ironlb_bgp_prefixes_advertised{peer="192.0.2.1"}`)
			updates, _ := framework.MetricValue(text, `ironlb_bgp_updates_sent_total{peer="192.0.2.1"}`)
			addresses, _ := framework.MetricValue(text, "ironlb_speaker_bgp_addresses")
			applied, _ := framework.MetricValue(text, `ironlb_speaker_bgp_applies_total{result="ok"}`)
			return up == 1 && prefixes == 1 && updates > 0 && addresses == 1 && applied > 0
		})
	}
	eventually(t, "BGPSession node1.elsewhere NotConfigured", 10*time.Second, func() bool {
		ss, err := env.BGPSessions(t.Context())
		for _, s := range ss {
			if err == nil && s.Name == "node1.elsewhere" && s.State == "NotConfigured" && strings.Contains(s.Message, "outside the speakers' namespace") {
				return true
			}
		}
		return false
	})
	// What each node advertises is on its BGPSession (no ServiceAnnouncement
	// per address and node in BGP mode).
	eventually(t, "every node's BGPSession lists "+vip+"/32", 10*time.Second, func() bool {
		ss, err := env.BGPSessions(t.Context())
		if err != nil {
			return false
		}
		var advertisers []string
		for _, s := range ss {
			if s.Peer == "router" && slices.Contains(s.Advertised, vip+"/32") {
				advertisers = append(advertisers, s.Node)
			}
		}
		slices.Sort(advertisers)
		return slices.Equal(advertisers, nodeNames())
	})
	if anns, err := env.Announcements(t.Context(), vip); err != nil || len(anns) != 0 {
		t.Errorf("ServiceAnnouncements of BGP address %s: %+v (err %v), want none", vip, anns, err)
	}
	if msg := waitEvent(t, ns, "ecmp", "Advertising"); !strings.Contains(msg, vip+"/32") {
		t.Errorf("Event %q", msg)
	}

	// Local: only the nodes with a ready endpoint advertise.
	createService(t, ns, "local", 8001, withLocal)
	local, err := env.StartBackendsOn(t.Context(), ns, "local", "bgplocal", 1, 80, 2)
	if err != nil {
		t.Fatal(err)
	}
	lvip, _ := waitIngress(t, ns, "local", 5*time.Second)
	waitRoute(t, lvip+"/32", 30*time.Second, env.Lab.NodeIP(2).String())
	curlBackends(t, lab.HostClient, urlFor(lvip, 8001), backendNames(local), 5)
	// The next hops follow the endpoints: one more on node3, then none on node2.
	more, err := env.StartBackendsOn(t.Context(), ns, "local", "bgplocal3", 1, 80, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.PublishEndpoints(t.Context(), ns, "local", 80, append(local, more...), false); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, lvip+"/32", 30*time.Second, env.Lab.NodeIP(2).String(), env.Lab.NodeIP(3).String())
	if err := env.PublishEndpoints(t.Context(), ns, "local", 80, more, false); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, lvip+"/32", 30*time.Second, env.Lab.NodeIP(3).String())
	curlBackends(t, lab.HostClient, urlFor(lvip, 8001), backendNames(more), 5)

	// Delete withdraws.
	deleteService(t, ns, "ecmp")
	took = waitRoute(t, vip+"/32", 10*time.Second)
	t.Logf("route %s/32 withdrawn %v after the Service was gone", vip, took.Round(time.Millisecond))
}
