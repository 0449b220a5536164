// Command benchingress compares ironlb-ingress with Debian's nginx (the
// yardstick the issue names) in the lab, each behind its own LoadBalancer VIP
// (externalTrafficPolicy Local, announced by ARP by ironlb's speakers, DNATed by a
// real kube-proxy), in a pod namespace on node1, proxying to the same pod servers
// on node2 and node3 with the same routes (routes.go), and loaded by the same
// wrk from lanclient with the same threads and connection counts:
//
//   - throughput: requests/s, p50 and p99 for plain HTTP and TLS (HTTP/1.1 with
//     keep-alive) at each connection count, the runs ordered ironlb, nginx,
//     nginx, ironlb (ABBA) so drift of the shared machine's load falls on both,
//     each after a warm-up run; every ratio ironlb/nginx is printed with the
//     targets (requests/s >= 0.8x, p99 <= 1.5x) and the load average;
//   - reconfiguration under load: while wrk runs, 100 route changes (an Ingress
//     update: /bar flips between two Services, a path is renamed) interleaved
//     with 100 endpoint changes (a rolling window of 2 of 4 pods of s1: the pod
//     entering is started first, the pod leaving gets SIGTERM right after the
//     change is written, as a kubelet would), and the errors wrk saw (target:
//     zero). ironlb-ingress learns the changes through the API server; nginx gets
//     a new nginx.conf and a reload for each.
//
// Besides requests/s and latency it prints each proxy's CPU time per request (user
// and system, from /proc, nginx's workers included) and read/write system calls per
// request: on a machine shared with other work that is the figure least moved by
// what else runs.
//
// Usage (make bench-lab runs it): go run ./cmd/benchingress [-duration 10s]
// [-warmup 3s] [-conns 16,128] [-changes 100] [-pace 100ms] [-threads 2]
// [-profile DIR (CPU profiles of ironlb-ingress under load, via --profiling)]
// [-ingress-env GOGC=200,... (experiments)]
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/ironlb/ironlb/test/cluster"
	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/internal/benchlog"
	"github.com/ironlb/ironlb/test/lab"
)

const (
	benchNS     = "bench"
	backendPort = 8080
)

type options struct {
	duration, warmup, pace time.Duration
	conns                  []int
	changes                int
	threads                int
	profile                string   // folder for CPU profiles of ironlb-ingress
	ingressEnv             []string // environment of ironlb-ingress (e.g. GOGC=200)
}

func main() {
	var o options
	conns := flag.String("conns", "16,128", "wrk connection counts (comma list)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "each measured wrk run")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "the warm-up run before each measured run")
	flag.DurationVar(&o.pace, "pace", 100*time.Millisecond, "pause between two changes under load")
	flag.IntVar(&o.changes, "changes", 100, "route changes (and as many endpoint changes) under load")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.StringVar(&o.profile, "profile", "", "folder: before the measurements, write a CPU profile of ironlb-ingress under load per scheme there (ironlb-<scheme>.pprof)")
	ingressEnv := flag.String("ingress-env", "", "comma list of KEY=value set for ironlb-ingress (e.g. GOMAXPROCS=1), for experiments")
	flag.Parse()
	if *ingressEnv != "" {
		o.ingressEnv = strings.Split(*ingressEnv, ",")
	}
	for f := range strings.SplitSeq(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "benchingress: bad -conns %q\n", *conns)
			os.Exit(2)
		}
		o.conns = append(o.conns, n)
	}
	if err := framework.CheckHost(); err != nil {
		fmt.Fprintf(os.Stderr, "benchingress: %v\n", err)
		os.Exit(1)
	}
	for _, tool := range []string{"nginx", "wrk", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "benchingress: %s is missing: run `make deps` as root (Debian packages nginx wrk openssl)\n", tool)
			os.Exit(1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "benchingress: FAILED: %v\n", err)
		os.Exit(1)
	}
}

var say = benchlog.Say

var loadavg = benchlog.LoadAvg

