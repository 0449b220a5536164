package election

import (
	"fmt"
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
)

// costWorld: 40 nodes, zone a (node-0..19) serves pool "a" (Cluster Services),
// zone b (node-20..39) serves pool "b" (Local Services, two endpoint nodes
// each). 400 addresses in each pool. Every speaker has published its claims.
func costWorld(tb testing.TB) *Election {
	tb.Helper()
	e := New("node-0")
	za, _ := labels.Parse("zone=a")
	zb, _ := labels.Parse("zone=b")
	e.SetPool("a", Pool{L2: za})
	e.SetPool("b", Pool{L2: zb})
	for i := range 40 {
		zone := "a"
		if i >= 20 {
			zone = "b"
		}
		n := fmt.Sprintf("node-%d", i)
		e.SetNode(n, ready("zone", zone))
		e.SetMember(n, nil)
	}
	for i := range 400 {
		ipA := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		ipB := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		e.SetService(fmt.Sprintf("a/%d", i), Service{Addresses: []Address{{IP: ipA, Pool: "a"}}, EndpointNodes: []string{"node-0"}})
		e.SetService(fmt.Sprintf("b/%d", i), Service{Addresses: []Address{{IP: ipB, Pool: "b"}}, Local: true,
			EndpointNodes: []string{fmt.Sprintf("node-%d", 20+i%20), fmt.Sprintf("node-%d", 20+(i+7)%20)}})
	}
	for i := range 40 {
		publish(e, fmt.Sprintf("node-%d", i))
	}
	return e
}

func (e *Election) resetWork() { e.touches, e.rescans = 0, 0 }

// TestEventCost pins what each kind of event re-evaluates: only the addresses
// whose candidate set or claimants include the changed node or Service, one
// hash each, and a full rescan only for addresses whose owner got worse.
func TestEventCost(t *testing.T) {
	e := costWorld(t)
	total := len(e.vips)

	t.Run("Local-zone node NotReady touches only its endpoint addresses", func(t *testing.T) {
		n := "node-25"
		wantTouch := len(e.local[n])
		wantRescan := len(e.owned[n])
		e.resetWork()
		ch := e.SetNode(n, Node{Ready: false, Labels: map[string]string{"zone": "b"}})
		if e.touches != wantTouch || e.rescans != wantRescan {
			t.Fatalf("touched %d rescanned %d, want %d and %d (of %d addresses)", e.touches, e.rescans, wantTouch, wantRescan, total)
		}
		if len(ch.Moves) != wantRescan {
			t.Fatalf("%d moves, want one per owned address (%d)", len(ch.Moves), wantRescan)
		}
		e.resetWork()
		e.SetNode(n, ready("zone", "b"))
		if e.touches != wantTouch || e.rescans != 0 {
			t.Fatalf("back Ready: touched %d rescanned %d, want %d and 0", e.touches, e.rescans, wantTouch)
		}
	})
	t.Run("Cluster-zone speaker death rescans only what it owned", func(t *testing.T) {
		n := "node-3"
		wantTouch := len(e.pools["a"].all)
		wantRescan := len(e.owned[n])
		e.resetWork()
		e.DeleteMember(n)
		if e.touches != wantTouch || e.rescans != wantRescan {
			t.Fatalf("touched %d rescanned %d, want %d and %d", e.touches, e.rescans, wantTouch, wantRescan)
		}
	})
	t.Run("claims update touches only the claims that changed", func(t *testing.T) {
		n := "node-4"
		claims := e.Claims(n)
		e.resetWork()
		e.SetMember(n, claims[:len(claims)-2])
		if e.touches != 2 {
			t.Fatalf("touched %d, want 2", e.touches)
		}
	})
	t.Run("Local endpoint added touches one node of one address", func(t *testing.T) {
		e.resetWork()
		e.SetService("b/1", Service{Addresses: []Address{{IP: netip.MustParseAddr("198.19.0.1"), Pool: "b"}}, Local: true,
			EndpointNodes: []string{"node-21", "node-28", "node-30"}})
		if e.touches != 1 || e.rescans != 0 {
			t.Fatalf("touched %d rescanned %d, want 1 and 0", e.touches, e.rescans)
		}
	})
	t.Run("label change that keeps pool membership touches nothing", func(t *testing.T) {
		e.resetWork()
		e.SetNode("node-22", ready("zone", "b", "rack", "r9"))
		if e.touches != 0 || e.rescans != 0 {
			t.Fatalf("touched %d rescanned %d, want 0", e.touches, e.rescans)
		}
	})
}

// BenchmarkNodeEvent measures one event in costWorld (40 nodes, 800
// addresses): a zone-b node flipping Ready touches its ~40 Local addresses; a
// zone-a speaker dying or coming back touches the 400 Cluster addresses of its
// pool and rescans the ~20 it owned; a claims update of two addresses touches
// two.
func BenchmarkNodeEvent(b *testing.B) {
	b.Run("local-zone-ready-flip", func(b *testing.B) {
		e := costWorld(b)
		b.ResetTimer()
		for i := range b.N {
			e.SetNode("node-25", Node{Ready: i%2 == 1, Labels: map[string]string{"zone": "b"}})
		}
	})
	b.Run("cluster-zone-member-flap", func(b *testing.B) {
		e := costWorld(b)
		b.ResetTimer()
		for i := range b.N {
			if i%2 == 0 {
				e.DeleteMember("node-3")
			} else {
				e.SetMember("node-3", nil)
			}
		}
	})
	b.Run("claims-update-2", func(b *testing.B) {
		e := costWorld(b)
		claims := e.Claims("node-4")
		b.ResetTimer()
		for i := range b.N {
			e.SetMember("node-4", claims[:len(claims)-2*(i%2)])
		}
	})
}
