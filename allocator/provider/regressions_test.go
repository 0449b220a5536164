package provider_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	k8stesting "k8s.io/client-go/testing"
	servicehelper "k8s.io/cloud-provider/service/helpers"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironlb/ironlb/allocator"
	"github.com/ironlb/ironlb/allocator/provider"
	"github.com/ironlb/ironlb/api/v1alpha1"
)

// Item 1: a late deletion of an old incarnation (here through the cloud-provider
// interface, as a delayed controller would call it) must not free the address of
// a new Service with the same name.
func TestLateDeleteOfOldIncarnationKeepsNewAddress(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.210")})
	old := lbService("default", "web", 80)
	old.UID = "uid-old"
	e.create(old)
	e.waitIPs("default", "web", "192.0.2.200")
	if err := e.client.CoreV1().Services("default").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEvent("web", "IPReleased")
	renewed := lbService("default", "web", 80)
	renewed.UID = "uid-new"
	e.create(renewed)
	e.waitIPs("default", "web", "192.0.2.200")

	if err := e.cloud.EnsureLoadBalancerDeleted(context.Background(), "", old); err != nil {
		t.Fatal(err)
	}
	if al, ok := e.cloud.Allocator().Lookup("default/web"); !ok || al.UID != "uid-new" || len(al.IPs) != 1 {
		t.Fatalf("new incarnation lost its address to the old one's deletion: %+v %v", al, ok)
	}
	e.create(lbService("default", "next", 80))
	e.waitIPs("default", "next", "192.0.2.201")
}

// Item 1, through the informer: delete and re-create without waiting; the end state
// must have two distinct addresses.
func TestDeleteRecreateRace(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.210")})
	for i := range 5 {
		s := lbService("default", "web", 80)
		s.UID = types.UID(fmt.Sprintf("uid-%d", i))
		e.create(s)
		if i < 4 {
			if err := e.client.CoreV1().Services("default").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	web := e.waitAnyIP("default", "web")
	e.create(lbService("default", "other", 80))
	other := e.waitAnyIP("default", "other")
	if web == other {
		t.Fatalf("both Services publish %s", web)
	}
	if al, _ := e.cloud.Allocator().Lookup("default/web"); al.UID != "uid-4" {
		t.Fatalf("allocator holds web for %q, want uid-4", al.UID)
	}
}

// Item 2: with many pools, nothing is allocated before every pool is loaded.
func TestGateWaitsForAllPools(t *testing.T) {
	// The fake clientsets' watch channels hold 100 events; more writes in a burst
	// than the informers drain overflow them, so the Services are fewer than pools.
	const n, services = 150, 60
	pools := []*v1alpha1.IPPool{pool("zz-catchall", "198.51.100.0/24")}
	prio := int32(100)
	pools[0].Spec.Allocation = &v1alpha1.AllocationSpec{Priority: &prio}
	var svcs []runtime.Object
	for i := range n {
		p := pool(fmt.Sprintf("p-%03d", i), fmt.Sprintf("10.%d.%d.0/30", i/256, i%256))
		one := int32(1)
		p.Spec.Allocation = &v1alpha1.AllocationSpec{Priority: &one, Namespaces: []string{fmt.Sprintf("ns-%03d", i)}}
		pools = append(pools, p)
		if i%(n/services) == 0 {
			svcs = append(svcs, lbService(fmt.Sprintf("ns-%03d", i), "svc", 80))
		}
	}
	e := newEnv(t, pools, svcs...)
	for i := 0; i < n; i += n / services {
		want := fmt.Sprintf("10.%d.%d.0", i/256, i%256)
		got := e.waitAnyIP(fmt.Sprintf("ns-%03d", i), "svc")
		if got != want {
			t.Fatalf("ns-%03d/svc got %s, want %s from its own pool (the gate opened before the pools were loaded)", i, got, want)
		}
	}
}

// Item 5: a Service of another class is never touched, also when it is deleted
// while carrying the cleanup finalizer of its own implementation.
func TestOtherClassFinalizerUntouchedOnDeletion(t *testing.T) {
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.210")})
	other := "example.com/other-lb"
	s := lbService("default", "theirs", 80, func(s *v1.Service) {
		s.Spec.LoadBalancerClass = &other
		s.Finalizers = []string{servicehelper.LoadBalancerCleanupFinalizer}
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.9"}}
	})
	e.create(s)
	// Deletion as the API server does it with a finalizer: a deletionTimestamp.
	now := metav1.Now()
	s.DeletionTimestamp = &now
	if _, err := e.client.CoreV1().Services("default").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Positive signal: the controller has looked at the deleted Service.
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := e.client.CoreV1().Services("default").Get(ctx, "theirs", metav1.GetOptions{})
		if err != nil || !servicehelper.HasLBFinalizer(got) {
			return true, nil // stripped: fail below
		}
		return metricOr(e.reg, "ironlb_controller_syncs_total", 0, "ignored") >= 1, nil
	})
	if err != nil {
		t.Fatal("the controller never processed the other class's Service")
	}
	got, err := e.client.CoreV1().Services("default").Get(context.Background(), "theirs", metav1.GetOptions{})
	if err != nil || !servicehelper.HasLBFinalizer(got) || ingress(got) != "203.0.113.9(mode!=VIP)" {
		t.Fatalf("another implementation's Service was modified: %v finalizers=%v ingress=%s", err, got.Finalizers, ingress(got))
	}
}

