package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/test/lab"
)

// A planned restart of the owner's speaker (SIGTERM) keeps the connections
// clients opened through it: the new owner forwards the packets of
// connections it does not know to the old node, whose kernel still carries
// them (package speaker/handover). One keep-alive connection from lanclient
// sends a request every 50 ms across the handover; curl reports for each
// request whether it had to open a new connection. With kube-proxy
// (--proxy=none) and with ironlb's proxy.
func TestSpeakerL2PlannedRestartKeepsConnections(t *testing.T) {
	for _, tc := range []struct {
		name string
		path dataPath
	}{{"kube-proxy", dataPathKubeProxy}, {"ironlb-proxy", dataPathIronlb}} {
		t.Run(tc.name, func(t *testing.T) {
			speakers := speakersWith(t, tc.path)
			mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: spk-ho}, spec: {addresses: ["192.0.2.216-192.0.2.217"], advertise: {l2: {}}}}`)
			ns := namespace(t, "spk-ho")
			createService(t, ns, "ho", 8000)
			backends, err := env.StartBackendsOn(t.Context(), ns, "ho", "ho", 3, 80)
			if err != nil {
				t.Fatal(err)
			}
			vip, _ := waitIngress(t, ns, "ho", 5*time.Second)
			owner := waitL2Owner(t, vip, 10*time.Second).Node
			old := speakers[nodeIndex(t, owner)]

			// 100 requests at 20/s over one connection (curl reuses it), each
			// printing how many connections it opened and its status.
			const requests = 100
			url := urlFor(vip, 8000)
			args := []string{"curl", "-s", "--max-time", "20", "--rate", "20/s", "-w", `%{num_connects} %{http_code}\n`}
			for range requests {
				args = append(args, "-o", "/dev/null", url)
			}
			curlBackends(t, lab.HostLANClient, url, backendNames(backends), 60)
			logPath := filepath.Join(t.TempDir(), "curl.log")
			p, err := env.Lab.Start(lab.HostLANClient, logPath, args...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Stop() })
			eventually(t, "curl has 10 answers", 10*time.Second, func() bool {
				return strings.Count(p.Tail(4096), " 200\n") >= 10
			})
			done := make(chan error, 1)
			go func() { done <- old.Terminate() }()
			next := waitL2Owner(t, vip, 5*time.Second, slicesWithout(nodeNames(), owner)...).Node
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.Done():
			case <-time.After(30 * time.Second):
				t.Fatal("curl did not end within 30s")
			}
			data, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			connects, ok := 0, 0
			for _, l := range lines {
				var n int
				var code string
				if _, err := fmt.Sscan(l, &n, &code); err == nil {
					connects += n
					if code == "200" {
						ok++
					}
				}
			}
			restartSpeaker(t, nodeIndex(t, owner))
			t.Logf("%s stopped (SIGTERM), %s took %s over: %d of %d requests answered, %d connection(s) opened", owner, next, vip, ok, requests, connects)
			if ok != requests || connects != 1 {
				t.Fatalf("%d of %d requests answered over %d connections: want all over the one connection opened before the handover\n%s", ok, requests, connects, strings.Join(lines, "\n"))
			}
			if v := speakerMetric(t, speakers[nodeIndex(t, next)], `ironlb_l2_handover_started_total`); v < 1 {
				t.Fatalf("the new owner %s started %v handover forwards", next, v)
			}
			// The window (60 s) is still open a few seconds after the takeover.
			if v := speakerMetric(t, speakers[nodeIndex(t, next)], `ironlb_l2_handover_forwards`); v < 1 {
				t.Fatalf("the new owner %s has %v handover forwards in place, want the one for %s", next, v, vip)
			}
		})
	}
}
