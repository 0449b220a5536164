// Command benchbgp measures ironlb-speaker's BGP mode in the lab: 3 nodes, a
// real kube-apiserver + etcd, ironlb-controller, one ironlb-speaker per node
// (as its ServiceAccount, with the DaemonSet's args) and FRR on the router,
// whose routes are read with vtysh every 10 ms:
//
//	(a) a Service created -> its route at the router (first next hop, and all
//	    three); the Service deleted -> the route gone;
//	(b) 1,000 Services -> all 1,000 routes at the router, three ways: the
//	    Services created through the API with ironlb-controller allocating
//	    (end to end); their status written directly by the bench with the
//	    controller stopped (what the speakers and the router take once the
//	    addresses are published); and the pool's advertise.bgp switched off and
//	    on with one write (the speakers, GoBGP and FRR alone);
//	(c) a node's speaker SIGKILLed, or its LAN link cut, -> its next hop gone
//	    at the router, with BFD (100 ms x 3) and without (hold time 3 s). A
//	    killed process's kernel still closes its TCP session (the router
//	    hears a FIN), so only the link cut is a silent failure: it is what a
//	    dead node or a pulled cable looks like;
//	(d) a speaker stopped with SIGTERM (a planned restart) while the client
//	    behind the router opens a connection through the VIP every 10 ms:
//	    probes lost while it stops, and when its successor advertises again.
//
// Each figure is reported as p50/p95/min/max over the trials with the load
// average, since the machine is shared.
//
// Usage (make bench-lab runs it): go run ./cmd/benchbgp [-trials 10]
// [-bulk 1000] [-bulk-trials 3] [-only a,b,c,d] [-bfd] [-audit] [-no-nodeports]
// [-profile DIR]
//
// (b) through the API also reports the API requests of each burst by verb and
// resource (the API server's apiserver_request_total), with -audit by client,
// and the CPU each lab process used. With -profile DIR the speakers run with
// --profiling and (b) writes CPU profiles of node 1's speaker during its first
// bursts, status written directly and Services created through the API, to
// DIR/speaker-1-direct.pprof and DIR/speaker-1-api.pprof (read them with go
// tool pprof -top).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/internal/benchlog"
	"github.com/ironlb/ironlb/test/lab"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		if err := runProbe(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(1)
		}
		return
	}
	trials := flag.Int("trials", 10, "trials per scenario of (a), (c) and (d)")
	bulk := flag.Int("bulk", 1000, "Services of (b), at most 1000")
	bulkTrials := flag.Int("bulk-trials", 3, "trials of (b) through the API; the pool switch runs 3x as many")
	only := flag.String("only", "a,b,c,d", "scenarios to run")
	withBFD := flag.Bool("bfd", false, "run BFD (100 ms x 3) from the start: (a), (b) and (d) with it; (c) runs both ways anyway and leaves it on for (d)")
	noNodePorts := flag.Bool("no-nodeports", false, "create (b)'s Services with allocateLoadBalancerNodePorts: false (the API server then allocates no NodePort per create)")
	audit := flag.Bool("audit", false, "run the API server with an audit log and report (b)'s requests by client too (costs the API server a log line per request)")
	profile := flag.String("profile", "", "folder: run the speakers with --profiling and write a CPU profile of node 1's speaker there during (b)'s first bursts: status written directly (speaker-1-direct.pprof, 8 s) and Services created through the API (speaker-1-api.pprof and kube-apiserver-api.pprof, 12 s)")
	flag.Parse()
	if err := framework.CheckHost(); err != nil {
		fmt.Fprintf(os.Stderr, "benchbgp: %v\n", err)
		os.Exit(1)
	}
	if *trials < 1 || *trials > 100 || *bulk < 1 || *bulk > 1000 || *bulkTrials < 1 {
		fmt.Fprintln(os.Stderr, "benchbgp: -trials 1..100, -bulk 1..1000, -bulk-trials >= 1")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer cancel()
	b := &bench{trials: *trials, bulk: *bulk, bulkTrials: *bulkTrials, only: strings.Split(*only, ","), startBFD: *withBFD, audit: *audit, noNodePorts: *noNodePorts, profile: *profile}
	if *profile != "" {
		b.speakerArgs = []string{"--profiling"}
	}
	if err := b.run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "benchbgp: FAILED: %v\n", err)
		os.Exit(1)
	}
}

