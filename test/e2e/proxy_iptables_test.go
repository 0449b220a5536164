package e2e

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// ironlb's iptables proxy as a cluster's only Service proxy: every speaker
// runs --proxy=iptables and no kube-proxy runs anywhere (its rules were
// removed with kube-proxy --cleanup). The nginx Service (port 8000 -> 80,
// three endpoints on three nodes) is reached as a NodePort on every node
// from the LAN and on its ClusterIP from a pod; each node's iptables-save
// shows its Service chain balancing 1/3, 1/2, rest; as a LoadBalancer it is
// reached on the VIP the speakers announce; with externalTrafficPolicy Local
// the backend sees the client's own address; ClientIP affinity sticks;
// endpoints scaled down and up are followed; a Service without endpoints
// refuses connections; an external "iptables -t nat -F" on a node is
// repaired within the proxy's sync period (30 s).
func TestProxyWithoutKubeProxy(t *testing.T) {
	speakersWith(t, dataPathIronlb)
	for i := 1; i <= env.Lab.Nodes(); i++ {
		if nat := iptablesSave(t, i, "nat"); strings.Contains(nat, "KUBE-") {
			t.Fatalf("%s still has kube-proxy's rules:\n%s", env.Lab.NodeName(i), grepLines(nat, "KUBE-"))
		}
	}
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: px-l2}, spec: {addresses: ["192.0.2.235-192.0.2.239"], advertise: {l2: {}}}}`)
	ns := namespace(t, "px")
	svc := createService(t, ns, "nginx", 8000, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
	backends, err := env.StartBackendsOn(t.Context(), ns, "nginx", "nginx", 3, 80, 1, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	all := backendNames(backends)
	nodePort := int(svc.Spec.Ports[0].NodePort)
	clusterIP := svc.Spec.ClusterIP

	t.Run("NodePort on every node, from the LAN", func(t *testing.T) {
		for i := 1; i <= env.Lab.Nodes(); i++ {
			curlBackends(t, lab.HostLANClient, urlFor(env.Lab.NodeIP(i).String(), nodePort), all, 60)
		}
	})

	t.Run("ClusterIP from a pod", func(t *testing.T) {
		client := addClientPod(t, 1, "px-client")
		curlBackends(t, client.Host, urlFor(clusterIP, 8000), all, 60)
	})

	t.Run("iptables-save shows the Service chain balancing 1/3, 1/2, rest", func(t *testing.T) {
		var eps []string
		for _, b := range backends {
			eps = append(eps, netip.AddrPortFrom(b.IP, 80).String())
		}
		for i := 1; i <= env.Lab.Nodes(); i++ {
			chain, rules := serviceChainOf(t, iptablesSave(t, i, "nat"), eps)
			var probs []string
			for _, r := range rules {
				probs = append(probs, probabilityOf(r))
			}
			// The kernel keeps a probability as a 31-bit fraction: the
			// "0.3333333333" ironlb (and kube-proxy) writes is saved as
			// 0.33333333349.
			if len(probs) != 3 || !near(probs[0], 1.0/3) || !near(probs[1], 0.5) || probs[2] != "" {
				t.Errorf("%s: chain %s balances with probabilities %q, want 1/3, 1/2 and none:\n%s",
					env.Lab.NodeName(i), chain, probs, strings.Join(rules, "\n"))
			}
			if i == 1 {
				t.Logf("%s on %s:\n%s", chain, env.Lab.NodeName(i), strings.Join(rules, "\n"))
			}
		}
	})

	var vip string
	t.Run("LoadBalancer VIP announced by the speakers", func(t *testing.T) {
		updateService(t, ns, "nginx", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer })
		vip, _ = waitIngress(t, ns, "nginx", 10*time.Second)
		owner := waitL2Owner(t, vip, 10*time.Second).Node
		t.Logf("VIP %s announced by %s", vip, owner)
		curlBackends(t, lab.HostLANClient, urlFor(vip, 8000), all, 60)
		// Cluster policy: masqueraded, the backend sees a node's address.
		body, err := env.Lab.HTTPGet(t.Context(), lab.HostLANClient, urlFor(vip, 8000), 3*time.Second)
		if err != nil || peerOf(body) == "" || peerOf(body) == env.Lab.LANClientAddr().String() {
			t.Errorf("answer %q (%v): want the client masqueraded under Cluster policy", body, err)
		}
	})
	if vip == "" {
		t.FailNow()
	}

	t.Run("externalTrafficPolicy Local keeps the client address", func(t *testing.T) {
		updateService(t, ns, "nginx", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		want := env.Lab.LANClientAddr().String()
		var last string
		eventually(t, "the backend sees the LAN client's own address", 20*time.Second, func() bool {
			body, err := env.Lab.HTTPGet(t.Context(), lab.HostLANClient, urlFor(vip, 8000), 3*time.Second)
			last = body
			return err == nil && peerOf(body) == want
		})
		owner := waitL2Owner(t, vip, 10*time.Second).Node
		for range 10 {
			body, err := env.Lab.HTTPGet(t.Context(), lab.HostLANClient, urlFor(vip, 8000), 3*time.Second)
			if err != nil || peerOf(body) != want {
				t.Fatalf("answer %q (%v): want the client address %s (last before: %q)", body, err, want, last)
			}
			if b := backendOn(backends, nodeIndex(t, owner)); !strings.HasPrefix(body, b+" ") {
				t.Fatalf("answer %q: want the backend on the announcing node %s (%s)", body, owner, b)
			}
		}
		updateService(t, ns, "nginx", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		})
	})

	t.Run("ClientIP affinity sticks", func(t *testing.T) {
		updateService(t, ns, "nginx", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP })
		for i := 1; i <= env.Lab.Nodes(); i++ {
			waitNAT(t, i, "affinity rules", func(nat string) bool { return strings.Contains(nat, "--update --seconds 10800") })
		}
		first := ""
		for i := range 12 {
			body, err := env.Lab.HTTPGet(t.Context(), lab.HostLANClient, urlFor(vip, 8000), 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			name := strings.Fields(body)[0]
			if i == 0 {
				first = name
			} else if name != first {
				t.Fatalf("connection %d answered by %s, the first by %s", i+1, name, first)
			}
		}
		updateService(t, ns, "nginx", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityNone })
		for i := 1; i <= env.Lab.Nodes(); i++ {
			waitNAT(t, i, "no affinity rules", func(nat string) bool { return !strings.Contains(nat, "--update --seconds 10800") })
		}
	})

	t.Run("scaling the endpoints is followed", func(t *testing.T) {
		gone := backends[2]
		if err := env.PublishEndpoints(t.Context(), ns, "nginx", 80, backends[:2], false); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= env.Lab.Nodes(); i++ {
			waitNAT(t, i, "the endpoint removed", func(nat string) bool { return !strings.Contains(nat, "--to-destination "+gone.IP.String()+":80") })
		}
		seen := map[string]bool{}
		for range 30 {
			body, err := env.Lab.HTTPGet(t.Context(), lab.HostLANClient, urlFor(vip, 8000), 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			seen[strings.Fields(body)[0]] = true
		}
		if seen[gone.Name] || len(seen) != 2 {
			t.Errorf("after scaling to two endpoints: answered by %v, want %s and %s only", seen, all[0], all[1])
		}
		if err := env.PublishEndpoints(t.Context(), ns, "nginx", 80, backends, false); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= env.Lab.Nodes(); i++ {
			waitNAT(t, i, "the endpoint back", func(nat string) bool { return strings.Contains(nat, "--to-destination "+gone.IP.String()+":80") })
		}
		curlBackends(t, lab.HostLANClient, urlFor(vip, 8000), all, 60)
	})

	t.Run("a Service without endpoints refuses connections", func(t *testing.T) {
		empty := createService(t, ns, "empty", 8001, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
		np := int(empty.Spec.Ports[0].NodePort)
		for i := 1; i <= env.Lab.Nodes(); i++ {
			waitFilter(t, i, "the REJECT rule of px/empty", func(filter string) bool {
				return emptyRejected.MatchString(filter)
			})
		}
		client := addClientPod(t, 2, "px-client2")
		for _, probe := range []struct{ from, url string }{
			{lab.HostLANClient, urlFor(env.Lab.NodeIP(3).String(), np)},
			{client.Host, urlFor(empty.Spec.ClusterIP, 8001)},
		} {
			start := time.Now()
			body, err := env.Lab.HTTPGet(t.Context(), probe.from, probe.url, 5*time.Second)
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "(7)") || took > 3*time.Second {
				t.Errorf("%s from %s: %q, %v after %v; want connection refused at once (curl exit 7), not a timeout", probe.url, probe.from, body, err, took)
			}
		}
	})

	t.Run("iptables -t nat -F on a node is repaired within the sync period", func(t *testing.T) {
		if _, err := env.Lab.Exec(t.Context(), env.Lab.NodeName(2), "iptables", "-t", "nat", "-F"); err != nil {
			t.Fatal(err)
		}
		url := urlFor(env.Lab.NodeIP(2).String(), nodePort)
		if body, err := env.Lab.HTTPGet(t.Context(), lab.HostLANClient, url, 2*time.Second); err == nil {
			t.Fatalf("the flush did not break the NodePort (answer %q): the test proves nothing", body)
		}
		start := time.Now()
		eventually(t, "the NodePort answers again", 45*time.Second, func() bool {
			_, err := env.Lab.HTTPGet(t.Context(), lab.HostLANClient, url, time.Second)
			return err == nil
		})
		t.Logf("repaired %v after the flush (sync period 30 s)", time.Since(start).Round(100*time.Millisecond))
		curlBackends(t, lab.HostLANClient, url, all, 60)
	})
}

// iptablesSave returns iptables-save of one table in lab node i.
func iptablesSave(t *testing.T, i int, table string) string {
	t.Helper()
	out, err := env.Lab.Exec(t.Context(), env.Lab.NodeName(i), "iptables-save", "-t", table)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func waitNAT(t *testing.T, i int, what string, ok func(string) bool) {
	t.Helper()
	waitTable(t, i, "nat", what, ok)
}

func waitFilter(t *testing.T, i int, what string, ok func(string) bool) {
	t.Helper()
	waitTable(t, i, "filter", what, ok)
}

// waitTable polls iptables-save of a table in node i until ok says yes.
func waitTable(t *testing.T, i int, table, what string, ok func(string) bool) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		out, err := env.Lab.Exec(ctx, env.Lab.NodeName(i), "iptables-save", "-t", table)
		last = out
		return err == nil && ok(out), nil
	})
	if err != nil {
		t.Fatalf("%s %s: %s not programmed within 20s:\n%s", env.Lab.NodeName(i), table, what, last)
	}
}

var emptyRejected = regexp.MustCompile(`px/empty:? has no endpoints.* -j REJECT`)

var dnatTo = regexp.MustCompile(`-j DNAT --to-destination (\S+)`)

// serviceChainOf finds in iptables-save output the chain whose DNAT rules go
// to exactly the endpoints eps and returns it with those rules in order.
func serviceChainOf(t *testing.T, save string, eps []string) (string, []string) {
	t.Helper()
	byChain := map[string][]string{}
	var order []string
	for _, line := range strings.Split(save, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || !dnatTo.MatchString(line) {
			continue
		}
		if _, ok := byChain[f[1]]; !ok {
			order = append(order, f[1])
		}
		byChain[f[1]] = append(byChain[f[1]], line)
	}
	want := slices.Clone(eps)
	slices.Sort(want)
	for _, c := range order {
		var got []string
		for _, r := range byChain[c] {
			got = append(got, dnatTo.FindStringSubmatch(r)[1])
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return c, byChain[c]
		}
	}
	t.Fatalf("no chain DNATs to exactly %v:\n%s", eps, grepLines(save, "DNAT"))
	return "", nil
}

var probability = regexp.MustCompile(`--probability (\S+)`)

func probabilityOf(rule string) string {
	if m := probability.FindStringSubmatch(rule); m != nil {
		return m[1]
	}
	return ""
}

func near(s string, want float64) bool {
	f, err := strconv.ParseFloat(s, 64)
	return err == nil && math.Abs(f-want) < 1e-9
}

// peerOf returns the client address a pod server answer names ("NAME ip:port").
func peerOf(body string) string {
	f := strings.Fields(body)
	if len(f) < 2 {
		return ""
	}
	ap, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return ""
	}
	return ap.Addr().String()
}

func backendOn(bs []framework.Backend, node int) string {
	for _, b := range bs {
		if b.Node == node {
			return b.Name
		}
	}
	return ""
}

// addClientPod adds a pod on node with no server: a client inside the pod
// network. It lives as long as the lab.
func addClientPod(t *testing.T, node int, name string) lab.Pod {
	t.Helper()
	used := map[string]bool{}
	for _, p := range env.Lab.Pods() {
		used[p.Host] = true
	}
	for k := 254; k > 200; k-- {
		if used[fmt.Sprintf("pod-%d-%d", node, k)] {
			continue
		}
		pod, err := env.Lab.AddPod(t.Context(), node, k, name)
		if err != nil {
			t.Fatal(err)
		}
		return pod
	}
	t.Fatalf("no free pod index on node %d", node)
	return lab.Pod{}
}