// Item 6: pool status converges through update conflicts.
func TestPoolStatusRetriesConflicts(t *testing.T) {
	pools := []*v1alpha1.IPPool{pool("lan", "192.0.2.200-192.0.2.210")}
	e := newEnvHook(t, pools, func(e *env) {
		conflicts := 0
		e.dyn.PrependReactor("update", "ippools", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() == "status" && conflicts < 3 {
				conflicts++
				return true, nil, apierrors.NewConflict(v1alpha1.IPPoolsResource.GroupResource(), "lan", fmt.Errorf("injected"))
			}
			return false, nil, nil
		})
	})
	e.create(lbService("default", "one", 80))
	e.waitIPs("default", "one", "192.0.2.200")
	e.waitPoolStatus("lan", func(st v1alpha1.IPPoolStatus) bool { return st.AssignedIPv4 == 1 && st.AvailableIPv4 == 10 })
}

// Item 6: every pool whose counts an allocation changes gets a new status, not only
// the pool the address came from.
func TestOverlappingPoolStatusFollows(t *testing.T) {
	narrow := pool("a-narrow", "192.0.2.200-192.0.2.203")
	one := int32(1)
	narrow.Spec.Allocation = &v1alpha1.AllocationSpec{Priority: &one}
	e := newEnv(t, []*v1alpha1.IPPool{narrow, pool("b-wide", "192.0.2.0/24")})
	e.waitPoolStatus("b-wide", func(st v1alpha1.IPPoolStatus) bool { return st.TotalIPv4 == 256 && st.AssignedIPv4 == 0 })
	e.create(lbService("default", "one", 80))
	e.waitIPs("default", "one", "192.0.2.200")
	e.waitPoolStatus("b-wide", func(st v1alpha1.IPPoolStatus) bool { return st.AssignedIPv4 == 1 && st.AvailableIPv4 == 255 })
	if err := e.client.CoreV1().Services("default").Delete(context.Background(), "one", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitPoolStatus("b-wide", func(st v1alpha1.IPPoolStatus) bool { return st.AssignedIPv4 == 0 })
	e.waitPoolStatus("a-narrow", func(st v1alpha1.IPPoolStatus) bool { return st.AssignedIPv4 == 0 })
}

// Item 6: a pool with no usable address is Valid and Exhausted.
func TestEmptyPoolIsExhausted(t *testing.T) {
	zero := pool("zero", "192.0.2.0/32")
	zero.Spec.AvoidBuggyIPs = true
	e := newEnv(t, []*v1alpha1.IPPool{zero})
	e.waitPoolStatus("zero", func(st v1alpha1.IPPoolStatus) bool {
		v, x := findCondition(st.Conditions, v1alpha1.ConditionValid), findCondition(st.Conditions, v1alpha1.ConditionExhausted)
		return v != nil && v.Status == metav1.ConditionTrue && x != nil && x.Status == metav1.ConditionTrue && st.TotalIPv4 == 0
	})
}

// Item 7: the pool each address came from is published on the Service and kept
// across a restart, even where coverage alone would attribute it elsewhere.
func TestPoolAttributionPublishedAndRestored(t *testing.T) {
	narrow := pool("a-narrow", "192.0.2.200-192.0.2.203")
	wide := pool("b-wide", "192.0.2.0/24")
	e := newEnv(t, []*v1alpha1.IPPool{narrow, wide})
	e.create(lbService("default", "web", 80, func(s *v1.Service) {
		s.Annotations = map[string]string{allocator.AnnotationPool: "b-wide", allocator.AnnotationLoadBalancerIPs: "192.0.2.201"}
	}))
	s := e.waitIPs("default", "web", "192.0.2.201")
	s = e.waitAnnotation("default", "web", allocator.AnnotationAllocatedFromPool, "b-wide")
	e.stop()

	// Restart with the published object; the request annotations were removed in
	// the meantime, so only the published attribution says b-wide.
	delete(s.Annotations, allocator.AnnotationPool)
	delete(s.Annotations, allocator.AnnotationLoadBalancerIPs)
	e2 := newEnv(t, []*v1alpha1.IPPool{narrow, wide}, s)
	e2.waitSynced(1)
	if al, _ := e2.cloud.Allocator().Lookup("default/web"); al.Pool != "b-wide" {
		t.Fatalf("restored attribution %q, want b-wide", al.Pool)
	}
	got, _ := e2.client.CoreV1().Services("default").Get(context.Background(), "web", metav1.GetOptions{})
	if v := got.Annotations[allocator.AnnotationAllocatedFromPool]; v != "b-wide" {
		t.Fatalf("annotation after restart %q", v)
	}
}

// Restart: Services that already carry their status, finalizer and attribution
// cost no API write.
func TestRestartWritesNothingForUnchangedServices(t *testing.T) {
	var objs []runtime.Object
	for i := range 50 {
		objs = append(objs, lbService("default", fmt.Sprintf("s%02d", i), 80, func(s *v1.Service) {
			mode := v1.LoadBalancerIPModeVIP
			s.Finalizers = []string{servicehelper.LoadBalancerCleanupFinalizer}
			s.Annotations = map[string]string{allocator.AnnotationAllocatedFromPool: "lan"}
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: fmt.Sprintf("192.0.2.%d", i+1), IPMode: &mode}}
		}))
	}
	e := newEnv(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.0/24")}, objs...)
	e.waitSynced(50)
	var writes []string
	for _, a := range e.client.Actions() {
		if a.GetResource().Resource == "services" && slices.Contains([]string{"update", "patch"}, a.GetVerb()) {
			writes = append(writes, a.GetVerb()+" "+a.GetSubresource())
		}
	}
	if len(writes) != 0 {
		t.Fatalf("restart wrote to unchanged Services: %v", writes)
	}
}

