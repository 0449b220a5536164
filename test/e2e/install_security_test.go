package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// The claims of docs/security.md about a hostile tenant: a user who administers
// one namespace (the stock "admin" ClusterRole bound there) and nothing else.

// tenant returns clients acting as user "tenant-<ns>", admin of namespace ns only.
// The lab runs no kube-controller-manager to fill the aggregated "admin" role,
// so the user gets the roles it aggregates (what "admin" holds on a cluster).
func tenant(t *testing.T, ns string) (kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	user := "tenant-" + ns
	for _, role := range []string{"system:aggregate-to-admin", "system:aggregate-to-edit", "system:aggregate-to-view"} {
		_, err := env.Cluster.Client.RbacV1().RoleBindings(ns).Create(t.Context(), &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user + "-" + strings.TrimPrefix(role, "system:aggregate-to-"), Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	kc, err := env.Cluster.ClientCertKubeconfig(user, user, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The API server's RBAC cache sees the bindings shortly after they are made.
	eventually(t, user+" may create Services in "+ns, 10*time.Second, func() bool {
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "services"}},
		}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed
	})
	return client, dyn
}

// tenantService creates a LoadBalancer Service as the tenant.
func tenantService(t *testing.T, client kubernetes.Interface, ns, name string, port int32, annotations map[string]string) {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP}}},
	}
	if _, err := client.CoreV1().Services(ns).Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the tenant cannot create a Service in its own namespace: %v", err)
	}
	t.Cleanup(func() { deleteService(t, ns, name) })
}

// A tenant cannot take, or write into status, an address another namespace's
// Service holds; it cannot use a pool scoped to other namespaces; it cannot
// change pools or peers or read ironlb's Secrets; and a pool attribution it
// writes itself is replaced by the controller's.
func TestHostileTenant(t *testing.T) {
	ctx := t.Context()
	victimNS := namespace(t, "victim")
	tenantNS := namespace(t, "tenant")
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: sec-open}, spec: {autoAssign: false, addresses: ["203.0.113.240/29"]}}`)
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: sec-victims}, spec: {autoAssign: false, addresses: ["203.0.113.248/29"], allocation: {namespaces: [victim]}}}`)
	createService(t, victimNS, "bank", 443, withAnnotations("ironlb.io/pool", "sec-victims"))
	victimIP, _ := waitIngress(t, victimNS, "bank", 10*time.Second)
	client, dyn := tenant(t, tenantNS)

	t.Run("asks for the victim's address", func(t *testing.T) {
		tenantService(t, client, tenantNS, "steal", 443, map[string]string{"ironlb.io/loadBalancerIPs": victimIP})
		waitEvent(t, tenantNS, "steal", "IPOutsidePools") // the pool holding it is not the tenant's
		tenantService(t, client, tenantNS, "steal-open", 443, map[string]string{"ironlb.io/loadBalancerIPs": "203.0.113.241", "ironlb.io/pool": "sec-open"})
		open, _ := waitIngress(t, tenantNS, "steal-open", 10*time.Second)
		createService(t, victimNS, "bank-open", 443, withAnnotations("ironlb.io/loadBalancerIPs", "203.0.113.242", "ironlb.io/pool", "sec-open"))
		waitIngress(t, victimNS, "bank-open", 10*time.Second)
		// An address in a pool both may use, held by the victim.
		tenantService(t, client, tenantNS, "steal-held", 443, map[string]string{"ironlb.io/loadBalancerIPs": "203.0.113.242"})
		waitEvent(t, tenantNS, "steal-held", "IPInUse")
		if open != "203.0.113.241" {
			t.Errorf("the tenant's own request got %s", open)
		}
		for name, want := range map[string]string{"bank": victimIP, "bank-open": "203.0.113.242"} {
			if got, _ := waitIngress(t, victimNS, name, 5*time.Second); got != want {
				t.Errorf("the victim's %s has %s now, had %s", name, got, want)
			}
		}
	})

	t.Run("asks for a pool scoped to other namespaces", func(t *testing.T) {
		tenantService(t, client, tenantNS, "scoped", 80, map[string]string{"ironlb.io/pool": "sec-victims"})
		waitEvent(t, tenantNS, "scoped", "PoolNotAllowed")
		tenantService(t, client, tenantNS, "scoped-mlb", 80, map[string]string{"metallb.io/address-pool": "sec-victims"})
		waitEvent(t, tenantNS, "scoped-mlb", "PoolNotAllowed")
	})

	t.Run("writes a status or a pool attribution itself", func(t *testing.T) {
		tenantService(t, client, tenantNS, "forged", 80, map[string]string{"ironlb.io/pool": "sec-open", "ironlb.io/ip-allocated-from-pool": "sec-victims"})
		eventually(t, "the controller publishes the true pool of forged's address", 10*time.Second, func() bool {
			s, err := env.Cluster.Client.CoreV1().Services(tenantNS).Get(ctx, "forged", metav1.GetOptions{})
			return err == nil && len(s.Status.LoadBalancer.Ingress) == 1 && s.Annotations["ironlb.io/ip-allocated-from-pool"] == "sec-open"
		})
		s, err := client.CoreV1().Services(tenantNS).Get(ctx, "forged", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: victimIP}}
		if _, err := client.CoreV1().Services(tenantNS).UpdateStatus(ctx, s, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the tenant wrote a Service status (the controller restores addresses from status): %v", err)
		}
	})

	t.Run("edits pools or peers, reads ironlb's Secrets", func(t *testing.T) {
		_, err := framework.CreateYAML(ctx, dyn, ippools, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: mine}, spec: {addresses: ["203.0.113.0/24"], allocation: {namespaces: [tenant]}}}`)
		if !apierrors.IsForbidden(err) {
			t.Errorf("the tenant created an IPPool: %v", err)
		}
		if _, err := dyn.Resource(ippools).Get(ctx, "sec-victims", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the tenant read an IPPool: %v", err)
		}
		_, err = framework.CreateYAML(ctx, dyn, bgppeers, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: mine}, spec: {peerAddress: 192.0.2.66, peerASN: 64512, myASN: 64600}}`)
		if !apierrors.IsForbidden(err) {
			t.Errorf("the tenant created a BGPPeer: %v", err)
		}
		if _, err := client.CoreV1().Secrets("ironlb-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the tenant listed Secrets in ironlb-system: %v", err)
		}
	})
}

