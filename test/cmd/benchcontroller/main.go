// Command benchcontroller measures what users feel of a LoadBalancer controller on a
// real kube-apiserver + etcd in the lab, for ironlb-controller and MetalLB's
// controller (go.universe.tf/metallb v0.15.2, built unmodified from the Go module
// proxy) in one run, on the same API server and the same workload, one after the
// other, each with the flags its manifests ship:
//
//	(a) a burst of N LoadBalancer Services created at once (64 clients in parallel)
//	    -> time until every one has status.loadBalancer.ingress;
//	(b) with L live Services: a rolling restart (SIGTERM, then a new process) and a
//	    crash (SIGKILL, then a new process) -> time from the signal until a Service
//	    created at that moment has its address, and the Service writes (PATCH/PUT
//	    counted by the API server's own apiserver_request_total) the restart made.
//
// The Services have allocateLoadBalancerNodePorts: false (10,000 LoadBalancer
// Services would exhaust the NodePort range) and one TCP port. The pool is
// 198.18.64.0/18 for both.
//
// Usage (make bench runs it): go run ./cmd/benchcontroller [-burst 1000] [-live 10000] [-metallb=true]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/internal/benchlog"
	"github.com/ironlb/ironlb/test/lab"
)

const (
	poolRange   = "198.18.64.0/18"
	concurrency = 64
)

func main() {
	burst := flag.Int("burst", 1000, "Services in the burst (a)")
	live := flag.Int("live", 10000, "live Services for the restart measurements (b); at most -burst skips (b)")
	withMetalLB := flag.Bool("metallb", true, "also measure MetalLB's controller")
	flag.Parse()
	if err := framework.CheckHost(); err != nil {
		fmt.Fprintf(os.Stderr, "benchcontroller: %v\n", err)
		os.Exit(1)
	}
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, *burst, *live, *withMetalLB); err != nil {
		fmt.Fprintf(os.Stderr, "benchcontroller: FAILED: %v\n", err)
		os.Exit(1)
	}
}

// signalContext ends on SIGINT/SIGTERM or after three hours (the run is bounded).
func signalContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	sctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	return sctx, func() { stop(); cancel() }
}

var metallbPools = schema.GroupVersionResource{Group: "metallb.io", Version: "v1beta1", Resource: "ipaddresspools"}

var say = benchlog.Say

// impl is one controller under test.
type impl struct {
	name  string
	setup func(ctx context.Context) error          // pools, CRDs, namespaces
	start func(ctx context.Context) (*proc, error) // one controller process
	// probeWrites is how many Service writes publishing one new Service costs.
	probeWrites int
}

type proc struct {
	p    *lab.Process
	name string
}

type measurement struct {
	impl            string
	burstCreate     time.Duration // creating the N Services
	burstAll        time.Duration // first create -> all have an address
	burstAfterLast  time.Duration // last create -> all have an address
	liveAll         time.Duration // first create of the L -> all have an address
	rolling, crash  time.Duration // signal -> new Service has its address
	rollingWrites   int
	crashWrites     int
	rollingRestarts time.Duration // signal -> new process started
}

func run(ctx context.Context, burst, live int, withMetalLB bool) error {
	say("bringing up the lab (3 nodes, kube-apiserver + etcd in the cp namespace)")
	env, err := framework.Up(ctx, framework.Options{Nodes: 3, Log: nil})
	if err != nil {
		return err
	}
	defer func() {
		pids := env.PIDs()
		env.Down()
		if left := env.Leftovers(pids); left != "" {
			say("teardown left %s (make lab-clean)", left)
		}
	}()
	client, err := fastClient(env)
	if err != nil {
		return err
	}

	say("load average before: %s", loadavg())
	floor, err := creationFloor(ctx, client, burst)
	if err != nil {
		return err
	}
	say("baseline: creating %d Services with no LoadBalancer controller running took %v", burst, floor.Round(time.Millisecond))

	impls := []impl{ironlb(env)}
	if withMetalLB {
		m, err := metallb(ctx, env)
		if err != nil {
			say("MetalLB: skipped: %v", err)
		} else {
			impls = append(impls, m)
		}
	}
	var results []measurement
	for _, im := range impls {
		r, err := measure(ctx, env, client, im, burst, live)
		if err != nil {
			return fmt.Errorf("%s: %w", im.name, err)
		}
		results = append(results, r)
	}
	report(results, burst, live, floor)
	say("load average after: %s", loadavg())
	return nil
}

