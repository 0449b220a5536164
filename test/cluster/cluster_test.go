package cluster

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var ipPoolGVR = schema.GroupVersionResource{Group: "ironlb.io", Version: "v1alpha1", Resource: "ippools"}

// startCluster starts a control plane on loopback only (never on other addresses
// of the root namespace) and stops it when the test ends.
func startCluster(t *testing.T, ctx context.Context) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: the cluster tests run as root (lab harness); run as root to enable")
	}
	bctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	bins, err := EnsureBinaries(bctx, os.Stderr)
	if err != nil {
		t.Skipf("skipping: kube-apiserver/etcd binaries unavailable (prebuild with test/hack/build-binaries.sh): %s", strings.SplitN(err.Error(), "\n", 2)[0])
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	lo := netip.MustParseAddr("127.0.0.1")
	dir := t.TempDir()
	start := time.Now()
	c, err := Start(ctx, Config{
		Dir:             dir,
		ListenAddress:   lo,
		ServerAddresses: []netip.Addr{lo},
		Port:            port,
		Binaries:        bins,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("cluster ready at %s in %v (etcd %s, pids %v)", c.Server, time.Since(start).Round(time.Millisecond), c.EtcdURL, c.PIDs())
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"etcd", "kube-apiserver"} {
				t.Logf("last lines of %s.log:\n%s", name, tail(filepath.Join(dir, name+".log"), 40))
			}
		}
		c.Stop()
	})
	return c
}

