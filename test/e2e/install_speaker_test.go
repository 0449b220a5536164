package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ironlb/ironlb/test/cluster"
	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
	"github.com/ironlb/ironlb/test/render"
)

// suiteSpeakersDown stops the speakers and kube-proxies the speaker suites
// share on the lab's nodes (speakersWith starts them again when a later test
// needs them), so that an installation test has the nodes to itself.
func suiteSpeakersDown(t *testing.T) {
	t.Helper()
	spkMu.Lock()
	defer spkMu.Unlock()
	for i, sp := range spk {
		_ = sp.Terminate()
		delete(spk, i)
	}
	for i, p := range kps {
		_ = p.Stop()
		delete(kps, i)
	}
	spkPath = 0
	for i := 1; i <= env.Lab.Nodes(); i++ {
		if err := env.CleanupKubeProxy(t.Context(), i); err != nil {
			t.Fatal(err)
		}
		if err := env.CleanupSpeaker(t.Context(), i); err != nil {
			t.Fatal(err)
		}
	}
}

// speakerCaps is what the speaker is promised: NET_ADMIN and NET_RAW, nothing else.
func speakerCaps(t *testing.T) framework.Caps {
	t.Helper()
	a, err := framework.ParseCap("NET_ADMIN")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := framework.ParseCap("NET_RAW")
	return a | r
}

// runSpeakers runs the speaker container of the rendered DaemonSet on every lab
// node (its network namespace: hostNetwork) against control plane c, each with
// exactly its securityContext's user and capabilities, its ServiceAccount's
// token, the memberlist Secret mounted as the DaemonSet mounts it, and its args
// as shipped. They are stopped, and their iptables rules removed, at the end of
// the test.
func runSpeakers(t *testing.T, c *cluster.Cluster, objs render.Objects, mutate func(*corev1.Container)) []*framework.ContainerProcess {
	t.Helper()
	ctx := t.Context()
	ds, err := objs.DaemonSet("ironlb-system", "ironlb-speaker")
	if err != nil {
		t.Fatal(err)
	}
	if !ds.Spec.Template.Spec.HostNetwork {
		t.Fatal("the speaker DaemonSet is not on the host network")
	}
	server := fmt.Sprintf("https://%s", netip.AddrPortFrom(env.Lab.CPAddr(), uint16(c.Config().Port)))
	var out []*framework.ContainerProcess
	for i := 1; i <= env.Lab.Nodes(); i++ {
		node := env.Lab.NodeName(i)
		p, err := env.RunContainer(ctx, framework.ContainerRun{
			Cluster: c, Namespace: "ironlb-system", Pod: &ds.Spec.Template.Spec, Container: "speaker",
			Host: node, NodeName: node, HostIP: env.Lab.NodeIP(i).String(),
			KubeconfigFlags: []string{"--kubeconfig"}, Server: server, Mutate: mutate,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = p.Stop()
			// What the speaker programmed (iptables, announcements) goes with it.
			bin := p.Binary
			_, _ = env.Lab.Exec(context.Background(), node, bin, "--cleanup", "--node-name="+node, "--kubeconfig="+speakerKubeconfig(t, c, server))
		})
		out = append(out, p)
	}
	return out
}

// speakerKubeconfig is a kubeconfig of the speaker's ServiceAccount that
// reaches c from the nodes.
func speakerKubeconfig(t *testing.T, c *cluster.Cluster, server string) string {
	kc, err := c.ServiceAccountKubeconfig(context.Background(), "ironlb-system", "ironlb-speaker", time.Hour)
	if err != nil {
		t.Log(err)
		return ""
	}
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Log(err)
		return ""
	}
	for _, cl := range cfg.Clusters {
		cl.Server = server
	}
	out := strings.TrimSuffix(kc, ".kubeconfig") + "-nodes.kubeconfig"
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Log(err)
	}
	return out
}

