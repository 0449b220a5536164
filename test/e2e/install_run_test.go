package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/ironlb/ironlb/test/cluster"
	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
	"github.com/ironlb/ironlb/test/render"
)

// Control planes of the installation tests: ports of their API servers in cp.
var nextInstallPort atomic.Int32

func init() { nextInstallPort.Store(6450) }

// freshCluster is a new control plane with nothing installed, gone at the end
// of the test.
func freshCluster(t *testing.T, name string) *cluster.Cluster {
	t.Helper()
	c, err := env.StartBareControlPlane(t.Context(), name, int(nextInstallPort.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

var nextPort atomic.Int32

func init() { nextPort.Store(7600) }

// install applies objs (server-side, for real) to c, as `kubectl apply` or
// `helm install` would.
func install(t *testing.T, c *cluster.Cluster, objs render.Objects) {
	t.Helper()
	if err := c.Apply(t.Context(), false, writeRendered(t, objs)); err != nil {
		t.Fatalf("installing: %v", err)
	}
}

// runController runs the controller container of the rendered Deployment (its
// init container first) in cp, as its ServiceAccount, with exactly its
// securityContext's user and capabilities. Only the ports differ (cp is shared
// with the suite's controller).
func runController(t *testing.T, c *cluster.Cluster, objs render.Objects, namespace string, mutate func(*corev1.Container)) *framework.Controller {
	t.Helper()
	ctx := t.Context()
	d, err := objs.Deployment(namespace, "ironlb-controller")
	if err != nil {
		t.Fatal(err)
	}
	pod := &d.Spec.Template.Spec
	out, err := env.RunToCompletion(ctx, framework.ContainerRun{
		Cluster: c, Namespace: namespace, Pod: pod, Container: "memberlist-secret",
		KubeconfigFlags: []string{"--kubeconfig"},
	})
	if err != nil {
		t.Fatalf("init container: %v", err)
	}
	t.Logf("init container: %s", strings.TrimSpace(out))
	metrics := netip.AddrPortFrom(env.Lab.CPAddr(), uint16(nextPort.Add(1)))
	p, err := env.RunContainer(ctx, framework.ContainerRun{
		Cluster: c, Namespace: namespace, Pod: pod, Container: "controller",
		KubeconfigFlags: []string{"--kubeconfig", "--authentication-kubeconfig", "--authorization-kubeconfig"},
		Args:            []string{fmt.Sprintf("--secure-port=%d", nextPort.Add(1)), "--metrics-addr=" + metrics.String()},
		Mutate:          mutate,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	got, err := p.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Want.Diff(got); d != "" {
		t.Fatalf("the controller does not run as its securityContext says: %s", d)
	}
	// What a user of the manifest is promised, independent of how it is
	// written: not root, no capability at all, no way to gain privileges.
	if got.UID == 0 || got.Effective != 0 || got.Permitted != 0 || got.Bounding != 0 || !got.NoNewPrivs {
		t.Fatalf("the controller runs with uid %d, capabilities effective %v permitted %v bounding %v, no_new_privs %v: want non-root, none, true",
			got.UID, got.Effective, got.Permitted, got.Bounding, got.NoNewPrivs)
	}
	return &framework.Controller{Process: p.Process, Name: "installed-controller", MetricsAddr: metrics}
}

// lbService creates a LoadBalancer Service (class may be "") and returns its name.
func lbService(t *testing.T, client kubernetes.Interface, name, class string) {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80)}}},
	}
	if class != "" {
		s.Spec.LoadBalancerClass = &class
	}
	if _, err := client.CoreV1().Services("default").Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createPool(t *testing.T, c *cluster.Cluster, doc string) {
	t.Helper()
	if _, err := framework.CreateYAML(t.Context(), c.Dynamic, ippools, doc); err != nil {
		t.Fatal(err)
	}
}

// memberlistSecret returns the speakers' memberlist secret in namespace.
func memberlistSecret(t *testing.T, client kubernetes.Interface, namespace string) []byte {
	t.Helper()
	s, err := client.CoreV1().Secrets(namespace).Get(t.Context(), "ironlb-memberlist", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the memberlist Secret: %v", err)
	}
	if len(s.Data["secretkey"]) < 16 {
		t.Fatalf("memberlist secret of %d bytes", len(s.Data["secretkey"]))
	}
	return s.Data["secretkey"]
}

// `kubectl apply -k deploy/` on an empty cluster: the controller's init
// container creates the memberlist Secret once, the controller runs with
// exactly the RBAC, user and capabilities shipped, and a Service gets its VIP.
func TestInstallKustomizeRuns(t *testing.T) {
	c := freshCluster(t, "cp-install-kustomize")
	objs := renderKustomize(t, "")
	install(t, c, objs)
	ctrl := runController(t, c, objs, "ironlb-system", nil)
	secret := memberlistSecret(t, c.Client, "ironlb-system")

	createPool(t, c, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: lan}, spec: {addresses: ["192.0.2.200-192.0.2.210"]}}`)
	lbService(t, c.Client, "web", "")
	got := waitIngressOn(t, c.Client, "default", "web")
	if ip := got.Status.LoadBalancer.Ingress[0].IP; ip != "192.0.2.200" {
		t.Errorf("web got %s, want 192.0.2.200", ip)
	}
	if ctrlMetric(t, ctrl, "ironlb_controller_syncs_total") <= 0 {
		t.Error("the controller's metrics show no sync")
	}

	// A second installation (an upgrade, a restarted Pod) keeps the secret.
	install(t, c, objs)
	runController(t, c, objs, "ironlb-system", nil)
	if again := memberlistSecret(t, c.Client, "ironlb-system"); string(again) != string(secret) {
		t.Error("a second run of the init container changed the memberlist secret")
	}
}

// `helm install` with default values, and with other values (another
// namespace, class-only mode, other ports): each runs as shipped.
func TestInstallChartRuns(t *testing.T) {
	t.Run("default values", func(t *testing.T) {
		c := freshCluster(t, "cp-install-helm")
		ensureNamespaceOn(t, c.Client, "ironlb-system") // helm --create-namespace
		objs := renderChart(t, "ironlb-system", nil)
		install(t, c, objs)
		runController(t, c, objs, "ironlb-system", nil)
		memberlistSecret(t, c.Client, "ironlb-system")
		createPool(t, c, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: lan}, spec: {addresses: ["192.0.2.220/30"]}}`)
		lbService(t, c.Client, "web", "")
		waitIngressOn(t, c.Client, "default", "web")
	})
	t.Run("other values", func(t *testing.T) {
		c := freshCluster(t, "cp-install-helm-values")
		ensureNamespaceOn(t, c.Client, chartNonDefaultNamespace)
		objs := renderChart(t, chartNonDefaultNamespace, chartNonDefault)
		install(t, c, objs)
		ctrl := runController(t, c, objs, chartNonDefaultNamespace, nil)
		memberlistSecret(t, c.Client, chartNonDefaultNamespace)
		createPool(t, c, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: lan}, spec: {addresses: ["192.0.2.224/30"]}}`)
		// serveClassless=false, lbClass=example.com/lb: only that class is served.
		lbService(t, c.Client, "classless", "")
		lbService(t, c.Client, "ours", "example.com/lb")
		waitIngressOn(t, c.Client, "default", "ours")
		waitSyncs(t, ctrl, "ignored", 0) // the class-less one was looked at
		s, err := c.Client.CoreV1().Services("default").Get(t.Context(), "classless", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("a class-less Service got %v although the chart says serveClassless: false (%v)", s.Status.LoadBalancer.Ingress, err)
		}
		// The lease lives in the release's namespace.
		if _, err := c.Client.CoordinationV1().Leases(chartNonDefaultNamespace).Get(t.Context(), "ironlb-controller", metav1.GetOptions{}); err != nil {
			t.Errorf("no leader lease in %s: %v", chartNonDefaultNamespace, err)
		}
	})
}

func ensureNamespaceOn(t *testing.T, client kubernetes.Interface, name string) {
	t.Helper()
	_, err := client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// The RBAC the manifests ship is needed, not just enough: without the one verb
// that publishes an address (patch services/status) the controller cannot give
// a Service its VIP; with it back, it does.
func TestInstallRBACIsNeeded(t *testing.T) {
	c := freshCluster(t, "cp-install-rbac")
	objs := renderKustomize(t, "")
	role := objs.Find("ClusterRole", "", "ironlb:controller").DeepCopy()
	rules, _ := role.Object["rules"].([]any)
	var cut []any
	dropped := false
	for _, r := range rules {
		m := r.(map[string]any)
		if fmt.Sprint(m["resources"]) == "[services/status]" {
			dropped = true
			continue
		}
		cut = append(cut, r)
	}
	if !dropped {
		t.Fatal("the shipped ClusterRole has no services/status rule to drop")
	}
	role.Object["rules"] = cut
	weakened := render.Objects{}
	for _, u := range objs {
		if u.GetKind() == "ClusterRole" && u.GetName() == "ironlb:controller" {
			weakened = append(weakened, role)
			continue
		}
		weakened = append(weakened, u)
	}
	install(t, c, weakened)
	ctrl := runController(t, c, weakened, "ironlb-system", nil)
	createPool(t, c, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: lan}, spec: {addresses: ["192.0.2.230/31"]}}`)
	lbService(t, c.Client, "web", "")
	// A positive signal that the controller tried and failed: a failed sync.
	waitSyncs(t, ctrl, "error", 0)
	s, _ := c.Client.CoreV1().Services("default").Get(t.Context(), "web", metav1.GetOptions{})
	if len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("web got %v without the patch services/status permission", s.Status.LoadBalancer.Ingress)
	}
	// Restore the shipped role: the same controller now succeeds.
	install(t, c, objs)
	waitIngressOn(t, c.Client, "default", "web")
}

