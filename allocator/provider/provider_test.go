package provider_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	servicehelper "k8s.io/cloud-provider/service/helpers"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/allocator/provider"
	"github.com/ironlb/ironlb/api/v1alpha1"
)

// env is a Cloud and ironlb's ServiceController wired to fake clientsets.
type env struct {
	t       *testing.T
	client  *fake.Clientset
	dyn     *dynamicfake.FakeDynamicClient
	cloud   *provider.Cloud
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	stopped chan struct{}
}

func pool(name string, addrs ...string) *v1alpha1.IPPool {
	p := &v1alpha1.IPPool{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "IPPool"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
	}
	for _, a := range addrs {
		p.Spec.Addresses = append(p.Spec.Addresses, v1alpha1.AddressRange(a))
	}
	return p
}

func toUnstructured(t testing.TB, obj runtime.Object) *unstructured.Unstructured {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

func newDynamic(t testing.TB, pools ...*v1alpha1.IPPool) *dynamicfake.FakeDynamicClient {
	var objs []runtime.Object
	for _, p := range pools {
		objs = append(objs, toUnstructured(t, p))
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{v1alpha1.IPPoolsResource: "IPPoolList"}, objs...)
}

func newEnv(t *testing.T, pools []*v1alpha1.IPPool, objs ...runtime.Object) *env {
	t.Helper()
	return newEnvFull(t, provider.Options{}, nil, pools, objs...)
}

// newEnvHook is newEnv with hook run on the clients before anything starts (to
// add reactors).
func newEnvHook(t *testing.T, pools []*v1alpha1.IPPool, hook func(*env), objs ...runtime.Object) *env {
	t.Helper()
	return newEnvFull(t, provider.Options{}, hook, pools, objs...)
}

// newEnvFull runs a Cloud and ironlb's ServiceController on fake clientsets, as
// ironlb-controller runs them (one shared informer factory).
func newEnvFull(t *testing.T, opts provider.Options, hook func(*env), pools []*v1alpha1.IPPool, objs ...runtime.Object) *env {
	t.Helper()
	e := &env{t: t, client: fake.NewSimpleClientset(objs...), dyn: newDynamic(t, pools...), reg: prometheus.NewRegistry(), stopped: make(chan struct{})}
	if hook != nil {
		hook(e)
	}
	if opts.RetryAfter == 0 {
		opts.RetryAfter = 100 * time.Millisecond
	}
	opts.Metrics = provider.NewMetrics(e.reg)
	e.cloud = provider.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	startControllers(ctx, t, e.cloud, e.client, e.dyn, e.stopped)
	t.Cleanup(e.stop)
	return e
}

// startControllers starts cloud and a ServiceController on one informer factory;
// stopped is closed when both have stopped after ctx ends.
func startControllers(ctx context.Context, t testing.TB, cloud *provider.Cloud, client kubernetes.Interface, dyn dynamic.Interface, stopped chan struct{}) {
	factory := informers.NewSharedInformerFactory(client, 0)
	sc, err := provider.NewServiceController(cloud, client, factory.Core().V1().Services())
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.Start(ctx, client, dyn, factory); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc.Run(ctx, 4)
		factory.Shutdown()
		close(stopped)
	}()
}

func (e *env) stop() {
	e.cancel()
	<-e.stopped
}

