package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ironlb/ironlb/test/cluster"
	"github.com/ironlb/ironlb/test/lab"
)

// metallbCRDs is the folder of MetalLB's CRDs in the module cache (the version
// bench/metallb-controller pins).
func metallbCRDs(t *testing.T) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-mod=readonly", "-m", "-f", "{{.Dir}}", "go.universe.tf/metallb")
	cmd.Dir = repoPath("bench", "metallb-controller")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("locating MetalLB's module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "bases")
}

// fixedMetalLBCRDs copies MetalLB's CRDs into a temporary folder with one
// change: MetalLB v0.15.2 declares the ASNs of its BGPPeer as "format: int32"
// with "maximum: 4294967295", and kube-apiserver v1.37 then refuses every
// BGPPeer ("Maximum boundary value must be of type integer with format
// int32"). The format is dropped where the maximum does not fit it; nothing
// else changes.
func fixedMetalLBCRDs(t *testing.T) string {
	t.Helper()
	src := metallbCRDs(t)
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("MetalLB CRDs in %s: %v", src, err)
	}
	dst := t.TempDir()
	fixed := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		fixed += dropOversizedInt32(doc)
		out, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if fixed == 0 {
		t.Log("MetalLB's CRDs need no fix any more: remove fixedMetalLBCRDs")
	}
	return dst
}

func dropOversizedInt32(v any) int {
	n := 0
	switch x := v.(type) {
	case map[string]any:
		if x["format"] == "int32" {
			if m, ok := x["maximum"].(float64); ok && m > math.MaxInt32 {
				delete(x, "format")
				n++
			}
		}
		for _, c := range x {
			n += dropOversizedInt32(c)
		}
	case []any:
		for _, c := range x {
			n += dropOversizedInt32(c)
		}
	}
	return n
}

// metallbService is a Service as MetalLB left it: its annotations, and the
// address MetalLB's controller published in its status.
type metallbService struct {
	ns, name    string
	labels      map[string]string
	annotations map[string]string
	ports       []corev1.ServicePort
	lbIP        string // spec.loadBalancerIP (deprecated request form)
	ip          string // published by MetalLB
}

func tcp(port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: fmt.Sprintf("tcp-%d", port), Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP}
}

func udp(port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: fmt.Sprintf("udp-%d", port), Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolUDP}
}