// creationFloor is how long the API server takes to create n Services with no
// LoadBalancer controller running: the floor under figure (a).
func creationFloor(ctx context.Context, client kubernetes.Interface, n int) (time.Duration, error) {
	ns := "bench-baseline"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return 0, err
	}
	t := time.Now()
	if err := createServices(ctx, client, ns, "floor", n); err != nil {
		return 0, err
	}
	took := time.Since(t)
	return took, deleteAll(ctx, client, ns)
}

func loadavg() string { return benchlog.LoadAvg() + " (1, 5, 15 min; 2 cores)" }

func measure(ctx context.Context, env *framework.Env, client kubernetes.Interface, im impl, burst, live int) (measurement, error) {
	m := measurement{impl: im.name}
	ns := "bench-" + strings.ToLower(strings.NewReplacer(" ", "-", ".", "-").Replace(im.name))
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return m, err
	}
	if err := im.setup(ctx); err != nil {
		return m, err
	}
	p, err := im.start(ctx)
	if err != nil {
		return m, err
	}
	defer func() { _ = p.p.Stop() }()
	w, err := newWatcher(ctx, client, ns)
	if err != nil {
		return m, err
	}
	defer w.stop()
	w.proc = p.p
	time.Sleep(3 * time.Second) // let the process start (both); not part of any figure

	// (a) burst.
	say("%s: (a) creating %d LoadBalancer Services at once", im.name, burst)
	t0 := time.Now()
	if err := createServices(ctx, client, ns, "burst", burst); err != nil {
		return m, err
	}
	m.burstCreate = time.Since(t0)
	tLast := time.Now()
	if err := w.waitAddressed(ctx, burst, 10*time.Minute); err != nil {
		return m, err
	}
	m.burstAll, m.burstAfterLast = time.Since(t0), time.Since(tLast)
	say("%s: (a) %d Services created in %v; all addressed %v after the first create (%v after the last)",
		im.name, burst, m.burstCreate.Round(time.Millisecond), m.burstAll.Round(time.Millisecond), m.burstAfterLast.Round(time.Millisecond))

	if live <= burst {
		return m, nil
	}
	// (b) live population.
	more := live - burst
	say("%s: (b) creating %d more Services (%d live)", im.name, more, live)
	t1 := time.Now()
	if err := createServices(ctx, client, ns, "live", more); err != nil {
		return m, err
	}
	if err := w.waitAddressed(ctx, live, 2*time.Hour); err != nil {
		return m, err
	}
	m.liveAll = time.Since(t1)
	say("%s: (b) %d live Services addressed (%d created and addressed in %v)", im.name, live, more, m.liveAll.Round(time.Millisecond))

	for _, kind := range []string{"rolling", "crash"} {
		sig := syscall.SIGTERM
		if kind == "crash" {
			sig = syscall.SIGKILL
		}
		before, err := serviceWrites(ctx, env)
		if err != nil {
			return m, err
		}
		probe := "probe-" + kind
		t := time.Now()
		if err := syscall.Kill(p.p.Pid(), sig); err != nil {
			return m, err
		}
		select {
		case <-p.p.Done():
		case <-time.After(60 * time.Second):
			return m, fmt.Errorf("%s did not exit after %v", p.name, sig)
		}
		if p, err = im.start(ctx); err != nil {
			return m, err
		}
		w.proc = p.p
		if err := createServices(ctx, client, ns, probe, 1); err != nil {
			return m, err
		}
		if err := w.waitName(ctx, probe+"-00000", time.Hour); err != nil {
			return m, err
		}
		took := time.Since(t)
		// Settle: count the restart's writes once the API server saw none for 5 s
		// (at most 2 minutes after the new Service got its address).
		after := before
		quietSince, deadline := time.Now(), time.Now().Add(2*time.Minute)
		for time.Since(quietSince) < 5*time.Second && time.Now().Before(deadline) {
			time.Sleep(500 * time.Millisecond)
			n, err := serviceWrites(ctx, env)
			if err != nil {
				return m, err
			}
			if n != after {
				after, quietSince = n, time.Now()
			}
		}
		writes := after - before - im.probeWrites
		if kind == "rolling" {
			m.rolling, m.rollingWrites = took, writes
		} else {
			m.crash, m.crashWrites = took, writes
		}
		say("%s: (b) %s restart (%v) with %d live Services: new Service addressed %v after the signal; %d Service writes for unchanged Services",
			im.name, kind, sig, live, took.Round(time.Millisecond), writes)
	}

	say("%s: deleting the %d Services", im.name, live+2)
	if err := deleteAll(ctx, client, ns); err != nil {
		return m, err
	}
	return m, nil
}