var say = benchlog.Say

var loadavg = benchlog.LoadAvg

const (
	ns = "bench"
	// webVIP is the VIP of Service bench/web (one backend per node), which
	// (c) and (d) use.
	webVIP = "203.0.113.10"
	// holdTime is the BGP hold time of every session (keepalive 1 s).
	holdTime = 3 * time.Second
)

type bench struct {
	trials, bulk, bulkTrials int
	only                     []string

	env      *framework.Env
	writer   kubernetes.Interface // (b)'s writes: no client-side rate limit
	ctrl     *framework.Controller
	speakers map[int]*framework.Speaker
	poll     *poller
	self     string
	backends []framework.Backend
	bfd      bool // the router and the BGPPeer run BFD
	startBFD bool // -bfd
	audit    bool // -audit
	// noNodePorts: -no-nodeports
	noNodePorts bool
	// profile: -profile; speakerArgs are appended to every speaker's args.
	profile     string
	speakerArgs []string
}

func (b *bench) run(ctx context.Context) (err error) {
	say("bringing up the lab (3 nodes, kube-apiserver + etcd in cp, FRR on the router); load average %s", loadavg())
	b.env, err = framework.Up(ctx, framework.Options{Nodes: 3, Router: true, Audit: b.audit, Profiling: b.profile != ""})
	if err != nil {
		return err
	}
	defer b.env.Down()
	env := b.env
	// The lab's admin client allows 200 requests/s (bursts of 400): 1,000
	// creates and 1,000 status writes would wait for it, not for the API
	// server. A user's burst comes from many clients; so do (b)'s writes.
	wcfg := rest.CopyConfig(env.Cluster.AdminConfig)
	wcfg.QPS, wcfg.UserAgent = -1, "benchbgp-writer"
	if b.writer, err = kubernetes.NewForConfig(wcfg); err != nil {
		return err
	}
	b.poll = &poller{l: env.Lab}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.ctrl, err = env.StartController(ctx); err != nil {
		return err
	}
	sps, err := env.StartSpeakers(ctx, b.speakerArgs...)
	if err != nil {
		return err
	}
	b.speakers = map[int]*framework.Speaker{}
	for _, sp := range sps {
		b.speakers[sp.Node] = sp
	}
	if _, err := env.Cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, doc := range []string{
		`{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bench}, spec: {autoAssign: false, addresses: ["203.0.113.0/24"], advertise: {bgp: {}}}}`,
		// 1,000 IPv4 VIPs need more than 203.0.113.0/24: a /22 of
		// 198.18.0.0/15 that the lab's pods (198.18.<node>.0/24) and its
		// management links (198.18.252.0/22) do not use.
		`{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bulk}, spec: {autoAssign: false, addresses: ["198.18.100.0/22"], advertise: {bgp: {}}}}`,
	} {
		if _, err := framework.CreateYAML(ctx, env.Cluster.Dynamic, framework.IPPools, doc); err != nil {
			return err
		}
	}
	if err := b.startRouter(ctx, b.startBFD); err != nil {
		return err
	}
	if b.backends, err = env.StartBackendsOn(ctx, ns, "web", "web", 3, 80); err != nil {
		return err
	}
	if err := b.createService(ctx, ns, "web", webVIP, "bench"); err != nil {
		return err
	}
	if _, err := b.poll.until(ctx, time.Now(), 60*time.Second, routeQuery(hostPrefix(webVIP)), viaExactly(hostPrefix(webVIP), b.hops())); err != nil {
		return fmt.Errorf("Service web: %w", err)
	}
	say("Service web (%s) routed via all three nodes", webVIP)

	type scenario struct {
		key, title string
		run        func(context.Context) ([]string, error)
	}
	var results []string
	for _, sc := range []scenario{
		{"a", "(a) Service created / deleted -> route at the router / gone", b.createDelete},
		{"b", fmt.Sprintf("(b) %d Services -> %d routes at the router", b.bulk, b.bulk), b.bulkRoutes},
		{"c", "(c) node failure -> its next hop gone at the router", b.failures},
		{"d", "(d) planned restart (SIGTERM) under a connection every 10 ms from the client", b.planned},
	} {
		if !slices.Contains(b.only, sc.key) {
			continue
		}
		if sc.key == "d" && b.bfd {
			sc.title += ", BFD on"
		}
		say("%s: load average %s", sc.title, loadavg())
		lines, err := sc.run(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.title, err)
		}
		results = append(results, sc.title+fmt.Sprintf(" [load average after: %s]", loadavg()))
		results = append(results, lines...)
	}
	fmt.Println()
	fmt.Printf("ironlb-speaker BGP mode, FRR %s on the router, vtysh polled every %v (up to %d queries at once; poll latency p50 %v, p95 %v), %s\n",
		frrVersion(ctx, env.Lab), pollEvery, maxInFlight, pct(b.poll.latencies, 0.5), pct(b.poll.latencies, 0.95), time.Now().Format(time.RFC3339))
	for _, l := range results {
		fmt.Println(l)
	}
	return nil
}