// proxy is one proxy under test and how a change reaches it.
type proxy struct {
	name      string
	vip       netip.Addr
	route     func(ctx context.Context, r *routes) error // a route change
	endpoints func(ctx context.Context, r *routes) error // an endpoint change
	reloads   func(ctx context.Context) (float64, error) // tables swapped / reloads so far
	retries   func(ctx context.Context) (float64, error) // requests sent to another endpoint so far (nil: not known)
	pid       int                                        // the process (nginx: its master, with the workers)
}

// bed is the lab with both proxies and the backends.
type bed struct {
	env     *framework.Env
	r       *routes
	s1      []framework.Backend // the 4 pods of s1; the window of 2 is in r.eps["s1"]
	s1Procs []*lab.Process      // their servers (nil while stopped)
	caFile  string
	proxies []*proxy
	nginx   *nginx
	ingress *framework.Ingress
	pids    []int
}

func run(ctx context.Context, o options) error {
	say("bringing up the lab (3 nodes, control plane, ironlb-controller, a speaker and a kube-proxy per node)")
	env, err := framework.Up(ctx, framework.Options{Nodes: 3})
	if err != nil {
		return err
	}
	b := &bed{env: env}
	defer func() {
		pids := append(env.PIDs(), b.pids...)
		env.Down()
		if left := env.Leftovers(pids); left != "" {
			say("teardown left %s (make lab-clean)", left)
		}
	}()
	if err := b.setup(ctx, o); err != nil {
		return err
	}
	gen, err := newLoadGen(env, lab.HostLANClient, o.threads)
	if err != nil {
		return err
	}
	if o.profile != "" {
		if err := b.profile(ctx, gen, o); err != nil {
			return err
		}
	}
	say("load average before: %s (1, 5, 15 min; 2 cores)", loadavg())
	var table []pair
	for _, scheme := range []string{"http", "https"} {
		for _, c := range o.conns {
			p, err := b.throughput(ctx, gen, o, scheme, c)
			if err != nil {
				return err
			}
			table = append(table, p)
		}
	}
	var churns []churnResult
	for _, px := range b.proxies {
		cr, err := b.churn(ctx, gen, o, px)
		if err != nil {
			return fmt.Errorf("%s under changes: %w", px.name, err)
		}
		churns = append(churns, cr)
	}
	report(table, churns, o)
	say("load average after: %s", loadavg())
	if ngx := b.nginx.errorLog(); ngx != "" {
		lines := strings.Split(ngx, "\n")
		say("nginx logged %d errors, the last: %s", len(lines), lines[len(lines)-1])
	}
	return nil
}