// installWithNodes is a fresh control plane with the rendered objects applied
// and one Ready Node per lab node.
func installWithNodes(t *testing.T, name string, objs render.Objects) *cluster.Cluster {
	t.Helper()
	c := freshCluster(t, name)
	install(t, c, objs)
	for i := 1; i <= env.Lab.Nodes(); i++ {
		n := env.Lab.NodeName(i)
		if err := c.CreateNode(t.Context(), n, env.Lab.NodeIP(i), map[string]string{"kubernetes.io/hostname": n}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// `kubectl apply -k deploy/kube-proxy-replacement` on an empty cluster: the
// controller and a speaker on every node, each as its manifest says (the
// speaker as root with NET_ADMIN and NET_RAW and nothing else), with memberlist
// encrypted by the Secret the controller's init container created; a Service
// gets its VIP, one node answers ARP for it, and a client on the LAN reaches
// the pods through it (ironlb's iptables proxy, no kube-proxy).
func TestInstallSpeakersRun(t *testing.T) {
	ctx := t.Context()
	suiteSpeakersDown(t)
	objs := renderKustomize(t, "kube-proxy-replacement")
	c := installWithNodes(t, "cp-install-speakers", objs)
	runController(t, c, objs, "ironlb-system", nil)
	speakers := runSpeakers(t, c, objs, nil)
	for i, p := range speakers {
		got, err := p.Identity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := p.Want.Diff(got); d != "" {
			t.Fatalf("speaker on node%d does not run as its securityContext says: %s", i+1, d)
		}
		want := speakerCaps(t)
		if got.UID != 0 || got.Effective != want || got.Permitted != want || got.Bounding != want || !got.NoNewPrivs {
			t.Fatalf("speaker on node%d runs as uid %d with capabilities %v/%v/%v (effective/permitted/bounding), no_new_privs %v: want root with exactly %v",
				i+1, got.UID, got.Effective, got.Permitted, got.Bounding, got.NoNewPrivs, want)
		}
	}
	for i := 1; i <= env.Lab.Nodes(); i++ {
		waitReady(t, env.Lab.NodeName(i), netip.AddrPortFrom(env.Lab.NodeIP(i), 7473), speakers[i-1])
		// Ready means it read its key from the mounted Secret and joined: the
		// gossip is encrypted (an unencrypted speaker says so when it starts).
		if log := speakers[i-1].Tail(1 << 20); strings.Contains(log, "not encrypted") {
			t.Errorf("the speaker on node%d runs memberlist unencrypted", i)
		}
	}

	// Backends on two nodes, a pool announced by L2, a Service.
	var eps []cluster.Endpoint
	for i, node := range []int{1, 2} {
		pod, err := env.Lab.AddPod(ctx, node, 150+i, fmt.Sprintf("installed-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Lab.StartPodServer(ctx, pod, env.Bins.PodServer, 8080); err != nil {
			t.Fatal(err)
		}
		eps = append(eps, cluster.Endpoint{Name: pod.Name, Node: env.Lab.NodeName(node), IP: pod.IP, Ready: true, Serving: true})
	}
	createPool(t, c, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: lan}, spec: {addresses: ["192.0.2.249/32"], advertise: {l2: {}}}}`)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}
	if _, err := c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetEndpoints(ctx, "default", "web", 8080, corev1.ProtocolTCP, eps); err != nil {
		t.Fatal(err)
	}
	got := waitIngressOn(t, c.Client, "default", "web")
	vip := got.Status.LoadBalancer.Ingress[0].IP
	if vip != "192.0.2.249" {
		t.Fatalf("web got %s", vip)
	}
	var body string
	eventually(t, "a LAN client reaches web through its VIP", 30*time.Second, func() bool {
		var err error
		body, err = env.Lab.HTTPGet(ctx, lab.HostLANClient, "http://"+vip+"/", 2*time.Second)
		return err == nil && strings.Contains(body, "installed-")
	})
	macs, err := env.Lab.ARPing(ctx, lab.HostLANClient, netip.MustParseAddr(vip), 3)
	if err != nil || len(macs) != 1 {
		t.Errorf("ARP for %s: answered by %v (%v), want exactly one node", vip, macs, err)
	}
}

// The speaker needs both capabilities it is given: without NET_RAW it cannot
// answer ARP (no packet socket), so a LAN client cannot reach the VIP; the
// test of the shipped manifest can fail.
func TestInstallSpeakerNeedsNetRaw(t *testing.T) {
	ctx := t.Context()
	suiteSpeakersDown(t)
	objs := renderKustomize(t, "kube-proxy-replacement")
	c := installWithNodes(t, "cp-install-noraw", objs)
	runController(t, c, objs, "ironlb-system", nil)
	dropRaw := func(ct *corev1.Container) {
		ct.SecurityContext.Capabilities.Add = slices.DeleteFunc(ct.SecurityContext.Capabilities.Add, func(c corev1.Capability) bool { return c == "NET_RAW" })
	}
	speakers := runSpeakers(t, c, objs, dropRaw)
	t.Cleanup(func() {
		if t.Failed() {
			for i, sp := range speakers {
				t.Logf("speaker on node%d: %s", i+1, sp.Tail(12000))
			}
		}
	})
	got, err := speakers[0].Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := framework.ParseCap("NET_RAW"); got.Effective&raw != 0 {
		t.Fatal("the speaker still has NET_RAW")
	}
	createPool(t, c, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: lan}, spec: {addresses: ["192.0.2.248/32"], advertise: {l2: {}}}}`)
	lbService(t, c.Client, "web", "")
	// Speakers announce a Service that has a ready endpoint.
	if err := c.SetEndpoints(ctx, "default", "web", 80, corev1.ProtocolTCP, []cluster.Endpoint{{Name: "web-0", Node: env.Lab.NodeName(1), IP: netip.MustParseAddr("198.18.1.249"), Ready: true, Serving: true}}); err != nil {
		t.Fatal(err)
	}
	vip := waitIngressOn(t, c.Client, "default", "web").Status.LoadBalancer.Ingress[0].IP
	// A positive signal that the elected speaker tried to announce and could
	// not: it says why.
	eventually(t, "a speaker reports that it cannot open its ARP socket", 30*time.Second, func() bool {
		for _, sp := range speakers {
			if strings.Contains(sp.Tail(20000), "operation not permitted") {
				return true
			}
		}
		return false
	})
	if macs, _ := env.Lab.ARPing(ctx, lab.HostLANClient, netip.MustParseAddr(vip), 3); len(macs) != 0 {
		t.Errorf("%s answered by %v without NET_RAW", vip, macs)
	}
}

func waitReady(t *testing.T, host string, addr netip.AddrPort, p *framework.ContainerProcess) {
	t.Helper()
	eventually(t, host+"'s speaker is ready", 60*time.Second, func() bool {
		select {
		case <-p.Done():
			t.Fatalf("the speaker on %s exited: %v: %s", host, p.Err(), p.Tail(3000))
		default:
		}
		body, err := env.Lab.HTTPGet(t.Context(), host, "http://"+addr.String()+"/readyz", time.Second)
		return err == nil && strings.TrimSpace(body) == "ok"
	})
}
