package provider_test

import (
	"context"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/ironlb/ironlb/allocator/provider"
)

// replica runs the allocator only while it holds the Lease, as ironlb-controller does
// through the cloud-controller-manager's leader election.
type replica struct {
	id      string
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	leading bool
}

func startReplica(t *testing.T, id string, client *fake.Clientset, e *env) *replica {
	r := &replica{id: id, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: "ironlb-system", Name: "ironlb-controller"},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	go func() {
		defer close(r.done)
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock: lock, ReleaseOnCancel: true,
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					r.mu.Lock()
					r.leading = true
					r.mu.Unlock()
					cloud := provider.New(provider.Options{RetryAfter: 100 * time.Millisecond})
					stopped := make(chan struct{})
					startControllers(ctx, t, cloud, client, e.dyn, stopped)
					<-stopped
				},
				OnStoppedLeading: func() {
					r.mu.Lock()
					r.leading = false
					r.mu.Unlock()
				},
			},
		})
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *replica) isLeading() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leading
}

func TestTwoReplicasNeverShareAnAddress(t *testing.T) {
	client := fake.NewSimpleClientset()
	e := &env{t: t, client: client, dyn: newDynamic(t, pool("lan", "192.0.2.200-192.0.2.250"))}
	a := startReplica(t, "a", client, e)
	waitFor(t, "replica a leads", a.isLeading)
	b := startReplica(t, "b", client, e)

	seen := map[string]string{}
	check := func(name string) {
		s := e.waitIPsAny("default", name)
		if other, dup := seen[ingress(s)]; dup {
			t.Fatalf("%s and %s both got %s", other, name, ingress(s))
		}
		seen[ingress(s)] = name
	}
	for _, n := range []string{"s1", "s2", "s3"} {
		e.create(lbService("default", n, 80))
		check(n)
	}
	if b.isLeading() {
		t.Fatal("two leaders at once")
	}
	// Free the lowest address before the failover: a new leader that did not rebuild
	// from the published status would hand it to a surviving Service (a re-IP).
	if err := client.CoreV1().Services("default").Delete(context.Background(), "s1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "s1's address released", func() bool {
		evs, _ := client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == "s1" && ev.Reason == provider.ReasonIPReleased {
				return true
			}
		}
		return false
	})
	delete(seen, "192.0.2.200")

	a.cancel() // graceful step-down releases the Lease
	<-a.done
	waitFor(t, "replica b takes over", b.isLeading)
	for _, n := range []string{"s4", "s5"} {
		e.create(lbService("default", n, 80))
		check(n)
	}
	e.waitIPs("default", "s4", "192.0.2.200")
	e.waitIPs("default", "s5", "192.0.2.203")
	e.waitIPs("default", "s2", "192.0.2.201")
	e.waitIPs("default", "s3", "192.0.2.202")
}

func (e *env) waitIPsAny(ns, name string) *v1.Service {
	e.t.Helper()
	var got *v1.Service
	waitFor(e.t, ns+"/"+name+" gets an address", func() bool {
		s, err := e.client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		got = s
		return err == nil && len(s.Status.LoadBalancer.Ingress) > 0
	})
	return got
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("timed out waiting: %s", what)
	}
}
