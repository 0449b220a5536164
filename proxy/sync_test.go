package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// manyServices adds n ClusterIP Services with three endpoints each.
func manyServices(e *env, n int) {
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		e.add(service("bulk", name, bulkIP(i), nodePort(int32(30000+i%2700))),
			slice("bulk", name, name+"-a", httpPort(8080),
				ep{ip: fmt.Sprintf("198.18.%d.%d", 1+i%200, 1+i%250), node: "node2"},
				ep{ip: fmt.Sprintf("198.18.%d.%d", 1+(i+1)%200, 1+i%250), node: "node3"},
				ep{ip: fmt.Sprintf("198.18.%d.%d", 1+(i+2)%200, 1+i%250), node: "node1"}))
	}
}

func bulkIP(i int) string { return fmt.Sprintf("198.19.%d.%d", (i/250)%256, 1+i%250) }

func lastInputChains(e *env) []string {
	var out []string
	for _, l := range strings.Split(string(e.p.families[0].lastInput), "\n") {
		if strings.HasPrefix(l, ":") {
			out = append(out, strings.Fields(l[1:])[0])
		}
	}
	return out
}

func TestOneServiceChangeWritesOnlyItsChains(t *testing.T) {
	e := newEnv(t)
	manyServices(e, 2000)
	e.sync()
	fullBytes := len(e.p.families[0].lastInput)
	restores := func() int { n, _ := e.m4.Restores(); return n }
	if n := restores(); n != 1 {
		t.Errorf("a full sync of 2000 Services took %d restores, want one atomic restore", n)
	}

	// New endpoints for one Service: its Service chain, and the hairpin
	// tree's chains on the paths of the endpoint addresses that came or went.
	e.add(slice("bulk", "s7", "s7-a", httpPort(8080), ep{ip: "198.18.9.9", node: "node2"}, ep{ip: "198.18.9.10", node: "node3"}))
	before := restores()
	e.sync()
	if n := restores() - before; n != 1 {
		t.Errorf("a one-Service change took %d restores, want one atomic restore", n)
	}
	chains := lastInputChains(e)
	hairpin := reachableChains(e.m4, iptables.TableNAT, chainHairpin)
	svc := 0
	for _, c := range chains {
		switch {
		case strings.HasPrefix(c, prefixSVC):
			svc++
		case !hairpin[c]:
			t.Errorf("an endpoint change rewrote %s", c)
		}
	}
	if svc != 1 || len(chains) > 1+5*6 {
		t.Errorf("an endpoint change wrote %d Service chains and %d chains in all: %v", svc, len(chains), chains)
	}
	if got := summarize(e.trace(pkt("198.18.1.5", bulkIP(7), 80))); !slices.Equal(got.endpoints, []string{"198.18.9.10:8080", "198.18.9.9:8080"}) {
		t.Errorf("changed Service: %v", got)
	}

	// A new Service: its chains and a few dispatch chains, never a root rewritten whole.
	e.add(service("bulk", "new", "198.19.3.251"), slice("bulk", "new", "new-a", httpPort(8080), ep{ip: "198.18.7.7", node: "node2"}))
	e.sync()
	in := e.p.families[0].lastInput
	if len(in) > 3*serviceShape.bucket*200 || len(in)*50 > fullBytes {
		t.Errorf("adding one Service to 2000 wrote %d bytes (full sync %d)", len(in), fullBytes)
	}
	if got := summarize(e.trace(pkt("198.18.1.5", "198.19.3.251", 80))); !slices.Equal(got.endpoints, []string{"198.18.7.7:8080"}) {
		t.Errorf("new Service: %v", got)
	}
	// Deleting it removes its chains again.
	e.deleteService("bulk", "new")
	e.sync()
	checkConsistent(t, e.m4)
	if got := summarize(e.trace(pkt("198.18.1.5", "198.19.3.251", 80))); got.String() != (verdict{other: []string{"FORWARD"}}).String() {
		t.Errorf("deleted Service: %v", got)
	}
	if got := summarize(e.trace(pkt("198.18.1.5", bulkIP(1999), 80))); len(got.endpoints) != 3 {
		t.Errorf("an untouched Service: %v", got)
	}
}