func report(rs []measurement, burst, live int, floor time.Duration) {
	fmt.Println()
	fmt.Printf("Baseline: creating %d Services with no LoadBalancer controller: %v\n\n", burst, floor.Round(time.Millisecond))
	fmt.Println("| what | " + names(rs) + " |")
	fmt.Println("|---|" + strings.Repeat("---|", len(rs)))
	row := func(what string, f func(measurement) string) {
		var cells []string
		for _, r := range rs {
			cells = append(cells, f(r))
		}
		fmt.Printf("| %s | %s |\n", what, strings.Join(cells, " | "))
	}
	d := func(x time.Duration) string {
		switch {
		case x < 10*time.Millisecond:
			return x.Round(100 * time.Microsecond).String()
		case x < 10*time.Second:
			return x.Round(time.Millisecond).String()
		}
		return x.Round(10 * time.Millisecond).String()
	}
	row(fmt.Sprintf("(a) %d Services created at once: first create -> all addressed", burst), func(m measurement) string { return d(m.burstAll) })
	row("(a) of which creating them (the load generator)", func(m measurement) string { return d(m.burstCreate) })
	row("(a) last create -> all addressed", func(m measurement) string { return d(m.burstAfterLast) })
	if live <= burst {
		if len(rs) == 2 {
			fmt.Printf("\n(a) burst: %s %.1fx faster than %s\n", rs[0].impl, float64(rs[1].burstAll)/float64(rs[0].burstAll), rs[1].impl)
		}
		return
	}
	row(fmt.Sprintf("%d more Services created and addressed", live-burst), func(m measurement) string { return d(m.liveAll) })
	row(fmt.Sprintf("(b) rolling restart (SIGTERM, new process), %d live: new Service addressed after", live), func(m measurement) string { return d(m.rolling) })
	row("(b) rolling restart: Service writes for unchanged Services", func(m measurement) string { return strconv.Itoa(m.rollingWrites) })
	row(fmt.Sprintf("(b) crash (SIGKILL, new process), %d live: new Service addressed after", live), func(m measurement) string { return d(m.crash) })
	row("(b) crash: Service writes for unchanged Services", func(m measurement) string { return strconv.Itoa(m.crashWrites) })
	if len(rs) == 2 {
		fmt.Println()
		ratio := func(what string, a, b time.Duration) {
			fmt.Printf("%s: %s %.1fx faster than %s\n", what, rs[0].impl, float64(b)/float64(a), rs[1].impl)
		}
		ratio("(a) burst", rs[0].burstAll, rs[1].burstAll)
		ratio("(b) rolling restart", rs[0].rolling, rs[1].rolling)
		ratio("(b) crash", rs[0].crash, rs[1].crash)
	}
}