func (b *bed) setup(ctx context.Context, o options) error {
	env := b.env
	if _, err := env.StartController(ctx); err != nil {
		return err
	}
	for i := 1; i <= env.Lab.Nodes(); i++ {
		if _, err := env.StartKubeProxy(ctx, i); err != nil {
			return err
		}
	}
	if _, err := env.StartSpeakers(ctx); err != nil {
		return err
	}
	if _, err := framework.CreateYAML(ctx, env.Cluster.Dynamic, framework.IPPools,
		`{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bench}, spec: {addresses: ["192.0.2.200-192.0.2.209"], advertise: {l2: {}}}}`); err != nil {
		return err
	}
	if err := env.InstallIngress(ctx); err != nil {
		return err
	}
	client := env.Cluster.Client
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		return err
	}

	say("backends: s1 (a window of 2 of 4 pods), s2 (2 pods), def (1 pod) on node2 and node3")
	b.r = &routes{eps: map[string][]netip.AddrPort{}}
	b.r.changeRoute(0)
	counts := map[string]int{"s1": 4, "s2": 2, "def": 1}
	for _, svc := range services {
		if _, err := client.CoreV1().Services(benchNS).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: svc},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": svc},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(backendPort), Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
		bs, err := env.StartBackendsOn(ctx, benchNS, svc, svc, counts[svc], backendPort, 2, 3)
		if err != nil {
			return err
		}
		for _, be := range bs {
			b.pids = append(b.pids, be.Process.Pid())
		}
		if svc == "s1" {
			b.s1 = bs
			for _, be := range bs {
				b.s1Procs = append(b.s1Procs, be.Process)
			}
			continue
		}
		for _, be := range bs {
			b.r.eps[svc] = append(b.r.eps[svc], netip.AddrPortFrom(be.IP, backendPort))
		}
	}
	// s1 starts with the window {pod 0, pod 1}; pods 2 and 3 wait stopped.
	if err := b.setWindow(ctx, 0, nil); err != nil {
		return err
	}
	for _, i := range []int{2, 3} {
		_ = b.s1Procs[i].Stop()
		b.s1Procs[i] = nil
	}

	say("certificates: foo.bar.com, bar.foo.com and a default, ECDSA P-256, from one test CA")
	ca, err := framework.NewTLSAuthority("ironlb bench CA")
	if err != nil {
		return err
	}
	b.caFile = filepath.Join(env.Lab.Dir(), "bench-ca.pem")
	if err := os.WriteFile(b.caFile, ca.CertPEM, 0o644); err != nil {
		return err
	}
	certs := map[string][2][]byte{}
	for name, host := range map[string]string{"foo": "foo.bar.com", "bar": "bar.foo.com", "default": "default.bench.invalid"} {
		c, k, err := ca.Issue(host)
		if err != nil {
			return err
		}
		certs[name] = [2][]byte{c, k}
		if _, err := client.CoreV1().Secrets(benchNS).Create(ctx, framework.TLSSecret(benchNS, name+"-tls", c, k), metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if _, err := client.NetworkingV1().Ingresses(benchNS).Create(ctx, b.r.ingress(benchNS), metav1.CreateOptions{}); err != nil {
		return err
	}

	say("ironlb-ingress in a pod on node1 (environment %q; GOMAXPROCS default: 2)", o.ingressEnv)
	args := []string{"--default-certificate=" + benchNS + "/default-tls"}
	if o.profile != "" {
		args = append(args, "--profiling")
	}
	ing, err := env.StartIngress(ctx, 1, "ironlb-ingress", o.ingressEnv, args...)
	if err != nil {
		return err
	}
	b.ingress = ing
	b.pids = append(b.pids, ing.Pid())
	if err := env.PublishPortEndpoints(ctx, framework.IngressNamespace, framework.IngressService,
		[]lab.Pod{ing.Pod}, map[string]int32{"http": 80, "https": 443}); err != nil {
		return err
	}
	say("nginx in a pod on node1 (worker_processes 2)")
	if err := b.lbService(ctx, "nginx"); err != nil {
		return err
	}
	if b.nginx, err = startNginx(ctx, env, 1, b.r, certs); err != nil {
		return err
	}
	b.pids = append(b.pids, b.nginx.p.Pid())
	if err := env.PublishPortEndpoints(ctx, benchNS, "nginx", []lab.Pod{b.nginx.pod}, map[string]int32{"http": 80, "https": 443}); err != nil {
		return err
	}

	metric := func(series string) func(ctx context.Context) (float64, error) {
		return func(ctx context.Context) (float64, error) {
			text, err := env.Lab.HTTPGet(ctx, env.Lab.NodeName(1), "http://"+ing.MetricsAddr.String()+"/metrics", 5*time.Second)
			if err != nil {
				return 0, err
			}
			v, _ := framework.MetricValue(text, series)
			return v, nil
		}
	}
	ironlb := &proxy{name: "ironlb-ingress", pid: ing.Pid(),
		route: func(ctx context.Context, r *routes) error {
			ings := client.NetworkingV1().Ingresses(benchNS)
			return retry.RetryOnConflict(retry.DefaultRetry, func() error {
				cur, err := ings.Get(ctx, "bench", metav1.GetOptions{})
				if err != nil {
					return err
				}
				cur.Spec = r.ingress(benchNS).Spec
				_, err = ings.Update(ctx, cur, metav1.UpdateOptions{})
				return err
			})
		},
		endpoints: func(ctx context.Context, r *routes) error {
			var eps []cluster.Endpoint
			for _, be := range b.s1 {
				if containsAddr(r.eps["s1"], be.IP) {
					eps = append(eps, cluster.Endpoint{Name: be.Name, Node: env.Lab.NodeName(be.Node), IP: be.IP, Ready: true, Serving: true})
				}
			}
			return env.Cluster.SetEndpoints(ctx, benchNS, "s1", backendPort, corev1.ProtocolTCP, eps)
		},
		reloads: metric("ironlb_ingress_reloads_total"),
		retries: metric("ironlb_ingress_upstream_retries_total"),
	}
	ngx := &proxy{name: "nginx", pid: b.nginx.p.Pid(),
		route:     func(_ context.Context, r *routes) error { return b.nginx.apply(r) },
		endpoints: func(_ context.Context, r *routes) error { return b.nginx.apply(r) },
		reloads:   func(context.Context) (float64, error) { return float64(b.nginx.reloads), nil },
	}
	b.proxies = []*proxy{ironlb, ngx}
	for _, px := range b.proxies {
		ns, name := framework.IngressNamespace, framework.IngressService
		if px == ngx {
			ns, name = benchNS, "nginx"
		}
		if px.vip, err = waitVIP(ctx, env, ns, name); err != nil {
			return err
		}
		say("%s: VIP %s", px.name, px.vip)
		if err := b.verify(ctx, px); err != nil {
			return err
		}
	}
	return nil
}

// lbService creates LoadBalancer Service bench/name (externalTrafficPolicy Local,
// ports http 80 and https 443) like deploy/ingress/service.yaml.
func (b *bed) lbService(ctx context.Context, name string) error {
	_, err := b.env.Cluster.Client.CoreV1().Services(benchNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector:              map[string]string{"app": name},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "https", Port: 443, TargetPort: intstr.FromString("https"), Protocol: corev1.ProtocolTCP},
			},
		},
	}, metav1.CreateOptions{})
	return err
}

