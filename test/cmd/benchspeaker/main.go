// Command benchspeaker measures ironlb-speaker's layer-2 failover in the lab
// (3 nodes, real kube-apiserver + etcd, ironlb-controller, a real kube-proxy
// per node or ironlb's proxy with -proxy=ironlb), with probes every 10 ms:
//
//	(a) the owner's speaker SIGKILLed: time until another node answers ARP for
//	    the VIP (ARP requests from cp every 10 ms);
//	(b) the owner node's LAN link cut (its switch port down): time until a new
//	    HTTP connection from lanclient (one every 10 ms) is answered again, the
//	    probes lost, and the ARP takeover time;
//	(c) the owner's speaker stopped with SIGTERM (a planned restart) while
//	    lanclient opens a connection every 10 ms and keeps 8 connections
//	    streaming requests (one each per 10 ms) across it: probes lost
//	    (target 0), long-lived connections broken, and the longest ARP gap;
//	(p) memberlist traffic of node1 cut from the two others, then healed: how
//	    long two MACs answered for a VIP after the heal, and the longest time
//	    any VIP went without an ARP answer.
//
// Every trial starts from a converged cluster (every speaker ready and seeing
// all three members, every VIP announced by one node). Each figure is reported
// as p50/p95/max over the trials with the machine's load average, since the
// machine is shared.
//
// With -peer metallb, scenarios a, b and c then run again on MetalLB's own
// speaker in the same lab (metallb.go), with the ratios.
//
// Usage (make bench-lab runs it): go run ./cmd/benchspeaker [-trials 10] [-vips 6] [-proxy kube-proxy|ironlb] [-only a,b,c,p] [-peer metallb]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

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
	trials := flag.Int("trials", 10, "trials per scenario")
	vips := flag.Int("vips", 6, "LoadBalancer Services (one VIP each) spread over the nodes")
	dataPath := flag.String("proxy", "kube-proxy", "data path on the nodes: kube-proxy (speakers with --proxy=none) or ironlb (--proxy=iptables)")
	only := flag.String("only", "a,b,c,p", "scenarios to run")
	logs := flag.String("logs", "", "copy the speakers' logs into this folder at the end")
	peer := flag.String("peer", "", "metallb: then run a, b, c on MetalLB's speaker (v0.15.2) too, in the same lab")
	flag.Parse()
	if err := framework.CheckHost(); err != nil {
		fmt.Fprintf(os.Stderr, "benchspeaker: %v\n", err)
		os.Exit(1)
	}
	if *dataPath != "kube-proxy" && *dataPath != "ironlb" {
		fmt.Fprintln(os.Stderr, "benchspeaker: -proxy must be kube-proxy or ironlb")
		os.Exit(2)
	}
	if *peer != "" && (*peer != "metallb" || *dataPath != "kube-proxy") {
		fmt.Fprintln(os.Stderr, "benchspeaker: -peer takes metallb, with -proxy kube-proxy")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer cancel()
	b := &bench{trials: *trials, nVIPs: *vips, dataPath: *dataPath, only: strings.Split(*only, ","), logs: *logs, peerName: *peer}
	if err := b.run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "benchspeaker: FAILED: %v\n", err)
		os.Exit(1)
	}
}

var say = benchlog.Say

type bench struct {
	trials   int
	nVIPs    int
	dataPath string
	only     []string
	logs     string
	peerName string

	// peer is set while MetalLB's speakers run (metallb.go), slack is then
	// added to every probe window.
	peer  *metallbSpeakers
	slack time.Duration

	env      *framework.Env
	speakers map[string]*framework.Speaker // by node name
	extra    []string                      // speaker args
	vips     []netip.Addr
	svcs     []string
	backends []framework.Backend
	macs     map[string]string // node -> lan0 MAC
	self     string
}

var loadavg = benchlog.LoadAvg