func names(rs []measurement) string {
	var n []string
	for _, r := range rs {
		n = append(n, r.impl)
	}
	return strings.Join(n, " | ")
}

// fastClient is the load generator's client: no client-side rate limit to speak of.
func fastClient(env *framework.Env) (kubernetes.Interface, error) {
	cfg := *env.Cluster.AdminConfig
	cfg.QPS, cfg.Burst = 5000, 5000
	return kubernetes.NewForConfig(&cfg)
}

func createServices(ctx context.Context, client kubernetes.Interface, ns, prefix string, n int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, concurrency)
	no := false
	for range min(concurrency, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%05d", prefix, i)},
					Spec: corev1.ServiceSpec{
						Type:                          corev1.ServiceTypeLoadBalancer,
						AllocateLoadBalancerNodePorts: &no,
						Selector:                      map[string]string{"app": "bench"},
						Ports:                         []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
					},
				}
				if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func deleteAll(ctx context.Context, client kubernetes.Interface, ns string) error {
	list, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(list.Items) {
					return
				}
				_ = client.CoreV1().Services(ns).Delete(ctx, list.Items[i].Name, metav1.DeleteOptions{})
			}
		})
	}
	wg.Wait()
	return wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil && len(l.Items) == 0, nil
	})
}

// watcher counts the Services of a namespace that have an address, from a watch.
type watcher struct {
	proc      *lab.Process // the controller under test: its exit fails a wait at once
	mu        sync.Mutex
	addressed map[string]bool
	changed   chan struct{}
	cancel    context.CancelFunc
}

func newWatcher(ctx context.Context, client kubernetes.Interface, ns string) (*watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{addressed: map[string]bool{}, changed: make(chan struct{}, 1), cancel: cancel}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Services().Informer()
	set := func(obj any) {
		s, ok := obj.(*corev1.Service)
		if !ok {
			return
		}
		w.mu.Lock()
		w.addressed[s.Name] = len(s.Status.LoadBalancer.Ingress) > 0
		w.mu.Unlock()
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if s, ok := obj.(*corev1.Service); ok {
				w.mu.Lock()
				delete(w.addressed, s.Name)
				w.mu.Unlock()
			}
		},
	}); err != nil {
		cancel()
		return nil, err
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		return nil, errors.New("watching Services did not sync")
	}
	return w, nil
}

func (w *watcher) stop() { w.cancel() }

func (w *watcher) exited() <-chan struct{} {
	if w.proc == nil {
		return nil
	}
	return w.proc.Done()
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, ok := range w.addressed {
		if ok {
			n++
		}
	}
	return n
}