// reachableChains returns the chains reached from root (root included).
func reachableChains(m *iptables.Model, tb iptables.Table, root string) map[string]bool {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(c string) {
		if seen[c] {
			return
		}
		seen[c] = true
		for _, r := range m.Rules(tb, c) {
			f := strings.Fields(r)
			for i := 0; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && strings.HasPrefix(f[i+1], chainPrefix) {
					walk(f[i+1])
				}
			}
		}
	}
	walk(root)
	return seen
}

// TestFirstPacketCostIsLogarithmic counts the rules the first packet of a
// connection to a Service evaluates in the nat table, at 100 and 2,000
// Services: a linear dispatch would grow by 1,900 rules, the tree by a level
// or two (a leaf holds up to serviceShape.bucket rules at either size).
// TestBigSyncsAreBatched: a sync that writes more Service chains than
// maxChainsPerRestore is sent in several restores and ends with the same
// rules as one restore.
func TestBigSyncsAreBatched(t *testing.T) {
	one := newEnv(t)
	manyServices(one, 300)
	one.sync()
	old := maxChainsPerRestore
	maxChainsPerRestore = 100
	t.Cleanup(func() { maxChainsPerRestore = old })
	batched := newEnv(t)
	manyServices(batched, 300)
	batched.sync()
	if n, _ := batched.m4.Restores(); n < 300/maxChainsPerRestore+1 {
		t.Errorf("a full sync of 300 Services (300 Service chains) took %d restores, want batches of at most %d chains", n, maxChainsPerRestore)
	}
	checkConsistent(t, batched.m4)
	for _, tb := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
		a, _ := one.m4.Save(context.Background(), tb)
		b, _ := batched.m4.Save(context.Background(), tb)
		if string(a) != string(b) {
			t.Errorf("%s: batched restores made other rules than one restore", tb)
		}
	}
}

func TestFirstPacketCostIsLogarithmic(t *testing.T) {
	cost := func(n int) int {
		e := newEnv(t)
		manyServices(e, n)
		e.sync()
		worst := 0
		for i := 0; i < n; i += max(1, n/50) {
			for _, o := range e.trace(pkt("198.18.1.5", bulkIP(i), 80)) {
				worst = max(worst, o.NATRules)
			}
		}
		return worst
	}
	small, large := cost(100), cost(2000)
	t.Logf("worst nat rules evaluated by a first packet: %d at 100 Services, %d at 2000", small, large)
	if large > small+3*(1<<serviceShape.stride) {
		t.Errorf("first packet evaluates %d rules at 2000 Services and %d at 100: not logarithmic", large, small)
	}
}

func TestExternalFlushIsRepaired(t *testing.T) {
	for _, c := range []struct {
		name  string
		table iptables.Table
		del   bool
	}{
		{"iptables -t nat -F", iptables.TableNAT, false},
		{"iptables -t filter -F", iptables.TableFilter, false},
		{"iptables -t nat -F; iptables -t nat -X", iptables.TableNAT, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.add(nginx(nodePort(30080)), nginxSlice(ep1, ep2), service("web", "empty", "198.19.0.99"))
			e.sync()
			if e.p.checkCanaries(context.Background()) {
				t.Fatal("canaries reported lost right after a sync")
			}
			e.m4.FlushTable(c.table, c.del)
			if !e.p.checkCanaries(context.Background()) {
				t.Fatal("flush not detected")
			}
			e.sync()
			checkConsistent(t, e.m4)
			if got := summarize(e.trace(pkt("198.51.100.10", "192.0.2.11", 30080))); len(got.endpoints) != 2 {
				t.Errorf("NodePort after repair: %v", got)
			}
			if got := summarize(e.trace(pkt("198.18.1.5", "198.19.0.99", 80))); got.String() != (verdict{other: []string{"REJECT"}}).String() {
				t.Errorf("Service without endpoints after repair: %v", got)
			}
			if e.p.checkCanaries(context.Background()) {
				t.Error("canaries still lost after the full sync")
			}
		})
	}
}