func frrVersion(ctx context.Context, l *lab.Lab) string {
	out, err := l.Vtysh(ctx, "show version")
	if err != nil {
		return "?"
	}
	for _, f := range strings.Fields(out) {
		if len(f) > 0 && f[0] >= '0' && f[0] <= '9' && strings.Contains(f, ".") {
			return f
		}
	}
	return "?"
}

func hostPrefix(ip string) netip.Prefix {
	return netip.PrefixFrom(netip.MustParseAddr(ip), 32)
}

// hops are the nodes' addresses as next hops, without the nodes in except.
func (b *bench) hops(except ...int) []string {
	var out []string
	for i := 1; i <= b.env.Lab.Nodes(); i++ {
		if !slices.Contains(except, i) {
			out = append(out, b.env.Lab.NodeIP(i).String())
		}
	}
	return out
}

// startRouter (re)starts FRR with a session to every node (hold time 3 s,
// with or without BFD) and sets BGPPeer "router" to match.
func (b *bench) startRouter(ctx context.Context, withBFD bool) error {
	env := b.env
	_ = env.Lab.StopFRR()
	conf := lab.RouterBGP{Keepalive: time.Second, Hold: holdTime, BFD: withBFD}.Config(env.Lab)
	var err error
	if withBFD {
		err = env.Lab.StartFRRWithBFD(ctx, conf, lab.RouterBFDConfig)
	} else {
		err = env.Lab.StartFRR(ctx, conf)
	}
	if err != nil {
		return err
	}
	peers := env.Cluster.Dynamic.Resource(framework.BGPPeers)
	if err := peers.Delete(ctx, "router", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	bfd := ""
	if withBFD {
		bfd = ", bfd: {minTx: 100ms, minRx: 100ms, multiplier: 3}"
	}
	doc := fmt.Sprintf(`{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: router}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, holdTime: %s, keepaliveTime: 1s%s}}`, holdTime, bfd)
	// The delete may still be in flight in the API server's view.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := framework.CreateYAML(ctx, env.Cluster.Dynamic, framework.BGPPeers, doc)
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("creating BGPPeer router: %w", err)
	}
	b.bfd = withBFD
	return nil
}

