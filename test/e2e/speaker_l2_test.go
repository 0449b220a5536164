package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ironlb/ironlb/test/lab"
)

// L2 mode with three speakers beside a real kube-proxy (--proxy=none): exactly
// one node, the elected owner, answers ARP for the VIP; curl from the LAN
// reaches every backend through it; the Service shows who announces it.
func TestSpeakerL2ARPAndCurl(t *testing.T) {
	speakersUp(t)
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: spk-l2}, spec: {addresses: ["192.0.2.210-192.0.2.219"], advertise: {l2: {}}}}`)
	ns := namespace(t, "spk-l2")
	createService(t, ns, "web", 8000)
	backends, err := env.StartBackendsOn(t.Context(), ns, "web", "web", 3, 80)
	if err != nil {
		t.Fatal(err)
	}
	vip, _ := waitIngress(t, ns, "web", 5*time.Second)
	ann := waitL2Owner(t, vip, 10*time.Second)
	owner := ann.Node
	t.Logf("%s announced by %s on %v", vip, owner, ann.Interfaces)
	if !slices.Equal(ann.Interfaces, []string{lab.LANIf}) || !slices.Equal(ann.Services, []string{ns + "/web"}) {
		t.Errorf("announcement %+v: want interface lan0 and service %s/web", ann, ns)
	}
	if macs := arpMACs(t, vip, 4); !slices.Equal(macs, []string{nodeMAC(t, owner)}) {
		t.Fatalf("ARP for %s answered by %v, want only %s's %s", vip, macs, owner, nodeMAC(t, owner))
	}
	curlBackends(t, lab.HostLANClient, urlFor(vip, 8000), backendNames(backends), 60)
	msg := waitEvent(t, ns, "web", "Announcing")
	if want := "announcing " + vip + " from " + owner + " on lan0"; !strings.Contains(msg, want) {
		t.Errorf("Event %q, want it to say %q", msg, want)
	}
	// Steady state: nothing is written while nothing changes.
	sp := speakersUp(t)[nodeIndex(t, owner)]
	before := speakerMetric(t, sp, `ironlb_speaker_status_writes_total{op="create",resource="serviceannouncements",result="ok"}`)
	if macs := arpMACs(t, vip, 2); len(macs) != 1 {
		t.Fatalf("ARP answers %v", macs)
	}
	if after := speakerMetric(t, sp, `ironlb_speaker_status_writes_total{op="create",resource="serviceannouncements",result="ok"}`); after != before {
		t.Errorf("status writes in steady state: %v -> %v", before, after)
	}

	// The speakers run with exactly deploy/speaker's RBAC: nothing they do is
	// refused.
	for _, sp := range speakersUp(t) {
		if log := sp.Tail(1 << 20); strings.Contains(log, "forbidden") {
			t.Errorf("%s's speaker was refused by the API server: %s", sp.Name, grepLines(log, "forbidden"))
		}
	}

	// Deleting the Service stops the answers: once its announcement is gone
	// (the speaker removes it after the announcer stopped answering), nobody
	// answers ARP for the address.
	deleteService(t, ns, "web")
	waitNoAnnouncement(t, vip, 10*time.Second)
	if macs := arpMACs(t, vip, 3); len(macs) != 0 {
		t.Fatalf("ARP for %s of a deleted Service answered by %v", vip, macs)
	}
}

func withDualStack(s *corev1.Service) {
	p := corev1.IPFamilyPolicyRequireDualStack
	s.Spec.IPFamilyPolicy = &p
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
}

func withLocal(s *corev1.Service) {
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

// IPv6: a dual-stack Service's IPv6 VIP is answered by NDP from exactly one
// node, and curl over IPv6 from the LAN reaches every backend.
func TestSpeakerL2NDPDualStack(t *testing.T) {
	speakersUp(t)
	checkDualStackL2(t, "spk-ds", `["192.0.2.220-192.0.2.224", "2001:db8::220-2001:db8::22f"]`)
}

// checkDualStackL2 runs a dual-stack Service with three backends from a new L2
// pool: each VIP is answered by ARP or NDP from exactly one node, curl over
// both families from the LAN reaches every backend, and deleting the Service
// stops the answers.
func checkDualStackL2(t *testing.T, name, addresses string) {
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: `+name+`}, spec: {addresses: `+addresses+`, advertise: {l2: {}}}}`)
	ns := namespace(t, name)
	createService(t, ns, "web", 8000, withDualStack)
	backends, err := env.StartDualStackBackends(t.Context(), ns, "web", name, 3, 80)
	if err != nil {
		t.Fatal(err)
	}
	var svc *corev1.Service
	err = wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		ensureController(t)
		s, err := env.Cluster.Client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		svc = s
		return err == nil && len(s.Status.LoadBalancer.Ingress) == 2, nil
	})
	if err != nil {
		t.Fatalf("%s/web has not two addresses: %s; events: %s; controller: %s", ns, ingressIPs(svc), events(t, ns, "web"), ctrl.Tail(3000))
	}
	var v4, v6 string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if strings.Contains(in.IP, ":") {
			v6 = in.IP
		} else {
			v4 = in.IP
		}
	}
	own4, own6 := waitL2Owner(t, v4, 10*time.Second).Node, waitL2Owner(t, v6, 10*time.Second).Node
	t.Logf("%s announced by %s, %s by %s", v4, own4, v6, own6)
	if macs := arpMACs(t, v4, 3); !slices.Equal(macs, []string{nodeMAC(t, own4)}) {
		t.Fatalf("ARP for %s answered by %v, want only %s's %s", v4, macs, own4, nodeMAC(t, own4))
	}
	if macs := ndpMACs(t, v6, 3); !slices.Equal(macs, []string{nodeMAC(t, own6)}) {
		t.Fatalf("NDP for %s answered by %v, want only %s's %s", v6, macs, own6, nodeMAC(t, own6))
	}
	curlBackends(t, lab.HostLANClient, urlFor(v4, 8000), backendNames(backends), 60)
	curlBackends(t, lab.HostLANClient, urlFor(v6, 8000), backendNames(backends), 60)
	deleteService(t, ns, "web")
	waitNoAnnouncement(t, v6, 10*time.Second)
	waitNoAnnouncement(t, v4, 10*time.Second)
	if macs := ndpMACs(t, v6, 2); len(macs) != 0 {
		t.Fatalf("NDP for %s of a deleted Service answered by %v", v6, macs)
	}
	if macs := arpMACs(t, v4, 2); len(macs) != 0 {
		t.Fatalf("ARP for %s of a deleted Service answered by %v", v4, macs)
	}
}