func (b *bench) run(ctx context.Context) (err error) {
	say("bringing up the lab (3 nodes, kube-apiserver + etcd in cp); load average %s", loadavg())
	b.env, err = framework.Up(ctx, framework.Options{Nodes: 3})
	if err != nil {
		return err
	}
	defer b.env.Down()
	env := b.env
	if b.logs != "" {
		defer func() {
			_ = os.MkdirAll(b.logs, 0o755)
			files, _ := filepath.Glob(filepath.Join(env.Lab.Dir(), "node*speaker*.log")) // MetalLB's too (metallb.go)
			for _, f := range files {
				if data, err := os.ReadFile(f); err == nil {
					_ = os.WriteFile(filepath.Join(b.logs, filepath.Base(f)), data, 0o644)
				}
			}
		}()
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if _, err := env.StartController(ctx); err != nil {
		return err
	}
	if b.dataPath == "kube-proxy" {
		for i := 1; i <= env.Lab.Nodes(); i++ {
			if _, err := env.StartKubeProxy(ctx, i); err != nil {
				return err
			}
		}
	} else {
		b.extra = env.IronlbProxyArgs()
	}
	sps, err := env.StartSpeakers(ctx, b.extra...)
	if err != nil {
		return err
	}
	b.speakers = map[string]*framework.Speaker{}
	b.macs = map[string]string{}
	for _, sp := range sps {
		b.speakers[sp.Name] = sp
		if b.macs[sp.Name], err = env.Lab.MAC(sp.Name, lab.LANIf); err != nil {
			return err
		}
	}
	say("speakers on 3 nodes (data path: %s)", b.dataPath)
	if _, err := framework.CreateYAML(ctx, env.Cluster.Dynamic, framework.IPPools,
		`{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bench}, spec: {addresses: ["192.0.2.200-192.0.2.219"], advertise: {l2: {}}}}`); err != nil {
		return err
	}
	if err := b.services(ctx); err != nil {
		return err
	}
	type scenario struct {
		key, title string
		run        func(context.Context) ([]string, error)
	}
	var results []string
	for _, sc := range []scenario{
		{"a", "(a) owner's speaker SIGKILLed", b.killed},
		{"b", "(b) owner node's LAN link cut", b.linkCut},
		{"c", "(c) owner's speaker stopped (SIGTERM) under a connection stream", b.planned},
		{"p", "(p) memberlist partition of node1, then heal", b.partition},
	} {
		if !slices.Contains(b.only, sc.key) {
			continue
		}
		say("%s: %d trials; load average %s", sc.title, b.trials, loadavg())
		lines, err := sc.run(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.title, err)
		}
		results = append(results, sc.title+fmt.Sprintf(" [load average after: %s]", loadavg()))
		results = append(results, lines...)
	}
	if b.peerName == "metallb" {
		lines, err := b.runMetalLB(ctx)
		if err != nil {
			return err
		}
		results = append(results, lines...)
	}
	fmt.Println()
	fmt.Printf("ironlb-speaker L2 failover, %d trials per scenario, probes every 10 ms, data path %s, %s\n", b.trials, b.dataPath, time.Now().Format(time.RFC3339))
	for _, l := range results {
		fmt.Println(l)
	}
	return nil
}

