// Command benchproxy measures ironlb's iptables proxy against kube-proxy in
// iptables mode and in nftables mode, in one run, on the lab's real
// kube-apiserver: each proxy on its own node (ironlb-speaker --proxy=iptables
// on node1, kube-proxy --proxy-mode=iptables on node2, --proxy-mode=nftables
// on node3, all built from the same k8s.io/kubernetes module as the API
// server), reading the same Services and EndpointSlices:
//
//	(a) with every proxy running, Services x endpoints are created (64 clients
//	    in parallel), then one last object, the EndpointSlice of a Service that
//	    had none: time from that write until the Service answers through the
//	    proxy's node (its rules are in the kernel, and with them those of every
//	    object written before it);
//	(b) at that size, one Service change (the EndpointSlice of a Service that
//	    had none, so its connections were refused): time from the write until a
//	    connection through the proxy's node succeeds, several samples; first
//	    with the three proxies programming the same change at once (they share
//	    the machine's cores, and kube-proxy's iptables mode keeps one busy),
//	    then each proxy alone: the other two proxies' process groups are
//	    stopped (SIGSTOP) while it programs its own change, as on a real node,
//	    where a proxy does not share its CPU with two other proxies;
//	(c) new-connection latency (TCP connect, SYN to SYN-ACK) from lanclient to
//	    random Services' ClusterIPs routed through the proxy's node, p50/p99,
//	    at the small and at the full size, and to an endpoint directly (no
//	    Service) as the floor; each proxy measured with the other two
//	    stopped, as in (b) alone (kube-proxy's iptables mode otherwise keeps a
//	    core busy with restores that never finish at the full size).
//
// The endpoints answer: a sink pod on node4 owns 198.18.64.0/18 (a local
// route) and accepts on ports 8080-8086, and every node routes that prefix to
// it. Connections to a Service are probed from inside the proxy's node (its
// nat OUTPUT path) for (a) and (b), from lanclient for (c). Every Service is a
// ClusterIP Service with one TCP port; endpoints are on node4.
//
// Usage (make bench-lab runs it): go run ./cmd/benchproxy [-services 10000]
// [-small 100] [-endpoints 10] [-conns 2000] [-samples 5] [-wait 10m]
// [-change-wait 1m] [-alone-samples 5] [-logs DIR]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/internal/benchlog"
	"github.com/ironlb/ironlb/test/lab"
)

const (
	ns          = "bench-proxy"
	concurrency = 64
	sinkPrefix  = "198.18.64.0/18" // the sink pod's addresses: every endpoint
	sinkPorts   = 7                // 8080..8086
	serviceCIDR = "198.19.0.0/16"
)

func main() {
	if sub, ok := subcommands[argOr(1)]; ok {
		// Subcommands run inside a lab namespace (ip netns exec).
		if err := sub(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "benchproxy:", err)
			os.Exit(1)
		}
		return
	}
	o := options{}
	flag.IntVar(&o.services, "services", 10000, "Services at the full size")
	flag.IntVar(&o.small, "small", 100, "Services at the small size (c)")
	flag.IntVar(&o.endpoints, "endpoints", 10, "endpoints per Service")
	flag.IntVar(&o.conns, "conns", 2000, "new connections per latency measurement (c)")
	flag.IntVar(&o.samples, "samples", 5, "one-Service changes measured (b), the proxies programming each at once")
	flag.IntVar(&o.alone, "alone-samples", 5, "one-Service changes measured (b) per proxy with the other proxies stopped")
	flag.DurationVar(&o.wait, "wait", 10*time.Minute, "longest wait for a proxy to program everything, (a)")
	flag.DurationVar(&o.changeWait, "change-wait", time.Minute, "longest wait for a proxy to program one change, (b)")
	flag.StringVar(&o.logs, "logs", "", "copy the proxies' logs into this folder at the end")
	flag.Parse()
	if err := framework.CheckHost(); err != nil {
		fmt.Fprintf(os.Stderr, "benchproxy: %v\n", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Hour)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "benchproxy: FAILED: %v\n", err)
		os.Exit(1)
	}
}

var subcommands = map[string]func([]string) error{"probe": probeCmd, "latency": latencyCmd, "sink": sinkCmd}

func argOr(i int) string {
	if len(os.Args) > i {
		return os.Args[i]
	}
	return ""
}

type options struct {
	services, small, endpoints, conns, samples, alone int
	wait, changeWait                                  time.Duration
	logs                                              string
}

var say = benchlog.Say

var loadavg = benchlog.LoadAvg

