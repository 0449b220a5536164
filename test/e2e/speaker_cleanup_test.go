package e2e

import (
	"strings"
	"testing"
	"time"
)

// A crashed speaker leaves its iptables rules and its status objects behind;
// `ironlb-speaker --cleanup` on that node removes all of it (both families,
// every table) and nothing of the other nodes.
func TestSpeakerCleanupRemovesWhatACrashLeft(t *testing.T) {
	speakers := speakersWith(t, dataPathIronlb)
	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: spk-clean}, spec: {addresses: ["192.0.2.248-192.0.2.250", "2001:db8::270-2001:db8::27f"], advertise: {l2: {}}}}`)
	ns := namespace(t, "spk-clean")
	createService(t, ns, "web", 8000, withDualStack)
	t.Cleanup(func() { deleteService(t, ns, "web") })
	if _, err := env.StartDualStackBackends(t.Context(), ns, "web", "spk-clean", 2, 80); err != nil {
		t.Fatal(err)
	}
	vip, _ := waitIngress(t, ns, "web", 20*time.Second)
	owner := waitL2Owner(t, vip, 10*time.Second).Node

	// Every speaker crashes: nobody is left to tidy up after them.
	for _, sp := range speakers {
		sp.Kill()
	}
	saved := func(node string) string {
		t.Helper()
		var all strings.Builder
		for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
			out, err := env.Lab.Exec(t.Context(), node, cmd)
			if err != nil {
				t.Fatal(err)
			}
			all.WriteString(out)
		}
		return all.String()
	}
	objects := func() map[string]int {
		t.Helper()
		anns, err := env.Announcements(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		byNode := map[string]int{}
		for _, a := range anns {
			byNode[a.Node]++
		}
		return byNode
	}
	before := objects()
	if before[owner] == 0 || !strings.Contains(saved(owner), "IRONLB-") {
		t.Fatalf("before --cleanup: %s has %d ServiceAnnouncements and IRONLB rules %v; the test proves nothing", owner, before[owner], strings.Contains(saved(owner), "IRONLB-"))
	}
	if err := env.CleanupSpeaker(t.Context(), nodeIndex(t, owner)); err != nil {
		t.Fatal(err)
	}
	if rules := saved(owner); strings.Contains(rules, "IRONLB") {
		t.Errorf("after --cleanup on %s, IRONLB rules remain:\n%s", owner, rules)
	}
	after := objects()
	if after[owner] != 0 {
		t.Errorf("after --cleanup on %s, %d of its ServiceAnnouncements remain", owner, after[owner])
	}
	for i := 1; i <= env.Lab.Nodes(); i++ {
		node := env.Lab.NodeName(i)
		if node == owner {
			continue
		}
		if after[node] != before[node] {
			t.Errorf("--cleanup on %s changed %s's ServiceAnnouncements: %d -> %d", owner, node, before[node], after[node])
		}
		if !strings.Contains(saved(node), "IRONLB-") {
			t.Errorf("--cleanup on %s removed %s's rules", owner, node)
		}
	}
	// The next test finds speakers running again (speakersWith restarts the
	// crashed ones); they rebuild the rules the cleanup removed.
	speakersWith(t, dataPathIronlb)
}
