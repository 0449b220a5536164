package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
)

// A changed request moves the Service; a pool edit that stops covering a live
// Service's address does not: the Service keeps it and both the Service (Event) and
// the pool (condition) say so.
func TestRequestChangeAndPoolEdit(t *testing.T) {
	ns := namespace(t, "pooledit")
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: edit}, spec: {autoAssign: false, addresses: ["203.0.113.128/28"]}}`)

	createService(t, ns, "mover", 80, withAnnotations("ironlb.io/loadBalancerIPs", "203.0.113.130"))
	if ip, _ := waitIngress(t, ns, "mover", 5*time.Second); ip != "203.0.113.130" {
		t.Fatalf("mover: %s", ip)
	}
	updateService(t, ns, "mover", func(s *corev1.Service) { s.Annotations["ironlb.io/loadBalancerIPs"] = "203.0.113.131" })
	eventually(t, "mover moves to the newly requested 203.0.113.131", 10*time.Second, func() bool {
		s, err := env.Cluster.Client.CoreV1().Services(ns).Get(context.Background(), "mover", metav1.GetOptions{})
		return err == nil && len(s.Status.LoadBalancer.Ingress) == 1 && s.Status.LoadBalancer.Ingress[0].IP == "203.0.113.131"
	})

	createService(t, ns, "stayer", 80, withAnnotations("ironlb.io/pool", "edit"))
	held, _ := waitIngress(t, ns, "stayer", 5*time.Second)
	if held != "203.0.113.128" {
		t.Fatalf("stayer: %s", held)
	}
	// Shrink the pool so that it no longer covers stayer's address.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := env.Cluster.Dynamic.Resource(ippools).Get(t.Context(), "edit", metav1.GetOptions{})
		if err != nil {
			return err
		}
		_ = unstructured.SetNestedStringSlice(u.Object, []string{"203.0.113.136/29"}, "spec", "addresses")
		_, err = env.Cluster.Dynamic.Resource(ippools).Update(t.Context(), u, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if msg := waitEvent(t, ns, "stayer", "AddressNotInPool"); !strings.Contains(msg, held) {
		t.Errorf("AddressNotInPool should name %s: %q", held, msg)
	}
	eventually(t, "pool edit reports OrphanedAddresses", 10*time.Second, func() bool {
		return strings.Contains(fmt.Sprint(poolStatus(t, "edit")["conditions"]), "OrphanedAddresses")
	})
	if ip, _ := waitIngress(t, ns, "stayer", time.Second); ip != held {
		t.Errorf("a pool edit re-IPed a live Service: %s -> %s", held, ip)
	}
	// New Services get addresses from the new range only.
	createService(t, ns, "newcomer", 80, withAnnotations("ironlb.io/pool", "edit"))
	if ip, _ := waitIngress(t, ns, "newcomer", 5*time.Second); ip != "203.0.113.136" {
		t.Errorf("newcomer should get the edited pool's lowest address 203.0.113.136, got %s", ip)
	}
}

func updateService(t *testing.T, ns, name string, mutate func(*corev1.Service)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := env.Cluster.Client.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(s)
		_, err = env.Cluster.Client.CoreV1().Services(ns).Update(t.Context(), s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