func waitVIP(ctx context.Context, env *framework.Env, ns, name string) (netip.Addr, error) {
	var vip netip.Addr
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := env.Cluster.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		vip, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err == nil, nil
	})
	if err != nil {
		return vip, fmt.Errorf("Service %s/%s got no address: %w", ns, name, err)
	}
	return vip, nil
}

// verify checks that px answers every route with the right Service over HTTP
// and HTTPS (certificates verified for the host names), waiting up to 30s for
// the first answer (the VIP's announcement, the first routing table).
func (b *bed) verify(ctx context.Context, px *proxy) error {
	checks := []struct{ url, want string }{
		{"http://foo.bar.com/foo", "s1"}, {"http://foo.bar.com/foo/x", "s1"}, {"http://foo.bar.com/bar", b.r.bar},
		{"http://bar.foo.com/", "s2"}, {"http://foo.bar.com/foobar", "def"}, {"http://other.example/", "def"},
		{"https://foo.bar.com/foo", "s1"}, {"https://bar.foo.com/x", "s2"},
	}
	within := 30 * time.Second
	for _, c := range checks {
		var last string
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
			r, err := b.env.Curl(ctx, lab.HostLANClient, px.vip, c.url, framework.CurlOptions{CACert: b.caFile})
			if err != nil {
				last = err.Error()
				return false, nil
			}
			last = fmt.Sprintf("%d %q", r.Code, r.Body)
			return r.Code == 200 && strings.HasPrefix(r.Body, c.want+"-"), nil
		})
		if err != nil {
			return fmt.Errorf("%s via %s: %s, want 200 from %s (last: %s)", c.url, px.name, err, c.want, last)
		}
		within = 5 * time.Second
	}
	return nil
}

