package allocator

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func withUID(uid string) svcOpt {
	return func(s *v1.Service) { s.UID = types.UID(uid) }
}

// A deleted Service re-created with the same name: the old incarnation's late
// release must not free the new incarnation's address.
func TestLateReleaseOfOldIncarnation(t *testing.T) {
	a := newAlloc(t, mkPool("p", []string{"10.0.0.0/30"}))
	old := mkSvc("ns/web", withUID("uid-1"))
	if got := mustAlloc(t, a, old); got != "10.0.0.0" {
		t.Fatal(got)
	}
	// The new incarnation is seen before the old one's deletion.
	renewed := mkSvc("ns/web", withUID("uid-2"))
	got := mustAlloc(t, a, renewed)
	if al, _ := a.Lookup("ns/web"); al.UID != "uid-2" {
		t.Fatalf("held by %q, want uid-2", al.UID)
	}
	if a.Release("ns/web", "uid-1") {
		t.Fatal("releasing the old UID freed the new Service's address")
	}
	if al, ok := a.Lookup("ns/web"); !ok || fmtAddrs(al.IPs) != got {
		t.Fatalf("new incarnation lost its address: %v %v", al, ok)
	}
	// The next Service must get another address.
	if other := mustAlloc(t, a, mkSvc("ns/other", withUID("uid-3"))); other == got {
		t.Fatalf("two Services hold %s", got)
	}
	if !a.Release("ns/web", "uid-2") {
		t.Fatal("releasing the current UID failed")
	}
	checkInvariants(t, a)
}

// Restore records the UID too.
func TestRestoreKeepsUID(t *testing.T) {
	a := newAlloc(t, mkPool("p", []string{"10.0.0.0/30"}))
	svc := mkSvc("ns/web", withUID("uid-1"))
	if err := a.Restore(svc, addrs("10.0.0.2")); err != nil {
		t.Fatal(err)
	}
	if a.Release("ns/web", "uid-0") {
		t.Fatal("released by a stale UID")
	}
	if al, _ := a.Lookup("ns/web"); al.UID != "uid-1" {
		t.Fatalf("UID %q", al.UID)
	}
}