// ironlb-ingress listens on 80 and 443 as user 65532 without any capability
// because its Pod sets the namespaced sysctl net.ipv4.ip_unprivileged_port_start=0;
// the same container without that sysctl cannot bind (so the test of the shipped
// securityContext can fail).
func TestIngressSecurityContext(t *testing.T) {
	ctx := t.Context()
	c := freshCluster(t, "cp-install-ingress")
	objs := renderKustomize(t, "with-ingress")
	install(t, c, objs)
	d, err := objs.Deployment("ironlb-system", "ironlb-ingress")
	if err != nil {
		t.Fatal(err)
	}
	// The Pod gets its own network namespace (a lab pod on node1), as a Pod
	// without hostNetwork does; cp routes the pod network back to it.
	podIdx := 200 + int(nextPort.Add(1)%50)
	pod, err := env.Lab.AddPod(ctx, 1, podIdx, fmt.Sprintf("ingress-%d", podIdx))
	if err != nil {
		t.Fatal(err)
	}
	route := env.Lab.PodCIDR(1).String()
	if _, err := env.Lab.Exec(ctx, lab.HostCP, "ip", "route", "replace", route, "via", env.Lab.NodeIP(1).String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = env.Lab.Exec(context.Background(), lab.HostCP, "ip", "route", "del", route) })
	server := fmt.Sprintf("https://%s", netip.AddrPortFrom(env.Lab.CPAddr(), uint16(c.Config().Port)))
	run := func(mutate func(*corev1.PodSpec)) *framework.ContainerProcess {
		spec := d.Spec.Template.Spec.DeepCopy()
		if mutate != nil {
			mutate(spec)
		}
		p, err := env.RunContainer(ctx, framework.ContainerRun{
			Cluster: c, Namespace: "ironlb-system", Pod: spec, Container: "ingress", Host: pod.Host,
			KubeconfigFlags: []string{"--kubeconfig"}, Server: server,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop() })
		return p
	}

	// Without the sysctl first (the pod namespace starts with the kernel's 1024).
	p := run(func(s *corev1.PodSpec) { s.SecurityContext.Sysctls = nil })
	select {
	case <-p.Done():
		if !strings.Contains(p.Tail(4000), "permission denied") {
			t.Fatalf("without the sysctl the ingress exited, but not for the port: %s", p.Tail(2000))
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("without the sysctl the ingress still runs after 30s: %s", p.Tail(2000))
	}

	p = run(nil)
	got, err := p.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := p.Want.Diff(got); diff != "" {
		t.Fatal(diff)
	}
	if got.UID != 65532 || got.Effective|got.Permitted|got.Bounding != 0 || !got.NoNewPrivs {
		t.Fatalf("ironlb-ingress runs as %d with capabilities %v/%v/%v", got.UID, got.Effective, got.Permitted, got.Bounding)
	}
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(pod.IP, 80))
	eventually(t, "the ingress answers on port 80", 30*time.Second, func() bool {
		_, err := env.Lab.HTTPGet(ctx, env.Lab.NodeName(1), url, 2*time.Second)
		return err == nil
	})
}