// profile writes a CPU profile of ironlb-ingress during a wrk run of
// o.duration per scheme (the largest connection count) into o.profile.
func (b *bed) profile(ctx context.Context, gen *loadGen, o options) error {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		return err
	}
	px := b.proxies[0]
	for _, scheme := range []string{"http", "https"} {
		path, err := filepath.Abs(filepath.Join(o.profile, "ironlb-"+scheme+".pprof"))
		if err != nil {
			return err
		}
		secs := int(o.duration.Seconds())
		errc := make(chan error, 1)
		go func() {
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.ingress.MetricsAddr, secs)
			_, err := b.env.Lab.Exec(ctx, b.env.Lab.NodeName(b.ingress.Pod.Node), "curl", "-sS", "--fail", "--max-time", strconv.Itoa(secs+20), "-o", path, url)
			errc <- err
		}()
		r, err := gen.run(ctx, scheme+"://"+px.vip.String()+"/", o.conns[len(o.conns)-1], o.duration+time.Second)
		if err != nil {
			return err
		}
		if err := <-errc; err != nil {
			return fmt.Errorf("CPU profile: %w", err)
		}
		say("profile %s: %s (%.0f req/s while profiled)", scheme, path, r.rps())
	}
	return nil
}

// setWindow makes the s1 pods k%4 and (k+1)%4 its ready endpoints in b.r and,
// when apply is set, hands the change to a proxy.
func (b *bed) setWindow(ctx context.Context, k int, apply func(context.Context, *routes) error) error {
	var eps []netip.AddrPort
	var ceps []cluster.Endpoint
	for _, i := range []int{k % 4, (k + 1) % 4} {
		be := b.s1[i]
		eps = append(eps, netip.AddrPortFrom(be.IP, backendPort))
		ceps = append(ceps, cluster.Endpoint{Name: be.Name, Node: b.env.Lab.NodeName(be.Node), IP: be.IP, Ready: true, Serving: true})
	}
	b.r.eps["s1"] = eps
	if apply == nil {
		return b.env.Cluster.SetEndpoints(ctx, benchNS, "s1", backendPort, corev1.ProtocolTCP, ceps)
	}
	return apply(ctx, b.r)
}

// pair is one throughput configuration: the runs of both proxies.
type pair struct {
	scheme string
	conns  int
	runs   map[string][]wrkResult
	use    map[string][]usage
	load   string
}

func (b *bed) throughput(ctx context.Context, gen *loadGen, o options, scheme string, conns int) (pair, error) {
	p := pair{scheme: scheme, conns: conns, runs: map[string][]wrkResult{}, use: map[string][]usage{}, load: loadavg()}
	order := []*proxy{b.proxies[0], b.proxies[1], b.proxies[1], b.proxies[0]}
	for _, px := range order {
		url := scheme + "://" + px.vip.String() + "/"
		if o.warmup > 0 {
			if _, err := gen.run(ctx, url, conns, o.warmup); err != nil {
				return p, err
			}
		}
		u0 := usageOf(px.pid)
		r, err := gen.run(ctx, url, conns, o.duration)
		if err != nil {
			return p, err
		}
		u := usageOf(px.pid).sub(u0)
		say("%-5s c=%-4d %-15s %9.0f req/s  p50 %7.2fms  p99 %7.2fms  errors %d  CPU %5.1fµs/req (system %5.1f)  syscalls r %.2f w %.2f /req  (load %s)",
			scheme, conns, px.name, r.rps(), r.P50US/1000, r.P99US/1000, r.errors(), perReq(u.cpu.Microseconds(), r), perReq(u.sys.Microseconds(), r),
			perReq(u.reads, r), perReq(u.write, r), loadavg())
		p.runs[px.name] = append(p.runs[px.name], r)
		p.use[px.name] = append(p.use[px.name], u)
	}
	return p, nil
}

// churnResult is what wrk saw while one proxy went through the changes.
type churnResult struct {
	proxy            string
	wrk              wrkResult
	routeChanges     int
	endpointChanges  int
	reloads, retries float64
	took             time.Duration
}

