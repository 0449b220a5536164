package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/ironlb/ironlb/test/framework"
)

const cleanupFinalizer = "service.kubernetes.io/load-balancer-cleanup"

// ctrlMetric sums the controller's series name{labels...} (label values matched as
// substrings of the label block): 0 when absent, -1 while the metrics endpoint does
// not answer (a process just started).
func ctrlMetric(t *testing.T, c *framework.Controller, name string, labels ...string) float64 {
	t.Helper()
	text, err := env.Metrics(t.Context(), c)
	if err != nil {
		t.Logf("reading %s metrics: %v", c.Name, err)
		return -1
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	sum := 0.0
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[1], l)
		}
		if v, err := strconv.ParseFloat(m[2], 64); ok && err == nil {
			sum += v
		}
	}
	return sum
}

// waitSyncs waits until the controller has finished more than after syncs with
// the given result label (a positive signal that an event was processed).
func waitSyncs(t *testing.T, c *framework.Controller, result string, after float64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s records a %q sync", c.Name, result), 20*time.Second, func() bool {
		return ctrlMetric(t, c, "ironlb_controller_syncs_total", `result="`+result+`"`) > after
	})
}

// Another implementation's Service keeps its finalizer when it is deleted: ironlb
// never touches a Service of another class (the stock cloud-provider service
// controller strips it).
func TestOtherClassFinalizerSurvivesDeletion(t *testing.T) {
	ns := namespace(t, "otherclass")
	client := env.Cluster.Client
	class := "example.com/other-lb"
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "theirs", Finalizers: []string{cleanupFinalizer}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}},
		},
	}
	if _, err := client.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // play the other implementation: drop its finalizer
		_, _ = client.CoreV1().Services(ns).Patch(context.Background(), "theirs", types.JSONPatchType,
			[]byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{})
	})
	ignored := ctrlMetric(t, ctrl, "ironlb_controller_syncs_total", `result="ignored"`)
	if err := client.CoreV1().Services(ns).Delete(t.Context(), "theirs", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSyncs(t, ctrl, "ignored", ignored)
	got, err := client.CoreV1().Services(ns).Get(t.Context(), "theirs", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the other class's Service is gone (its finalizer was removed): %v", err)
	}
	if got.DeletionTimestamp == nil || !hasFinalizer(got, cleanupFinalizer) {
		t.Fatalf("finalizers %v, deletionTimestamp %v: the other implementation's cleanup was skipped", got.Finalizers, got.DeletionTimestamp)
	}
}