func TestLeftoversOfAnEarlierRunAreDeleted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// An earlier run left a Service chain, an endpoint chain it jumps to, and
	// a dispatch chain (nothing references the first).
	if err := e.m4.Restore(ctx, []byte("*nat\n:IRONLB-SEP-OLD - [0:0]\n:IRONLB-SVC-OLD - [0:0]\n:IRONLB-DSP-OLD - [0:0]\n"+
		"-A IRONLB-SEP-OLD -p tcp -j DNAT --to-destination 198.18.7.7:80\n-A IRONLB-SVC-OLD -j IRONLB-SEP-OLD\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	e.add(nginx(), nginxSlice(ep1))
	e.sync()
	if err := e.p.sweepLeftovers(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"IRONLB-SEP-OLD", "IRONLB-SVC-OLD", "IRONLB-DSP-OLD"} {
		if slices.Contains(e.m4.Chains(iptables.TableNAT), c) {
			t.Errorf("%s left", c)
		}
	}
	checkConsistent(t, e.m4)
	if got := summarize(e.trace(pkt("198.18.1.5", "198.19.0.10", 80))); len(got.endpoints) != 1 {
		t.Errorf("after the sweep: %v", got)
	}
	// A later full sync deletes what the proxy itself no longer wants, without iptables-save.
	e.deleteService("web", "nginx")
	e.p.markFull()
	e.sync()
	checkConsistent(t, e.m4)
	for _, c := range ironlbChains(e.m4, iptables.TableNAT) {
		if strings.HasPrefix(c, prefixSVC) || strings.HasPrefix(c, prefixEXT) {
			t.Errorf("full sync left %s of a deleted Service", c)
		}
	}
}

func TestCleanupRemovesOnlyIronlb(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// Someone else's rules, in a built-in chain and in a chain of their own.
	if err := e.m4.Restore(ctx, []byte("*nat\n:OTHER - [0:0]\n-A OTHER -j RETURN\n-A PREROUTING -j OTHER\nCOMMIT\n")); err != nil {
		t.Fatal(err)
	}
	e.add(nginx(nodePort(30080), loadBalancer("203.0.113.7"), sourceRanges("198.51.100.0/24")), nginxSlice(ep1, ep2), service("web", "empty", "198.19.0.99"))
	e.sync()
	if err := e.p.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*iptables.Model{e.m4, e.m6} {
		for _, tb := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
			if left := ironlbChains(m, tb); len(left) > 0 {
				t.Errorf("%s %s: left %v", m.Family(), tb, left)
			}
			save, _ := m.Save(ctx, tb)
			if strings.Contains(string(save), "IRONLB") {
				t.Errorf("%s %s still mentions IRONLB:\n%s", m.Family(), tb, save)
			}
		}
	}
	if got := e.m4.Rules(iptables.TableNAT, "PREROUTING"); !slices.Equal(got, []string{"-j OTHER"}) {
		t.Errorf("PREROUTING after cleanup: %v, want the foreign jump kept", got)
	}
	if got := e.m4.Rules(iptables.TableNAT, "OTHER"); !slices.Equal(got, []string{"-j RETURN"}) {
		t.Errorf("foreign chain after cleanup: %v", got)
	}
	// Cleanup twice is fine, and the proxy programs again afterwards.
	if err := Cleanup(ctx, e.m4, e.m6); err != nil {
		t.Fatal(err)
	}
	e.sync()
	if got := summarize(e.trace(pkt("198.18.1.5", "198.19.0.10", 80))); len(got.endpoints) != 2 {
		t.Errorf("after cleanup and sync: %v", got)
	}
}

func TestHealthCheckNodePort(t *testing.T) {
	e := newEnv(t)
	client := &http.Client{Transport: &http.Transport{DialContext: e.hc.dial}, Timeout: 10 * time.Second}
	get := func() (int, hcBody, error) {
		resp, err := client.Get("http://192.0.2.11:32000/")
		if err != nil {
			return 0, hcBody{}, err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var b hcBody
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatalf("body %q: %v", raw, err)
		}
		if resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("content type %q", resp.Header.Get("Content-Type"))
		}
		return resp.StatusCode, b, nil
	}
	lb := nginx(nodePort(30080), loadBalancer("203.0.113.7"), etpLocal(32000))
	e.add(lb, nginxSlice(ep1, ep{ip: "198.18.1.11", node: "node1"}, ep2))
	e.sync()
	code, body, err := get()
	if err != nil {
		t.Fatal(err)
	}
	want := hcBody{LocalEndpoints: 2, ServiceProxyHealthy: true}
	want.Service.Namespace, want.Service.Name = "web", "nginx"
	if code != http.StatusOK || body != want {
		t.Errorf("two local endpoints: %d %+v, want 200 %+v", code, body, want)
	}

	e.add(nginxSlice(ep2, ep3))
	e.sync()
	code, body, _ = get()
	want.LocalEndpoints = 0
	if code != http.StatusServiceUnavailable || body != want {
		t.Errorf("no local endpoint: %d %+v, want 503 %+v", code, body, want)
	}

	e.deleteService("web", "nginx")
	e.sync()
	if _, _, err := get(); err == nil {
		t.Error("health check port still answers after the Service was deleted")
	}
}

