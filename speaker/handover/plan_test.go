package handover

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	t0    = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	vipA  = netip.MustParseAddr("192.0.2.200")
	vipB  = netip.MustParseAddr("192.0.2.201")
	vip6  = netip.MustParseAddr("2001:db8::200")
	node2 = netip.MustParseAddr("192.0.2.12")
	node3 = netip.MustParseAddr("192.0.2.13")
	node6 = netip.MustParseAddr("2001:db8::12")
)

// Which address goes to which node, and until when, as takeovers, releases
// and time pass.
func TestPlan(t *testing.T) {
	var p Plan
	if _, ok := p.Next(); ok || p.Len() != 0 {
		t.Fatal("an empty plan has a forward")
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.Add(vipA, node2, t0, time.Minute))
	must(p.Add(vip6, node6, t0.Add(10*time.Second), time.Minute))
	must(p.Add(vipB, node2, t0.Add(20*time.Second), time.Minute))
	if got, want := p.Forwards(true), []Forward{{vipA, node2, t0.Add(time.Minute)}, {vipB, node2, t0.Add(80 * time.Second)}}; !slices.Equal(got, want) {
		t.Fatalf("IPv4 forwards %v, want %v", got, want)
	}
	if got, want := p.Forwards(false), []Forward{{vip6, node6, t0.Add(70 * time.Second)}}; !slices.Equal(got, want) {
		t.Fatalf("IPv6 forwards %v, want %v", got, want)
	}
	if next, _ := p.Next(); !next.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next end %v, want the first window's", next)
	}
	// Nothing ends before its window.
	if gone := p.Expire(t0.Add(59 * time.Second)); len(gone) != 0 {
		t.Fatalf("expired early: %v", gone)
	}
	// The address moves on (node2 took it from node3, which left, and this
	// node took it from node2 again): it goes to the latest previous owner,
	// for a new window.
	must(p.Add(vipA, node3, t0.Add(30*time.Second), time.Minute))
	if got := p.Forwards(true)[0]; got.Via != node3 || !got.Until.Equal(t0.Add(90*time.Second)) {
		t.Fatalf("re-forwarded: %v", got)
	}
	if gone := p.Expire(t0.Add(70 * time.Second)); !slices.Equal(gone, []netip.Addr{vip6}) {
		t.Fatalf("expired at 70s: %v, want %s", gone, vip6)
	}
	// Released: no longer forwarded, whatever its window.
	if !p.Remove(vipB) || p.Remove(vipB) {
		t.Fatal("Remove of a forwarded address, then of a gone one")
	}
	if next, _ := p.Next(); !next.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("next end %v", next)
	}
	if gone := p.Expire(t0.Add(90 * time.Second)); !slices.Equal(gone, []netip.Addr{vipA}) || p.Len() != 0 {
		t.Fatalf("expired at 90s: %v, left %d", gone, p.Len())
	}
}

func TestPlanRefuses(t *testing.T) {
	for _, tc := range []struct {
		name     string
		vip, via netip.Addr
		window   time.Duration
	}{
		{"families differ", vipA, node6, time.Minute},
		{"to itself", vipA, vipA, time.Minute},
		{"no previous owner", vipA, netip.Addr{}, time.Minute},
		{"no window", vipA, node2, 0},
	} {
		var p Plan
		if err := p.Add(tc.vip, tc.via, t0, tc.window); err == nil || p.Len() != 0 {
			t.Errorf("%s: accepted (%d forwards)", tc.name, p.Len())
		}
	}
}
