// Command demo is `make demo`: it builds the lab (a real kube-apiserver + etcd, three
// nodes, a router and clients in network namespaces), runs ironlb-controller and an
// ironlb-speaker per node (with ironlb's own iptables proxy, no kube-proxy) against
// it, applies an IPPool, a BGPPeer and the classic nginx Service, and narrates what
// happens with timings: the allocation, the ARP answer from the elected node, curl
// through the VIP from the LAN and from behind the router, and a failover when the
// owner's speaker is killed. With --keep the lab stays up until Ctrl-C, with
// commands to look around.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ironlb/ironlb/test/cluster"
	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

var start = time.Now()

func say(format string, args ...any) {
	fmt.Printf("[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func main() {
	keep := flag.Bool("keep", false, "leave the lab up until Ctrl-C and print commands to look around")
	flag.Parse()
	if err := framework.CheckHost(); err != nil {
		fmt.Fprintf(os.Stderr, "make demo: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "make demo: FAILED: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, keep bool) (err error) {
	fmt.Println("ironlb demo: a bare-metal cluster in network namespaces gets a LoadBalancer VIP")
	say("preparing binaries (kube-apiserver v1.37.2 and etcd are built from the Go module proxy once, then cached)")
	env, err := framework.Up(ctx, framework.Options{Nodes: 3, IPv6: true, Router: true, Log: progress{}})
	if err != nil {
		return err
	}
	defer func() {
		say("tearing down: processes, namespaces and links of lab %s", env.Lab.Prefix())
		pids := env.PIDs()
		env.Down()
		if left := env.Leftovers(pids); left != "" {
			say("FAILED to clean up: %s is left (make lab-clean removes it)", left)
			if err == nil {
				err = fmt.Errorf("teardown left %s behind", left)
			}
			return
		}
		say("done; checked: no namespace, link or process of lab %s is left", env.Lab.Prefix())
	}()
	l, c := env.Lab, env.Cluster
	say("lab %s up: switch; cp %s; node1-3 %s-%s; router %s / %s (AS 64512); client %s; lanclient %s",
		l.Prefix(), l.CPAddr(), l.NodeIP(1), l.NodeIP(3), l.RouterLANAddr(), l.RouterWANAddr(), l.ClientAddr(), l.LANClientAddr())
	say("kube-apiserver + etcd running in %s (RBAC on, client certs, ServiceAccount tokens); CRDs installed; 3 Ready Nodes", l.Netns(lab.HostCP))

	if err := l.StartFRR(ctx, lab.DefaultFRRConfig(l, 0)); err != nil {
		return fmt.Errorf("FRR on the router: %w", err)
	}
	say("FRR bgpd+zebra on the router, neighbours = the three nodes (AS 64600)")

	ctrl, err := env.StartController(ctx)
	if err != nil {
		return err
	}
	say("ironlb-controller started as ServiceAccount ironlb-system/ironlb-controller (RBAC and args from deploy/)")

	speakers, err := env.StartSpeakers(ctx, env.IronlbProxyArgs()...)
	if err != nil {
		return err
	}
	say("ironlb-speaker ready on node1-3 as ServiceAccount ironlb-system/ironlb-speaker (RBAC and args from deploy/speaker), --proxy=iptables: ironlb's own data path, no kube-proxy")

	peer := `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: router},
	  spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, holdTime: 9s, keepaliveTime: 3s}}`
	if _, err := framework.CreateYAML(ctx, c.Dynamic, framework.BGPPeers, peer); err != nil {
		return err
	}
	pool := `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: lan},
	  spec: {addresses: ["192.0.2.200-192.0.2.250", "2001:db8::200-2001:db8::2ff"], advertise: {l2: {}, bgp: {}}}}`
	if _, err := framework.CreateYAML(ctx, c.Dynamic, framework.IPPools, pool); err != nil {
		return err
	}
	say("IPPool lan: 192.0.2.200-192.0.2.250, 2001:db8::200-2001:db8::2ff, announced by ARP/NDP and by BGP to BGPPeer router (192.0.2.1)")

	backends, err := env.StartBackends(ctx, "default", "nginx-service", "nginx", 3, 80)
	if err != nil {
		return err
	}
	for _, b := range backends {
		from := l.NodeName(b.Node%l.Nodes() + 1)
		body, err := l.HTTPGet(ctx, from, fmt.Sprintf("http://%s:80/", b.IP), 5*time.Second)
		if err != nil {
			return fmt.Errorf("backend %s: %w", b.Name, err)
		}
		say("nginx replica %s at %s on %s answers %s: %q", b.Name, b.IP, l.NodeName(b.Node), from, strings.TrimSpace(body))
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-service", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "nginx"},
			Ports:    []corev1.ServicePort{{Port: 8000, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP}},
		},
	}
	applied := time.Now()
	if _, err := c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	say("Service nginx-service applied: type LoadBalancer, port 8000 -> 80, selector app=nginx")
	var vip string
	err = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := c.Client.CoreV1().Services("default").Get(ctx, "nginx-service", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		vip = s.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("nginx-service got no address: %w\n%s", err, ctrl.Tail(2000))
	}
	took := time.Since(applied)
	say("EXTERNAL-IP %s assigned %v after the Service was created", vip, took.Round(time.Millisecond))
	if ev := event(ctx, c, "nginx-service", "IPAllocated"); ev != "" {
		say("Event on the Service: IPAllocated: %s", ev)
	}
	_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		u, err := c.Dynamic.Resource(framework.IPPools).Get(ctx, "lan", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		n := func(field string) int64 { v, _, _ := unstructured.NestedInt64(u.Object, "status", field); return v }
		if n("assigned") == 1 {
			say("IPPool lan status: assigned %d, available %d (IPv4 %d + IPv6 %d)",
				n("assigned"), n("available"), n("availableIPv4"), n("availableIPv6"))
			return true, nil
		}
		return false, nil
	})

	fmt.Println()
	say("the speakers announce it (probed for real from the lab clients):")
	var owner framework.Announcement
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		anns, err := env.Announcements(ctx, vip)
		for _, a := range anns {
			if err == nil && a.Mode == "L2" && len(a.Interfaces) > 0 {
				owner = a
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("%s not announced by L2: %w", vip, err)
	}
	say("  ServiceAnnouncement: %s announces %s on %v (ARP), %v after the Service was created; elected by rendezvous hash among the Ready nodes",
		owner.Node, vip, owner.Interfaces, time.Since(applied).Round(time.Millisecond))
	if ev := event(ctx, c, "nginx-service", "Announcing"); ev != "" {
		say("  Event on the Service: Announcing: %s", ev)
	}
	mac, _ := l.MAC(owner.Node, lab.LANIf)
	macs, err := l.ARPing(ctx, lab.HostLANClient, mustAddr(vip), 3)
	if err != nil {
		return err
	}
	say("  ARP who-has %s from lanclient (3 requests): answered by %v only; %s's lan0 is %s", vip, macs, owner.Node, mac)
	if err := curlRound(ctx, env, lab.HostLANClient, vip, 6); err != nil {
		return err
	}
	reachable := time.Since(start)
	var hops []string
	_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		routes, err := l.RouterRoutes(ctx)
		hops = routes[vip+"/32"]
		return err == nil && len(hops) == l.Nodes(), nil
	})
	if len(hops) > 0 {
		say("  router (FRR) route to %s/32 via %v (ECMP: every node advertises by BGP)", vip, hops)
		if err := curlRound(ctx, env, lab.HostClient, vip, 6); err != nil {
			return err
		}
	} else {
		say("  router has no route to %s/32 (BGP sessions did not come up)", vip)
	}

	fmt.Println()
	idx := 0
	fmt.Sscanf(strings.TrimPrefix(owner.Node, "node"), "%d", &idx)
	killed := speakers[idx-1]
	t0 := time.Now()
	killed.Kill()
	say("failover: SIGKILL to the speaker on %s (no goodbye; the others must notice)", owner.Node)
	var next framework.Announcement
	err = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		anns, err := env.Announcements(ctx, vip)
		for _, a := range anns {
			if err == nil && a.Mode == "L2" && a.Node != owner.Node && len(a.Interfaces) > 0 {
				next = a
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("no takeover of %s: %w", vip, err)
	}
	say("  %s took %s over: its ServiceAnnouncement was written %v after the kill (memberlist detection about 0.8s, then a gratuitous ARP burst)",
		next.Node, vip, time.Since(t0).Round(time.Millisecond))
	nextMAC, _ := l.MAC(next.Node, lab.LANIf)
	macs, _ = l.ARPing(ctx, lab.HostLANClient, mustAddr(vip), 3)
	say("  ARP who-has %s from lanclient: answered by %v only (%s's lan0 is %s)", vip, macs, next.Node, nextMAC)
	if err := curlRound(ctx, env, lab.HostLANClient, vip, 3); err != nil {
		return err
	}
	if _, err := env.StartSpeaker(ctx, idx, env.IronlbProxyArgs()...); err != nil {
		return err
	}
	macs, _ = l.ARPing(ctx, lab.HostLANClient, mustAddr(vip), 3)
	say("  %s's speaker restarted and ready: ARP still answered by %v (%s keeps it: no failback)", owner.Node, macs, next.Node)
	say("  (figures over many trials: make bench-lab; see docs/benchmarks.md)")
	fmt.Println()
	say("from nothing to a VIP answering curl from the LAN: %v (of which the allocation itself: %v)", reachable.Round(100*time.Millisecond), took.Round(time.Millisecond))

	if keep {
		tour(ctx, env, ctrl)
	}
	return nil
}

func tour(ctx context.Context, env *framework.Env, ctrl *framework.Controller) {
	l, c := env.Lab, env.Cluster
	kubectl := findKubectl(ctx)
	fmt.Printf(`
The lab stays up until you press Ctrl-C here (or run 'make lab-clean' elsewhere).
Look around (as root, from another terminal):

  %[1]s --kubeconfig %[2]s get svc,ippools,events -A
  %[1]s --kubeconfig %[2]s get serviceannouncements,bgpsessions
  ip netns list | grep %[3]s
  ip netns exec %[3]s-lanclient arping -c 2 -I lan0 %[4]s
  ip netns exec %[3]s-node2 curl -s http://198.18.1.10/
  ip netns exec %[3]s-router vtysh -N %[3]s-router -c "show bgp summary"
  ip netns exec %[3]s-router ip route
  ip netns exec %[3]s-client curl -s http://%[4]s:8000/
  ip netns exec %[3]s-node1 iptables-save -t nat | grep IRONLB | head
  less %[7]s          (speaker logs: nodeN-speaker.log)
  less %[5]s          (ironlb-controller log)
  less %[6]s          (kube-apiserver log)
`, kubectl, c.AdminKubeconfig, l.Prefix(), "192.0.2.200", ctrl.LogPath(), filepath.Join(c.Dir, "kube-apiserver.log"), filepath.Join(l.Dir(), "node1-speaker.log"))
	<-ctx.Done()
	fmt.Println()
}

// findKubectl returns kubectl from PATH, or builds it from the same k8s.io/kubernetes
// module as the API server (cached next to it).
func findKubectl(ctx context.Context) string {
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	dir, err := cluster.TestModuleDir()
	if err != nil {
		return "kubectl"
	}
	cache, _ := os.UserCacheDir()
	out := filepath.Join(cache, "ironlb", "bin", "kubectl-v1.37.2")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	say("building kubectl v1.37.2 for the tour (once) ...")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "k8s.io/kubernetes/cmd/kubectl")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		say("could not build kubectl: %v %s", err, b)
		return "kubectl"
	}
	return out
}

// curlRound sends n requests (one connection each) to the VIP from host and
// says which backends answered.
func curlRound(ctx context.Context, env *framework.Env, from, vip string, n int) error {
	var names []string
	for range n {
		body, err := env.Lab.HTTPGet(ctx, from, fmt.Sprintf("http://%s:8000/", vip), 3*time.Second)
		if err != nil {
			return fmt.Errorf("curl from %s: %w", from, err)
		}
		if f := strings.Fields(body); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	say("  curl http://%s:8000/ from %s, %d times: answered by %s", vip, from, n, strings.Join(names, " "))
	return nil
}

func event(ctx context.Context, c *cluster.Cluster, name, reason string) string {
	msg, _ := framework.WaitEvent(ctx, c.Client, "default", name, reason, 5*time.Second)
	return msg
}

// progress prints build progress lines with the demo's clock.
type progress struct{}

func (progress) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			say("%s", line)
		}
	}
	return len(p), nil
}