// proxy is one proxy under test, on its own node.
type proxy struct {
	name string
	node int
	// results
	a          time.Duration
	aErr       string
	b          []time.Duration
	bErr       string
	bAlone     []time.Duration // (b) with the other proxies stopped
	bAloneErr  string
	process    *lab.Process // its process group is stopped while another proxy is measured alone
	c100, c10k latency
	// c10kStill is (c) at the full size with the proxy's own process stopped
	// too: the kernel's rules alone, without the proxy's background work.
	c10kStill latency
	// floor is to an endpoint directly through the proxy's node, at the
	// last size measured; floor100 and floor10k at each size.
	floor, floor100, floor10k latency
	behind                    string // why (c) at the full size was not measured
	syncs                     string // the proxy's own sync metrics at the end
}

type latency struct {
	n, fail       int
	p50, p99, avg time.Duration
}

func (l latency) String() string {
	if l.n == 0 {
		return "-"
	}
	s := fmt.Sprintf("p50 %s, p99 %s", us(l.p50), us(l.p99))
	if l.fail > 0 {
		s += fmt.Sprintf(" (%d of %d failed)", l.fail, l.n+l.fail)
	}
	return s
}

func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

type bench struct {
	o       options
	env     *framework.Env
	client  kubernetes.Interface
	exe     string
	proxies []*proxy
	ips     []string // ClusterIP of svc-<i>
}

func run(ctx context.Context, o options) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	say("load average before: %s (1, 5, 15 min; 2 cores)", loadavg())
	say("bringing up the lab (4 nodes, kube-apiserver + etcd in the cp namespace)")
	env, err := framework.Up(ctx, framework.Options{Nodes: 4})
	if err != nil {
		return err
	}
	defer func() {
		if o.logs != "" {
			keepLogs(env.Lab.Dir(), o.logs)
		}
		pids := env.PIDs()
		env.Down()
		if left := env.Leftovers(pids); left != "" {
			say("teardown left %s (make lab-clean)", left)
		}
	}()
	cfg := *env.Cluster.AdminConfig
	cfg.QPS, cfg.Burst = 5000, 5000
	client, err := kubernetes.NewForConfig(&cfg)
	if err != nil {
		return err
	}
	b := &bench{o: o, env: env, client: client, exe: exe, proxies: []*proxy{
		{name: "ironlb", node: 1},
		{name: "kube-proxy iptables", node: 2},
		{name: "kube-proxy nftables", node: 3},
	}}
	if err := b.sink(ctx); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// Services that get their endpoints later: the last object of (a) and
	// the changes of (b). Until then their connections are refused.
	var later []string
	for _, name := range append(append([]string{"last"}, changeNames(o.samples)...), aloneNames(o.alone, len(b.proxies))...) {
		ip, err := b.createService(ctx, name)
		if err != nil {
			return err
		}
		later = append(later, ip)
	}
	say("creating %d Services x %d endpoints", o.small, o.endpoints)
	if err := b.createMany(ctx, 0, o.small); err != nil {
		return err
	}
	if err := b.startProxies(ctx); err != nil {
		return err
	}
	last := b.ips[o.small-1] + ":80"
	if err := b.allProgrammed(ctx, last, "the small size"); err != nil {
		return err
	}
	if err := b.latencies(ctx, func(p *proxy) *latency { return &p.c100 }); err != nil {
		return err
	}

	say("(a) creating %d more Services x %d endpoints with the proxies running", o.services-o.small, o.endpoints)
	t0 := time.Now()
	if err := b.createMany(ctx, o.small, o.services); err != nil {
		return err
	}
	say("(a) created in %v; now the last object: the EndpointSlice of Service \"last\"", time.Since(t0).Round(time.Millisecond))
	res := b.measureChange(ctx, "last", later[0], o.wait)
	for i, p := range b.proxies {
		p.a, p.aErr = res[i].d, res[i].err
		say("(a) %s: %s", p.name, res[i])
	}

	for s, name := range changeNames(o.samples) {
		time.Sleep(3 * time.Second) // past every proxy's minimum sync period
		res := b.measureChange(ctx, name, later[1+s], o.changeWait)
		for i, p := range b.proxies {
			if res[i].err != "" {
				p.bErr = res[i].err
				continue
			}
			p.b = append(p.b, res[i].d)
		}
		say("(b) sample %d: %s %s, %s %s, %s %s", s+1, b.proxies[0].name, res[0], b.proxies[1].name, res[1], b.proxies[2].name, res[2])
	}
	alone := later[1+o.samples:]
	for s := range o.alone {
		for i, p := range b.proxies {
			time.Sleep(3 * time.Second) // past every proxy's minimum sync period
			k := s*len(b.proxies) + i
			res := b.measureAlone(ctx, i, aloneNames(o.alone, len(b.proxies))[k], alone[k], o.changeWait)
			if res.err != "" {
				p.bAloneErr = res.err
			} else {
				p.bAlone = append(p.bAlone, res.d)
			}
			say("(b) alone, sample %d: %s %s", s+1, p.name, res)
		}
	}
	// (c) measures the rules, not a proxy still writing them: a proxy that has
	// not programmed the last change by now is left out.
	lastChange := later[len(later)-1]
	for i, ok := range b.programmed(ctx, lastChange+":80", o.changeWait) {
		if !ok {
			b.proxies[i].behind = fmt.Sprintf("the last change was not programmed %v after the measurements of (b)", o.changeWait)
		}
	}
	if err := b.latencies(ctx, func(p *proxy) *latency { return &p.c10k }); err != nil {
		return err
	}
	b.syncMetrics(ctx)
	b.report()
	say("load average after: %s", loadavg())
	return nil
}

