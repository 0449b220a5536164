package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

const (
	bulkNS = "bulk"
	// writers is how many API requests the bench has in flight at once.
	writers = 16
)

// bulkAddr is the k-th address of pool bulk (198.18.100.0/22), skipping
// the first ten.
func bulkAddr(k int) netip.Addr {
	a := netip.MustParseAddr("198.18.100.10").As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(k)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func bulkName(k int) string { return fmt.Sprintf("svc-%04d", k) }

// parallel runs f(0..n-1) on writers goroutines and returns the first error.
func parallel(ctx context.Context, n int, f func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(writers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// routerCounts is how many BGP routes the router has in its kernel, and how
// many paths it accepted from each node.
type routerCounts struct {
	fib   int
	paths map[string]int
}

func (b *bench) counts(ctx context.Context) (routerCounts, error) {
	out, err := b.env.Lab.Vtysh(ctx, "show ip route summary json")
	if err != nil {
		return routerCounts{}, err
	}
	sum, err := b.env.Lab.Vtysh(ctx, "show bgp ipv4 unicast summary json")
	if err != nil {
		return routerCounts{}, err
	}
	return routerCounts{fib: bgpRoutesInFIB(out), paths: pathsReceived(sum)}, nil
}

// bulkTimes are the figures of one bulk announcement or withdrawal.
type bulkTimes struct {
	fib    time.Duration // every route (with at least one next hop) installed, or every route gone
	paths  time.Duration // every node's path accepted by bgpd
	ecmp   time.Duration // every route in the router's kernel via all three nodes
	cpu    time.Duration // CPU the three speakers used meanwhile
	writes time.Duration // every API write of the step answered
}

// timeBulk runs write (the step's API writes) while watching the router
// from its start until the bulk routes are all there (present) or all gone:
// slowly while the writes run (poller.quiet), every pollEvery after.
func (b *bench) timeBulk(ctx context.Context, base routerCounts, n int, present bool, write func() error) (bulkTimes, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	watched := make(chan error, 1)
	var bt bulkTimes
	writing := make(chan struct{})
	b.poll.mu.Lock()
	b.poll.quiet = writing
	b.poll.mu.Unlock()
	defer func() {
		b.poll.mu.Lock()
		b.poll.quiet = nil
		b.poll.mu.Unlock()
	}()
	go func() {
		var err error
		bt, err = b.watchBulk(ctx, t0, base, n, present)
		watched <- err
	}()
	err := write()
	writes := time.Since(t0)
	close(writing) // full-speed polls from now on
	if err != nil {
		return bt, err
	}
	if err := <-watched; err != nil {
		return bt, err
	}
	bt.writes = writes
	return bt, nil
}

// watchBulk polls the router from t0 until the bulk routes are all there
// (want = base + n routes and paths per node) or all gone (want = base).
func (b *bench) watchBulk(ctx context.Context, t0 time.Time, base routerCounts, n int, present bool) (bt bulkTimes, err error) {
	cpu := b.speakerCPU()
	defer func() { bt.cpu = b.speakerCPU() - cpu }()
	want := base.fib
	if present {
		want += n
	}
	bt.fib, err = b.poll.until(ctx, t0, 120*time.Second, "show ip route summary json", func(out string) bool { return bgpRoutesInFIB(out) == want })
	if err != nil || !present {
		return bt, err
	}
	bt.paths, err = b.poll.until(ctx, t0, 120*time.Second, "show bgp ipv4 unicast summary json", func(out string) bool {
		got := pathsReceived(out)
		for _, ip := range b.hops() {
			if got[ip] != base.paths[ip]+n {
				return false
			}
		}
		return true
	})
	if err != nil {
		return bt, err
	}
	kernel := func(ctx context.Context) (string, error) {
		return b.env.Lab.Exec(ctx, lab.HostRouter, "ip", "-j", "-4", "route", "show", "proto", "bgp")
	}
	bt.ecmp, err = b.poll.untilFunc(ctx, t0, 120*time.Second, "ip route show proto bgp", kernel, func(out string) bool {
		return kernelECMP(out, len(b.hops())) == base.fib+n
	})
	return bt, err
}

// kernelECMP counts the routes of "ip -j route show" with exactly hops next
// hops.
func kernelECMP(out string, hops int) int {
	var routes []struct {
		Gateway  string            `json:"gateway"`
		Nexthops []json.RawMessage `json:"nexthops"`
	}
	if json.Unmarshal([]byte(out), &routes) != nil {
		return -1
	}
	n := 0
	for _, r := range routes {
		if len(r.Nexthops) == hops || (hops == 1 && r.Gateway != "") {
			n++
		}
	}
	return n
}

// bulkRoutes: (b).
func (b *bench) bulkRoutes(ctx context.Context) ([]string, error) {
	env := b.env
	client := env.Cluster.Client.CoreV1()
	if _, err := client.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: bulkNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	n := b.bulk
	if b.noNodePorts {
		say("  the bulk Services have allocateLoadBalancerNodePorts: false (-no-nodeports)")
	}
	say("  publishing endpoints for %d Services (untimed)", n)
	if err := parallel(ctx, n, func(k int) error {
		return env.PublishEndpoints(ctx, bulkNS, bulkName(k), 80, b.backends, false)
	}); err != nil {
		return nil, err
	}
	base, err := b.counts(ctx)
	if err != nil {
		return nil, err
	}

	// The speakers' and the router's share: the controller is stopped and
	// the bench publishes the addresses itself.
	var direct, flipOn, flipOff, deleted []bulkTimes
	_ = b.ctrl.Stop()
	for trial := 1; trial <= b.bulkTrials; trial++ {
		if err := parallel(ctx, n, func(k int) error {
			return b.createService(ctx, bulkNS, bulkName(k), "", "bulk")
		}); err != nil {
			return nil, err
		}
		var profiled <-chan error
		if trial == 1 && b.profile != "" {
			profiled = b.profileSpeaker(ctx, 1, "direct", 8*time.Second)
		}
		bt, err := b.timeBulk(ctx, base, n, true, func() error {
			return parallel(ctx, n, func(k int) error { return b.publishStatus(ctx, k) })
		})
		if err != nil {
			return nil, err
		}
		if profiled != nil {
			if err := <-profiled; err != nil {
				return nil, fmt.Errorf("CPU profile: %w", err)
			}
		}
		w := bt.writes
		direct = append(direct, bt)
		say("  status written directly, trial %d: writes done %v; routes installed %v, every node's path at bgpd %v, all via 3 nodes in the kernel %v; speakers' CPU %v",
			trial, ms(w), ms(bt.fib), ms(bt.paths), ms(bt.ecmp), ms(bt.cpu))
		if trial == 1 {
			for flip := 1; flip <= 3*b.bulkTrials; flip++ {
				off, on, err := b.flipPool(ctx, base, n)
				if err != nil {
					return nil, err
				}
				flipOff, flipOn = append(flipOff, off), append(flipOn, on)
				say("  pool advertise.bgp off/on, trial %d: all withdrawn %v; all installed %v, every node's path at bgpd %v, all via 3 nodes %v; speakers' CPU %v",
					flip, ms(off.fib), ms(on.fib), ms(on.paths), ms(on.ecmp), ms(off.cpu+on.cpu))
			}
		}
		d, err := b.deleteBulk(ctx, base, n)
		if err != nil {
			return nil, err
		}
		deleted = append(deleted, d)
	}
	// The API server's share: the bench creates each Service and writes its
	// status itself, as fast as the controller could, so this is the floor
	// for the end-to-end trials below on this machine (speakers running).
	var floor []bulkTimes
	for trial := 1; trial <= b.bulkTrials; trial++ {
		m := b.mark(ctx)
		bt, err := b.timeBulk(ctx, base, n, true, func() error {
			return parallel(ctx, n, func(k int) error {
				if err := b.createService(ctx, bulkNS, bulkName(k), "", "bulk"); err != nil {
					return err
				}
				return b.publishStatus(ctx, k)
			})
		})
		if err != nil {
			return nil, err
		}
		b.loadSince(ctx, fmt.Sprintf("created and published by the bench, trial %d", trial), m)
		floor = append(floor, bt)
		say("  created and published by the bench (no controller), trial %d: writes done %v; routes installed %v, all via 3 nodes %v; speakers' CPU %v",
			trial, ms(bt.writes), ms(bt.fib), ms(bt.ecmp), ms(bt.cpu))
		d, err := b.deleteBulk(ctx, base, n)
		if err != nil {
			return nil, err
		}
		deleted = append(deleted, d)
	}

	if b.ctrl, err = env.StartController(ctx); err != nil {
		return nil, err
	}

	// End to end: the Services created through the API, the controller
	// allocating.
	var e2e []bulkTimes
	var created, published []time.Duration
	for trial := 1; trial <= b.bulkTrials; trial++ {
		// The controller's share: when every address is published.
		t0 := time.Now()
		publishedAt := b.published(ctx, t0, n)
		var profiled, apiProfiled <-chan error
		if trial == 1 && b.profile != "" {
			profiled = b.profileSpeaker(ctx, 1, "api", 12*time.Second)
			apiProfiled = b.profileAPIServer(ctx, "api", 12*time.Second)
		}
		m := b.mark(ctx)
		bt, err := b.timeBulk(ctx, base, n, true, func() error {
			return parallel(ctx, n, func(k int) error {
				return b.createService(ctx, bulkNS, bulkName(k), "", "bulk")
			})
		})
		if err != nil {
			return nil, err
		}
		for _, p := range []<-chan error{profiled, apiProfiled} {
			if p == nil {
				continue
			}
			if err := <-p; err != nil {
				return nil, fmt.Errorf("CPU profile: %w", err)
			}
		}
		b.loadSince(ctx, fmt.Sprintf("created through the API, trial %d", trial), m)
		c, p := bt.writes, <-publishedAt
		if p < 0 {
			return nil, fmt.Errorf("the controller did not publish %d addresses within 2 minutes", n)
		}
		created, published, e2e = append(created, c), append(published, p), append(e2e, bt)
		say("  created through the API, trial %d: creates done %v, every address published %v; routes installed %v, every node's path at bgpd %v, all via 3 nodes %v; speakers' CPU %v",
			trial, ms(c), ms(p), ms(bt.fib), ms(bt.paths), ms(bt.ecmp), ms(bt.cpu))
		m = b.mark(ctx)
		d, err := b.deleteBulk(ctx, base, n)
		if err != nil {
			return nil, err
		}
		b.loadSince(ctx, fmt.Sprintf("deleted through the API, controller running, trial %d", trial), m)
		deleted = append(deleted, d)
	}
	pick := func(ts []bulkTimes, f func(bulkTimes) time.Duration) []time.Duration {
		var out []time.Duration
		for _, t := range ts {
			out = append(out, f(t))
		}
		return out
	}
	fib := func(t bulkTimes) time.Duration { return t.fib }
	paths := func(t bulkTimes) time.Duration { return t.paths }
	ecmp := func(t bulkTimes) time.Duration { return t.ecmp }
	return []string{
		fmt.Sprintf("  pool advertise.bgp switched on with one write (%d addresses published already):", n),
		stats("  -> all routes installed at the router", pick(flipOn, fib)),
		stats("  -> every node's path accepted by bgpd", pick(flipOn, paths)),
		stats("  -> all routes via 3 nodes in the router's kernel", pick(flipOn, ecmp)),
		stats("  switched off -> all routes gone", pick(flipOff, fib)),
		"  status written by the bench, controller stopped (16 writes in flight):",
		stats("  -> all status writes done", pick(direct, func(t bulkTimes) time.Duration { return t.writes })),
		stats("  -> all routes installed at the router", pick(direct, fib)),
		stats("  -> every node's path accepted by bgpd", pick(direct, paths)),
		stats("  -> all routes via 3 nodes in the router's kernel", pick(direct, ecmp)),
		"  the floor: the bench creates each Service and writes its status itself, no controller (16 in flight):",
		stats("  -> all creates and status writes done", pick(floor, func(t bulkTimes) time.Duration { return t.writes })),
		stats("  -> all routes via 3 nodes in the router's kernel", pick(floor, ecmp)),
		"  Services created through the API, ironlb-controller allocating (16 creates in flight):",
		stats("  -> all creates done", created),
		stats("  -> every address published by the controller", published),
		stats("  -> all routes installed at the router", pick(e2e, fib)),
		stats("  -> every node's path accepted by bgpd", pick(e2e, paths)),
		stats("  -> all routes via 3 nodes in the router's kernel", pick(e2e, ecmp)),
		stats(fmt.Sprintf("%d Services deleted -> all deletes answered", n), pick(deleted, func(t bulkTimes) time.Duration { return t.writes })),
		stats(fmt.Sprintf("%d Services deleted -> all routes gone", n), pick(deleted, fib)),
	}, nil
}

// published answers, once each of the n Services in bulkNS has an address
// in its status, how long after t0 that was seen (-1: not within 2 minutes).
// It watches rather than lists: listing 1,000 Services every 100 ms took the
// API server being measured about a second of CPU per burst (and the bench
// as much again), a tenth of what the burst itself needs.
func (b *bench) published(ctx context.Context, t0 time.Time, n int) <-chan time.Duration {
	out := make(chan time.Duration, 1)
	lw := cache.NewListWatchFromClient(b.env.Cluster.Client.CoreV1().RESTClient(), "services", bulkNS, fields.Everything())
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		withAddress := map[string]bool{}
		_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Service{}, nil, func(ev watch.Event) (bool, error) {
			s, ok := ev.Object.(*corev1.Service)
			if !ok {
				return false, nil
			}
			if ev.Type == watch.Deleted || len(s.Status.LoadBalancer.Ingress) == 0 {
				delete(withAddress, s.Name)
			} else {
				withAddress[s.Name] = true
			}
			return len(withAddress) == n, nil
		})
		if err != nil {
			out <- -1
			return
		}
		out <- time.Since(t0)
	}()
	return out
}

// publishStatus writes what the controller would for bulk Service k: the
// pool attribution and the address.
func (b *bench) publishStatus(ctx context.Context, k int) error {
	services := b.writer.CoreV1().Services(bulkNS)
	vip := corev1.LoadBalancerIPModeVIP
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"ironlb.io/ip-allocated-from-pool":"bulk"}},"status":{"loadBalancer":{"ingress":[{"ip":%q,"ipMode":%q}]}}}`, bulkAddr(k), vip)
	_, err := services.Patch(ctx, bulkName(k), "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}, "status")
	return err
}

// flipPool switches pool bulk's advertise.bgp off (a nodeSelector no node
// matches) and on again, and times both.
func (b *bench) flipPool(ctx context.Context, base routerCounts, n int) (off, on bulkTimes, err error) {
	pools := b.env.Cluster.Dynamic.Resource(framework.IPPools)
	set := func(sel map[string]any) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
			u, err := pools.Get(ctx, "bulk", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if sel == nil {
				unstructured.RemoveNestedField(u.Object, "spec", "advertise", "bgp", "nodeSelector")
			} else if err := unstructured.SetNestedMap(u.Object, sel, "spec", "advertise", "bgp", "nodeSelector"); err != nil {
				return err
			}
			_, err = pools.Update(ctx, u, metav1.UpdateOptions{})
			return err
		})
	}
	t0 := time.Now()
	if err := set(map[string]any{"matchLabels": map[string]any{"benchbgp": "no-node"}}); err != nil {
		return off, on, err
	}
	if off, err = b.watchBulk(ctx, t0, base, n, false); err != nil {
		return off, on, err
	}
	t0 = time.Now()
	if err := set(nil); err != nil {
		return off, on, err
	}
	on, err = b.watchBulk(ctx, t0, base, n, true)
	return off, on, err
}

// deleteBulk deletes the bulk Services, times until their routes are gone,
// and waits until the Services are (the controller, if running, removes its
// finalizer).
func (b *bench) deleteBulk(ctx context.Context, base routerCounts, n int) (bulkTimes, error) {
	services := b.writer.CoreV1().Services(bulkNS)
	bt, err := b.timeBulk(ctx, base, n, false, func() error {
		return parallel(ctx, n, func(k int) error {
			err := services.Delete(ctx, bulkName(k), metav1.DeleteOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		})
	})
	if err != nil {
		return bt, err
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := services.List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0, nil
	})
	if err != nil {
		return bt, errors.New("the bulk Services were not gone within 2 minutes")
	}
	say("  %d Services deleted: all deletes answered %v; all routes gone %v; speakers' CPU %v", n, ms(bt.writes), ms(bt.fib), ms(bt.cpu))
	return bt, nil
}

// profileSpeaker starts a CPU profile of lab node's speaker (run with
// --profiling) for d and writes it to b.profile/speaker-<node>-<what>.pprof;
// the channel answers when the profile is written.
func (b *bench) profileSpeaker(ctx context.Context, node int, what string, d time.Duration) <-chan error {
	errc := make(chan error, 1)
	sp := b.speakers[node]
	if sp == nil {
		errc <- fmt.Errorf("no speaker on node %d", node)
		return errc
	}
	path, err := filepath.Abs(filepath.Join(b.profile, fmt.Sprintf("speaker-%d-%s.pprof", node, what)))
	if err == nil {
		err = os.MkdirAll(b.profile, 0o755)
	}
	if err != nil {
		errc <- err
		return errc
	}
	secs := int(d.Seconds())
	go func() {
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", sp.MetricsAddr, secs)
		_, err := b.env.Lab.Exec(ctx, sp.Name, "curl", "-sS", "--fail", "--max-time", strconv.Itoa(secs+20), "-o", path, url)
		if err == nil {
			say("  CPU profile of %s's speaker over %v (%s): %s", sp.Name, d, what, path)
		}
		errc <- err
	}()
	return errc
}

// profileAPIServer starts a CPU profile of the lab's kube-apiserver (its
// /debug/pprof, as the bench's admin user) for d and writes it to
// b.profile/kube-apiserver-<what>.pprof; the channel answers when it is written.
func (b *bench) profileAPIServer(ctx context.Context, what string, d time.Duration) <-chan error {
	errc := make(chan error, 1)
	path := filepath.Join(b.profile, "kube-apiserver-"+what+".pprof")
	go func() {
		rc := b.env.Cluster.Client.Discovery().RESTClient()
		ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
		defer cancel()
		data, err := rc.Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(int(d.Seconds()))).Timeout(d + 30*time.Second).DoRaw(ctx)
		if err == nil {
			err = os.MkdirAll(b.profile, 0o755)
		}
		if err == nil {
			err = os.WriteFile(path, data, 0o644)
		}
		if err == nil {
			say("  CPU profile of the kube-apiserver over %v (%s): %s", d, what, path)
		}
		errc <- err
	}()
	return errc
}
