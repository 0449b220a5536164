package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The classic workload: nginx with 3 replicas labelled app=nginx on port 80,
// and Service nginx-service (port 8000 -> 80). The Service gets its VIP from the pool
// within 2 s; a restarted controller keeps it; a deleted Service's address is released
// and handed out again.
func TestNginxServiceGetsVIP(t *testing.T) {
	ctx := t.Context()
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: lan}, spec: {addresses: ["192.0.2.200-192.0.2.250"]}}`)
	ns := "default"
	backends, err := env.StartBackends(ctx, ns, "nginx-service", "nginx", 3, 80)
	if err != nil {
		t.Fatal(err)
	}
	// The backends are real processes in pod namespaces on three nodes: each answers
	// from another node across the lab's pod routes.
	for _, b := range backends {
		from := env.Lab.NodeName(b.Node%env.Lab.Nodes() + 1)
		body, err := env.Lab.HTTPGet(ctx, from, fmt.Sprintf("http://%s:80/", b.IP), 5*time.Second)
		if err != nil || !strings.HasPrefix(body, b.Name+" ") {
			t.Fatalf("backend %s (%s) from %s: %q %v", b.Name, b.IP, from, body, err)
		}
	}

	created := time.Now()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-service", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "nginx"},
			Ports:    []corev1.ServicePort{{Port: 8000, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := env.Cluster.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteService(t, ns, "nginx-service") })
	vip, _ := waitIngress(t, ns, "nginx-service", 2*time.Second)
	t.Logf("nginx-service got %s in %v", vip, time.Since(created).Round(time.Millisecond))
	if vip != "192.0.2.200" {
		t.Errorf("the first Service must get the pool's lowest address, got %s", vip)
	}
	if msg := waitEvent(t, ns, "nginx-service", "IPAllocated"); !strings.Contains(msg, vip) || !strings.Contains(msg, "lan") {
		t.Errorf("IPAllocated event: %q", msg)
	}
	eventually(t, "IPPool lan status shows 1 assigned", 10*time.Second, func() bool {
		st := poolStatus(t, "lan")
		return fmt.Sprint(st["assigned"]) == "1" && fmt.Sprint(st["availableIPv4"]) == "50"
	})
	metrics, err := env.Metrics(ctx, ctrl)
	if err != nil || !regexp.MustCompile(`ironlb_allocator_addresses_in_use\{family="ipv4",pool="lan"\} 1\b`).MatchString(metrics) ||
		!regexp.MustCompile(`ironlb_allocator_addresses_total\{family="ipv4",pool="lan"\} 51\b`).MatchString(metrics) {
		t.Errorf("metrics do not show pool lan 1/51 in use: %v\n%s", err, grepLines(metrics, "ironlb_allocator"))
	}

	// The Deployment's livenessProbe: GET /healthz on the metrics port.
	if body, err := env.Lab.HTTPGet(ctx, "cp", "http://"+ctrl.MetricsAddr.String()+"/healthz", 5*time.Second); err != nil || body != "ok" {
		t.Errorf("/healthz on the metrics port (the Deployment's livenessProbe): %q %v", body, err)
	}

	// Restart: the new controller process rebuilds from the Services' status before
	// allocating. .201 is freed just before the restart, so a controller that did not
	// rebuild would hand it to "keeper" (a re-IP) instead of to the new Service.
	createService(t, ns, "spare", 8081)
	createService(t, ns, "keeper", 8082)
	if ip, _ := waitIngress(t, ns, "spare", 5*time.Second); ip != "192.0.2.201" {
		t.Fatalf("spare: %s", ip)
	}
	if ip, _ := waitIngress(t, ns, "keeper", 5*time.Second); ip != "192.0.2.202" {
		t.Fatalf("keeper: %s", ip)
	}
	deleteService(t, ns, "spare")
	if err := ctrl.Stop(); err != nil {
		t.Logf("stopping controller: %v", err)
	}
	if ctrl, err = env.StartController(ctx); err != nil {
		t.Fatal(err)
	}
	createService(t, ns, "second", 8080)
	second, _ := waitIngress(t, ns, "second", 30*time.Second) // includes the lease takeover
	if second != "192.0.2.201" {
		t.Errorf("after a restart the next Service must get the freed 192.0.2.201, got %s", second)
	}
	if got, _ := waitIngress(t, ns, "nginx-service", time.Second); got != vip {
		t.Errorf("restart changed nginx-service's address: %s -> %s", vip, got)
	}
	if got, _ := waitIngress(t, ns, "keeper", time.Second); got != "192.0.2.202" {
		t.Errorf("restart changed keeper's address: 192.0.2.202 -> %s", got)
	}

	// Delete: the address is released and is the lowest free one again.
	deleteService(t, ns, "nginx-service")
	createService(t, ns, "third", 9000)
	if third, _ := waitIngress(t, ns, "third", 5*time.Second); third != vip {
		t.Errorf("a released address must be reusable: third got %s, want %s", third, vip)
	}
}

// Explicit requests, classes, exhaustion and sharing, each with its Event.
func TestRequestsClassesExhaustion(t *testing.T) {
	ns := namespace(t, "requests")
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: tiny}, spec: {autoAssign: false, addresses: ["203.0.113.10/32"]}}`)
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: dual}, spec: {autoAssign: false, addresses: ["203.0.113.64/28", "2001:db8:1::/64"]}}`)

	createService(t, ns, "pinned", 80, withAnnotations("ironlb.io/pool", "tiny"))
	if ip, _ := waitIngress(t, ns, "pinned", 5*time.Second); ip != "203.0.113.10" {
		t.Errorf("pinned: %s", ip)
	}
	createService(t, ns, "starved", 80, withAnnotations("ironlb.io/pool", "tiny"))
	waitEvent(t, ns, "starved", "PoolExhausted")
	eventually(t, "IPPool tiny reports Exhausted", 10*time.Second, func() bool {
		return strings.Contains(fmt.Sprint(poolStatus(t, "tiny")["conditions"]), "NoFreeAddress")
	})

	// MetalLB's annotation for an explicit address is honoured (migration).
	createService(t, ns, "migrated", 80, withAnnotations("metallb.universe.tf/loadBalancerIPs", "203.0.113.70"))
	if ip, _ := waitIngress(t, ns, "migrated", 5*time.Second); ip != "203.0.113.70" {
		t.Errorf("metallb annotation: %s", ip)
	}
	createService(t, ns, "outside", 80, withAnnotations("ironlb.io/loadBalancerIPs", "198.51.100.99"))
	waitEvent(t, ns, "outside", "IPOutsidePools")

	// Sharing: same key, different ports -> one address; a colliding port is refused.
	createService(t, ns, "share-a", 53, withAnnotations("ironlb.io/allow-shared-ip", "dns", "ironlb.io/loadBalancerIPs", "203.0.113.71"))
	createService(t, ns, "share-b", 853, withAnnotations("ironlb.io/allow-shared-ip", "dns", "ironlb.io/loadBalancerIPs", "203.0.113.71"))
	a, _ := waitIngress(t, ns, "share-a", 5*time.Second)
	b, _ := waitIngress(t, ns, "share-b", 5*time.Second)
	if a != "203.0.113.71" || b != a {
		t.Errorf("sharing: %s %s", a, b)
	}
	createService(t, ns, "share-clash", 53, withAnnotations("ironlb.io/allow-shared-ip", "dns", "ironlb.io/loadBalancerIPs", "203.0.113.71"))
	waitEvent(t, ns, "share-clash", "IPInUse")

	// Dual stack from one pool.
	createService(t, ns, "dual", 80, withAnnotations("ironlb.io/pool", "dual"), func(s *corev1.Service) {
		p := corev1.IPFamilyPolicyPreferDualStack
		s.Spec.IPFamilyPolicy = &p
	})
	_, dual := waitIngress(t, ns, "dual", 5*time.Second)
	eventually(t, "dual-stack Service gets one address per family", 5*time.Second, func() bool {
		s, err := env.Cluster.Client.CoreV1().Services(ns).Get(context.Background(), "dual", metav1.GetOptions{})
		dual = s
		return err == nil && len(s.Status.LoadBalancer.Ingress) == 2
	})
	if got := ingressIPs(dual); !strings.Contains(got, "203.0.113.") || !strings.Contains(got, "2001:db8:1::") {
		t.Errorf("dual stack: %s", got)
	}

	// loadBalancerClass: ours is served (same finalizer), another is left alone.
	createService(t, ns, "classy", 80, withClass("ironlb.io/lb"), withAnnotations("ironlb.io/pool", "dual"))
	_, classy := waitIngress(t, ns, "classy", 5*time.Second)
	if !hasFinalizer(classy, "service.kubernetes.io/load-balancer-cleanup") {
		t.Errorf("class Service lacks the cleanup finalizer: %v", classy.Finalizers)
	}
	ignored := ctrlMetric(t, ctrl, "ironlb_controller_syncs_total", `result="ignored"`)
	createService(t, ns, "foreign", 80, withClass("example.com/other"))
	waitSyncs(t, ctrl, "ignored", ignored)
	if s, _ := env.Cluster.Client.CoreV1().Services(ns).Get(t.Context(), "foreign", metav1.GetOptions{}); len(s.Status.LoadBalancer.Ingress) != 0 || len(s.Finalizers) != 0 {
		t.Errorf("a Service of another class must be left alone: %s %v", ingressIPs(s), s.Finalizers)
	}
}

func hasFinalizer(s *corev1.Service, f string) bool {
	for _, x := range s.Finalizers {
		if x == f {
			return true
		}
	}
	return false
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