// keepLogs copies the proxies' logs from the lab's folder into dir.
func keepLogs(from, dir string) {
	_ = os.MkdirAll(dir, 0o755)
	files, _ := filepath.Glob(filepath.Join(from, "node*.log"))
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil {
			_ = os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644)
		}
	}
}

// aloneNames are the Services of (b) measured one proxy at a time: n samples
// for each of the proxies.
func aloneNames(n, proxies int) []string {
	var out []string
	for s := range n {
		for i := range proxies {
			out = append(out, fmt.Sprintf("alone-%d-%d", s+1, i+1))
		}
	}
	return out
}

func changeNames(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("change-%d", i))
	}
	return out
}

// sink makes every address of sinkPrefix answer on ports 8080-8086: a pod on
// node4 owns the prefix (a local route) and every node routes it there.
func (b *bench) sink(ctx context.Context) error {
	l := b.env.Lab
	pod, err := l.AddPod(ctx, 4, 2, "sink")
	if err != nil {
		return err
	}
	if _, err := l.Exec(ctx, pod.Host, "ip", "route", "add", "local", sinkPrefix, "dev", "lo"); err != nil {
		return err
	}
	if _, err := l.Start(pod.Host, filepath.Join(l.Dir(), "sink.log"), b.exe, "sink", "8080", strconv.Itoa(sinkPorts)); err != nil {
		return err
	}
	if _, err := l.Exec(ctx, l.NodeName(4), "ip", "route", "add", sinkPrefix, "via", pod.IP.String()); err != nil {
		return err
	}
	for i := 1; i <= 3; i++ {
		// The Service CIDR needs a route too (a node usually has a default
		// one): the node's own connections to a ClusterIP are routed before
		// the nat table rewrites them.
		for _, dst := range []string{sinkPrefix, serviceCIDR} {
			if _, err := l.Exec(ctx, l.NodeName(i), "ip", "route", "add", dst, "via", l.NodeIP(4).String()); err != nil {
				return err
			}
		}
	}
	out, err := l.Exec(ctx, l.NodeName(1), b.exe, "probe", "198.18.64.7:8086", "10s")
	if err != nil {
		return fmt.Errorf("the sink does not answer from node1: %w: %s", err, out)
	}
	return nil
}

// endpoint is the address of endpoint j of Service i: in the sink's prefix,
// port 8080 + i%7.
func endpoint(i, j, per int) (netip.Addr, int32) {
	k := (i*per + j) % (1 << 14)
	base := netip.MustParsePrefix(sinkPrefix).Addr().As4()
	a := netip.AddrFrom4([4]byte{base[0], base[1], base[2] + byte(k>>8), byte(k)})
	return a, int32(8080 + i%sinkPorts)
}

func (b *bench) createService(ctx context.Context, name string) (string, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	var ip string
	err := retry(ctx, func() error {
		got, err := b.client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) { // an earlier try timed out after it was written
			got, err = b.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		}
		if err == nil {
			ip = got.Spec.ClusterIP
		}
		return err
	})
	return ip, err
}

// retry runs write up to 3 times: on this 2-core machine, shared with other
// lab runs, the API server sometimes answers a burst later than the client's
// 30 s timeout.
func retry(ctx context.Context, write func() error) error {
	var err error
	for range 3 {
		if err = write(); err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(time.Second)
	}
	return err
}