// metricOr returns the summed value of the series name whose label values
// include labels, or def when there is none.
func metricOr(reg *prometheus.Registry, name string, def float64, labels ...string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return def
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var vals []string
			for _, lp := range m.GetLabel() {
				vals = append(vals, lp.GetValue())
			}
			if containsAll(vals, labels) {
				found = true
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	if !found {
		return def
	}
	return sum
}

// waitAnyIP waits until the Service publishes one address and returns it.
func (e *env) waitAnyIP(ns, name string) string {
	e.t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := e.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		got = s.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	})
	if err != nil {
		e.t.Fatalf("%s/%s never got an address", ns, name)
	}
	return got
}

// waitPoolStatus waits until the pool's status satisfies ok.
func (e *env) waitPoolStatus(name string, ok func(v1alpha1.IPPoolStatus) bool) v1alpha1.IPPoolStatus {
	e.t.Helper()
	var st v1alpha1.IPPoolStatus
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		u, err := e.dyn.Resource(v1alpha1.IPPoolsResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		var p v1alpha1.IPPool
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
			return false, err
		}
		st = p.Status
		return ok(st), nil
	})
	if err != nil {
		e.t.Fatalf("pool %s status never converged; last %+v", name, st)
	}
	return st
}

// waitAnnotation waits until the Service carries annotation k = v.
func (e *env) waitAnnotation(ns, name, k, v string) *v1.Service {
	e.t.Helper()
	var last *v1.Service
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := e.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = s
		return s.Annotations[k] == v, nil
	})
	if err != nil {
		e.t.Fatalf("%s/%s: annotation %s = %q, want %q", ns, name, k, last.Annotations[k], v)
	}
	return last
}