func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c := startCluster(t, ctx)

	crdsOK := false
	needCRDs := func(t *testing.T) {
		if !crdsOK {
			t.Fatal("ironlb CRDs are not installed (see CRDsEstablished)")
		}
	}
	t.Run("CRDsEstablished", func(t *testing.T) {
		dir := filepath.Join("..", "..", "deploy", "crds")
		if d := os.Getenv("IRONLB_CRD_DIR"); d != "" {
			dir = d // e.g. to try a CRD fix before it lands in deploy/crds
		}
		start := time.Now()
		if err := c.InstallCRDs(ctx, dir); err != nil {
			t.Fatalf("InstallCRDs: %v", err)
		}
		crdsOK = true
		t.Logf("CRDs established in %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("IPPoolValidation", func(t *testing.T) {
		needCRDs(t)
		cases := []struct {
			addr  string
			valid bool
		}{
			{"192.0.2.300/24", false},              // malformed address
			{"192.0.2.20-192.0.2.10", false},       // inverted range
			{"2001:db8::2ff-2001:db8::200", false}, // inverted IPv6 range
			{"192.0.2.1/24", false},                // host bits set
			{"192.0.2.10-2001:db8::1", false},      // mixed families
			{"192.0.2.200-192.0.2.250", true},
			{"2001:db8:1::/64", true},
			{"2001:db8::200-2001:db8::2ff", true},
			{"192.0.2.77-192.0.2.77", true}, // single address
			{"203.0.113.0/24", true},
			{"192.0.2.0-192.0.2.255", true},
		}
		for i, tc := range cases {
			name := "pool-" + string(rune('a'+i))
			obj := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "ironlb.io/v1alpha1",
				"kind":       "IPPool",
				"metadata":   map[string]any{"name": name},
				"spec":       map[string]any{"addresses": []any{tc.addr}},
			}}
			_, err := c.Dynamic.Resource(ipPoolGVR).Create(ctx, obj, metav1.CreateOptions{})
			switch {
			case tc.valid && err != nil:
				t.Errorf("%q: refused, want accepted: %v", tc.addr, err)
			case !tc.valid && err == nil:
				t.Errorf("%q: accepted, want refused", tc.addr)
			case !tc.valid && !apierrors.IsInvalid(err):
				t.Errorf("%q: refused with a non-validation error: %v", tc.addr, err)
			case !tc.valid:
				t.Logf("%q refused: %v", tc.addr, err)
			}
		}
	})

	t.Run("ServiceAccountRBAC", func(t *testing.T) {
		path, err := c.ServiceAccountKubeconfig(ctx, "lab-rbac", "reader", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cs := clientFromKubeconfig(t, path)
		_, err = cs.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("listing services without RBAC: got %v, want Forbidden", err)
		}
		if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "lab-service-reader"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "lab-service-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "lab-service-reader"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "lab-rbac", Name: "reader"}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err = cs.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("listing services after binding: %v", err)
		}
		// Still nothing beyond the binding.
		if _, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("listing nodes: got %v, want Forbidden", err)
		}
	})

	t.Run("ClientCertKubeconfig", func(t *testing.T) {
		path, err := c.ClientCertKubeconfig("alice", "alice", []string{"lab:people"})
		if err != nil {
			t.Fatal(err)
		}
		cs := clientFromKubeconfig(t, path)
		if _, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Fatalf("alice listing namespaces: got %v, want Forbidden", err)
		}
		if !strings.Contains(errString(cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})), `"alice"`) {
			t.Errorf("Forbidden error does not name user alice")
		}
	})

	t.Run("CreateNode", func(t *testing.T) {
		ip := netip.MustParseAddr("192.0.2.11")
		if err := c.CreateNode(ctx, "node1", ip, map[string]string{"lab.ironlb.io/role": "speaker"}); err != nil {
			t.Fatal(err)
		}
		n, err := c.Client.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !nodeReady(n) || len(n.Spec.Taints) != 0 {
			t.Fatalf("node not Ready/untainted: conditions %+v taints %+v", n.Status.Conditions, n.Spec.Taints)
		}
		if len(n.Status.Addresses) == 0 || n.Status.Addresses[0].Address != ip.String() || n.Labels["lab.ironlb.io/role"] != "speaker" {
			t.Fatalf("node addresses/labels: %+v %v", n.Status.Addresses, n.Labels)
		}
		if err := c.SetNodeReady(ctx, "node1", false); err != nil {
			t.Fatal(err)
		}
		n, _ = c.Client.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
		if nodeReady(n) || len(n.Spec.Taints) != 1 {
			t.Fatalf("node still Ready or not tainted: %+v %+v", n.Status.Conditions, n.Spec.Taints)
		}
		if err := c.SetNodeReady(ctx, "node1", true); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("SetEndpoints", func(t *testing.T) {
		_, err := c.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{
				Type:  corev1.ServiceTypeLoadBalancer,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		eps := []Endpoint{
			{Name: "web-1", Node: "node1", IP: netip.MustParseAddr("198.18.1.1"), Ready: true, Serving: true},
			{Name: "web-2", Node: "node1", IP: netip.MustParseAddr("198.18.1.2"), Serving: true, Terminating: true},
			{Name: "web-3", Node: "node1", IP: netip.MustParseAddr("2001:db8::1:1"), Ready: true, Serving: true},
		}
		if err := c.SetEndpoints(ctx, "default", "web", 8080, corev1.ProtocolTCP, eps); err != nil {
			t.Fatal(err)
		}
		if err := c.SetEndpoints(ctx, "default", "web", 8080, corev1.ProtocolTCP, eps[:1]); err != nil {
			t.Fatal(err)
		}
		list, err := c.Client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=web"})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, s := range list.Items {
			got[s.Name] = len(s.Endpoints)
			if *s.Ports[0].Name != "http" || *s.Ports[0].Port != 8080 || s.Labels[LabelManagedBy] != ManagedBy {
				t.Errorf("slice %s: ports %+v labels %v", s.Name, s.Ports, s.Labels)
			}
		}
		if got["web-lab"] != 1 || got["web-lab-v6"] != 0 || len(got) != 2 {
			t.Fatalf("slices: %v", got)
		}
	})

	t.Run("Apply", func(t *testing.T) {
		needCRDs(t)
		dir := t.TempDir()
		good := filepath.Join(dir, "good.yaml")
		writeFile(t, good, `# a comment-only document first
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: speaker
  namespace: lab-apply
---
apiVersion: v1
kind: Namespace
metadata:
  name: lab-apply
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: lab-apply
rules:
- apiGroups: ["ironlb.io"]
  resources: ["ippools"]
  verbs: ["get", "list", "watch"]
---
apiVersion: ironlb.io/v1alpha1
kind: IPPool
metadata:
  name: lab-apply
spec:
  addresses: ["198.18.200.0/24"]
`)
		if err := c.Apply(ctx, true, good); err != nil {
			t.Fatalf("dry run: %v", err)
		}
		if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "lab-apply", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("dry run created the namespace (err %v)", err)
		}
		if err := c.Apply(ctx, false, good); err != nil {
			t.Fatalf("apply: %v", err)
		}
		if _, err := c.Client.CoreV1().ServiceAccounts("lab-apply").Get(ctx, "speaker", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := c.Apply(ctx, false, good); err != nil { // idempotent
			t.Fatalf("re-apply: %v", err)
		}
		bad := filepath.Join(dir, "bad.yaml")
		writeFile(t, bad, `apiVersion: ironlb.io/v1alpha1
kind: IPPool
metadata:
  name: lab-bad
spec:
  addresses: ["192.0.2.20-192.0.2.10"]
`)
		err := c.Apply(ctx, true, bad)
		if err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "IPPool lab-bad") {
			t.Fatalf("dry run of an invalid pool: got %v, want an error naming file, kind and name", err)
		}
		t.Logf("invalid manifest refused: %v", err)
	})

	t.Run("Stop", func(t *testing.T) {
		pids := c.PIDs()
		if len(pids) != 2 {
			t.Fatalf("pids %v, want 2", pids)
		}
		start := time.Now()
		c.Stop()
		c.Stop() // idempotent
		t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process %d still exists after Stop (kill 0: %v)", pid, err)
			}
			if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process group %d still exists after Stop (kill 0: %v)", pid, err)
			}
		}
	})
}

func clientFromKubeconfig(t *testing.T, path string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func errString[T any](_ T, err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
