package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

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
	_ = corev1.ServiceExternalTrafficPolicyLocal
}