// waitSyncedResult waits until the controller has finished n syncs with result.
func (e *env) waitSyncedResult(result string, n int) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return metricOr(e.reg, "ironlb_controller_syncs_total", 0, result) >= float64(n), nil
	})
	if err != nil {
		e.t.Fatalf("the controller did not finish %d syncs with result %s", n, result)
	}
}

// waitSynced waits until the controller has finished n syncs (a positive signal
// that every pre-existing Service was looked at).
func (e *env) waitSynced(n int) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return metricOr(e.reg, "ironlb_controller_syncs_total", 0) >= float64(n), nil
	})
	if err != nil {
		e.t.Fatalf("the controller did not finish %d syncs (ironlb_controller_syncs_total = %v)", n, metricOr(e.reg, "ironlb_controller_syncs_total", 0))
	}
}

// A refused Service is retried as soon as a pool appears, not after RetryAfter,
// and a refusal repeated on every retry is one Event, not one per attempt.
func TestRefusedRetriedOnPoolChangeOneEventPerRefusal(t *testing.T) {
	e := newEnvFull(t, provider.Options{}, nil, nil)
	e.create(lbService("default", "early", 80))
	e.waitEvent("early", allocator.ReasonNoPools)
	e.waitSyncedResult("refused", 5) // retried several times (RetryAfter is 100ms here)
	evs, _ := e.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	n := 0
	for _, ev := range evs.Items {
		if ev.InvolvedObject.Name == "early" && ev.Reason == allocator.ReasonNoPools {
			n += int(max(ev.Count, 1))
		}
	}
	if n != 1 {
		t.Fatalf("%d NoPools Events for one unchanged refusal, want 1", n)
	}

	slow := newEnvFull(t, provider.Options{RetryAfter: time.Hour}, nil, nil)
	slow.create(lbService("default", "waiting", 80))
	slow.waitEvent("waiting", allocator.ReasonNoPools)
	if _, err := slow.dyn.Resource(v1alpha1.IPPoolsResource).Create(context.Background(), toUnstructured(t, pool("lan", "192.0.2.200/32")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slow.waitIPs("default", "waiting", "192.0.2.200")
}

// Item 2: a failing List of IPPools keeps the gate shut (no allocation from a
// partial view), and the gate opens once the List succeeds.
func TestFailedPoolListKeepsGateShut(t *testing.T) {
	var mu sync.Mutex
	failing, attempts := true, 0
	e := newEnvHook(t, []*v1alpha1.IPPool{pool("lan", "192.0.2.200/30")}, func(e *env) {
		e.dyn.PrependReactor("list", "ippools", func(k8stesting.Action) (bool, runtime.Object, error) {
			mu.Lock()
			defer mu.Unlock()
			attempts++
			if failing {
				return true, nil, apierrors.NewInternalError(fmt.Errorf("injected"))
			}
			return false, nil, nil
		})
	})
	e.create(lbService("default", "early", 80))
	// Positive signal: the informer has retried the List at least twice.
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return attempts >= 2, nil
	})
	if err != nil {
		t.Fatal("the IPPool List was not retried")
	}
	select {
	case <-e.cloud.Ready():
		t.Fatal("the gate opened although the IPPool List failed")
	default:
	}
	if s, _ := e.client.CoreV1().Services("default").Get(context.Background(), "early", metav1.GetOptions{}); len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("allocated before the pools were known: %s", ingress(s))
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	e.waitIPs("default", "early", "192.0.2.200")
}