// createService creates LoadBalancer Service ns/name requesting ip from pool
// (without waiting for anything).
func (b *bench) createService(ctx context.Context, namespace, name, ip, pool string) error {
	ann := map[string]string{"ironlb.io/pool": pool}
	var nodePorts *bool
	if b.noNodePorts && namespace == bulkNS {
		nodePorts = new(bool)
	}
	if ip != "" {
		ann["ironlb.io/loadBalancerIPs"] = ip
	}
	_, err := b.writer.CoreV1().Services(namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: ann},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports:                         []corev1.ServicePort{{Port: 8000, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP}},
			AllocateLoadBalancerNodePorts: nodePorts},
	}, metav1.CreateOptions{})
	return err
}

// waitGone waits until Service ns/name no longer exists (the controller
// removed its finalizer).
func (b *bench) waitGone(ctx context.Context, namespace, name string) error {
	return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := b.env.Cluster.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// createDelete: (a).
func (b *bench) createDelete(ctx context.Context) ([]string, error) {
	var status, first, all, gone []time.Duration
	client := b.env.Cluster.Client.CoreV1().Services(ns)
	for trial := 1; trial <= b.trials; trial++ {
		name := fmt.Sprintf("cd-%d", trial)
		ip := fmt.Sprintf("203.0.113.%d", 100+trial)
		prefix := hostPrefix(ip)
		if err := b.env.PublishEndpoints(ctx, ns, name, 80, b.backends, false); err != nil {
			return nil, err
		}
		// The controller's share: when the address is published.
		statusAt := make(chan time.Time, 1)
		t0 := time.Now()
		created := make(chan error, 1)
		go func() {
			err := b.createService(ctx, ns, name, ip, "bench")
			created <- err
			if err != nil {
				return
			}
			_ = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
				s, err := client.Get(ctx, name, metav1.GetOptions{})
				if err == nil && len(s.Status.LoadBalancer.Ingress) > 0 {
					statusAt <- time.Now()
					return true, nil
				}
				return false, nil
			})
		}()
		d1, err := b.poll.until(ctx, t0, 15*time.Second, routeQuery(prefix), func(out string) bool { return len(nextHops(out, prefix)) > 0 })
		if err != nil {
			return nil, errors.Join(err, <-created)
		}
		d3, err := b.poll.until(ctx, t0, 15*time.Second, routeQuery(prefix), viaExactly(prefix, b.hops()))
		if err != nil {
			return nil, err
		}
		var ds time.Duration
		select {
		case at := <-statusAt:
			ds = at.Sub(t0)
			status = append(status, ds)
		case <-time.After(5 * time.Second):
		}
		first, all = append(first, d1), append(all, d3)

		t0 = time.Now()
		go func() { _ = client.Delete(ctx, name, metav1.DeleteOptions{}) }()
		dg, err := b.poll.until(ctx, t0, 15*time.Second, routeQuery(prefix), func(out string) bool { return len(nextHops(out, prefix)) == 0 })
		if err != nil {
			return nil, err
		}
		gone = append(gone, dg)
		if err := b.waitGone(ctx, ns, name); err != nil {
			return nil, fmt.Errorf("Service %s not gone: %w", name, err)
		}
		say("  trial %d: %s: address published %v, route via 1 node %v, via 3 nodes %v; deleted -> route gone %v",
			trial, ip, ms(ds), ms(d1), ms(d3), ms(dg))
	}
	return []string{
		stats("create -> address published (the controller's share)", status),
		stats("create -> route at the router (first next hop)", first),
		stats("create -> route via all 3 nodes", all),
		stats("delete -> route gone", gone),
	}, nil
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

var (
	pct   = benchlog.Quantile
	stats = benchlog.Stats
)

// speakerCPU is the CPU time the running speakers have used (user +
// system, from /proc/<pid>/stat).
func (b *bench) speakerCPU() time.Duration {
	var total time.Duration
	for _, sp := range b.speakers {
		total += processCPU(sp.Pid())
	}
	return total
}