func lbService(ns, name string, port int32, mutate ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
		Spec: v1.ServiceSpec{
			Type:     v1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []v1.ServicePort{{Port: port, TargetPort: intstr.FromInt32(80), Protocol: v1.ProtocolTCP}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func (e *env) create(s *v1.Service) {
	e.t.Helper()
	if _, err := e.client.CoreV1().Services(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// waitIPs waits until the Service publishes exactly want (comma-joined) and returns it.
func (e *env) waitIPs(ns, name, want string) *v1.Service {
	e.t.Helper()
	var last *v1.Service
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := e.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = s
		return ingress(s) == want, nil
	})
	if err != nil {
		e.t.Fatalf("%s/%s: want ingress %q, have %q (%v)", ns, name, want, ingress(last), err)
	}
	return last
}

func ingress(s *v1.Service) string {
	if s == nil {
		return "<none>"
	}
	var ips []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		ip := in.IP
		if in.IPMode == nil || *in.IPMode != v1.LoadBalancerIPModeVIP {
			ip += "(mode!=VIP)"
		}
		ips = append(ips, ip)
	}
	return strings.Join(ips, ",")
}

// leaveLoadBalancer turns s into a ClusterIP Service (clearing its class, as the API
// requires) and waits until its address is released and the Service cleaned up.
func (e *env) leaveLoadBalancer(s *v1.Service) {
	e.t.Helper()
	s.Spec.Type = v1.ServiceTypeClusterIP
	s.Spec.LoadBalancerClass = nil
	if _, err := e.client.CoreV1().Services(s.Namespace).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	e.waitEvent(s.Name, provider.ReasonIPReleased)
	e.waitCleanedUp(s.Namespace, s.Name)
}

// waitCleanedUp waits until the Service has neither the cleanup finalizer nor an
// ingress address (what a controller leaves after releasing it).
func (e *env) waitCleanedUp(ns, name string) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := e.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && !servicehelper.HasLBFinalizer(s) && len(s.Status.LoadBalancer.Ingress) == 0, nil
	})
	if err != nil {
		e.t.Fatalf("%s/%s still has the cleanup finalizer or an address after its release", ns, name)
	}
}

// waitEvent waits for an Event with reason on the named object and returns its message.
func (e *env) waitEvent(name, reason string) string {
	e.t.Helper()
	var msg string
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := e.client.CoreV1().Events("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == name && ev.Reason == reason {
				msg = ev.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		e.t.Fatalf("no Event %s on %s", reason, name)
	}
	return msg
}

func TestCreateGetsLowestIPWithVIPMode(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.250")})
	e.create(lbService("default", "nginx-service", 8000))
	e.waitIPs("default", "nginx-service", "192.0.2.200")
	if msg := e.waitEvent("nginx-service", provider.ReasonIPAllocated); !strings.Contains(msg, "192.0.2.200") || !strings.Contains(msg, "lan") {
		t.Errorf("IPAllocated event should name IP and pool: %q", msg)
	}
	e.create(lbService("default", "second", 80))
	e.waitIPs("default", "second", "192.0.2.201")
}

func TestRestartKeepsPublishedIPs(t *testing.T) {
	// Two Services already hold .200 and .202 (published by a previous controller run);
	// a new Service must get .201, never a held address.
	held := func(ip string) func(*v1.Service) {
		return func(s *v1.Service) {
			s.Finalizers = []string{servicehelper.LoadBalancerCleanupFinalizer}
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: ip}}
		}
	}
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.203")},
		lbService("a", "one", 80, held("192.0.2.200")),
		lbService("b", "two", 80, held("192.0.2.202")))
	e.create(lbService("c", "three", 80))
	e.waitIPs("c", "three", "192.0.2.201")
	e.waitIPs("a", "one", "192.0.2.200")
	e.waitIPs("b", "two", "192.0.2.202")
	e.create(lbService("c", "four", 80))
	e.waitIPs("c", "four", "192.0.2.203")
}

func TestExhaustionEventAndPending(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("tiny", "192.0.2.200/32")})
	e.create(lbService("default", "first", 80))
	e.waitIPs("default", "first", "192.0.2.200")
	e.create(lbService("default", "second", 80))
	e.waitEvent("second", allocator.ReasonPoolExhausted)
	s, _ := e.client.CoreV1().Services("default").Get(context.Background(), "second", metav1.GetOptions{})
	if len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("exhausted pool must leave the Service pending, got %s", ingress(s))
	}
	if got := metric(t, e.reg, "ironlb_allocator_refusals_total", "PoolExhausted"); got < 1 {
		t.Errorf("refusals_total{reason=PoolExhausted} = %v", got)
	}
	// Freeing the address (type change) lets the pending Service through on retry.
	first, _ := e.client.CoreV1().Services("default").Get(context.Background(), "first", metav1.GetOptions{})
	first.Spec.Type = v1.ServiceTypeClusterIP
	if _, err := e.client.CoreV1().Services("default").Update(context.Background(), first, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitIPs("default", "second", "192.0.2.200")
}