func TestStaleUDPConntrackEntriesDeleted(t *testing.T) {
	e := newEnv(t)
	dns := service("kube-system", "dns", "198.19.0.53", withPorts(v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP, NodePort: 30053}),
		func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeNodePort })
	dnsSlice := func(ips ...string) *discovery.EndpointSlice {
		var eps []ep
		for _, ip := range ips {
			eps = append(eps, ep{ip: ip, node: "node2"})
		}
		return slice("kube-system", "dns", "dns-a", []discovery.EndpointPort{epPort("dns", 5353, v1.ProtocolUDP)}, eps...)
	}
	e.add(dns, dnsSlice("198.18.2.53", "198.18.3.53"))
	e.sync()
	ap := netip.MustParseAddrPort
	flow := func(proto uint8, dst, reply string) Flow {
		return Flow{Protocol: proto, OrigDst: ap(dst), ReplySource: ap(reply)}
	}
	keep1 := flow(unix.IPPROTO_UDP, "198.19.0.53:53", "198.18.2.53:5353")
	gone := flow(unix.IPPROTO_UDP, "198.19.0.53:53", "198.18.3.53:5353")
	goneNP := flow(unix.IPPROTO_UDP, "192.0.2.11:30053", "198.18.3.53:5353")
	tcp := flow(unix.IPPROTO_TCP, "198.19.0.53:53", "198.18.3.53:5353")
	other := flow(unix.IPPROTO_UDP, "198.19.0.54:53", "198.18.3.53:5353")
	e.ct.flows[iptables.IPv4] = []Flow{keep1, gone, goneNP, tcp, other}

	e.add(dnsSlice("198.18.2.53"))
	e.sync()
	if got, want := e.ct.flows[iptables.IPv4], []Flow{keep1, tcp, other}; !slices.Equal(got, want) {
		t.Errorf("after an endpoint went: flows %v, want %v", got, want)
	}
	if got := testutil.ToFloat64(e.p.metrics.conntrackDel.WithLabelValues("IPv4")); got != 2 {
		t.Errorf("conntrack_deleted_total{IPv4} = %v after deleting 2 flows", got)
	}

	// The last endpoint goes: every flow to the ClusterIP is stale; NodePort
	// flows are left (they are matched by port only).
	np := flow(unix.IPPROTO_UDP, "192.0.2.11:30053", "198.18.2.53:5353")
	e.ct.flows[iptables.IPv4] = append(e.ct.flows[iptables.IPv4], np)
	e.add(dnsSlice())
	e.sync()
	if got, want := e.ct.flows[iptables.IPv4], []Flow{tcp, other, np}; !slices.Equal(got, want) {
		t.Errorf("after the last endpoint went: flows %v, want %v", got, want)
	}
	calls := e.ct.calls
	e.add(dnsSlice("198.18.2.53"))
	e.sync()
	if e.ct.calls != calls {
		t.Error("conntrack was scanned though no endpoint went away")
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	e := newEnv(t, func(c *Config) { c.Registerer = reg })
	e.add(nginx(nodePort(30080)), nginxSlice(ep1, ep2))
	e.sync()
	e.add(nginxSlice(ep1, ep2, ep3))
	e.sync()
	if got := testutil.ToFloat64(e.p.metrics.syncs.WithLabelValues("IPv4", "full")); got != 1 {
		t.Errorf("full syncs: %v", got)
	}
	if got := testutil.ToFloat64(e.p.metrics.syncs.WithLabelValues("IPv4", "partial")); got != 1 {
		t.Errorf("partial syncs: %v", got)
	}
	for _, tb := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
		want := 0
		for _, c := range ironlbChains(e.m4, tb) {
			want += len(e.m4.Rules(tb, c))
		}
		if got := testutil.ToFloat64(e.p.metrics.rules.WithLabelValues("IPv4", string(tb))); int(got) != want {
			t.Errorf("rules{table=%s} = %v, the model holds %d", tb, got, want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "ironlb_proxy_sync_duration_seconds"); err != nil || n == 0 {
		t.Errorf("sync duration histogram: %d series, %v", n, err)
	}
}

// TestRunProgramsAfterInformersSync runs the whole loop against fake
// informers: the first sync already has every Service (nothing is programmed
// from a partial list), later changes follow, and an external flush is
// repaired by the canary check.
func TestRunProgramsAfterInformersSync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var objs []any
	for i := range 50 {
		name := fmt.Sprintf("s%d", i)
		objs = append(objs,
			service("bulk", name, bulkIP(i)),
			slice("bulk", name, name+"-a", httpPort(8080), ep{ip: fmt.Sprintf("198.18.2.%d", i+1), node: "node2"}))
	}
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) {
		c.SyncPeriod = 50 * time.Millisecond
		c.MinSyncPeriod = 10 * time.Millisecond
		c.Registerer = reg
	})
	cs, done := runOnFakeAPI(ctx, t, e, objs...)

	waitFor(t, "first restore", func() bool {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		n, _ := e.m4.Restores()
		return n > 0
	})
	first, _ := e.m4.Restores()
	if first != 1 {
		t.Fatalf("%d restores before the first check, want the first sync to be one restore", first)
	}
	for i := range 50 {
		if got := summarize(e.trace(pkt("198.18.1.5", bulkIP(i), 80))); len(got.endpoints) != 1 {
			t.Fatalf("after the first sync, Service %d: %v", i, got)
		}
	}

	// A change through the API server is programmed.
	es := slice("bulk", "s3", "s3-a", httpPort(8080), ep{ip: "198.18.9.1", node: "node2"}, ep{ip: "198.18.9.2", node: "node3"})
	if _, err := cs.DiscoveryV1().EndpointSlices("bulk").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "endpoint change programmed", func() bool {
		return len(summarize(e.traceLocked(pkt("198.18.1.5", bulkIP(3), 80))).endpoints) == 2
	})

	// An external flush of the nat table is repaired within a sync period.
	e.m4.FlushTable(iptables.TableNAT, false)
	waitFor(t, "flush repaired", func() bool {
		return len(summarize(e.traceLocked(pkt("198.18.1.5", bulkIP(5), 80))).endpoints) == 1
	})
	if got := testutil.ToFloat64(e.p.metrics.canaryLost.WithLabelValues("IPv4")); got < 1 {
		t.Errorf("canary lost counter %v", got)
	}
	if !e.p.Healthy() {
		t.Error("proxy not healthy")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// traceLocked traces while the sync loop may be running (the model locks itself).
func (e *env) traceLocked(p iptables.Packet) []iptables.Outcome {
	tr := iptables.Tracer{Model: e.model(p.Dst), LocalAddrs: []netip.Addr{nodeIP, nodeIP6}}
	if p.InInterface == "" && !p.FromLocal {
		p.InInterface = "eth0"
	}
	out, err := tr.Trace(p)
	if err != nil {
		return nil
	}
	return out
}

// runOnFakeAPI creates objs (Services and EndpointSlices) in a fake API
// server and runs e's Proxier on informers of it until ctx ends; Run's
// result arrives on the channel.
func runOnFakeAPI(ctx context.Context, t *testing.T, e *env, objs ...any) (*fake.Clientset, <-chan error) {
	t.Helper()
	cs := fake.NewClientset()
	for _, o := range objs {
		var err error
		switch x := o.(type) {
		case *v1.Service:
			_, err = cs.CoreV1().Services(x.Namespace).Create(ctx, x, metav1.CreateOptions{})
		case *discovery.EndpointSlice:
			_, err = cs.DiscoveryV1().EndpointSlices(x.Namespace).Create(ctx, x, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := Informers{Services: f.Core().V1().Services(), EndpointSlices: f.Discovery().V1().EndpointSlices(), Nodes: f.Core().V1().Nodes()}
	// A factory starts only the informers asked for before Start.
	inf.Services.Informer()
	inf.EndpointSlices.Informer()
	inf.Nodes.Informer()
	done := make(chan error, 1)
	go func() { done <- e.p.Run(ctx, inf) }()
	f.Start(ctx.Done())
	t.Cleanup(f.Shutdown)
	return cs, done
}

// stuckChecks is an iptables whose HasRule (the canary check's command) can be
// held: a real one took 0.25-0.45 s per call at 10,000 Services.
type stuckChecks struct {
	iptables.Interface
	held    chan struct{} // closed: HasRule waits for release
	entered chan struct{} // gets a value when a HasRule starts waiting
	release chan struct{}
}

func (s *stuckChecks) HasRule(ctx context.Context, t iptables.Table, chain string, args ...string) (bool, error) {
	select {
	case <-s.held:
		select {
		case s.entered <- struct{}{}:
		default:
		}
		<-s.release
	default:
	}
	return s.Interface.HasRule(ctx, t, chain, args...)
}

// TestChangeNotHeldUpByCanaryCheck: a change arriving while a canary check is
// still running is programmed without waiting for the check to finish.
func TestChangeNotHeldUpByCanaryCheck(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stuck := &stuckChecks{held: make(chan struct{}), entered: make(chan struct{}, 1), release: make(chan struct{})}
	e := newEnv(t, func(c *Config) {
		stuck.Interface = c.IPTables[0]
		c.IPTables[0] = stuck
		c.SyncPeriod = 20 * time.Millisecond
		c.MinSyncPeriod = 10 * time.Millisecond
	})
	cs, done := runOnFakeAPI(ctx, t, e, service("bulk", "s1", bulkIP(1)), slice("bulk", "s1", "s1-a", httpPort(8080), ep{ip: "198.18.2.1", node: "node2"}))
	waitFor(t, "first sync", func() bool {
		return len(summarize(e.traceLocked(pkt("198.18.1.5", bulkIP(1), 80))).endpoints) == 1
	})
	close(stuck.held)
	select {
	case <-stuck.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("no canary check started")
	}
	es := slice("bulk", "s1", "s1-a", httpPort(8080), ep{ip: "198.18.9.1", node: "node2"}, ep{ip: "198.18.9.2", node: "node3"})
	if _, err := cs.DiscoveryV1().EndpointSlices("bulk").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "endpoint change programmed while the canary check is stuck", func() bool {
		return len(summarize(e.traceLocked(pkt("198.18.1.5", bulkIP(1), 80))).endpoints) == 2
	})
	close(stuck.release)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSyncsAreRateLimited: changes arriving over a second right after a sync
// are applied together when MinSyncPeriod has passed, not one sync per
// change, and none is lost.
func TestSyncsAreRateLimited(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MinSyncPeriod = 2 * time.Second; c.SyncPeriod = time.Hour })
	for i := range 20 {
		e.add(service("burst", fmt.Sprintf("s%d", i), bulkIP(i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.loop(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "first sync", func() bool { n, _ := e.m4.Restores(); return n > 0 })
	before, _ := e.m4.Restores()
	start := time.Now()
	for i := range 20 {
		// Changes arrive over about a second, as a rollout's would.
		e.add(slice("burst", fmt.Sprintf("s%d", i), fmt.Sprintf("s%d-a", i), httpPort(8080), ep{ip: fmt.Sprintf("198.18.5.%d", i+1), node: "node2"}))
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, "every change programmed", func() bool {
		for i := range 20 {
			if len(summarize(e.traceLocked(pkt("198.18.1.5", bulkIP(i), 80))).endpoints) != 1 {
				return false
			}
		}
		return true
	})
	after, _ := e.m4.Restores()
	// IPv4 restores only: the first sync may still be in its MinSyncPeriod.
	if n := after - before; n > 2 {
		t.Errorf("20 changes within %v took %d restores, want them batched (MinSyncPeriod 2s)", time.Since(start), n)
	}
}

// failingRestore is an iptables whose Restore fails while fail is set.
type failingRestore struct {
	iptables.Interface
	fail bool
}

func (f *failingRestore) Restore(ctx context.Context, data []byte) error {
	if f.fail {
		return errors.New("iptables-restore: exit status 4 (resource busy)")
	}
	return f.Interface.Restore(ctx, data)
}

// A failed restore is counted, leaves the other family programmed, and makes
// the next sync of that family a full one that programs everything.
func TestFailedSyncCountedAndRepairedByAFullSync(t *testing.T) {
	m4 := iptables.NewModel(iptables.IPv4)
	flaky := &failingRestore{Interface: m4}
	e := newEnv(t, func(c *Config) { c.IPTables[0] = flaky })
	e.m4 = m4
	e.add(nginx(nodePort(30080)), nginxSlice(ep1, ep2))
	e.sync()
	flaky.fail = true
	e.add(nginxSlice(ep1, ep2, ep3))
	if err := e.p.syncOnce(context.Background()); err == nil {
		t.Fatal("a failed restore was not reported")
	}
	if got := testutil.ToFloat64(e.p.metrics.syncFailures.WithLabelValues("IPv4")); got != 1 {
		t.Errorf("sync_failures_total{IPv4} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.p.metrics.syncFailures.WithLabelValues("IPv6")); got != 0 {
		t.Errorf("sync_failures_total{IPv6} = %v, want 0", got)
	}
	fulls := testutil.ToFloat64(e.p.metrics.syncs.WithLabelValues("IPv4", "full"))
	flaky.fail = false
	e.sync()
	if got := testutil.ToFloat64(e.p.metrics.syncs.WithLabelValues("IPv4", "full")); got != fulls+1 {
		t.Errorf("the sync after a failure was not full: full syncs %v -> %v", fulls, got)
	}
	// The third endpoint, added while restores failed, is reachable now.
	seen := map[string]bool{}
	for _, o := range e.trace(pkt("198.51.100.10", "192.0.2.11", 30080)) {
		if o.DNAT {
			seen[o.Dst.String()] = true
		}
	}
	if !seen[ep3.ip+":8080"] || len(seen) != 3 {
		t.Errorf("after the repair the NodePort reaches %v, want the three endpoints", seen)
	}
}

// slowRestore is a model whose restores take at least d, like a big table's.
type slowRestore struct {
	*iptables.Model
	d time.Duration
}

func (s slowRestore) Restore(ctx context.Context, data []byte) error {
	time.Sleep(s.d)
	return s.Model.Restore(ctx, data)
}

// The sync log splits a sync's time into the restores and the rest: the
// restore time covers every restore of the sync and nothing of a sync that
// writes nothing.
func TestSyncReportsRestoreTime(t *testing.T) {
	p, err := New(Config{NodeName: "node1", ClusterCIDRs: []netip.Prefix{podCIDR},
		IPTables: []iptables.Interface{slowRestore{iptables.NewModel(iptables.IPv4), 20 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	f := p.families[0]
	ctx := context.Background()
	snap := serviceSnapshot{name: typesName("ns", "a"), svc: service("ns", "a", "198.19.0.10")}
	res, err := f.sync(ctx, []serviceSnapshot{snap}, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.restores != 1 || res.restoreTime < 20*time.Millisecond {
		t.Errorf("full sync: %d restores in %v, want 1 restore of at least 20ms", res.restores, res.restoreTime)
	}
	res, err = f.sync(ctx, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.restores != 0 || res.restoreTime != 0 {
		t.Errorf("empty sync: %d restores in %v, want none", res.restores, res.restoreTime)
	}
}

// A relayout (a full sync that writes every chain again in the order the
// kernel walks them) is due once partial syncs have written half of the
// Service chains since the last full sync, counting each chain once and
// forgetting deleted ones; the full sync starts the count again.
func TestRelayoutDueWhenHalfTheChainsMoved(t *testing.T) {
	old := relayoutMinChains
	relayoutMinChains = 3
	t.Cleanup(func() { relayoutMinChains = old })
	e := newEnv(t)
	f := e.p.families[0]
	setEndpoints := func(i int, octet int) {
		e.add(slice("bulk", fmt.Sprint("s", i), fmt.Sprint("s", i, "-a"), httpPort(8080), ep{ip: fmt.Sprintf("198.18.%d.%d", octet, i+1), node: "node2"}))
	}
	for i := range 10 {
		e.add(service("bulk", fmt.Sprint("s", i), bulkIP(i)))
		setEndpoints(i, 5)
	}
	e.sync()
	if f.chains != 10 || f.relayoutDue() {
		t.Fatalf("after the first (full) sync: %d chains, due %v; want 10 chains, not due", f.chains, f.relayoutDue())
	}
	for i := range 4 {
		setEndpoints(i, 6)
		e.sync()
		setEndpoints(i, 7) // the same chain again: still one moved chain
		e.sync()
	}
	if f.relayoutDue() {
		t.Errorf("4 of 10 chains rewritten: relayout due, want not yet")
	}
	setEndpoints(4, 6)
	e.sync()
	if !f.relayoutDue() {
		t.Errorf("5 of 10 chains rewritten: relayout not due")
	}
	for i := range 3 {
		e.deleteService("bulk", fmt.Sprint("s", i))
	}
	e.sync()
	if f.chains != 7 || f.relayoutDue() {
		t.Errorf("3 moved Services deleted: %d chains, due %v; want 7 chains (2 of them moved), not due", f.chains, f.relayoutDue())
	}
	for i := 5; i < 8; i++ {
		setEndpoints(i, 6)
	}
	e.sync()
	if !f.relayoutDue() {
		t.Errorf("5 of 7 chains rewritten: relayout not due")
	}
	e.p.markFull()
	e.sync()
	if f.relayoutDue() {
		t.Errorf("after a full sync: relayout still due")
	}
}

// relayoutLoop runs the sync loop (SyncPeriod 20 ms) over three Services in
// 198.18.5.0/24 with a relayout due after 2 rewritten chains and quiet
// spells of quiet, until the test ends.
func relayoutLoop(t *testing.T, quiet time.Duration) *env {
	t.Helper()
	old, oldQuiet := relayoutMinChains, relayoutQuiet
	relayoutMinChains, relayoutQuiet = 2, quiet
	t.Cleanup(func() { relayoutMinChains, relayoutQuiet = old, oldQuiet })
	e := newEnv(t, func(c *Config) {
		c.Registerer = prometheus.NewPedanticRegistry()
		c.SyncPeriod = 20 * time.Millisecond
		c.MinSyncPeriod = 10 * time.Millisecond
	})
	for i := range 3 {
		e.add(service("bulk", fmt.Sprint("s", i), bulkIP(i)),
			slice("bulk", fmt.Sprint("s", i), fmt.Sprint("s", i, "-a"), httpPort(8080), ep{ip: fmt.Sprintf("198.18.5.%d", i+1), node: "node2"}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.loop(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// The loop runs the relayout on its own, on a SyncPeriod tick, and the
// rules stay what they were.
func TestLoopRelayouts(t *testing.T) {
	e := relayoutLoop(t, 50*time.Millisecond)
	full := func() float64 { return testutil.ToFloat64(e.p.metrics.syncs.WithLabelValues("IPv4", "full")) }
	waitFor(t, "first sync", func() bool { return full() == 1 })
	for i := range 2 {
		e.add(slice("bulk", fmt.Sprint("s", i), fmt.Sprint("s", i, "-a"), httpPort(8080), ep{ip: fmt.Sprintf("198.18.6.%d", i+1), node: "node3"}))
	}
	waitFor(t, "a full sync after 2 of 3 chains were rewritten", func() bool { return full() == 2 })
	for i := range 3 {
		want := fmt.Sprintf("198.18.5.%d", i+1)
		if i < 2 {
			want = fmt.Sprintf("198.18.6.%d", i+1)
		}
		got := summarize(e.traceLocked(pkt("198.18.1.5", bulkIP(i), 80))).endpoints
		if len(got) != 1 || !strings.HasPrefix(got[0], want+":") {
			t.Errorf("s%d after the relayout reaches %v, want %s", i, got, want)
		}
	}
	checkConsistent(t, e.m4)
}

// A relayout waits until changes have stopped for relayoutQuiet: it does not
// start in the middle of a burst, where the burst's next change would wait
// for it.
func TestLoopRelayoutWaitsForQuiet(t *testing.T) {
	e := relayoutLoop(t, 400*time.Millisecond)
	full := func() float64 { return testutil.ToFloat64(e.p.metrics.syncs.WithLabelValues("IPv4", "full")) }
	partial := func() float64 { return testutil.ToFloat64(e.p.metrics.syncs.WithLabelValues("IPv4", "partial")) }
	waitFor(t, "first sync", func() bool { return full() == 1 })
	// A burst: a change every 60 ms (three SyncPeriod ticks apart, each a
	// chance for a relayout once two of the three chains were rewritten).
	for round := range 12 {
		i := round % 3
		before := partial()
		e.add(slice("bulk", fmt.Sprint("s", i), fmt.Sprint("s", i, "-a"), httpPort(8080), ep{ip: fmt.Sprintf("198.18.6.%d", round+1), node: "node3"}))
		waitFor(t, "the change synced", func() bool { return partial() > before })
		if full() != 1 {
			t.Fatalf("a relayout started during the burst, after change %d", round+1)
		}
		time.Sleep(60 * time.Millisecond)
	}
	waitFor(t, "a relayout once the burst is over", func() bool { return full() == 2 })
	checkConsistent(t, e.m4)
}
