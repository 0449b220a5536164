package speaker

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/l2"
	"github.com/ironlb/ironlb/speaker/election"
	"github.com/ironlb/ironlb/speaker/membership"
)

// fakeAnnouncer records what the loop hands the l2 announcer.
type fakeAnnouncer struct {
	mu          sync.Mutex
	owned       []l2.Announcement
	calls       int
	reannounced []netip.Addr
}

func (f *fakeAnnouncer) SetOwned(_ context.Context, owned []l2.Announcement) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.owned = slices.Clone(owned)
	f.calls++
	return nil
}

func (f *fakeAnnouncer) Reannounce(vip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reannounced = append(f.reannounced, vip)
	return nil
}

func (f *fakeAnnouncer) Status() []l2.Placement { return nil }
func (f *fakeAnnouncer) Close() error           { return nil }

type fakeGossip struct{ peers []netip.AddrPort }

func (f *fakeGossip) SetPeers(p []netip.AddrPort) { f.peers = slices.Clone(p) }

type fakePublisher struct {
	published [][]netip.Addr
	forced    int
}

func (f *fakePublisher) publish(claims []netip.Addr, force bool) {
	if force {
		f.forced++
		return
	}
	f.published = append(f.published, slices.Clone(claims))
}
func (f *fakePublisher) stop() {}

// loopHarness drives a Speaker's event loop by hand over fake API clients.
type loopHarness struct {
	t      testing.TB
	s      *Speaker
	client *fake.Clientset
	dyn    *dynamicfake.FakeDynamicClient
	l2     *fakeAnnouncer
	pub    *fakePublisher
	gossip *fakeGossip
	events *record.FakeRecorder
}

func node(name, ip string, lbls map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
		},
	}
}

func unstructuredOf(t testing.TB, obj runtime.Object, gvk schema.GroupVersionKind) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	return u
}

func newLoopHarness(t testing.TB, objs []runtime.Object, crs ...*unstructured.Unstructured) *loopHarness {
	t.Helper()
	h := &loopHarness{t: t, client: fake.NewClientset(objs...), l2: &fakeAnnouncer{}, pub: &fakePublisher{}, gossip: &fakeGossip{},
		events: record.NewFakeRecorder(1000)}
	var dynObjs []runtime.Object
	for _, c := range crs {
		dynObjs = append(dynObjs, c)
	}
	h.dyn = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		v1alpha1.IPPoolsResource: "IPPoolList", v1alpha1.BGPPeersResource: "BGPPeerList",
		v1alpha1.ServiceAnnouncementsResource: "ServiceAnnouncementList", v1alpha1.BGPSessionsResource: "BGPSessionList",
	}, dynObjs...)
	s, err := New(Config{NodeName: "node1", NodeIP: netip.MustParseAddr("192.0.2.11"), Client: h.client, Dynamic: h.dyn,
		Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	s.recorder = h.events
	s.l2, s.gossip, s.publisher = h.l2, h.gossip, h.pub
	s.bgp.routerID = s.cfg.NodeIP
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s.factory.Start(ctx.Done())
	s.secretsF.Start(ctx.Done())
	s.dynF.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.hasSynced...) {
		t.Fatal("informers did not sync")
	}
	s.synced.Store(true)
	s.ls.planEvery = 0 // every flush plans; TestLoopSpacesBGPPlansInABurst tests the spacing
	h.s = s
	h.drain()
	return h
}

// drain processes every queued input, then flushes, as the loop does.
func (h *loopHarness) drain() {
	h.t.Helper()
	for h.s.queue.Len() > 0 {
		it, _ := h.s.queue.Get()
		h.s.process(it)
		h.s.queue.Done(it)
	}
	h.s.flush()
}

// settle joins members with no claims and lets the speaker act.
func (h *loopHarness) settle(members ...string) {
	for _, m := range members {
		h.s.syncMember(membership.Event{Type: membership.Join, Member: membership.Member{Name: m}})
	}
	h.s.process(item{kind: kSettled})
	h.s.flush()
}

func (h *loopHarness) owned() []netip.Addr {
	h.l2.mu.Lock()
	defer h.l2.mu.Unlock()
	var out []netip.Addr
	for _, a := range h.l2.owned {
		out = append(out, a.VIP)
	}
	return out
}

func (h *loopHarness) nextEvent(substr string) string {
	h.t.Helper()
	for {
		select {
		case e := <-h.events.Events:
			if strings.Contains(e, substr) {
				return e
			}
		default:
			h.t.Fatalf("no Event containing %q", substr)
			return ""
		}
	}
}