func TestSharingAllowedAndRefused(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.210")})
	shared := func(key, ip string) func(*v1.Service) {
		return func(s *v1.Service) {
			s.Annotations = map[string]string{allocator.AnnotationAllowSharedIP: key, allocator.AnnotationLoadBalancerIPs: ip}
		}
	}
	e.create(lbService("default", "dns-tcp", 53, shared("dns", "192.0.2.205")))
	e.waitIPs("default", "dns-tcp", "192.0.2.205")
	udp := lbService("default", "dns-udp", 53, shared("dns", "192.0.2.205"))
	udp.Spec.Ports[0].Protocol = v1.ProtocolUDP
	e.create(udp)
	e.waitIPs("default", "dns-udp", "192.0.2.205")

	e.create(lbService("default", "other-key", 80, shared("web", "192.0.2.205")))
	if msg := e.waitEvent("other-key", allocator.ReasonIPInUse); !strings.Contains(msg, "192.0.2.205") {
		t.Errorf("IPInUse event should name the address: %q", msg)
	}
	e.create(lbService("default", "same-port", 53, shared("dns", "192.0.2.205")))
	e.waitEvent("same-port", allocator.ReasonIPInUse)
}

func TestClasses(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.210")})
	class := func(c string) func(*v1.Service) { return func(s *v1.Service) { s.Spec.LoadBalancerClass = &c } }
	e.create(lbService("default", "ours", 80, class(provider.DefaultLoadBalancerClass)))
	s := e.waitIPs("default", "ours", "192.0.2.200")
	if !servicehelper.HasLBFinalizer(s) {
		t.Errorf("class controller must add %s", servicehelper.LoadBalancerCleanupFinalizer)
	}
	e.create(lbService("default", "theirs", 80, class("example.com/other")))
	e.create(lbService("default", "plain", 80))
	e.waitIPs("default", "plain", "192.0.2.201")
	e.waitSyncedResult("ignored", 1) // the other class's Service was looked at
	if th, _ := e.client.CoreV1().Services("default").Get(context.Background(), "theirs", metav1.GetOptions{}); len(th.Status.LoadBalancer.Ingress) != 0 || len(th.Finalizers) != 0 {
		t.Fatalf("a Service of another class must be left alone: %s %v", ingress(th), th.Finalizers)
	}

	// Leaving LoadBalancer type releases the address and removes the finalizer.
	e.leaveLoadBalancer(s)
	e.create(lbService("default", "reuse", 80, class(provider.DefaultLoadBalancerClass)))
	e.waitIPs("default", "reuse", "192.0.2.200")
}