// churn runs wrk (HTTP, the largest connection count) against px while the route
// and endpoint changes are made, and returns the errors wrk saw.
func (b *bed) churn(ctx context.Context, gen *loadGen, o options, px *proxy) (churnResult, error) {
	res := churnResult{proxy: px.name}
	// The same starting point for every proxy: route 0, window {0, 1}.
	for _, i := range []int{0, 1} {
		if err := b.startS1(ctx, i); err != nil {
			return res, err
		}
	}
	b.r.changeRoute(0)
	if err := px.route(ctx, b.r); err != nil {
		return res, err
	}
	if err := b.setWindow(ctx, 0, px.endpoints); err != nil {
		return res, err
	}
	if err := b.verify(ctx, px); err != nil {
		return res, err
	}
	reloads0, err := px.reloads(ctx)
	if err != nil {
		return res, err
	}
	var retries0 float64
	if px.retries != nil {
		if retries0, err = px.retries(ctx); err != nil {
			return res, err
		}
	}
	conns := o.conns[len(o.conns)-1]
	say("%s: %d route changes and %d endpoint changes under load (http, c=%d)", px.name, o.changes, o.changes, conns)
	bg, err := gen.start("http://"+px.vip.String()+"/", conns, 10*time.Minute)
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = bg.stop()
		}
	}()
	time.Sleep(time.Second) // wrk connected and at full speed
	begin := time.Now()
	stopping := make([]chan struct{}, len(b.s1))
	for i := 1; i <= o.changes; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		b.r.changeRoute(i)
		if err := px.route(ctx, b.r); err != nil {
			return res, fmt.Errorf("route change %d: %w", i, err)
		}
		res.routeChanges++
		time.Sleep(o.pace)

		// Endpoint change i: pod (i+1)%4 enters the window, pod (i-1)%4 leaves it.
		in, out := (i+1)%4, (i+3)%4
		if ch := stopping[in]; ch != nil {
			<-ch
		}
		if err := b.startS1(ctx, in); err != nil {
			return res, err
		}
		if err := b.setWindow(ctx, i, px.endpoints); err != nil {
			return res, fmt.Errorf("endpoint change %d: %w", i, err)
		}
		res.endpointChanges++
		if p := b.s1Procs[out]; p != nil {
			ch := make(chan struct{})
			stopping[out] = ch
			b.s1Procs[out] = nil
			go func() { defer close(ch); _ = p.Stop() }()
		}
		time.Sleep(o.pace)
	}
	res.took = time.Since(begin)
	time.Sleep(time.Second) // requests that started under the last change end
	stopped = true
	if res.wrk, err = bg.stop(); err != nil {
		return res, err
	}
	for _, ch := range stopping {
		if ch != nil {
			<-ch
		}
	}
	reloads1, err := px.reloads(ctx)
	if err != nil {
		return res, err
	}
	res.reloads = reloads1 - reloads0
	if px.retries != nil {
		r1, err := px.retries(ctx)
		if err != nil {
			return res, err
		}
		res.retries = r1 - retries0
	}
	say("%s: %d requests, %d errors (%s) in %v of changes; %.0f reloads",
		px.name, res.wrk.Requests, res.wrk.errors(), res.wrk.errorDetail(), res.took.Round(time.Millisecond), res.reloads)
	return res, nil
}

// startS1 starts the server of s1's pod i unless it runs, and returns once it answers.
func (b *bed) startS1(ctx context.Context, i int) error {
	if b.s1Procs[i] != nil {
		return nil
	}
	p, err := b.env.Lab.StartPodServer(ctx, b.s1[i].Pod, b.env.Bins.PodServer, backendPort)
	if err != nil {
		return err
	}
	b.s1Procs[i] = p
	b.pids = append(b.pids, p.Pid())
	return nil
}