func (w *watcher) waitUntil(ctx context.Context, within time.Duration, what string, ok func() bool) error {
	deadline := time.After(within)
	for !ok() {
		select {
		case <-w.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("%s: not within %v (%d addressed)", what, within, w.count())
		case <-w.exited():
			return fmt.Errorf("%s: the controller exited: %v\n%s", what, w.proc.Err(), w.proc.Tail(2000))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (w *watcher) waitAddressed(ctx context.Context, n int, within time.Duration) error {
	return w.waitUntil(ctx, within, fmt.Sprintf("%d Services addressed", n), func() bool { return w.count() >= n })
}

func (w *watcher) waitName(ctx context.Context, name string, within time.Duration) error {
	return w.waitUntil(ctx, within, name+" addressed", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.addressed[name]
	})
}

var writeRE = regexp.MustCompile(`(?m)^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$`)

// serviceWrites is the API server's count of PATCH and PUT requests on Services
// (status subresource included), from its own /metrics.
func serviceWrites(ctx context.Context, env *framework.Env) (int, error) {
	body, err := env.Cluster.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	total := 0.0
	for _, m := range writeRE.FindAllStringSubmatch(string(body), -1) {
		l := m[1]
		if strings.Contains(l, `resource="services"`) && (strings.Contains(l, `verb="PATCH"`) || strings.Contains(l, `verb="PUT"`)) {
			v, _ := strconv.ParseFloat(m[2], 64)
			total += v
		}
	}
	return int(total), nil
}

// ironlb runs ironlb-controller as shipped (Deployment args, leader election on).
func ironlb(env *framework.Env) impl {
	return impl{
		name:        "ironlb",
		probeWrites: 1, // one PATCH: status, finalizer and attribution together
		setup: func(ctx context.Context) error {
			_, err := framework.CreateYAML(ctx, env.Cluster.Dynamic, framework.IPPools,
				`{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bench}, spec: {addresses: ["`+poolRange+`"]}}`)
			return err
		},
		start: func(ctx context.Context) (*proc, error) {
			c, err := env.StartControllerAsShipped(ctx)
			if err != nil {
				return nil, err
			}
			return &proc{p: c.Process, name: c.Name}, nil
		},
	}
}

// metallb builds MetalLB's controller (bench/metallb-controller pins v0.15.2) and runs
// it with its manifests' flags, the webhook off (it validates MetalLB's own CRs, not
// Services), as cluster admin.
func metallb(ctx context.Context, env *framework.Env) (impl, error) {
	bin, crds, err := buildMetalLB(ctx, env.RepoRoot)
	if err != nil {
		return impl{}, err
	}
	dyn := env.Cluster.Dynamic
	n := 0
	return impl{
		name:        "MetalLB v0.15.2",
		probeWrites: 1, // one status update
		setup: func(ctx context.Context) error {
			if err := env.Cluster.InstallCRDs(ctx, crds); err != nil {
				return err
			}
			if _, err := env.Cluster.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "metallb-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			return createMetalLBPool(ctx, dyn)
		},
		start: func(ctx context.Context) (*proc, error) {
			n++
			name := fmt.Sprintf("metallb-controller-%d", n)
			p, err := env.Lab.Start(lab.HostCP, filepath.Join(env.Lab.Dir(), name+".log"),
				// No memberlist secret: that is the speakers' (and needs the Deployment object).
				"env", "KUBECONFIG="+env.Cluster.AdminKubeconfig, "METALLB_NAMESPACE=metallb-system",
				bin, "--port=7572", "--log-level=info", "--webhook-mode=disabled", "--disable-cert-rotation")
			if err != nil {
				return nil, err
			}
			return &proc{p: p, name: name}, nil
		},
	}, nil
}

func createMetalLBPool(ctx context.Context, dyn dynamic.Interface) error {
	_, err := framework.CreateYAML(ctx, dyn, metallbPools,
		`{apiVersion: metallb.io/v1beta1, kind: IPAddressPool, metadata: {name: bench, namespace: metallb-system}, spec: {addresses: ["`+poolRange+`"]}}`)
	return err
}

// buildMetalLB builds MetalLB's controller once into the lab's binary cache and
// returns it and the folder of its CRDs.
func buildMetalLB(ctx context.Context, repo string) (bin, crds string, err error) {
	mod := filepath.Join(repo, "bench", "metallb-controller")
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(cache, "ironlb", "bin", "metallb-controller-v0.15.2")
	if _, err := os.Stat(bin); err != nil {
		say("building MetalLB's controller (go.universe.tf/metallb v0.15.2) from the Go module proxy (a few minutes the first time)")
		cmd := exec.CommandContext(ctx, "go", "build", "-mod=readonly", "-o", bin, "go.universe.tf/metallb/controller")
		cmd.Dir = mod
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("building MetalLB's controller: %v\n%s", err, out)
		}
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", "go.universe.tf/metallb")
	cmd.Dir = mod
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("locating MetalLB's module: %w", err)
	}
	return bin, filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "bases"), nil
}