// With IgnoreClassless, only ironlb's class is served: class-less Services are
// left alone, and a class Service that leaves LoadBalancer type (its class is
// cleared then) is still released and cleaned up.
func TestIgnoreClasslessCleansUpTypeChange(t *testing.T) {
	e := newEnvFull(t, provider.Options{IgnoreClassless: true}, nil, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.210")})
	class := provider.DefaultLoadBalancerClass
	e.create(lbService("default", "classless", 80))
	e.create(lbService("default", "ours", 80, func(s *v1.Service) { s.Spec.LoadBalancerClass = &class }))
	s := e.waitIPs("default", "ours", "192.0.2.200")

	e.leaveLoadBalancer(s)
	e.waitSynced(3) // classless, ours (allocation), ours (cleanup)
	if cl, _ := e.client.CoreV1().Services("default").Get(context.Background(), "classless", metav1.GetOptions{}); len(cl.Status.LoadBalancer.Ingress) != 0 || len(cl.Finalizers) != 0 {
		t.Errorf("class-less Services belong to another provider here: %s %v", ingress(cl), cl.Finalizers)
	}
}

func TestDeleteReleases(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.210")})
	e.create(lbService("default", "gone", 80))
	e.waitIPs("default", "gone", "192.0.2.200")
	if err := e.client.CoreV1().Services("default").Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("gone", provider.ReasonIPReleased)
	e.create(lbService("default", "next", 80))
	e.waitIPs("default", "next", "192.0.2.200")
	if a, r := metric(t, e.reg, "ironlb_allocator_operations_total", "allocate"), metric(t, e.reg, "ironlb_allocator_operations_total", "release"); a != 2 || r != 1 {
		t.Errorf("operations_total: allocate=%v release=%v, want 2 and 1", a, r)
	}
}

func TestPoolStatusAndMetrics(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.203", "2001:db8::200-2001:db8::2ff"), pool("over", "192.0.2.203/32")})
	e.create(lbService("default", "one", 80))
	e.waitIPs("default", "one", "192.0.2.200")
	st := e.waitPoolStatus("lan", func(st v1alpha1.IPPoolStatus) bool { return st.AssignedIPv4 == 1 })
	if st.TotalIPv4 != 4 || st.AvailableIPv4 != 3 || st.TotalIPv6 != 256 || st.AvailableIPv6 != 256 || st.Assigned != 1 || st.Available != 259 {
		t.Errorf("counts: %+v", st)
	}
	if c := findCondition(st.Conditions, v1alpha1.ConditionOverlapping); c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "over") {
		t.Errorf("Overlapping condition: %+v", c)
	}
	if got := metric(t, e.reg, "ironlb_allocator_addresses_in_use", "lan", "ipv4"); got != 1 {
		t.Errorf("addresses_in_use{lan,ipv4} = %v", got)
	}
	if got := metric(t, e.reg, "ironlb_allocator_addresses_total", "lan", "ipv6"); got != 256 {
		t.Errorf("addresses_total{lan,ipv6} = %v", got)
	}
}

func TestPoolEditDoesNotReIP(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.210")})
	e.create(lbService("default", "live", 80))
	e.waitIPs("default", "live", "192.0.2.200")
	u, err := e.dyn.Resource(v1alpha1.IPPoolsResource).Get(context.Background(), "lan", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedStringSlice(u.Object, []string{"192.0.2.220-192.0.2.230"}, "spec", "addresses")
	u.SetGeneration(2) // the API server bumps it on spec changes; the fake does not
	if _, err := e.dyn.Resource(v1alpha1.IPPoolsResource).Update(context.Background(), u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("live", provider.ReasonAddressNotInPool)
	e.waitIPs("default", "live", "192.0.2.200")
	e.create(lbService("default", "new", 80))
	e.waitIPs("default", "new", "192.0.2.220")
}

func TestGetLoadBalancerWaitsForRebuild(t *testing.T) {
	c := provider.New(provider.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.EnsureLoadBalancer(ctx, "", lbService("a", "b", 80), nil); err == nil {
		t.Fatal("a Cloud that has not rebuilt its state must not allocate")
	}
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// metric returns the value of the series name whose label values include labels.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v := metricOr(reg, name, -1, labels...)
	if v == -1 {
		t.Fatalf("metric %s%v not found", name, labels)
	}
	return v
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// A pool the API server would refuse (here it bypasses CEL through the fake client)
// is reported as Valid=False with an Event; other pools and their Services carry on.
func TestInvalidPoolReportedOthersUnaffected(t *testing.T) {
	bad := pool("bad", "192.0.2.20-192.0.2.10")
	e := newEnv(t, []*v1alpha1.IPPool{bad, pool("good", "203.0.113.0/30")})
	e.create(lbService("default", "svc", 80))
	e.waitIPs("default", "svc", "203.0.113.0")
	if msg := e.waitEvent("bad", "InvalidPool"); !strings.Contains(msg, "192.0.2.20-192.0.2.10") {
		t.Errorf("InvalidPool event should quote the bad range: %q", msg)
	}
	e.waitPoolStatus("bad", func(st v1alpha1.IPPoolStatus) bool {
		c := findCondition(st.Conditions, v1alpha1.ConditionValid)
		return c != nil && c.Status == metav1.ConditionFalse
	})
}
