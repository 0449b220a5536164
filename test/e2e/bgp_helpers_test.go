package e2e

import (
	"context"
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

// The bgp_* suites run the speakers (speakersUp) against a router configured
// per test: FRR from lab.RouterBGP, or BIRD 2.

// startRouterFRR starts FRR on the router with bgpd's configuration from r
// (and bfdd when r.BFD) and stops it when the test ends.
func startRouterFRR(t *testing.T, r lab.RouterBGP) {
	t.Helper()
	conf := r.Config(env.Lab)
	var err error
	if r.BFD {
		err = env.Lab.StartFRRWithBFD(t.Context(), conf, lab.RouterBFDConfig)
	} else {
		err = env.Lab.StartFRR(t.Context(), conf)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Lab.StopFRR() })
}

// createSecret creates a basic-auth Secret with password in the speakers'
// namespace for the test.
func createSecret(t *testing.T, name, password string) {
	t.Helper()
	_, err := env.Cluster.Client.CoreV1().Secrets("ironlb-system").Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ironlb-system"},
		Type:       corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "unused", "password": password},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Cluster.Client.CoreV1().Secrets("ironlb-system").Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

func mustCreatePeer(t *testing.T, doc string) {
	t.Helper()
	if _, err := createYAML(t, bgppeers, doc); err != nil {
		t.Fatalf("creating BGPPeer: %v", err)
	}
}

// bgpService creates pool (its whole YAML document), a namespace named like
// the pool and in it Service "web" on port with the pool requested and one
// backend per node, and waits for its addresses (one per family).
func bgpService(t *testing.T, pool, poolDoc string, port int32, opts ...svcOpt) (ns string, vips []netip.Addr, backends []framework.Backend) {
	t.Helper()
	mustCreatePool(t, poolDoc)
	ns = namespace(t, pool)
	opts = append(opts, withAnnotations("ironlb.io/pool", pool))
	svc := createService(t, ns, "web", port, opts...)
	dual := len(svc.Spec.IPFamilies) == 2
	var err error
	if dual {
		backends, err = env.StartDualStackBackends(t.Context(), ns, "web", pool, env.Lab.Nodes(), 80)
	} else {
		backends, err = env.StartBackendsOn(t.Context(), ns, "web", pool, env.Lab.Nodes(), 80)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := 1
	if dual {
		want = 2
	}
	eventually(t, fmt.Sprintf("%s/web gets %d address(es)", ns, want), 10*time.Second, func() bool {
		s, err := env.Cluster.Client.CoreV1().Services(ns).Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) != want {
			return false
		}
		vips = vips[:0]
		for _, in := range s.Status.LoadBalancer.Ingress {
			vips = append(vips, netip.MustParseAddr(in.IP))
		}
		return true
	})
	slices.SortFunc(vips, netip.Addr.Compare) // IPv4 first
	return ns, vips, backends
}

// hostPrefix is the /32 or /128 of an address.
func hostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}

// nodeHops returns the LAN addresses of nodes (IPv6 with v6) as next hops.
func nodeHops(v6 bool, nodes ...int) []string {
	var out []string
	for _, i := range nodes {
		if v6 {
			out = append(out, env.Lab.NodeIPv6(i).String())
		} else {
			out = append(out, env.Lab.NodeIP(i).String())
		}
	}
	slices.Sort(out)
	return out
}

func allNodes() []int {
	var out []int
	for i := 1; i <= env.Lab.Nodes(); i++ {
		out = append(out, i)
	}
	return out
}

// waitKernelRoute waits until host's kernel routes prefix via exactly the
// next hops want (none: no route), whichever daemon installed it.
func waitKernelRoute(t *testing.T, host string, prefix netip.Prefix, within time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	var last []string
	var lastErr error
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		last, lastErr = env.KernelNextHops(ctx, host, prefix)
		return lastErr == nil && slices.Equal(last, want), nil
	})
	if err != nil {
		t.Fatalf("%s: kernel route %s via %v not seen within %v; last: %v (%v)", host, prefix, want, within, last, lastErr)
	}
}

// waitSessions waits until the BGPSessions of BGPPeer peer satisfy ok (by
// node name) and returns them.
func waitSessions(t *testing.T, peer, what string, within time.Duration, ok func(map[string]framework.BGPSession) bool) map[string]framework.BGPSession {
	t.Helper()
	var last map[string]framework.BGPSession
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		ss, err := env.BGPSessions(ctx)
		if err != nil {
			return false, nil
		}
		last = map[string]framework.BGPSession{}
		for _, s := range ss {
			if s.Peer == peer {
				last[s.Node] = s
			}
		}
		return ok(last), nil
	})
	if err != nil {
		t.Fatalf("BGPSessions of %s: %s not within %v; have %+v", peer, what, within, last)
	}
	return last
}

// established reports whether exactly the given nodes' sessions are
// Established (other nodes' may exist in any other state).
func established(ss map[string]framework.BGPSession, nodes ...int) bool {
	for i := 1; i <= env.Lab.Nodes(); i++ {
		up := ss[env.Lab.NodeName(i)].State == "Established"
		if up != slices.Contains(nodes, i) {
			return false
		}
	}
	return true
}

// routerNeighbor returns the router's bgpd view of one neighbour: its state
// and the reason of its last reset, if any.
func routerNeighbor(t *testing.T, a netip.Addr) string {
	t.Helper()
	out, err := env.Lab.Vtysh(t.Context(), "show bgp neighbors "+a.String())
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "BGP state") || strings.HasPrefix(l, "Last reset") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "; ")
}

// curlVIP checks that curl from the client behind the router reaches every
// backend through vip.
func curlVIP(t *testing.T, vip netip.Addr, port int, backends []framework.Backend) {
	t.Helper()
	curlBackends(t, lab.HostClient, urlFor(vip.String(), port), backendNames(backends), 60)
}
