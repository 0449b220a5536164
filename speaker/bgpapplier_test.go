package speaker

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/bgp"
)

// The BGPSession of each session lists the prefixes the plan advertises on
// it, in address order, an aggregate once, and only on the sessions that
// carry it; a session the plan does not know is not written.
func TestSessionStatusesListPrefixes(t *testing.T) {
	a4, b4, a6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")
	pfx := netip.MustParsePrefix
	plan := &bgpPlan{
		peerNames: map[netip.Addr]string{a4: "tor-a", b4: "tor-b", a6: "tor-v6"},
		paths: map[netip.Addr]pathPlan{
			netip.MustParseAddr("203.0.113.20"): {prefix: pfx("203.0.113.20/32"), peers: []netip.Addr{a4, b4}},
			netip.MustParseAddr("203.0.113.3"):  {prefix: pfx("203.0.113.3/32"), peers: []netip.Addr{a4, b4}},
			// Two addresses aggregated into one /24, only towards tor-a.
			netip.MustParseAddr("198.51.100.7"):  {prefix: pfx("198.51.100.0/24"), peers: []netip.Addr{a4}},
			netip.MustParseAddr("198.51.100.9"):  {prefix: pfx("198.51.100.0/24"), peers: []netip.Addr{a4}},
			netip.MustParseAddr("2001:db8:1::5"): {prefix: pfx("2001:db8:1::5/128"), peers: []netip.Addr{a6}},
		},
	}
	since := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	sts := []bgp.PeerStatus{
		{Address: a4, State: bgp.StateEstablished, Since: since, PrefixesAdvertised: 3},
		{Address: b4, State: bgp.StateActive, Since: since},
		{Address: a6, State: bgp.StateEstablished, Since: since, PrefixesAdvertised: 1},
		{Address: netip.MustParseAddr("192.0.2.99"), State: bgp.StateEstablished}, // not in the plan (being removed)
	}
	got := sessionStatuses("node1", sts, plan)
	want := map[string][]string{
		"node1.tor-a":  {"198.51.100.0/24", "203.0.113.3/32", "203.0.113.20/32"},
		"node1.tor-b":  {"203.0.113.3/32", "203.0.113.20/32"},
		"node1.tor-v6": {"2001:db8:1::5/128"},
	}
	if len(got) != len(want) {
		t.Fatalf("sessions %v, want %v", keysOf(got), want)
	}
	for name, prefixes := range want {
		st := got[name]
		if st == nil {
			t.Fatalf("no status for %s", name)
		}
		if !slices.Equal(st.Prefixes, prefixes) || st.PrefixesTruncated {
			t.Errorf("%s: prefixes %v (truncated %v), want %v", name, st.Prefixes, st.PrefixesTruncated, prefixes)
		}
	}
	if st := got["node1.tor-a"]; st.State != "Established" || st.PrefixesAdvertised != 3 || st.Peer != "tor-a" || st.PeerAddress != "192.0.2.1" || st.Node != "node1" {
		t.Errorf("tor-a status %+v", st)
	}
	if st := got["node1.tor-b"]; st.State != "Active" || st.PrefixesAdvertised != 0 {
		t.Errorf("tor-b status %+v", st)
	}
}

// Beyond MaxSessionPrefixes the list stops (the object must stay within the
// CRD's bound) and says so.
func TestSessionStatusesTruncated(t *testing.T) {
	peer := netip.MustParseAddr("192.0.2.1")
	plan := &bgpPlan{peerNames: map[netip.Addr]string{peer: "tor"}, paths: map[netip.Addr]pathPlan{}}
	n := v1alpha1.MaxSessionPrefixes + 5
	for k := range n {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(k >> 8), byte(k)})
		plan.paths[ip] = pathPlan{prefix: netip.PrefixFrom(ip, 32), peers: []netip.Addr{peer}}
	}
	st := sessionStatuses("node1", []bgp.PeerStatus{{Address: peer, State: bgp.StateEstablished, PrefixesAdvertised: n}}, plan)["node1.tor"]
	if len(st.Prefixes) != v1alpha1.MaxSessionPrefixes || !st.PrefixesTruncated || int(st.PrefixesAdvertised) != n {
		t.Fatalf("%d prefixes listed (truncated %v, count %d), want the first %d of %d", len(st.Prefixes), st.PrefixesTruncated, st.PrefixesAdvertised, v1alpha1.MaxSessionPrefixes, n)
	}
	if st.Prefixes[0] != "198.18.0.0/32" || st.Prefixes[len(st.Prefixes)-1] != fmt.Sprintf("198.18.%d.%d/32", (n-6)>>8, (n-6)&255) {
		t.Errorf("listed %s .. %s, want the lowest addresses", st.Prefixes[0], st.Prefixes[len(st.Prefixes)-1])
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
