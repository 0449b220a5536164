package e2e

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Two replicas with the Deployment's RBAC: only the Lease holder allocates, a burst of
// Services gets distinct addresses, and when the leader dies the other takes over and
// keeps handing out distinct addresses.
func TestTwoReplicasLeaderElection(t *testing.T) {
	ns := namespace(t, "replicas")
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: replicas}, spec: {autoAssign: false, addresses: ["198.18.200.0/29"]}}`)
	second, err := env.StartController(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	check := func(name string, within time.Duration) {
		ip, _ := waitIngress(t, ns, name, within)
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s and %s both hold %s", other, name, ip)
		}
		seen[ip] = name
	}
	for i := range 4 {
		createService(t, ns, fmt.Sprintf("burst-%d", i), 80, withAnnotations("ironlb.io/pool", "replicas"))
	}
	for i := range 4 {
		check(fmt.Sprintf("burst-%d", i), 10*time.Second)
	}
	lease, err := env.Cluster.Client.CoordinationV1().Leases("ironlb-system").Get(t.Context(), "ironlb-controller", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("no leader Lease: %v", err)
	}
	holder := *lease.Spec.HolderIdentity
	t.Logf("leader: %s", holder)

	// Free the lowest address before the failover: a new leader that did not rebuild
	// from the published status would hand it to a surviving Service.
	deleteService(t, ns, "burst-0")
	for ip, name := range seen {
		if name == "burst-0" {
			delete(seen, ip)
		}
	}
	before := map[string]string{}
	for i := 1; i < 4; i++ {
		n := fmt.Sprintf("burst-%d", i)
		before[n], _ = waitIngress(t, ns, n, time.Second)
	}

	// Kill the first replica (the leader: it started long before the second).
	if err := ctrl.Stop(); err != nil {
		t.Logf("stopping the leader: %v", err)
	}
	ctrl = second
	for i := 4; i < 6; i++ {
		createService(t, ns, fmt.Sprintf("burst-%d", i), 80, withAnnotations("ironlb.io/pool", "replicas"))
	}
	for i := 4; i < 6; i++ {
		check(fmt.Sprintf("burst-%d", i), 30*time.Second)
	}
	for n, ip := range before {
		if got, _ := waitIngress(t, ns, n, time.Second); got != ip {
			t.Errorf("failover changed %s's address: %s -> %s", n, ip, got)
		}
	}
	eventually(t, "the Lease moves to the surviving replica", 10*time.Second, func() bool {
		l, err := env.Cluster.Client.CoordinationV1().Leases("ironlb-system").Get(t.Context(), "ironlb-controller", metav1.GetOptions{})
		return err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != holder
	})
}