// externalTrafficPolicy Local: only a node with a ready endpoint announces;
// when the endpoint moves, the address follows it.
func TestSpeakerL2LocalFollowsEndpoints(t *testing.T) {
	speakersUp(t)
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: spk-local}, spec: {addresses: ["192.0.2.225-192.0.2.229"], advertise: {l2: {}}}}`)
	ns := namespace(t, "spk-local")
	createService(t, ns, "loc", 8000, withLocal)
	on3, err := env.StartBackendsOn(t.Context(), ns, "loc", "loc3", 1, 80, 3)
	if err != nil {
		t.Fatal(err)
	}
	vip, _ := waitIngress(t, ns, "loc", 5*time.Second)
	waitL2Owner(t, vip, 10*time.Second, "node3")
	if macs := arpMACs(t, vip, 3); !slices.Equal(macs, []string{nodeMAC(t, "node3")}) {
		t.Fatalf("ARP for %s answered by %v, want only node3", vip, macs)
	}
	curlBackends(t, lab.HostLANClient, urlFor(vip, 8000), backendNames(on3), 5)

	on2, err := env.StartBackendsOn(t.Context(), ns, "loc", "loc2", 1, 80, 2) // replaces the endpoints
	if err != nil {
		t.Fatal(err)
	}
	waitL2Owner(t, vip, 10*time.Second, "node2")
	if macs := arpMACs(t, vip, 3); !slices.Equal(macs, []string{nodeMAC(t, "node2")}) {
		t.Fatalf("after the endpoint moved, ARP for %s answered by %v, want only node2", vip, macs)
	}
	curlBackends(t, lab.HostLANClient, urlFor(vip, 8000), backendNames(on2), 5)

	// No ready endpoint anywhere: not announced.
	if err := env.PublishEndpoints(t.Context(), ns, "loc", 80, nil, false); err != nil {
		t.Fatal(err)
	}
	waitNoAnnouncement(t, vip, 10*time.Second)
	if macs := arpMACs(t, vip, 2); len(macs) != 0 {
		t.Fatalf("ARP for %s without endpoints answered by %v", vip, macs)
	}
}

// A killed owner's address moves to another node within the failure
// detection time; when the killed speaker comes back it takes nothing back.
// A planned stop (SIGTERM) hands the address over before the process exits.
func TestSpeakerL2FailoverNoFailback(t *testing.T) {
	speakers := speakersUp(t)
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: spk-fo}, spec: {addresses: ["192.0.2.230-192.0.2.234"], advertise: {l2: {}}}}`)
	ns := namespace(t, "spk-fo")
	createService(t, ns, "fo", 8000)
	backends, err := env.StartBackendsOn(t.Context(), ns, "fo", "fo", 3, 80)
	if err != nil {
		t.Fatal(err)
	}
	vip, _ := waitIngress(t, ns, "fo", 5*time.Second)
	first := waitL2Owner(t, vip, 10*time.Second).Node
	killed := speakers[nodeIndex(t, first)]
	t0 := time.Now()
	killed.Kill()
	var others []string
	for i := 1; i <= env.Lab.Nodes(); i++ {
		if n := env.Lab.NodeName(i); n != first {
			others = append(others, n)
		}
	}
	second := waitL2Owner(t, vip, 10*time.Second, others...).Node
	t.Logf("%s killed: %s announces %s after %v (status object)", first, second, vip, time.Since(t0).Round(time.Millisecond))
	if macs := arpMACs(t, vip, 3); !slices.Equal(macs, []string{nodeMAC(t, second)}) {
		t.Fatalf("after the kill, ARP for %s answered by %v, want only %s", vip, macs, second)
	}
	curlBackends(t, lab.HostLANClient, urlFor(vip, 8000), backendNames(backends), 60)

	back := restartSpeaker(t, nodeIndex(t, first))
	eventually(t, first+"'s speaker sees all members", 10*time.Second, func() bool {
		return speakerMetric(t, back, `ironlb_memberlist_members{state="alive"}`) == float64(env.Lab.Nodes())
	})
	if got := waitL2Owner(t, vip, 5*time.Second).Node; got != second {
		t.Fatalf("failback: %s returned and %s moved from %s to %s", first, vip, second, got)
	}
	if macs := arpMACs(t, vip, 4); !slices.Equal(macs, []string{nodeMAC(t, second)}) {
		t.Fatalf("after %s returned, ARP for %s answered by %v, want only %s", first, vip, macs, second)
	}
	if v := speakerMetric(t, back, `ironlb_l2_vips_owned{family="ipv4"}`); v != 0 {
		t.Fatalf("the returned %s owns %v addresses", first, v)
	}

	// Planned stop of the owner: someone else announces before it exits.
	owner := speakers[nodeIndex(t, second)]
	done := make(chan error, 1)
	go func() { done <- owner.Terminate() }()
	third := waitL2Owner(t, vip, 5*time.Second, slicesWithout(nodeNames(), second)...).Node
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("%s stopped (SIGTERM): %s took %s over", second, third, vip)
	if macs := arpMACs(t, vip, 3); !slices.Equal(macs, []string{nodeMAC(t, third)}) {
		t.Fatalf("after the planned stop, ARP for %s answered by %v, want only %s", vip, macs, third)
	}
	restartSpeaker(t, nodeIndex(t, second))
}

func nodeNames() []string {
	var out []string
	for i := 1; i <= env.Lab.Nodes(); i++ {
		out = append(out, env.Lab.NodeName(i))
	}
	return out
}

func slicesWithout(s []string, x string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(v string) bool { return v == x })
}