func (b *bench) createSlice(ctx context.Context, service string, i int) error {
	node := b.env.Lab.NodeName(4)
	ready := true
	var eps []discoveryv1.Endpoint
	var port int32
	for j := range b.o.endpoints {
		a, p := endpoint(i, j, b.o.endpoints)
		port = p
		eps = append(eps, discoveryv1.Endpoint{Addresses: []string{a.String()}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &ready}})
	}
	name, proto := "http", corev1.ProtocolTCP
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: service + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   eps,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	return retry(ctx, func() error {
		_, err := b.client.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// createMany creates Services svc-<from>..svc-<to-1>, then their slices.
func (b *bench) createMany(ctx context.Context, from, to int) error {
	for len(b.ips) < to {
		b.ips = append(b.ips, "")
	}
	if err := parallel(ctx, from, to, func(i int) error {
		ip, err := b.createService(ctx, fmt.Sprintf("svc-%05d", i))
		b.ips[i] = ip
		return err
	}); err != nil {
		return err
	}
	return parallel(ctx, from, to, func(i int) error { return b.createSlice(ctx, fmt.Sprintf("svc-%05d", i), i) })
}

func parallel(ctx context.Context, from, to int, f func(i int) error) error {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(concurrency, to-from) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= to || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (b *bench) startProxies(ctx context.Context) error {
	say("starting ironlb-speaker --proxy=iptables on node1, kube-proxy (iptables) on node2, kube-proxy (nftables) on node3")
	sp, err := b.env.StartSpeaker(ctx, 1, b.env.IronlbProxyArgs()...)
	if err != nil {
		return err
	}
	b.proxies[0].process = sp.Process
	if b.proxies[1].process, err = b.env.StartKubeProxyMode(ctx, 2, "iptables", 5*time.Minute); err != nil {
		return err
	}
	b.proxies[2].process, err = b.env.StartKubeProxyMode(ctx, 3, "nftables", 5*time.Minute)
	return err
}

// measureAlone measures one change through proxy i while the other proxies'
// process groups (with any iptables-restore or nft they are running) are
// stopped; they continue afterwards, also on failure.
func (b *bench) measureAlone(ctx context.Context, i int, name, clusterIP string, within time.Duration) change {
	resume, err := b.stopOthers(i)
	defer resume()
	if err != nil {
		return change{err: err.Error()}
	}
	return b.measureOn(ctx, []int{i}, name, clusterIP, within)[0]
}

// stopOthers stops (SIGSTOP) the process groups of every proxy but the i-th,
// as on a real node, where a proxy does not share its CPU with two others
// (kube-proxy's iptables mode at 10,000 Services keeps a core busy with
// restores that do not finish); resume continues them.
func (b *bench) stopOthers(i int) (resume func(), err error) {
	var stopped []int
	resume = func() {
		for _, pgid := range stopped {
			if err := syscall.Kill(-pgid, syscall.SIGCONT); err != nil {
				say("continuing process group %d: %v", pgid, err)
			}
		}
	}
	for j, p := range b.proxies {
		if j == i || p.process == nil {
			continue
		}
		if err := syscall.Kill(-p.process.Pid(), syscall.SIGSTOP); err != nil {
			return resume, fmt.Errorf("stopping %s: %v", p.name, err)
		}
		stopped = append(stopped, p.process.Pid())
	}
	return resume, nil
}

// allProgrammed waits until target answers through every proxy's node.
func (b *bench) allProgrammed(ctx context.Context, target, what string) error {
	for _, p := range b.proxies {
		out, err := b.env.Lab.Exec(ctx, b.env.Lab.NodeName(p.node), b.exe, "probe", target, b.o.wait.String())
		if err != nil {
			return fmt.Errorf("%s did not program %s: %w: %s", p.name, what, err, out)
		}
	}
	say("every proxy programmed %s", what)
	return nil
}

type change struct {
	d   time.Duration
	err string
}

func (c change) String() string {
	if c.err != "" {
		return c.err
	}
	return ms(c.d)
}

func ms(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return d.Round(10 * time.Millisecond).String()
}

// programmed probes target through every proxy's node at once and says for
// each whether it answered within.
func (b *bench) programmed(ctx context.Context, target string, within time.Duration) []bool {
	ok := make([]bool, len(b.proxies))
	var wg sync.WaitGroup
	for i, p := range b.proxies {
		wg.Go(func() {
			_, err := b.env.Lab.Exec(ctx, b.env.Lab.NodeName(p.node), b.exe, "probe", target, within.String())
			ok[i] = err == nil
		})
	}
	wg.Wait()
	return ok
}

// measureChange starts a probe of target (refused until programmed) in every
// proxy's node, writes the EndpointSlice of Service name, and returns for each
// proxy the time from the write's answer until the first connection through
// it succeeded.
func (b *bench) measureChange(ctx context.Context, name, clusterIP string, within time.Duration) []change {
	var all []int
	for i := range b.proxies {
		all = append(all, i)
	}
	return b.measureOn(ctx, all, name, clusterIP, within)
}

// measureOn is measureChange for the proxies with the given indexes; the
// result has one entry per index.
func (b *bench) measureOn(ctx context.Context, idx []int, name, clusterIP string, within time.Duration) []change {
	type result struct {
		out string
		err error
	}
	results := make([]chan result, len(idx))
	for i, pi := range idx {
		p := b.proxies[pi]
		results[i] = make(chan result, 1)
		go func() {
			out, err := b.env.Lab.Exec(ctx, b.env.Lab.NodeName(p.node), b.exe, "probe", clusterIP+":80", within.String())
			results[i] <- result{out, err}
		}()
	}
	time.Sleep(time.Second) // the probes are running and refused (checked below: failed > 0)
	out := make([]change, len(idx))
	if err := b.createSlice(ctx, name, 0); err != nil {
		for i := range out {
			out[i].err = "write failed: " + err.Error()
		}
		return out
	}
	written := time.Now()
	for i, pi := range idx {
		r := <-results[i]
		ok, failed, err := parseProbe(r.out)
		switch {
		case r.err != nil || err != nil:
			out[i].err = fmt.Sprintf("not programmed within %v", within)
			say("%s: %v: %s", b.proxies[pi].name, cmpOr(r.err, err), strings.TrimSpace(r.out))
		case failed == 0:
			out[i].err = "answered before the write: not measured"
		default:
			out[i].d = ok.Sub(written)
		}
	}
	return out
}

// latencies measures (c) for every proxy: lanclient routes the Service CIDR
// and the sink's prefix through the proxy's node.
func (b *bench) latencies(ctx context.Context, slot func(*proxy) *latency) error {
	l := b.env.Lab
	var targets, direct []string
	for i, ip := range b.ips {
		if ip != "" {
			targets = append(targets, ip+":80")
			a, port := endpoint(i, 0, b.o.endpoints)
			direct = append(direct, netip.AddrPortFrom(a, uint16(port)).String())
		}
	}
	files := map[string]string{}
	for name, list := range map[string][]string{"services": targets, "direct": direct} {
		f := filepath.Join(l.Dir(), fmt.Sprintf("targets-%s-%d", name, len(list)))
		if err := os.WriteFile(f, []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
			return err
		}
		files[name] = f
	}
	for i, p := range b.proxies {
		if p.behind != "" && len(targets) == b.o.services {
			say("(c) %d Services, through %s: not measured: %s", len(targets), p.name, p.behind)
			continue
		}
		if err := b.latencyAlone(ctx, i, len(targets), files, slot); err != nil {
			return err
		}
	}
	return nil
}

// latencyAlone measures (c) through the i-th proxy's node (n Services) with
// the other proxies stopped.
func (b *bench) latencyAlone(ctx context.Context, i, n int, files map[string]string, slot func(*proxy) *latency) error {
	l, p := b.env.Lab, b.proxies[i]
	resume, err := b.stopOthers(i)
	defer resume()
	if err != nil {
		return err
	}
	via := l.NodeIP(p.node).String()
	for _, dst := range []string{serviceCIDR, sinkPrefix} {
		if _, err := l.Exec(ctx, lab.HostLANClient, "ip", "route", "replace", dst, "via", via); err != nil {
			return err
		}
	}
	if p.floor, *slot(p), err = b.latencyRounds(ctx, files); err != nil {
		return fmt.Errorf("latency through %s: %w", p.name, err)
	}
	say("(c) %d Services, through %s: %s (direct to an endpoint: %s)", n, p.name, slot(p), p.floor)
	if n == b.o.services {
		p.floor10k = p.floor
	} else {
		p.floor100 = p.floor
	}
	if n != b.o.services || p.process == nil {
		return nil
	}
	// Again with the proxy's own process stopped: what its rules cost
	// without what its process does meanwhile (canary checks, syncs).
	if err := syscall.Kill(-p.process.Pid(), syscall.SIGSTOP); err != nil {
		return fmt.Errorf("stopping %s: %w", p.name, err)
	}
	_, p.c10kStill, err = b.latencyRounds(ctx, files)
	if err := syscall.Kill(-p.process.Pid(), syscall.SIGCONT); err != nil {
		say("continuing %s: %v", p.name, err)
	}
	if err != nil {
		return fmt.Errorf("latency through %s, stopped: %w", p.name, err)
	}
	say("(c) %d Services, through %s with its process stopped too: %s", n, p.name, p.c10kStill)
	return nil
}

// latencyRounds measures new connections from lanclient to endpoints
// directly and to Services, alternating in 5 rounds of conns/5 each, so that
// both see the same moments of a shared machine; each figure is the median
// of the rounds' (p50 of the p50s, p99 of the p99s).
func (b *bench) latencyRounds(ctx context.Context, files map[string]string) (direct, services latency, err error) {
	const rounds = 5
	var d, s []latency
	for range rounds {
		for _, m := range []struct {
			file string
			into *[]latency
		}{{files["direct"], &d}, {files["services"], &s}} {
			out, err := b.env.Lab.Exec(ctx, lab.HostLANClient, b.exe, "latency", m.file, strconv.Itoa(max(1, b.o.conns/rounds)))
			if err != nil {
				return direct, services, fmt.Errorf("%w: %s", err, out)
			}
			lat, err := parseLatency(out)
			if err != nil {
				return direct, services, fmt.Errorf("%w: %s", err, out)
			}
			*m.into = append(*m.into, lat)
		}
	}
	return medianLatency(d), medianLatency(s), nil
}

// medianLatency combines rounds: counts add up, p50, p99 and avg are the
// rounds' medians.
func medianLatency(ls []latency) latency {
	var out latency
	var p50, p99, avg []time.Duration
	for _, l := range ls {
		out.n += l.n
		out.fail += l.fail
		p50, p99, avg = append(p50, l.p50), append(p99, l.p99), append(avg, l.avg)
	}
	out.p50, out.p99, out.avg = median(p50), median(p99), median(avg)
	return out
}

// syncMetrics records each proxy's own account of its syncs.
func (b *bench) syncMetrics(ctx context.Context) {
	for _, p := range b.proxies {
		var text, sum, count string
		var err error
		if p.node == 1 {
			url := fmt.Sprintf("http://%s/metrics", netip.AddrPortFrom(b.env.Lab.NodeIP(1), framework.SpeakerMetricsPort))
			text, err = b.env.Lab.HTTPGet(ctx, b.env.Lab.NodeName(1), url, 10*time.Second)
			sum, count = `ironlb_proxy_sync_duration_seconds_sum{family="IPv4",kind="partial"}`, `ironlb_proxy_sync_duration_seconds_count{family="IPv4",kind="partial"}`
		} else {
			text, err = b.env.KubeProxyMetrics(ctx, p.node)
			sum, count = "kubeproxy_sync_proxy_rules_duration_seconds_sum", "kubeproxy_sync_proxy_rules_duration_seconds_count"
		}
		if err != nil {
			p.syncs = err.Error()
			continue
		}
		s, ok1 := framework.MetricValue(text, sum)
		n, ok2 := framework.MetricValue(text, count)
		if ok1 && ok2 && n > 0 {
			p.syncs = fmt.Sprintf("%d syncs, %.3f s on average", int(n), s/n)
		}
	}
}

func (b *bench) report() {
	ps := b.proxies
	fmt.Println()
	fmt.Printf("%d Services x %d endpoints (ClusterIP, TCP), one proxy per node; load average now %s (2 cores)\n\n", b.o.services, b.o.endpoints, loadavg())
	fmt.Printf("| what | %s | %s | %s |\n|---|---|---|---|\n", ps[0].name, ps[1].name, ps[2].name)
	row := func(what string, f func(*proxy) string) {
		fmt.Printf("| %s | %s | %s | %s |\n", what, f(ps[0]), f(ps[1]), f(ps[2]))
	}
	row(fmt.Sprintf("(a) last object written -> programmed, %d Services", b.o.services), func(p *proxy) string { return change{p.a, p.aErr}.String() })
	row(fmt.Sprintf("(b) one Service change -> programmed, median of %d", b.o.samples), func(p *proxy) string { return pct(p.b, 50, p.bErr) })
	row("(b) worst", func(p *proxy) string { return pct(p.b, 100, p.bErr) })
	row(fmt.Sprintf("(b) the proxy alone (the others stopped), median of %d", b.o.alone), func(p *proxy) string { return pct(p.bAlone, 50, p.bAloneErr) })
	row("(b) alone, worst", func(p *proxy) string { return pct(p.bAlone, 100, p.bAloneErr) })
	row(fmt.Sprintf("(c) new connection, %d Services", b.o.small), func(p *proxy) string { return p.c100.String() })
	row(fmt.Sprintf("(c) new connection, %d Services", b.o.services), func(p *proxy) string {
		if p.behind != "" {
			return "not measured: " + p.behind
		}
		return p.c10k.String()
	})
	row(fmt.Sprintf("(c) %d Services, the proxy's process stopped too (its rules alone)", b.o.services), func(p *proxy) string {
		if p.behind != "" {
			return "not measured"
		}
		return p.c10kStill.String()
	})
	row("(c) floor: to an endpoint directly, through the same node", func(p *proxy) string { return p.floor.String() })
	row("the proxy's own sync metrics (partial syncs for ironlb)", func(p *proxy) string { return p.syncs })
	fmt.Println()
	ratio := func(what string, ours, theirs time.Duration, other string) {
		if ours <= 0 || theirs <= 0 {
			fmt.Printf("%s: ironlb vs %s: not measured\n", what, other)
			return
		}
		fmt.Printf("%s: ironlb %s, %s %s: ironlb %.1fx faster\n", what, ms(ours), other, ms(theirs), float64(theirs)/float64(ours))
	}
	for _, other := range ps[1:] {
		ratio("(a)", ps[0].a, other.a, other.name)
		ratio("(b) median", median(ps[0].b), median(other.b), other.name)
		ratio("(b) alone, median", median(ps[0].bAlone), median(other.bAlone), other.name)
	}
	fmt.Println()
	fmt.Println("Targets: (a) and (b) at least 2x faster than kube-proxy iptables mode, (b) under 100 ms,")
	fmt.Println("(c) at the full size no worse than kube-proxy iptables mode at the small size:")
	kp := ps[1]
	okA := ps[0].a > 0 && (kp.a == 0 && kp.aErr != "" || kp.a >= 2*ps[0].a)
	okB := len(ps[0].b) > 0 && (len(kp.b) == 0 && kp.bErr != "" || median(kp.b) >= 2*median(ps[0].b))
	fmt.Printf("  (a) 2x: %v; (b) 2x: %v; (b) < 100 ms: at once %v (median %s, worst %s), alone %v (median %s, worst %s)\n", okA, okB,
		len(ps[0].b) > 0 && median(ps[0].b) < 100*time.Millisecond, pct(ps[0].b, 50, ""), pct(ps[0].b, 100, ""),
		len(ps[0].bAlone) > 0 && median(ps[0].bAlone) < 100*time.Millisecond, pct(ps[0].bAlone, 50, ""), pct(ps[0].bAlone, 100, ""))
	fmt.Printf("  (c) ironlb at %d: p50 %s p99 %s; kube-proxy iptables at %d: p50 %s p99 %s: p50 %v, p99 %v\n",
		b.o.services, us(ps[0].c10k.p50), us(ps[0].c10k.p99), b.o.small, us(kp.c100.p50), us(kp.c100.p99),
		ps[0].c10k.p50 <= kp.c100.p50, ps[0].c10k.p99 <= kp.c100.p99)
	fmt.Printf("  (c) over the node's own floor (direct to an endpoint through the same node, same rounds), p50: ironlb at %d %s, kube-proxy iptables at %d %s\n",
		b.o.services, us(ps[0].c10k.p50-ps[0].floor10k.p50), b.o.small, us(kp.c100.p50-kp.floor100.p50))
	for _, other := range ps[1:] {
		for _, c := range []struct {
			n    int
			a, b latency
		}{{b.o.small, ps[0].c100, other.c100}, {b.o.services, ps[0].c10k, other.c10k}} {
			if c.a.p50 > 0 && c.b.p50 > 0 {
				fmt.Printf("(c) %d Services: ironlb p50/p99 %s/%s, %s %s/%s: ratio p50 %.2f, p99 %.2f (theirs/ours)\n", c.n,
					us(c.a.p50), us(c.a.p99), other.name, us(c.b.p50), us(c.b.p99),
					float64(c.b.p50)/float64(c.a.p50), float64(c.b.p99)/float64(c.a.p99))
			}
		}
	}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func pct(d []time.Duration, p int, err string) string {
	if len(d) == 0 {
		if err != "" {
			return err
		}
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(len(s)-1, len(s)*p/100)
	return ms(s[i])
}

// probeCmd: probe ADDR:PORT WITHIN. Starts a connection attempt every 2 ms
// for 3 s, then every 10 ms up to 30 s, then every 50 ms, each on its own
// (100 ms timeout, at most 256 at once), until one succeeds; prints "ok <unix
// ns of the first success> <failed attempts> <attempts that timed out>".
// Fails after WITHIN. The attempts overlap and time out soon because a
// refused one does not always fail at once: the kernel rate-limits the ICMP
// errors a REJECT rule sends, and most attempts got none and waited for
// their timeout. One attempt after the other measured that wait (about
// 200 ms) rather than the rules, and so did 64 overlapping attempts with a
// 1 s timeout (all 64 waiting left gaps of nearly 1 s without an attempt).
func probeCmd(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: probe ADDR:PORT WITHIN")
	}
	within, err := time.ParseDuration(args[1])
	if err != nil {
		return err
	}
	begin := time.Now()
	var failed, timedOut atomic.Int64
	done := make(chan time.Time, 1)
	slots := make(chan struct{}, 256)
	for time.Since(begin) < within {
		select {
		case at := <-done:
			fmt.Printf("ok %d %d %d\n", at.UnixNano(), failed.Load(), timedOut.Load())
			return nil
		case slots <- struct{}{}:
			go func() {
				defer func() { <-slots }()
				c, err := net.DialTimeout("tcp4", args[0], 100*time.Millisecond)
				if err != nil {
					failed.Add(1)
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						timedOut.Add(1)
					}
					return
				}
				at := time.Now()
				c.Close()
				select {
				case done <- at:
				default:
				}
			}()
		default: // 256 attempts waiting: skip this tick
		}
		switch since := time.Since(begin); {
		case since < 3*time.Second:
			time.Sleep(2 * time.Millisecond)
		case since < 30*time.Second:
			time.Sleep(10 * time.Millisecond)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	return fmt.Errorf("%s: no connection within %v (%d attempts failed, %d of them timed out)", args[0], within, failed.Load(), timedOut.Load())
}

func parseProbe(out string) (time.Time, int, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[0] == "ok" {
			ns, err1 := strconv.ParseInt(f[1], 10, 64)
			n, err2 := strconv.Atoi(f[2])
			if err1 == nil && err2 == nil {
				return time.Unix(0, ns), n, nil
			}
		}
	}
	return time.Time{}, 0, fmt.Errorf("no probe result in %q", out)
}

// latencyCmd: latency FILE N. Opens N new TCP connections, one at a time,
// each to a random address of FILE (one ADDR:PORT a line), and prints the
// connect times: "n <ok> fail <failed> p50 <ns> p99 <ns> avg <ns>". It stops
// after 50 failed connections (each may wait out its 1 s timeout).
func latencyCmd(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: latency FILE N")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 || n > 100000 {
		return fmt.Errorf("bad N %q", args[1])
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	var targets []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			targets = append(targets, t)
		}
	}
	f.Close()
	if len(targets) == 0 {
		return errors.New("no targets")
	}
	var ds []time.Duration
	fail := 0
	var sum time.Duration
	for range n {
		if fail >= 50 {
			break
		}
		t := targets[rand.IntN(len(targets))]
		begin := time.Now()
		c, err := net.DialTimeout("tcp4", t, time.Second)
		d := time.Since(begin)
		if err != nil {
			fail++
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // no TIME_WAIT left behind
		}
		c.Close()
		ds = append(ds, d)
		sum += d
	}
	if len(ds) == 0 {
		return fmt.Errorf("all %d connections failed", n)
	}
	slices.Sort(ds)
	fmt.Printf("n %d fail %d p50 %d p99 %d avg %d\n", len(ds), fail, ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)], sum/time.Duration(len(ds)))
	return nil
}

func parseLatency(out string) (latency, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 10 && f[0] == "n" {
			v := make([]int64, 5)
			for i := range v {
				x, err := strconv.ParseInt(f[2*i+1], 10, 64)
				if err != nil {
					return latency{}, err
				}
				v[i] = x
			}
			return latency{n: int(v[0]), fail: int(v[1]), p50: time.Duration(v[2]), p99: time.Duration(v[3]), avg: time.Duration(v[4])}, nil
		}
	}
	return latency{}, fmt.Errorf("no latency result in %q", out)
}

// sinkCmd: sink FIRSTPORT COUNT. Accepts TCP connections on every local
// address, ports FIRSTPORT.. FIRSTPORT+COUNT-1, and closes them.
func sinkCmd(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: sink FIRSTPORT COUNT")
	}
	first, err1 := strconv.Atoi(args[0])
	count, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil || first < 1 || count < 1 || first+count > 65536 {
		return errors.New("bad ports")
	}
	errc := make(chan error, count)
	for p := first; p < first+count; p++ {
		ln, err := net.Listen("tcp4", ":"+strconv.Itoa(p))
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					errc <- err
					return
				}
				c.Close()
			}
		}()
	}
	return <-errc
}