// waitFor waits until the informers saw an object change made through the
// fake clients (they deliver asynchronously), then drains.
func (h *loopHarness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	for i := 0; i < 500 && !cond(); i++ {
		h.drain()
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !cond() {
		h.t.Fatalf("timed out: %s", what)
	}
	h.drain()
}

func endpointSlice(ns, svc string, nodes ...string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for i, n := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{"198.18.0." + string(rune('1'+i))}, NodeName: ptr(n),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
		})
	}
	return es
}

func l2Pool(t *testing.T, name string, ifs ...string) *unstructured.Unstructured {
	return unstructuredOf(t, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.IPPoolSpec{Addresses: []v1alpha1.AddressRange{"192.0.2.200-192.0.2.210"},
			Advertise: &v1alpha1.AdvertiseSpec{L2: &v1alpha1.L2Advertisement{Interfaces: ifs}}}}, v1alpha1.IPPoolKind)
}

var vip200 = netip.MustParseAddr("192.0.2.200")

// The loop's layer-2 decisions: nothing before settling; then the owned set
// with the pool's interfaces; status and an Event from the placement; release
// when the Local endpoint moves away; the conflict rule; no changes while
// leaving.
func TestLoopL2(t *testing.T) {
	svc := lbService(nil, "lan", "192.0.2.200")
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	h := newLoopHarness(t, []runtime.Object{
		node("node1", "192.0.2.11", nil), node("node2", "192.0.2.12", nil), node("node3", "192.0.2.13", nil),
		svc, endpointSlice("ns", "svc", "node1"),
	}, l2Pool(t, "lan", "eth1"))
	if got := h.gossip.peers; len(got) != 2 || slices.Contains(got, netip.MustParseAddrPort("192.0.2.11:7946")) {
		t.Errorf("memberlist peers %v: want the two other nodes", got)
	}
	h.s.syncMember(membership.Event{Type: membership.Join, Member: membership.Member{Name: "node1"}})
	h.s.flush()
	if h.l2.calls != 0 || len(h.pub.published) != 0 {
		t.Fatalf("acted before settling: %d SetOwned, published %v", h.l2.calls, h.pub.published)
	}
	h.settle("node2", "node3")
	if want := []l2.Announcement{{VIP: vip200, Interfaces: []string{"eth1"}}}; !slices.EqualFunc(h.l2.owned, want, func(a, b l2.Announcement) bool {
		return a.VIP == b.VIP && slices.Equal(a.Interfaces, b.Interfaces)
	}) {
		t.Fatalf("owned %+v, want %+v", h.l2.owned, want)
	}
	if got := h.pub.published; len(got) != 1 || !slices.Equal(got[0], []netip.Addr{vip200}) {
		t.Fatalf("published %v", got)
	}
	// The announcer places it: status and Event.
	h.s.syncPlacement(l2.Placement{VIP: vip200, Interfaces: []string{"eth1"}})
	h.nextEvent("announcing 192.0.2.200 from node1 on eth1 (ARP)")
	st := h.s.announcements.desired["l2.192-0-2-200.node1"]
	if st == nil || st["node"] != "node1" || st["pool"] != "lan" {
		t.Fatalf("status %v", st)
	}
	// The conflict rule: the elected owner re-announces.
	h.s.handleConflict(l2.Conflict{VIP: vip200, Interface: "eth1", Packet: "ARP reply"})
	if !slices.Equal(h.l2.reannounced, []netip.Addr{vip200}) {
		t.Fatalf("reannounced %v", h.l2.reannounced)
	}
	h.nextEvent("re-announced")

	// The endpoint moves to node2: released, status gone, empty claims published.
	if _, err := h.client.DiscoveryV1().EndpointSlices("ns").Update(context.Background(), endpointSlice("ns", "svc", "node2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("release after the endpoint moved", func() bool { return len(h.owned()) == 0 && h.l2.calls == 2 })
	if _, ok := h.s.announcements.desired["l2.192-0-2-200.node1"]; ok {
		t.Error("status of a released address still desired")
	}
	if got := h.pub.published; len(got) != 2 || len(got[1]) != 0 {
		t.Fatalf("published %v", got)
	}
	// Not the owner: a conflict is yielded, not re-announced.
	h.s.handleConflict(l2.Conflict{VIP: vip200, Interface: "eth1"})
	if len(h.l2.reannounced) != 1 {
		t.Fatalf("a non-owner re-announced: %v", h.l2.reannounced)
	}

	// Leaving: the election still runs but layer 2 is frozen.
	h.s.leaving.Store(true)
	if _, err := h.client.DiscoveryV1().EndpointSlices("ns").Update(context.Background(), endpointSlice("ns", "svc", "node1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the election sees node1 again", func() bool { o, _ := h.s.e.Owner(vip200); return o == "node1" })
	if h.l2.calls != 2 {
		t.Fatalf("SetOwned while leaving")
	}
}

// Pool interfaces change -> the owned address is handed over with the new
// interfaces; pool deleted -> released, and the reporter says why.
func TestLoopPoolChanges(t *testing.T) {
	h := newLoopHarness(t, []runtime.Object{
		node("node1", "192.0.2.11", nil), lbServiceWith("a", "lan", "192.0.2.200"), endpointSlice("ns", "a", "node1"),
	}, l2Pool(t, "lan"))
	h.settle("node1")
	if got := h.owned(); !slices.Equal(got, []netip.Addr{vip200}) {
		t.Fatalf("owned %v", got)
	}
	if _, err := h.dyn.Resource(v1alpha1.IPPoolsResource).Update(context.Background(), l2Pool(t, "lan", "eth7"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("new interfaces", func() bool {
		h.l2.mu.Lock()
		defer h.l2.mu.Unlock()
		return len(h.l2.owned) == 1 && slices.Equal(h.l2.owned[0].Interfaces, []string{"eth7"})
	})
	h.s.syncPlacement(l2.Placement{VIP: vip200, Interfaces: []string{"eth7"}})
	if err := h.dyn.Resource(v1alpha1.IPPoolsResource).Delete(context.Background(), "lan", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("release after the pool went", func() bool { return len(h.owned()) == 0 })
	h.nextEvent("192.0.2.200 is no longer announced: IPPool lan does not exist")
	// A Service whose address names a missing pool is reported once.
	if _, err := h.client.CoreV1().Services("ns").Create(context.Background(), lbServiceWith("b", "gone", "192.0.2.201"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the new Service seen", func() bool { return len(h.s.ls.svcAddrs["ns/b"]) == 1 })
	h.nextEvent("192.0.2.201: IPPool gone does not exist")
}

func lbServiceWith(name, pool string, ips ...string) *corev1.Service {
	s := lbService(nil, pool, ips...)
	s.Name = name
	return s
}

// Two speakers claim one address (a claim in flight): the claimant the rank
// prefers keeps it and republishes its claims so the other hears it; the other
// stops answering. Both sides are run from node1's point of view, with a peer
// that rendezvous ranks below and one it ranks above node1.
func TestLoopContestedRepublishes(t *testing.T) {
	rankWinner := func(peer string) string {
		probe := election.New("x")
		probe.SetPool("lan", election.Pool{L2: everything})
		for _, n := range []string{"node1", peer} {
			probe.SetNode(n, election.Node{Ready: true})
			probe.SetMember(n, nil)
		}
		probe.SetService("ns/a", election.Service{Addresses: []election.Address{{IP: vip200, Pool: "lan"}}, EndpointNodes: []string{peer}})
		o, _ := probe.Owner(vip200)
		return o
	}
	var below, above string
	for i := 2; i < 50 && (below == "" || above == ""); i++ {
		peer := fmt.Sprintf("node%d", i)
		if rankWinner(peer) == "node1" {
			below = cmp.Or(below, peer)
		} else {
			above = cmp.Or(above, peer)
		}
	}
	for _, peer := range []string{below, above} {
		t.Run(peer, func(t *testing.T) {
			best := rankWinner(peer)
			h := newLoopHarness(t, []runtime.Object{
				node("node1", "192.0.2.11", nil), node(peer, "192.0.2.12", nil),
				lbServiceWith("a", "lan", "192.0.2.200"), endpointSlice("ns", "a", peer),
			}, l2Pool(t, "lan"))
			h.settle("node1", peer)
			if mine := slices.Equal(h.owned(), []netip.Addr{vip200}); mine != (best == "node1") {
				t.Fatalf("node1 owns=%v, rendezvous prefers %s", mine, best)
			}
			forced := h.pub.forced
			// Both claim it.
			h.s.syncMember(membership.Event{Type: membership.Update, Member: membership.Member{Name: "node1", Meta: membership.Meta{Claims: []netip.Addr{vip200}}}})
			h.s.syncMember(membership.Event{Type: membership.Update, Member: membership.Member{Name: peer, Meta: membership.Meta{Claims: []netip.Addr{vip200}}}})
			h.s.flush()
			if owner, _ := h.s.e.Owner(vip200); owner != best {
				t.Fatalf("two claimants: owner %s, want the rank winner %s", owner, best)
			}
			switch best {
			case "node1":
				if h.pub.forced == forced || !slices.Equal(h.owned(), []netip.Addr{vip200}) {
					t.Errorf("the contested owner did not keep the address and republish (forced %d -> %d)", forced, h.pub.forced)
				}
			default:
				if len(h.owned()) != 0 {
					t.Error("the rank loser still answers")
				}
			}
		})
	}
}