// A cluster switched from MetalLB keeps every Service's IP: MetalLB's CRDs and
// objects (migrate/testdata, written from MetalLB's documented fields) and
// Services with MetalLB-published addresses; `ironlb migrate-metallb --apply`
// writes ironlb's pools and peers; ironlb-controller then starts, takes over
// every Service and changes no address, also for Services that asked for a
// pool, an address or a shared address through MetalLB's annotations.
func TestMigrateFromMetalLBKeepsEveryIP(t *testing.T) {
	ctx := t.Context()
	c, err := env.StartControlPlane(ctx, "cp-migrate", int(nextInstallPort.Add(1)), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if err := c.InstallCRDs(ctx, fixedMetalLBCRDs(t)); err != nil {
		t.Fatalf("installing MetalLB's CRDs: %v", err)
	}
	for _, ns := range []string{"metallb-system", "team-a", "web"} {
		ensureNamespaceOn(t, c.Client, ns)
	}
	if _, err := c.Client.CoreV1().Secrets("metallb-system").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "leaf2-password", Namespace: "metallb-system"},
		Type:       corev1.SecretTypeBasicAuth,
		Data:       map[string][]byte{"password": []byte("s3cret-leaf2")},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testdata := repoPath("migrate", "testdata", "metallb")
	if err := c.Apply(ctx, false, filepath.Join(testdata, "l2.yaml"), filepath.Join(testdata, "bgp.yaml")); err != nil {
		t.Fatalf("the API server refuses the MetalLB examples: %v", err)
	}

	// Services as MetalLB's controller left them. None holds the lowest address
	// of its pool, so a re-allocation would show.
	svcs := []metallbService{
		{ns: "web", name: "shop", ports: []corev1.ServicePort{tcp(443)}, ip: "192.0.2.203",
			annotations: map[string]string{"metallb.io/ip-allocated-from-pool": "lan"}},
		{ns: "web", name: "pinned", ports: []corev1.ServicePort{tcp(80)}, ip: "192.0.2.240",
			annotations: map[string]string{"metallb.universe.tf/loadBalancerIPs": "192.0.2.240", "metallb.io/ip-allocated-from-pool": "lan"}},
		{ns: "web", name: "legacy", ports: []corev1.ServicePort{tcp(8080)}, lbIP: "192.0.2.70", ip: "192.0.2.70",
			annotations: map[string]string{"metallb.io/ip-allocated-from-pool": "lan"}},
		{ns: "team-a", name: "front", labels: map[string]string{"tier": "frontend"}, ports: []corev1.ServicePort{tcp(443)}, ip: "203.0.113.131",
			annotations: map[string]string{"metallb.io/address-pool": "team-a", "metallb.io/ip-allocated-from-pool": "team-a"}},
		{ns: "web", name: "dns-tcp", ports: []corev1.ServicePort{tcp(53)}, ip: "203.0.113.7",
			annotations: map[string]string{"metallb.io/allow-shared-ip": "dns", "metallb.io/ip-allocated-from-pool": "public"}},
		{ns: "web", name: "dns-udp", ports: []corev1.ServicePort{udp(53)}, ip: "203.0.113.7",
			annotations: map[string]string{"metallb.universe.tf/allow-shared-ip": "dns", "metallb.io/ip-allocated-from-pool": "public"}},
	}
	for _, s := range svcs {
		publishAsMetalLB(t, c, s)
	}

	// The migration, as a user runs it (from cp: the lab's address of the API server).
	bin, err := env.Binary(ctx, "ironlb")
	if err != nil {
		t.Fatal(err)
	}
	out, err := env.Lab.Exec(ctx, lab.HostCP, bin, "migrate-metallb", "--kubeconfig", c.AdminKubeconfig, "--apply")
	if err != nil {
		t.Fatalf("ironlb migrate-metallb: %v", err)
	}
	t.Logf("migrate-metallb:\n%s", out)
	if !strings.Contains(out, "migrated 3 IPPool(s), 2 BGPPeer(s), 2 Secret(s)") {
		t.Errorf("the report does not count what bgp.yaml and l2.yaml hold:\n%s", out)
	}
	for _, pool := range []string{"lan", "public", "team-a"} {
		if _, err := c.Dynamic.Resource(ippools).Get(ctx, pool, metav1.GetOptions{}); err != nil {
			t.Errorf("IPPool %s: %v", pool, err)
		}
	}
	sec, err := c.Client.CoreV1().Secrets("ironlb-system").Get(ctx, "leaf2-password", metav1.GetOptions{})
	if err != nil || string(sec.Data["password"]) != "s3cret-leaf2" {
		t.Errorf("leaf2's password was not copied into ironlb-system: %v", err)
	}

	ctrl, err := env.StartControllerFor(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ctrl.Stop() })

	// Each Service is taken over (ironlb writes its pool attribution) with the
	// address it had.
	for _, s := range svcs {
		var got *corev1.Service
		eventually(t, s.ns+"/"+s.name+" is taken over by ironlb", 30*time.Second, func() bool {
			got, err = c.Client.CoreV1().Services(s.ns).Get(ctx, s.name, metav1.GetOptions{})
			return err == nil && got.Annotations["ironlb.io/ip-allocated-from-pool"] != ""
		})
		if ips := ingressIPs(got); ips != s.ip+"(VIP)" {
			t.Errorf("%s/%s has %s after the switch, had %s under MetalLB; events: %s", s.ns, s.name, ips, s.ip, eventsOn(c, s.ns, s.name))
		}
		// The address is attributed to the migrated pool of MetalLB's name, so
		// the speakers announce it with that pool's advertise settings (without
		// the migration ironlb would keep the address as an orphan of no pool).
		if from, want := got.Annotations["ironlb.io/ip-allocated-from-pool"], s.annotations["metallb.io/ip-allocated-from-pool"]; from != want {
			t.Errorf("%s/%s: ironlb attributes its address to pool %q, MetalLB to %q; events: %s", s.ns, s.name, from, want, eventsOn(c, s.ns, s.name))
		}
	}
	// A new Service gets a free address, none of the migrated ones.
	lbServiceIn(t, c, "web", "new")
	got := waitIngressOn(t, c.Client, "web", "new")
	if ip := got.Status.LoadBalancer.Ingress[0].IP; ip != "192.0.2.64" {
		t.Errorf("a new Service got %s, want the lowest free address of lan (192.0.2.64/27 first, .70 is taken)", ip)
	}
}

// publishAsMetalLB creates the Service and writes the status MetalLB's
// controller would have written.
func publishAsMetalLB(t *testing.T, c *cluster.Cluster, s metallbService) {
	t.Helper()
	ctx := t.Context()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name, Labels: s.labels, Annotations: s.annotations},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: s.ports, LoadBalancerIP: s.lbIP,
			Selector: map[string]string{"app": s.name}},
	}
	created, err := c.Client.CoreV1().Services(s.ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: s.ip}}
	if _, err := c.Client.CoreV1().Services(s.ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func lbServiceIn(t *testing.T, c *cluster.Cluster, ns, name string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{tcp(80)}},
	}
	if _, err := c.Client.CoreV1().Services(ns).Create(t.Context(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func eventsOn(c *cluster.Cluster, ns, name string) string {
	evs, err := c.Client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, ev := range evs.Items {
		out = append(out, ev.Reason+": "+ev.Message)
	}
	return strings.Join(out, " | ")
}
