package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"

	"github.com/ironlb/ironlb/test/lab"
)

// Withdrawal on endpoint loss, on a pool change and on a planned stop. With
// externalTrafficPolicy Cluster, a Service left without a ready endpoint is
// withdrawn by every node and comes back with its endpoints. A pool whose
// advertise.bgp.nodeSelector stops selecting node3 withdraws node3's next
// hop at the router, and selecting it again brings it back. A speaker stopped
// with SIGTERM withdraws its next hop while its process still runs (the
// router's route loses the node before the process exits), and a restarted
// speaker advertises again.
func TestBGPWithdraw(t *testing.T) {
	sps := speakersUp(t)
	startRouterFRR(t, lab.RouterBGP{})
	mustCreatePeer(t, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: withdraw}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600}}`)
	ns, vips, backends := bgpService(t, "bgp-withdraw", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bgp-withdraw}, spec: {addresses: ["203.0.113.60-203.0.113.69"], advertise: {bgp: {}}}}`, 8000)
	vip := hostPrefix(vips[0]).String()
	all := nodeHops(false, allNodes()...)
	waitRoute(t, vip, 30*time.Second, all...)

	if err := env.PublishEndpoints(t.Context(), ns, "web", 80, nil, false); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, vip, 10*time.Second)
	if err := env.PublishEndpoints(t.Context(), ns, "web", 80, backends, false); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, vip, 10*time.Second, all...)

	setSelector := func(sel map[string]any) {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			u, err := env.Cluster.Dynamic.Resource(ippools).Get(t.Context(), "bgp-withdraw", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if sel == nil {
				unstructured.RemoveNestedField(u.Object, "spec", "advertise", "bgp", "nodeSelector")
			} else if err := unstructured.SetNestedMap(u.Object, sel, "spec", "advertise", "bgp", "nodeSelector"); err != nil {
				return err
			}
			_, err = env.Cluster.Dynamic.Resource(ippools).Update(t.Context(), u, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setSelector(map[string]any{"matchExpressions": []any{map[string]any{
		"key": "kubernetes.io/hostname", "operator": "NotIn", "values": []any{"node3"}}}})
	waitRoute(t, vip, 10*time.Second, nodeHops(false, 1, 2)...)
	setSelector(nil)
	waitRoute(t, vip, 10*time.Second, all...)

	// SIGTERM: watch the router's route while the speaker stops.
	sp := sps[2]
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	type sighting struct {
		after   time.Duration // since the SIGTERM
		running bool          // the speaker's process still ran when the poll returned
	}
	seen := make(chan sighting, 1)
	start := time.Now()
	go func() {
		defer close(seen)
		for ctx.Err() == nil {
			// The router's kernel route, read directly: quicker under load
			// than asking zebra through vtysh, so a late answer does not
			// date the withdrawal after the exit.
			hops, err := env.KernelNextHops(ctx, lab.HostRouter, hostPrefix(vips[0]))
			if err == nil && slices.Equal(hops, nodeHops(false, 1, 3)) {
				seen <- sighting{after: time.Since(start), running: running(sp.Pid())}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if err := sp.Terminate(); err != nil {
		t.Fatal(err)
	}
	exited := time.Since(start)
	s, ok := <-seen
	if !ok {
		t.Fatalf("the router kept node2's next hop for %s for 15s after node2's speaker got SIGTERM", vip)
	}
	if !s.running {
		t.Fatalf("node2's next hop left the router %v after SIGTERM, but only after its speaker had exited (%v): not withdrawn before exit", s.after, exited)
	}
	t.Logf("SIGTERM to node2's speaker: its next hop gone at the router after %v, process exited after %v", s.after.Round(time.Millisecond), exited.Round(time.Millisecond))
	if !strings.Contains(routerNeighbor(t, env.Lab.NodeIP(2)), "Administrative Shutdown") {
		t.Errorf("router: node2's session did not end with a Cease/Administrative Shutdown: %s", routerNeighbor(t, env.Lab.NodeIP(2)))
	}
	restartSpeaker(t, 2)
	waitRoute(t, vip, 60*time.Second, all...)
}

// running reports whether process pid exists and has not exited (a zombie
// has exited).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}