// perReq is n per request of r. wrk counts the requests of its whole run,
// including the ones in flight when the process usage was sampled; over seconds
// the difference is noise.
func perReq(n int64, r wrkResult) float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(n) / float64(r.Requests)
}

func containsAddr(eps []netip.AddrPort, a netip.Addr) bool {
	for _, e := range eps {
		if e.Addr() == a {
			return true
		}
	}
	return false
}

func mean(rs []wrkResult, f func(wrkResult) float64) float64 {
	if len(rs) == 0 {
		return 0
	}
	var s float64
	for _, r := range rs {
		s += f(r)
	}
	return s / float64(len(rs))
}

func report(table []pair, churns []churnResult, o options) {
	fmt.Println()
	fmt.Printf("ironlb-ingress vs %s, wrk -t%d, %v per run, runs ABBA (mean of 2 each), through each one's L2 VIP and kube-proxy\n",
		nginxVersion(), o.threads, o.duration)
	fmt.Printf("%-6s %5s | %10s %7s %7s %7s | %10s %7s %7s %7s | %6s %6s %6s %6s | %s\n",
		"", "conns", "ironlb r/s", "p50 ms", "p99 ms", "CPU µs", "nginx r/s", "p50 ms", "p99 ms", "CPU µs",
		"r/s", "p50", "p99", "CPU", "load at start")
	failed := false
	for _, p := range table {
		a, n := p.runs["ironlb-ingress"], p.runs["nginx"]
		rps := func(r wrkResult) float64 { return r.rps() }
		p50 := func(r wrkResult) float64 { return r.P50US / 1000 }
		p99 := func(r wrkResult) float64 { return r.P99US / 1000 }
		ar, nr := mean(a, rps), mean(n, rps)
		a50, n50 := mean(a, p50), mean(n, p50)
		a99, n99 := mean(a, p99), mean(n, p99)
		acpu, ncpu := cpuPerReq(a, p.use["ironlb-ingress"]), cpuPerReq(n, p.use["nginx"])
		ok := ar >= 0.8*nr && a99 <= 1.5*n99
		failed = failed || !ok
		mark := "meets targets"
		if !ok {
			mark = "MISSES a target"
		}
		fmt.Printf("%-6s %5d | %10.0f %7.2f %7.2f %7.1f | %10.0f %7.2f %7.2f %7.1f | %5.2fx %5.2fx %5.2fx %5.2fx | %s  %s\n",
			p.scheme, p.conns, ar, a50, a99, acpu, nr, n50, n99, ncpu, ar/nr, a50/n50, a99/n99, acpu/ncpu, p.load, mark)
	}
	fmt.Println("ratios are ironlb-ingress / nginx; targets: r/s >= 0.80x, p99 <= 1.50x; CPU is the proxy's user+system time per request")
	fmt.Println()
	for _, c := range churns {
		extra := ""
		if c.proxy == "ironlb-ingress" {
			extra = fmt.Sprintf(", %.0f requests retried on another endpoint", c.retries)
		}
		fmt.Printf("under %d route + %d endpoint changes (%v): %-15s %8d requests, %d errors (%s); %.0f reloads%s\n",
			c.routeChanges, c.endpointChanges, c.took.Round(time.Millisecond), c.proxy, c.wrk.Requests, c.wrk.errors(), c.wrk.errorDetail(), c.reloads, extra)
	}
	if failed {
		fmt.Println("ironlb-ingress misses a throughput target in at least one configuration")
	}
}

// cpuPerReq is the CPU time per request, in microseconds, over all runs.
func cpuPerReq(rs []wrkResult, us []usage) float64 {
	var reqs int64
	var cpu time.Duration
	for i := range rs {
		reqs += rs[i].Requests
		cpu += us[i].cpu
	}
	if reqs == 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(reqs)
}

func nginxVersion() string {
	out, err := exec.Command("nginx", "-v").CombinedOutput()
	if err != nil {
		return "nginx"
	}
	return strings.TrimSpace(strings.TrimPrefix(string(out), "nginx version: "))
}