// A Service deleted and created again under the same name: the new incarnation gets
// an address, and the next Service never gets the same one.
func TestDeleteRecreateSameName(t *testing.T) {
	ns := namespace(t, "recreate")
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: recreate}, spec: {autoAssign: false, addresses: ["198.18.210.0/29"]}}`)
	client := env.Cluster.Client
	pool := withAnnotations("ironlb.io/pool", "recreate")
	for round := range 3 {
		createService(t, ns, "web", 80, pool)
		first, _ := waitIngress(t, ns, "web", 10*time.Second)
		if err := client.CoreV1().Services(ns).Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// Create again as soon as the name is free (the finalizer is removed by the
		// controller once the address is released).
		eventually(t, "the name web is free again", 20*time.Second, func() bool {
			s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Annotations: map[string]string{"ironlb.io/pool": "recreate"}},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}}}}
			_, err := client.CoreV1().Services(ns).Create(t.Context(), s, metav1.CreateOptions{})
			return err == nil || !apierrors.IsAlreadyExists(err)
		})
		web, _ := waitIngress(t, ns, "web", 10*time.Second)
		other := fmt.Sprintf("other-%d", round)
		createService(t, ns, other, 80, pool)
		o, _ := waitIngress(t, ns, other, 10*time.Second)
		if o == web {
			t.Fatalf("round %d: web (re-created) and %s both publish %s (first incarnation had %s)", round, other, web, first)
		}
		deleteService(t, ns, "web")
	}
}

// Families follow spec.ipFamilies (the lab's API server is dual-stack): a requested
// address of a family the Service lacks is refused with an Event.
func TestFamiliesFollowIPFamilies(t *testing.T) {
	ns := namespace(t, "families")
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: fam}, spec: {autoAssign: false, addresses: ["203.0.113.160/28", "2001:db8:1:f::/124"]}}`)
	pool := withAnnotations("ironlb.io/pool", "fam")
	policy := func(p corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
		return func(s *corev1.Service) { s.Spec.IPFamilyPolicy = &p; s.Spec.IPFamilies = fams }
	}

	createService(t, ns, "v4-asks-v6", 80, pool, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "2001:db8:1:f::5" })
	if msg := waitEvent(t, ns, "v4-asks-v6", "IPFamilyMismatch"); !strings.Contains(msg, "2001:db8:1:f::5") {
		t.Errorf("IPFamilyMismatch event: %q", msg)
	}
	createService(t, ns, "v4-annot-v6", 80, pool, withAnnotations("ironlb.io/loadBalancerIPs", "2001:db8:1:f::6"))
	waitEvent(t, ns, "v4-annot-v6", "IPFamilyMismatch")
	for _, n := range []string{"v4-asks-v6", "v4-annot-v6"} {
		s, _ := env.Cluster.Client.CoreV1().Services(ns).Get(t.Context(), n, metav1.GetOptions{})
		if len(s.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("%s got %s although the request was refused", n, ingressIPs(s))
		}
	}

	createService(t, ns, "v6-only", 80, pool, policy(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	if ip, _ := waitIngress(t, ns, "v6-only", 10*time.Second); !strings.HasPrefix(ip, "2001:db8:1:f::") {
		t.Errorf("SingleStack IPv6: %s", ip)
	}
	createService(t, ns, "require", 80, pool, policy(corev1.IPFamilyPolicyRequireDualStack))
	eventually(t, "RequireDualStack gets one address per family", 10*time.Second, func() bool {
		s, _ := env.Cluster.Client.CoreV1().Services(ns).Get(t.Context(), "require", metav1.GetOptions{})
		return len(s.Status.LoadBalancer.Ingress) == 2 && strings.Contains(ingressIPs(s), "203.0.113.") && strings.Contains(ingressIPs(s), "2001:db8:1:f::")
	})
}

// PreferDualStack on a single-stack cluster: the API server gives the Service one
// family, and ironlb one address (a second one would never be forwarded).
func TestPreferDualStackOnSingleStackCluster(t *testing.T) {
	ctx := t.Context()
	cl, err := env.StartControlPlane(ctx, "cp-single", 6444, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	c, err := env.StartControllerFor(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	if _, err := framework.CreateYAML(ctx, cl.Dynamic, ippools, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: dual}, spec: {addresses: ["203.0.113.176/28", "2001:db8:1:e::/124"]}}`); err != nil {
		t.Fatal(err)
	}
	p := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "prefer"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilyPolicy: &p,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}}}}
	created, err := cl.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.Spec.IPFamilies) != 1 {
		t.Fatalf("the single-stack API server gave ipFamilies %v", created.Spec.IPFamilies)
	}
	got := waitIngressOn(t, cl.Client, "default", "prefer")
	waitSyncs(t, c, "unchanged", 0) // a later sync confirmed it: no second address was added
	got = waitIngressOn(t, cl.Client, "default", "prefer")
	if len(got.Status.LoadBalancer.Ingress) != 1 || !strings.HasPrefix(got.Status.LoadBalancer.Ingress[0].IP, "203.0.113.") {
		t.Fatalf("PreferDualStack on a single-stack cluster got %s, want one IPv4 address", ingressIPs(got))
	}
}

func waitIngressOn(t *testing.T, client kubernetes.Interface, ns, name string) *corev1.Service {
	t.Helper()
	var got *corev1.Service
	eventually(t, ns+"/"+name+" gets an address", 20*time.Second, func() bool {
		s, err := client.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
		got = s
		return err == nil && len(s.Status.LoadBalancer.Ingress) > 0
	})
	return got
}

// The pool each address came from is published for speakers, also where pools
// overlap, and per family where they differ; a restart keeps it and writes nothing
// for unchanged Services.
func TestPoolAttributionAndQuietRestart(t *testing.T) {
	ns := namespace(t, "attribution")
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: attr-narrow}, spec: {autoAssign: false, allocation: {priority: 1}, addresses: ["203.0.113.192/29"]}}`)
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: attr-wide}, spec: {autoAssign: false, addresses: ["203.0.113.192/27"]}}`)
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: attr-v6}, spec: {autoAssign: false, addresses: ["2001:db8:1:d::/124"]}}`)
	annotation := "ironlb.io/ip-allocated-from-pool"

	createService(t, ns, "wide", 80, withAnnotations("ironlb.io/pool", "attr-wide", "ironlb.io/loadBalancerIPs", "203.0.113.193"))
	createService(t, ns, "split", 80, withAnnotations("ironlb.io/loadBalancerIPs", "203.0.113.194,2001:db8:1:d::4"), func(s *corev1.Service) {
		p := corev1.IPFamilyPolicyRequireDualStack
		s.Spec.IPFamilyPolicy = &p
	})
	for name, want := range map[string]string{"wide": "attr-wide", "split": "IPv4=attr-narrow,IPv6=attr-v6"} {
		eventually(t, name+" carries "+annotation+"="+want, 10*time.Second, func() bool {
			s, err := env.Cluster.Client.CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
			return err == nil && s.Annotations[annotation] == want && len(s.Status.LoadBalancer.Ingress) > 0
		})
	}

	// Restart: the new process restores attribution and publishes nothing new.
	lbs, err := env.Cluster.Client.CoreV1().Services("").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	served := 0
	for _, s := range lbs.Items {
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer && (s.Spec.LoadBalancerClass == nil || *s.Spec.LoadBalancerClass == "ironlb.io/lb") && len(s.Status.LoadBalancer.Ingress) > 0 {
			served++
		}
	}
	if err := ctrl.Stop(); err != nil {
		t.Logf("stopping the controller: %v", err)
	}
	if ctrl, err = env.StartController(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the restarted controller confirmed every published Service", 30*time.Second, func() bool {
		return ctrlMetric(t, ctrl, "ironlb_controller_syncs_total", `result="unchanged"`) >= float64(served)
	})
	if w := ctrlMetric(t, ctrl, "ironlb_controller_service_writes_total"); w != 0 { // -1: unreadable
		t.Errorf("the restart wrote %v times to unchanged Services", w)
	}
	s, _ := env.Cluster.Client.CoreV1().Services(ns).Get(t.Context(), "wide", metav1.GetOptions{})
	if s.Annotations[annotation] != "attr-wide" {
		t.Errorf("after restart wide is attributed to %q", s.Annotations[annotation])
	}
}