// services creates nVIPs LoadBalancer Services in namespace bench, all with
// the same three backends (one per node), and waits until each is announced.
func (b *bench) services(ctx context.Context) error {
	env := b.env
	if _, err := env.Cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	names := make([]string, b.nVIPs)
	for k := range names {
		names[k] = fmt.Sprintf("svc-%d", k)
		_, err := env.Cluster.Client.CoreV1().Services("bench").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: names[k], Namespace: "bench"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 8000, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
	}
	b.svcs = names
	backends, err := env.StartBackendsOn(ctx, "bench", names[0], "web", 3, 80)
	if err != nil {
		return err
	}
	b.backends = backends
	if err := b.publish(ctx, ""); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range names {
		for {
			s, err := env.Cluster.Client.CoreV1().Services("bench").Get(ctx, n, metav1.GetOptions{})
			if err == nil && len(s.Status.LoadBalancer.Ingress) > 0 {
				b.vips = append(b.vips, netip.MustParseAddr(s.Status.LoadBalancer.Ingress[0].IP))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("Service %s got no address", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	owners, err := b.converge(ctx)
	if err != nil {
		return err
	}
	say("%d VIPs announced: %v", len(b.vips), owners)
	return nil
}

// publish makes the backends the endpoints of every Service, except the one
// on node without (none: all), and waits until no node's iptables rules
// forward to an endpoint that is not published any more.
func (b *bench) publish(ctx context.Context, without string) error {
	var eps []framework.Backend
	var gone []string
	for _, be := range b.backends {
		if b.env.Lab.NodeName(be.Node) == without {
			gone = append(gone, be.IP.String())
			continue
		}
		eps = append(eps, be)
	}
	for _, n := range b.svcs {
		if err := b.env.PublishEndpoints(ctx, "bench", n, 80, eps, false); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 1; i <= b.env.Lab.Nodes(); i++ {
		for {
			out, err := b.env.Lab.Exec(ctx, b.env.Lab.NodeName(i), "iptables-save", "-t", "nat")
			if err != nil {
				return err
			}
			stale := false
			for _, ip := range gone {
				stale = stale || strings.Contains(out, "--to-destination "+ip+":")
			}
			if !stale {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s still forwards to %v 30s after the endpoints changed", b.env.Lab.NodeName(i), gone)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// converge waits until every speaker is ready and sees all members, and every
// VIP has exactly one L2 announcement; it returns the owners.
func (b *bench) converge(ctx context.Context) (map[netip.Addr]string, error) {
	if b.peer != nil {
		return b.peer.converge(ctx, b)
	}
	env := b.env
	deadline := time.Now().Add(60 * time.Second)
	var why string
	for time.Now().Before(deadline) {
		why = ""
		for _, sp := range b.speakers {
			if err := env.WaitSpeakerReady(ctx, sp, 30*time.Second); err != nil {
				return nil, err
			}
			text, err := env.SpeakerMetrics(ctx, sp)
			if v, ok := framework.MetricValue(text, `ironlb_memberlist_members{state="alive"}`); err != nil || !ok || v != float64(len(b.speakers)) {
				why = fmt.Sprintf("%s sees %v members", sp.Name, v)
			}
		}
		owners := map[netip.Addr]string{}
		anns, err := env.Announcements(ctx, "")
		if err != nil {
			return nil, err
		}
		count := map[netip.Addr]int{}
		for _, a := range anns {
			if a.Mode == "L2" && len(a.Interfaces) > 0 {
				ip := netip.MustParseAddr(a.Address)
				owners[ip] = a.Node
				count[ip]++
			}
		}
		for _, ip := range b.vips {
			if count[ip] != 1 {
				why = fmt.Sprintf("%s has %d announcements", ip, count[ip])
			}
		}
		if why == "" {
			return owners, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("no convergence within 60s: %s", why)
}

// startProbe runs the prober in host's namespace with args, waits until it
// probes, and returns a function that waits for its report.
func (b *bench) startProbe(host string, args ...string) (func() (probeReport, error), error) {
	logPath := filepath.Join(b.env.Lab.Dir(), fmt.Sprintf("probe-%s-%d.json", host, time.Now().UnixNano()))
	p, err := b.env.Lab.Start(host, logPath, append([]string{b.self, "probe"}, args...)...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.Tail(4096), probingLine) {
		select {
		case <-p.Done():
			return nil, fmt.Errorf("prober exited: %v: %s", p.Err(), p.Tail(2000))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Stop()
			return nil, errors.New("prober did not start within 15s")
		}
	}
	return func() (probeReport, error) {
		select {
		case <-p.Done():
		case <-time.After(90 * time.Second):
			_ = p.Stop()
			return probeReport{}, errors.New("prober did not end")
		}
		var rep probeReport
		data, err := os.ReadFile(logPath)
		if err != nil {
			return rep, err
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
			return rep, fmt.Errorf("prober output: %v: %s", err, tailString(string(data), 500))
		}
		os.Remove(logPath)
		return rep, nil
	}, nil
}

// window is a probe's -duration: d, plus the slack of the implementation
// under test.
func (b *bench) window(d time.Duration) string { return (d + b.slack).String() }

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (b *bench) restart(ctx context.Context, node string) error {
	if b.peer != nil {
		return b.peer.restart(ctx, b, node)
	}
	i := 0
	fmt.Sscanf(strings.TrimPrefix(node, "node"), "%d", &i)
	sp, err := b.env.StartSpeaker(ctx, i, b.extra...)
	if err != nil {
		return err
	}
	b.speakers[node] = sp
	return nil
}

// firstAnswerAfter returns when the first ARP reply for vip from a MAC other
// than old came after t0, relative to t0.
func firstAnswerAfter(rep probeReport, vip netip.Addr, old string, t0 int64) (time.Duration, bool) {
	for _, r := range rep.ARPReplies {
		if r.VIP == vip.String() && r.MAC != old && r.T >= t0 {
			return time.Duration(r.T - t0), true
		}
	}
	return 0, false
}

// longestARPGap is the longest time vip went without any ARP reply in
// [from, to].
func longestARPGap(rep probeReport, vip netip.Addr, from, to int64) time.Duration {
	d, _ := longestARPGapAt(rep, vip, from, to)
	return d
}

// longestARPGapAt is longestARPGap and when that gap ended.
func longestARPGapAt(rep probeReport, vip netip.Addr, from, to int64) (time.Duration, int64) {
	// Only while requests were being sent (the window may start before the
	// prober's first request or end after its last).
	if n := len(rep.ARPSent); n > 0 {
		from = max(from, rep.ARPSent[0])
		to = min(to, rep.ARPSent[n-1])
	}
	if to <= from {
		return 0, to
	}
	last := from
	var worst, at int64
	for _, r := range rep.ARPReplies {
		if r.VIP != vip.String() || r.T < from || r.T > to {
			continue
		}
		if r.T-last > worst {
			worst, at = r.T-last, r.T
		}
		last = r.T
	}
	if to-last > worst {
		worst, at = to-last, to
	}
	return time.Duration(worst), at
}

// tcpLoss counts the probes started in [from, to] that were not answered, and
// returns the time from t0 to the start of the first answered probe after the
// last lost one (0 if none was lost).
func tcpLoss(rep probeReport, from, to, t0 int64) (lost, total int, outage time.Duration) {
	probes := rep.TCP // in start order (benchlog.ProbeEvery)
	lost, total, _ = benchlog.Lost(probes, from, to)
	if lost == 0 {
		return 0, total, 0
	}
	var lastLost int64
	for _, p := range probes {
		if !p.OK && p.Start >= from && p.Start <= to {
			lastLost = p.Start
		}
	}
	for _, p := range probes {
		if p.Start > lastLost && p.OK {
			return lost, total, time.Duration(p.Start - t0)
		}
	}
	return lost, total, time.Duration(to - t0)
}

// lostErrors summarises why probes started in [from, to] were lost.
func lostErrors(rep probeReport, from, to int64) string {
	_, _, why := benchlog.Lost(rep.TCP, from, to)
	return why
}

var stats = benchlog.Stats

func counts(name string, xs []int) string {
	s := slices.Clone(xs)
	slices.Sort(s)
	total := 0
	for _, x := range s {
		total += x
	}
	return fmt.Sprintf("  %-58s per trial %v (total %d)", name, s, total)
}

// killed: (a).
func (b *bench) killed(ctx context.Context) ([]string, error) {
	var takeover []time.Duration
	var lost []int
	missed := 0
	for trial := 1; trial <= b.trials; trial++ {
		owners, err := b.converge(ctx)
		if err != nil {
			return nil, err
		}
		vip := b.vips[(trial-1)%len(b.vips)]
		owner := owners[vip]
		arp, err := b.startProbe(lab.HostCP, "-arp", vip.String(), "-duration", b.window(5*time.Second))
		if err != nil {
			return nil, err
		}
		tcp, err := b.startProbe(lab.HostLANClient, "-tcp", netip.AddrPortFrom(vip, 8000).String(), "-duration", b.window(5*time.Second))
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Second)
		t0 := time.Now().UnixNano()
		b.speakers[owner].Kill()
		ra, err := arp()
		if err != nil {
			return nil, err
		}
		rt, err := tcp()
		if err != nil {
			return nil, err
		}
		d, ok := firstAnswerAfter(ra, vip, b.macs[owner], t0)
		if !ok {
			// Counted, not fatal: the figure is what it is on this machine.
			missed++
			say("  trial %d: killed %s (owner of %s): NO other node answered ARP within the %v probe window", trial, owner, vip, b.slack+4*time.Second)
			if err := b.restart(ctx, owner); err != nil {
				return nil, err
			}
			continue
		}
		l, _, _ := tcpLoss(rt, t0-int64(time.Second), t0+int64(3*time.Second+b.slack), t0)
		takeover = append(takeover, d)
		lost = append(lost, l)
		why := ""
		if l > 0 {
			why = " (" + lostErrors(rt, t0-int64(time.Second), t0+int64(3*time.Second+b.slack)) + ")"
		}
		say("  trial %d: killed %s (owner of %s): ARP answered by another node after %v; HTTP probes lost: %d%s", trial, owner, vip, d.Round(time.Millisecond), l, why)
		if err := b.restart(ctx, owner); err != nil {
			return nil, err
		}
	}
	return []string{
		stats("kill -> another node answers ARP", takeover),
		fmt.Sprintf("  %-58s %d of %d trials", fmt.Sprintf("no takeover within %v", b.slack+4*time.Second), missed, b.trials),
		counts("HTTP probes lost (the node's data path keeps forwarding)", lost),
	}, nil
}

// linkCut: (b).
func (b *bench) linkCut(ctx context.Context) ([]string, error) {
	var outage, takeover []time.Duration
	var lost []int
	missed := 0
	for trial := 1; trial <= b.trials; trial++ {
		owners, err := b.converge(ctx)
		if err != nil {
			return nil, err
		}
		vip := b.vips[(trial-1)%len(b.vips)]
		owner := owners[vip]
		// The cut node's pod would stay a ready endpoint (nothing marks it
		// not ready for tens of seconds in a real cluster either) and a third
		// of new connections would go to it: drain it first, so the figure is
		// the announcement's failover alone.
		if err := b.publish(ctx, owner); err != nil {
			return nil, err
		}
		arp, err := b.startProbe(lab.HostCP, "-arp", vip.String(), "-duration", b.window(6*time.Second))
		if err != nil {
			return nil, err
		}
		tcp, err := b.startProbe(lab.HostLANClient, "-tcp", netip.AddrPortFrom(vip, 8000).String(), "-duration", b.window(6*time.Second))
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Second)
		t0 := time.Now().UnixNano()
		if _, err := b.env.Lab.Exec(ctx, lab.HostSwitch, "ip", "link", "set", owner, "down"); err != nil {
			return nil, err
		}
		ra, err := arp()
		if err != nil {
			return nil, err
		}
		rt, err := tcp()
		if err != nil {
			return nil, err
		}
		if _, err := b.env.Lab.Exec(ctx, lab.HostSwitch, "ip", "link", "set", owner, "up"); err != nil {
			return nil, err
		}
		if err := b.publish(ctx, ""); err != nil {
			return nil, err
		}
		d, ok := firstAnswerAfter(ra, vip, b.macs[owner], t0)
		if !ok {
			missed++
			say("  trial %d: cut %s (owner of %s): NO other node answered ARP within the %v probe window", trial, owner, vip, b.slack+5*time.Second)
			if err := b.publish(ctx, ""); err != nil {
				return nil, err
			}
			continue
		}
		l, _, out := tcpLoss(rt, t0-int64(time.Second), t0+int64(4*time.Second+b.slack), t0)
		takeover = append(takeover, d)
		outage = append(outage, out)
		lost = append(lost, l)
		say("  trial %d: cut %s (owner of %s): ARP answered by another node after %v; first HTTP answer after the cut at %v, %d probes lost",
			trial, owner, vip, d.Round(time.Millisecond), out.Round(time.Millisecond), l)
	}
	if _, err := b.converge(ctx); err != nil {
		return nil, err
	}
	return []string{
		stats("cut -> HTTP from lanclient answered again", outage),
		stats("cut -> another node answers ARP", takeover),
		fmt.Sprintf("  %-58s %d of %d trials", fmt.Sprintf("no takeover within %v", b.slack+5*time.Second), missed, b.trials),
		counts("HTTP probes lost", lost),
	}, nil
}

// streamsPerTrial is how many long-lived connections (c) keeps open through
// the old owner across its SIGTERM.
const streamsPerTrial = 8

// planned: (c).
func (b *bench) planned(ctx context.Context) ([]string, error) {
	var lost []int
	var gaps []time.Duration
	var broken, streams int
	var streamAnswers []int
	for trial := 1; trial <= b.trials; trial++ {
		owners, err := b.converge(ctx)
		if err != nil {
			return nil, err
		}
		vip := b.vips[(trial-1)%len(b.vips)]
		owner := owners[vip]
		arp, err := b.startProbe(lab.HostCP, "-arp", vip.String(), "-duration", b.window(6*time.Second))
		if err != nil {
			return nil, err
		}
		tcp, err := b.startProbe(lab.HostLANClient, "-tcp", netip.AddrPortFrom(vip, 8000).String(), "-streams", fmt.Sprint(streamsPerTrial), "-duration", b.window(6*time.Second))
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Second)
		t0 := time.Now().UnixNano()
		stopped := make(chan error, 1)
		go func() { stopped <- b.speakers[owner].Terminate() }()
		ra, err := arp()
		if err != nil {
			return nil, err
		}
		rt, err := tcp()
		if err != nil {
			return nil, err
		}
		if err := <-stopped; err != nil {
			return nil, err
		}
		end := t0 + int64(4*time.Second+b.slack)
		l, total, _ := tcpLoss(rt, t0-int64(500*time.Millisecond), end, t0)
		gap := longestARPGap(ra, vip, t0-int64(500*time.Millisecond), end)
		lost = append(lost, l)
		gaps = append(gaps, gap)
		// Each stream is a connection opened through the old owner before
		// the SIGTERM and exchanging a request every 10 ms across it.
		kept, answers := 0, 0
		var breaks []string
		for _, st := range rt.Streams {
			streams++
			answers += st.Answers
			if st.Broke != 0 {
				broken++
				breaks = append(breaks, fmt.Sprintf("%v after the SIGTERM (%s)", time.Duration(st.Broke-t0).Round(time.Millisecond), st.Err))
			} else {
				kept++
			}
		}
		streamAnswers = append(streamAnswers, answers)
		streamNote := fmt.Sprintf("%d of %d long-lived connections kept (%d answers)", kept, len(rt.Streams), answers)
		if len(breaks) > 0 {
			streamNote += "; broke: " + strings.Join(breaks, ", ")
		}
		took, _ := firstAnswerAfter(ra, vip, b.macs[owner], t0)
		why := ""
		if l > 0 {
			why = " (" + lostErrors(rt, t0-int64(500*time.Millisecond), end) + ")"
		}
		say("  trial %d: SIGTERM to %s (owner of %s): %d of %d HTTP probes lost%s; longest ARP gap %v; new owner answering after %v; %s",
			trial, owner, vip, l, total, why, gap.Round(time.Millisecond), took.Round(time.Millisecond), streamNote)
		if err := b.restart(ctx, owner); err != nil {
			return nil, err
		}
	}
	return []string{
		counts("HTTP probes (new connection every 10 ms) lost", lost),
		stats("longest time without an ARP answer", gaps),
		fmt.Sprintf("  %-58s %d of %d (answers per trial: %v)", "long-lived keep-alive connections broken", broken, streams, streamAnswers),
	}, nil
}

// partition: (p).
func (b *bench) partition(ctx context.Context) ([]string, error) {
	var dual, unanswered, noise []time.Duration
	var conflicted []int
	env := b.env
	cut := func(on bool) error {
		cmds := [][]string{{"iptables", "-N", "BENCH-PART"}}
		for _, dir := range []string{"--dport", "--sport"} {
			for _, proto := range []string{"udp", "tcp"} {
				cmds = append(cmds, []string{"iptables", "-A", "BENCH-PART", "-p", proto, dir, "7946", "-j", "DROP"})
			}
		}
		cmds = append(cmds, []string{"iptables", "-I", "INPUT", "1", "-j", "BENCH-PART"}, []string{"iptables", "-I", "OUTPUT", "1", "-j", "BENCH-PART"})
		if !on {
			cmds = [][]string{{"iptables", "-D", "INPUT", "-j", "BENCH-PART"}, {"iptables", "-D", "OUTPUT", "-j", "BENCH-PART"},
				{"iptables", "-F", "BENCH-PART"}, {"iptables", "-X", "BENCH-PART"}}
		}
		for _, c := range cmds {
			if out, err := env.Lab.Exec(ctx, "node1", c...); err != nil {
				return fmt.Errorf("%v: %w: %s", c, err, out)
			}
		}
		return nil
	}
	var vipList []string
	for _, v := range b.vips {
		vipList = append(vipList, v.String())
	}
	for trial := 1; trial <= b.trials; trial++ {
		if _, err := b.converge(ctx); err != nil {
			return nil, err
		}
		arp, err := b.startProbe(lab.HostCP, "-arp", strings.Join(vipList, ","), "-duration", "12s")
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Second)
		tcut := time.Now().UnixNano()
		if err := cut(true); err != nil {
			return nil, err
		}
		// Split brain established: node1 sees itself alone.
		deadline := time.Now().Add(6 * time.Second)
		for time.Now().Before(deadline) {
			text, err := env.SpeakerMetrics(ctx, b.speakers["node1"])
			if v, ok := framework.MetricValue(text, `ironlb_memberlist_members{state="alive"}`); err == nil && ok && v == 1 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		theal := time.Now().UnixNano()
		if err := cut(false); err != nil {
			return nil, err
		}
		ra, err := arp()
		if err != nil {
			return nil, err
		}
		end := theal + int64(7*time.Second)
		var worstDual, worstGap, worstNoise time.Duration
		var gapFrom, gapTo int64
		var gapNote string
		n2 := 0
		for _, vip := range b.vips {
			// The final owner is the MAC of the last reply.
			final := ""
			for _, r := range ra.ARPReplies {
				if r.VIP == vip.String() {
					final = r.MAC
				}
			}
			var lastOther int64
			macsDuring := map[string]bool{}
			for _, r := range ra.ARPReplies {
				if r.VIP != vip.String() {
					continue
				}
				if r.T >= tcut && r.T < theal {
					macsDuring[r.MAC] = true
				}
				if r.T >= theal && r.MAC != final {
					lastOther = r.T
				}
			}
			if len(macsDuring) > 1 {
				n2++
			}
			if lastOther > 0 {
				worstDual = max(worstDual, time.Duration(lastOther-theal))
			}
			// Before the cut nothing changes: its longest gap is what the
			// loaded machine alone causes (the probers and responders stall).
			worstNoise = max(worstNoise, longestARPGap(ra, vip, tcut-int64(800*time.Millisecond), tcut))
			if g, at := longestARPGapAt(ra, vip, tcut, end); g > worstGap {
				worstGap = g
				gapFrom, gapTo = at-int64(g), at
				gapNote = fmt.Sprintf("%s, ending %v after the cut / %v after the heal", vip, time.Duration(at-tcut).Round(time.Millisecond), time.Duration(at-theal).Round(time.Millisecond))
			}
		}
		dual = append(dual, worstDual)
		unanswered = append(unanswered, worstGap)
		noise = append(noise, worstNoise)
		conflicted = append(conflicted, n2)
		// Did any VIP get an answer during that gap? If none did, the prober
		// (or the whole machine) stalled, not the announcement.
		others := 0
		for _, r := range ra.ARPReplies {
			if r.T > gapFrom && r.T < gapTo {
				others++
			}
		}
		say("  trial %d: %d of %d VIPs answered by two MACs during the partition; after the heal two MACs answered for %v; longest time a VIP went unanswered: %v (%s; %d answers for other VIPs meanwhile)",
			trial, n2, len(b.vips), worstDual.Round(time.Millisecond), worstGap.Round(time.Millisecond), gapNote, others)
	}
	if _, err := b.converge(ctx); err != nil {
		return nil, err
	}
	return []string{
		stats("heal -> one MAC per VIP again (worst VIP)", dual),
		stats("longest time a VIP went without ARP answer (worst VIP)", unanswered),
		stats("  the same in the 0.8s before the cut (machine noise)", noise),
		counts("VIPs answered by two MACs during the partition", conflicted),
	}, nil
}