// docs/security.md, "what a tenant can do": sharing keys are not scoped to a
// namespace (as in MetalLB). A tenant who knows another namespace's sharing key
// and address can put a Service on other ports of that address, never on a
// port the other Service uses.
func TestTenantSharingKeyIsNotNamespaced(t *testing.T) {
	victimNS := namespace(t, "victim-share")
	tenantNS := namespace(t, "tenant-share")
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: sec-shared}, spec: {autoAssign: false, addresses: ["203.0.113.232/30"]}}`)
	createService(t, victimNS, "dns", 53, withAnnotations("ironlb.io/pool", "sec-shared", "ironlb.io/allow-shared-ip", "dns"))
	ip, _ := waitIngress(t, victimNS, "dns", 10*time.Second)
	client, _ := tenant(t, tenantNS)
	tenantService(t, client, tenantNS, "same-port", 53, map[string]string{"ironlb.io/loadBalancerIPs": ip, "ironlb.io/allow-shared-ip": "dns"})
	waitEvent(t, tenantNS, "same-port", "IPInUse")
	tenantService(t, client, tenantNS, "other-port", 8053, map[string]string{"ironlb.io/loadBalancerIPs": ip, "ironlb.io/allow-shared-ip": "dns"})
	if got, _ := waitIngress(t, tenantNS, "other-port", 10*time.Second); got != ip {
		t.Errorf("other-port got %s: if sharing became namespace-scoped, update docs/security.md and this test", got)
	}
}

// Metrics and health endpoints listen where --metrics-addr says, nowhere else:
// the suite's controller (given the cp LAN address) has no socket on other
// addresses of that port.
func TestMetricsBindWhereConfigured(t *testing.T) {
	out, err := env.Lab.Exec(context.Background(), lab.HostCP, "ss", "-Hltn")
	if err != nil {
		t.Fatal(err)
	}
	port := ":" + strings.TrimPrefix(ctrl.MetricsAddr.String(), ctrl.MetricsAddr.Addr().String()+":")
	var on []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && strings.HasSuffix(f[3], port) {
			on = append(on, f[3])
		}
	}
	if len(on) != 1 || on[0] != ctrl.MetricsAddr.String() {
		t.Errorf("metrics port %s is listened on at %v, want only %s", port, on, ctrl.MetricsAddr)
	}
}
