package allocator

import (
	"testing"
)

// PreferDualStack is best effort: one family free is success.
func TestPreferDualStackBestEffort(t *testing.T) {
	dual := mkPool("dual", []string{"10.0.0.0/31", "2001:db8::/127"})
	a := newAlloc(t, dual)
	// Exhaust IPv6.
	mustAlloc(t, a, mkSvc("x/v6a", fams(single, "IPv6")))
	mustAlloc(t, a, mkSvc("x/v6b", fams(single, "IPv6")))

	svc := mkSvc("ns/web", fams(prefer, "IPv4", "IPv6"))
	if got := mustAlloc(t, a, svc); got != "10.0.0.0" {
		t.Fatalf("PreferDualStack with IPv6 exhausted: got %q, want the IPv4 address alone", got)
	}
	// RequireDualStack is not best effort.
	if _, err := a.Allocate(mkSvc("ns/strict", fams(require, "IPv4", "IPv6"))); reason(err) != ReasonPoolExhausted {
		t.Fatalf("RequireDualStack with IPv6 exhausted: err %v, want %s", err, ReasonPoolExhausted)
	}
	// When an IPv6 address frees up, the next sync tops the Service up without
	// moving its IPv4 address.
	a.Release("x/v6a", "")
	if got := mustAlloc(t, a, svc); got != "10.0.0.0,2001:db8::" {
		t.Fatalf("after IPv6 freed: got %q, want 10.0.0.0,2001:db8::", got)
	}
}

// With a pool that can give both families later in the order, PreferDualStack
// takes both from it rather than one from an earlier pool.
func TestPreferDualStackPrefersCompletePool(t *testing.T) {
	first := mkPool("a-v4only", []string{"10.0.0.0/31"}, prio(1))
	second := mkPool("b-dual", []string{"10.1.0.0/31", "2001:db8::/127"}, prio(2))
	a := newAlloc(t, first, second)
	if got := mustAlloc(t, a, mkSvc("ns/web", fams(prefer, "IPv4", "IPv6"))); got != "10.1.0.0,2001:db8::" {
		t.Fatalf("got %q, want both families from b-dual", got)
	}
	// A single-family Service still follows priority.
	if got := mustAlloc(t, a, mkSvc("ns/v4", fams(single, "IPv4"))); got != "10.0.0.0" {
		t.Fatalf("got %q, want 10.0.0.0 from a-v4only", got)
	}
}

// A Service whose held address no longer fits its families (for example one
// published by an older controller) is re-planned to a family it has.
func TestHeldAddressOfWrongFamilyIsReplaced(t *testing.T) {
	dual := mkPool("dual", []string{"10.0.0.0/31", "2001:db8::/127"})
	a := newAlloc(t, dual)
	svc := mkSvc("ns/web", fams(single, "IPv4"))
	if err := a.Restore(svc, addrs("2001:db8::1")); err != nil {
		t.Fatal(err)
	}
	if got := mustAlloc(t, a, svc); got != "10.0.0.0" {
		t.Fatalf("got %q, want an IPv4 address instead of the restored IPv6 one", got)
	}
}

// A Service holding an address from pool A that starts requesting pool B it may
// not use is refused as a new Service would be, and keeps its address.
func TestRequestedPoolScopingOnChange(t *testing.T) {
	poolA := mkPool("a", []string{"10.0.0.0/24"})
	// b overlaps a and covers the held address, but only for namespace "team".
	poolB := mkPool("b", []string{"10.0.0.0/24"}, inNamespaces("team"))
	a := newAlloc(t, poolA, poolB)
	svc := mkSvc("ns/web")
	if got := mustAlloc(t, a, svc); got != "10.0.0.0" {
		t.Fatalf("first allocation %q", got)
	}
	moved := mkSvc("ns/web", inPool("b"))
	al, err := a.Allocate(moved)
	if reason(err) != ReasonPoolNotAllowed {
		t.Fatalf("request for pool b from namespace ns: err %v, want %s", err, ReasonPoolNotAllowed)
	}
	if fmtAddrs(al.IPs) != "10.0.0.0" || al.Pool != "a" {
		t.Fatalf("after refusal the Service holds %v from %q, want 10.0.0.0 from a", al.IPs, al.Pool)
	}
	// A fresh Service with the same request gets the same answer.
	if _, err := a.Allocate(mkSvc("ns/fresh", inPool("b"))); reason(err) != ReasonPoolNotAllowed {
		t.Fatalf("fresh Service: %v", err)
	}
	// Allowed: the same move from namespace team keeps the address and is
	// attributed to b.
	tsvc := mkSvc("team/web")
	got := mustAlloc(t, a, tsvc)
	al, err = a.Allocate(mkSvc("team/web", inPool("b")))
	if err != nil || fmtAddrs(al.IPs) != got || al.Pool != "b" {
		t.Fatalf("allowed move: %v %v from %q, want %s from b", err, al.IPs, al.Pool, got)
	}
	checkInvariants(t, a)
}
