package speaker

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ironlb/ironlb/api/v1alpha1"
)

func bgpPoolObject(t testing.TB, name string, addresses v1alpha1.AddressRange) *unstructured.Unstructured {
	return unstructuredOf(t, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{addresses},
			Advertise: &v1alpha1.AdvertiseSpec{BGP: &v1alpha1.BGPAdvertisement{}}}}, v1alpha1.IPPoolKind)
}

// bgpAnnouncement returns the desired status of ip's BGP ServiceAnnouncement
// on node1, nil if none.
func (h *loopHarness) bgpAnnouncement(ip string) map[string]any {
	h.s.announcements.mu.Lock()
	defer h.s.announcements.mu.Unlock()
	return h.s.announcements.desired[announcementName(v1alpha1.AnnouncementBGP, dashed(netip.MustParseAddr(ip)), "node1")]
}

// The BGP ServiceAnnouncement of an address follows what is advertised and
// the Services using it, also when only the Services change (a second
// Service sharing the address), while the plan's paths stay the same.
func TestLoopBGPAnnouncements(t *testing.T) {
	h := newLoopHarness(t, []runtime.Object{
		node("node1", "192.0.2.11", nil),
		lbServiceWith("a", "bgp", "203.0.113.10"), endpointSlice("ns", "a", "node1"),
	}, bgpPoolObject(t, "bgp", "203.0.113.0/24"), unstructuredOf(t, bgpPeer("router", "192.0.2.1", nil, nil), v1alpha1.BGPPeerKind))
	h.settle("node1")
	services := func() []string {
		st := h.bgpAnnouncement("203.0.113.10")
		if st == nil {
			return nil
		}
		s, _, _ := unstructured.NestedStringSlice(st, "services")
		return s
	}
	if got := services(); !slices.Equal(got, []string{"ns/a"}) {
		t.Fatalf("announcement of 203.0.113.10: Services %v, want [ns/a]", got)
	}
	if st := h.bgpAnnouncement("203.0.113.10"); st["prefix"] != "203.0.113.10/32" || fmt.Sprint(st["peers"]) != "[192.0.2.1]" {
		t.Errorf("announcement %v", st)
	}
	ctx := context.Background()
	if _, err := h.client.CoreV1().Services("ns").Create(ctx, lbServiceWith("b", "bgp", "203.0.113.10"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.DiscoveryV1().EndpointSlices("ns").Create(ctx, endpointSlice("ns", "b", "node1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the sharing Service in the announcement", func() bool { return slices.Equal(services(), []string{"ns/a", "ns/b"}) })
	if err := h.client.CoreV1().Services("ns").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the deleted Service out of the announcement", func() bool { return slices.Equal(services(), []string{"ns/b"}) })
	if err := h.client.CoreV1().Services("ns").Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the announcement gone with the last Service", func() bool { return h.bgpAnnouncement("203.0.113.10") == nil })
}

// BenchmarkLoopBGPBatch is the speaker's cost of one batch that changed one
// of 1,000 advertised addresses (a Service's endpoints or status changed):
// what a burst of Services pays per Service.
func BenchmarkLoopBGPBatch(b *testing.B) {
	objs := []runtime.Object{node("node1", "192.0.2.11", nil)}
	for k := range 1000 {
		name := fmt.Sprintf("s%d", k)
		objs = append(objs, lbServiceWith(name, "bgp", fmt.Sprintf("198.18.%d.%d", 100+k/250, k%250+1)), endpointSlice("ns", name, "node1"))
	}
	h := newLoopHarness(b, objs, bgpPoolObject(b, "bgp", "198.18.100.0/22"), unstructuredOf(b, bgpPeer("router", "192.0.2.1", nil, nil), v1alpha1.BGPPeerKind))
	h.settle("node1")
	if n := len(h.s.ls.paths); n != 1000 {
		b.Fatalf("%d addresses advertised, want 1000", n)
	}
	ip := netip.MustParseAddr("198.18.101.7")
	b.ResetTimer()
	for b.Loop() {
		h.s.ls.bgpStale[ip] = true
		h.s.planBGP()
	}
}
