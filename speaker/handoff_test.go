package speaker

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ironlb/ironlb/speaker/election"
	"github.com/ironlb/ironlb/speaker/membership"
)

// fakeForwarder records the loop's handover calls, and how many times the
// announcer had been given an owned set when each was made.
type fakeForwarder struct {
	l2       *fakeAnnouncer
	forwards []forwardCall
	stopped  []netip.Addr
}

type forwardCall struct {
	vip, via    netip.Addr
	setOwnedBef int
}

func (f *fakeForwarder) Forward(_ context.Context, vias map[netip.Addr]netip.Addr) error {
	f.l2.mu.Lock()
	n := f.l2.calls
	f.l2.mu.Unlock()
	for vip, via := range vias {
		f.forwards = append(f.forwards, forwardCall{vip, via, n})
	}
	return nil
}

func (f *fakeForwarder) Stop(_ context.Context, vip netip.Addr) error {
	f.stopped = append(f.stopped, vip)
	return nil
}

func TestHandoffs(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.200"), netip.MustParseAddr("2001:db8::200")
	v4b := netip.MustParseAddr("192.0.2.201")
	addrs := map[string][]netip.Addr{
		"node2": {netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("2001:db8::12")},
		"node3": {netip.MustParseAddr("192.0.2.13")}, // no IPv6 address
	}
	addrOf := func(n string, like netip.Addr) (netip.Addr, bool) {
		for _, a := range addrs[n] {
			if a.Is4() == like.Is4() {
				return a, true
			}
		}
		return netip.Addr{}, false
	}
	for _, tc := range []struct {
		name   string
		moves  []election.Move
		leaver string
		want   map[netip.Addr]netip.Addr
	}{
		{"taken over from the leaver: to its address of the family",
			[]election.Move{{IP: v4, From: "node2", To: "node1"}, {IP: v6, From: "node2", To: "node1"}}, "node2",
			map[netip.Addr]netip.Addr{v4: netip.MustParseAddr("192.0.2.12"), v6: netip.MustParseAddr("2001:db8::12")}},
		{"moved to another node: not this node's to forward",
			[]election.Move{{IP: v4, From: "node2", To: "node3"}, {IP: v4b, From: "node2", To: "node1"}}, "node2",
			map[netip.Addr]netip.Addr{v4b: netip.MustParseAddr("192.0.2.12")}},
		{"not announced before (new address): nothing to forward",
			[]election.Move{{IP: v4, From: "", To: "node1"}}, "node2", map[netip.Addr]netip.Addr{}},
		{"released by this node: nothing to forward",
			[]election.Move{{IP: v4, From: "node1", To: "node3"}}, "node2", map[netip.Addr]netip.Addr{}},
		{"the leaver has no address of the family: left out",
			[]election.Move{{IP: v6, From: "node3", To: "node1"}, {IP: v4, From: "node3", To: "node1"}}, "node3",
			map[netip.Addr]netip.Addr{v4: netip.MustParseAddr("192.0.2.13")}},
		{"a Node that no longer exists: left out",
			[]election.Move{{IP: v4, From: "node9", To: "node1"}}, "node9", map[netip.Addr]netip.Addr{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := handoffs(tc.moves, "node1", tc.leaver, addrOf); !maps.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// A planned leave of the owner: this node forwards the address to the old
// owner's node address before it announces it, and stops forwarding when it
// releases it. A death (not a planned leave) forwards nothing.
func TestLoopHandoverForwarding(t *testing.T) {
	for _, left := range []bool{true, false} {
		t.Run(map[bool]string{true: "planned leave", false: "death"}[left], func(t *testing.T) {
			svc := lbService(nil, "lan", "192.0.2.200")
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			h := newLoopHarness(t, []runtime.Object{
				node("node1", "192.0.2.11", nil), node("node2", "192.0.2.12", nil), node("node3", "192.0.2.13", nil),
				svc, endpointSlice("ns", "svc", "node2", "node1"),
			}, l2Pool(t, "lan", "eth1"))
			fw := &fakeForwarder{l2: h.l2}
			h.s.forwarder = fw
			h.settle("node1", "node3")
			// node2 owns the address: it joins claiming it.
			h.s.syncMember(membership.Event{Type: membership.Join, Member: membership.Member{Name: "node2", Meta: membership.Meta{Claims: []netip.Addr{vip200}}}})
			h.drain()
			if o, _ := h.s.e.Owner(vip200); o != "node2" || len(h.owned()) != 0 {
				t.Fatalf("owner %q, node1 announces %v: want node2 and nothing", o, h.owned())
			}
			calls := h.l2.calls
			fw.stopped = nil // node1 released it when node2 claimed it: Stop is called on every release
			h.s.syncMember(membership.Event{Type: membership.Leave, Member: membership.Member{Name: "node2"}, Left: left})
			h.drain()
			if !slices.Equal(h.owned(), []netip.Addr{vip200}) {
				t.Fatalf("node1 announces %v after node2 left: want %s", h.owned(), vip200)
			}
			if !left {
				if len(fw.forwards) != 0 {
					t.Fatalf("forwarded after a death: %+v", fw.forwards)
				}
				return
			}
			want := []forwardCall{{vip200, netip.MustParseAddr("192.0.2.12"), calls}}
			if !slices.Equal(fw.forwards, want) {
				t.Fatalf("forwards %+v, want %+v (before the announcer got the address)", fw.forwards, want)
			}
			// The endpoint leaves node1: released, and forwarding ends.
			h.s.syncService("ns/svc") // unchanged: no new forward
			if _, err := h.client.DiscoveryV1().EndpointSlices("ns").Update(context.Background(), endpointSlice("ns", "svc", "node3"), metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			h.waitFor("release after the endpoint moved", func() bool { return len(h.owned()) == 0 })
			if !slices.Equal(fw.stopped, []netip.Addr{vip200}) || len(fw.forwards) != 1 {
				t.Fatalf("stopped %v, forwards %+v: want %s stopped once, no new forward", fw.stopped, fw.forwards, vip200)
			}
		})
	}
}
