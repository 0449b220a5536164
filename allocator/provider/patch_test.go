package provider

import (
	"encoding/json"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	servicehelper "k8s.io/cloud-provider/service/helpers"

	"github.com/ironlb/ironlb/allocator"
)

// apply applies a strategic-merge patch to svc as the API server would.
func apply(t *testing.T, svc *v1.Service, patch []byte) *v1.Service {
	t.Helper()
	orig, err := json.Marshal(svc)
	if err != nil {
		t.Fatal(err)
	}
	out, err := strategicpatch.StrategicMergePatch(orig, patch, v1.Service{})
	if err != nil {
		t.Fatalf("patch %s: %v", patch, err)
	}
	var got v1.Service
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func TestPublishAndCleanupPatches(t *testing.T) {
	vip := v1.LoadBalancerIPModeVIP
	want := &v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: "192.0.2.200", IPMode: &vip}}}
	fresh := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default",
			Finalizers:  []string{"example.com/keep-me"},
			Annotations: map[string]string{"user": "value"}},
		Status: v1.ServiceStatus{LoadBalancer: v1.LoadBalancerStatus{Ingress: []v1.LoadBalancerIngress{{IP: "192.0.2.9"}}}},
	}
	p, err := publishPatch(fresh, want, "lan")
	if err != nil || p == nil {
		t.Fatalf("publishPatch: %s %v", p, err)
	}
	got := apply(t, fresh, p)
	if !servicehelper.HasLBFinalizer(got) || len(got.Finalizers) != 2 || !slices.Contains(got.Finalizers, "example.com/keep-me") {
		t.Fatalf("finalizers %v: want the cleanup finalizer added, others kept", got.Finalizers)
	}
	if got.Annotations[allocator.AnnotationAllocatedFromPool] != "lan" || got.Annotations["user"] != "value" {
		t.Fatalf("annotations %v", got.Annotations)
	}
	if !ingressEqual(got.Status.LoadBalancer.Ingress, want.Ingress) {
		t.Fatalf("ingress %v", got.Status.LoadBalancer.Ingress)
	}
	// Published: nothing more to write.
	if p, _ := publishPatch(got, want, "lan"); p != nil {
		t.Fatalf("second publishPatch = %s, want none", p)
	}
	// A new attribution alone is one small patch.
	if p, _ := publishPatch(got, want, "IPv4=lan"); string(p) != `{"metadata":{"annotations":{"ironlb.io/ip-allocated-from-pool":"IPv4=lan"}}}` {
		t.Fatalf("attribution patch %s", p)
	}
	// Cleanup removes exactly what ironlb added.
	c, err := cleanupPatch(got)
	if err != nil || c == nil {
		t.Fatal(err)
	}
	cleaned := apply(t, got, c)
	if servicehelper.HasLBFinalizer(cleaned) || len(cleaned.Finalizers) != 1 || cleaned.Finalizers[0] != "example.com/keep-me" {
		t.Fatalf("finalizers after cleanup %v", cleaned.Finalizers)
	}
	if _, ok := cleaned.Annotations[allocator.AnnotationAllocatedFromPool]; ok || cleaned.Annotations["user"] != "value" {
		t.Fatalf("annotations after cleanup %v", cleaned.Annotations)
	}
	if len(cleaned.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("ingress after cleanup %v", cleaned.Status.LoadBalancer.Ingress)
	}
	if c, _ := cleanupPatch(cleaned); c != nil {
		t.Fatalf("second cleanupPatch = %s, want none", c)
	}
}
