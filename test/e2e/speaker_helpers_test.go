package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ironlb/ironlb/test/framework"
	"github.com/ironlb/ironlb/test/lab"
)

// The speaker suites share one speaker per node and, in dataPathKubeProxy
// mode, one real kube-proxy per node (--proxy=none on the speakers); in
// dataPathIronlb mode the speakers run ironlb's iptables proxy
// (--proxy=iptables) and no kube-proxy runs. A test that stops a speaker leaves
// it to speakersUp to start it again.
type dataPath int

const (
	dataPathKubeProxy dataPath = iota + 1
	dataPathIronlb
)

var (
	spkMu   sync.Mutex
	spk     = map[int]*framework.Speaker{}
	kps     = map[int]*lab.Process{}
	spkPath dataPath
)

// speakersUp makes sure every node runs a ready speaker beside a real
// kube-proxy, and returns the speakers by node index (1-based).
func speakersUp(t *testing.T) map[int]*framework.Speaker {
	t.Helper()
	return speakersWith(t, dataPathKubeProxy)
}

// speakersWith makes sure every node runs a ready speaker with the given data
// path, switching (stopping everything, cleaning the other's rules) if needed.
func speakersWith(t *testing.T, path dataPath) map[int]*framework.Speaker {
	t.Helper()
	ctx := t.Context()
	spkMu.Lock()
	defer spkMu.Unlock()
	nodes := env.Lab.Nodes()
	if spkPath != path {
		for i, sp := range spk {
			_ = sp.Terminate()
			delete(spk, i)
		}
		for i, p := range kps {
			_ = p.Stop()
			delete(kps, i)
		}
		for i := 1; i <= nodes; i++ {
			var err error
			switch path {
			case dataPathIronlb:
				err = env.CleanupKubeProxy(ctx, i)
			default:
				err = env.CleanupSpeaker(ctx, i)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if path == dataPathKubeProxy {
			for i := 1; i <= nodes; i++ {
				p, err := env.StartKubeProxy(ctx, i)
				if err != nil {
					t.Fatalf("kube-proxy: %v", err)
				}
				kps[i] = p
			}
		}
		spkPath = path
	}
	var extra []string
	if path == dataPathIronlb {
		extra = env.IronlbProxyArgs()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	for i := 1; i <= nodes; i++ {
		if sp := spk[i]; sp != nil {
			select {
			case <-sp.Done():
			default:
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sp, err := env.StartSpeaker(ctx, i, extra...)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err.Error())
				return
			}
			spk[i] = sp
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("starting speakers: %s", strings.Join(errs, "; "))
	}
	ensureController(t)
	out := map[int]*framework.Speaker{}
	for i, sp := range spk {
		out[i] = sp
	}
	return out
}

// ensureController restarts ironlb-controller if it exited. It exits by
// design when it loses its lease, and the lab's lease (renew deadline 3s) can
// be lost when the shared machine stalls the API server longer than that
// (load averages of 20 and more on 2 cores were seen while other builds ran).
func ensureController(t *testing.T) {
	t.Helper()
	select {
	case <-ctrl.Done():
	default:
		return
	}
	t.Logf("ironlb-controller had exited (%v); starting it again: %s", ctrl.Err(), ctrl.Tail(300))
	c, err := env.StartController(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctrl = c
}

// restartSpeaker starts the speaker of node i again after a test stopped it.
func restartSpeaker(t *testing.T, i int) *framework.Speaker {
	t.Helper()
	var extra []string
	if spkPath == dataPathIronlb {
		extra = env.IronlbProxyArgs()
	}
	sp, err := env.StartSpeaker(t.Context(), i, extra...)
	if err != nil {
		t.Fatal(err)
	}
	spkMu.Lock()
	spk[i] = sp
	spkMu.Unlock()
	return sp
}

// nodeIndex returns i for "node<i>".
func nodeIndex(t *testing.T, name string) int {
	t.Helper()
	for i := 1; i <= env.Lab.Nodes(); i++ {
		if env.Lab.NodeName(i) == name {
			return i
		}
	}
	t.Fatalf("no lab node %q", name)
	return 0
}

func nodeMAC(t *testing.T, node string) string {
	t.Helper()
	mac, err := env.Lab.MAC(node, lab.LANIf)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// waitL2Owner waits until exactly one node announces ip by L2 (its
// ServiceAnnouncement) and, when want is not empty, that it is one of want;
// it returns the node.
func waitL2Owner(t *testing.T, ip string, within time.Duration, want ...string) framework.Announcement {
	t.Helper()
	var got framework.Announcement
	var last []framework.Announcement
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		anns, err := env.Announcements(ctx, ip)
		if err != nil {
			return false, nil
		}
		last = slices.DeleteFunc(anns, func(a framework.Announcement) bool { return a.Mode != "L2" })
		if len(last) != 1 || len(last[0].Interfaces) == 0 {
			return false, nil
		}
		got = last[0]
		return len(want) == 0 || slices.Contains(want, got.Node), nil
	})
	if err != nil {
		t.Fatalf("no single L2 announcement of %s (want %v) within %v; have %+v", ip, want, within, last)
	}
	return got
}

// waitNoAnnouncement waits until no ServiceAnnouncement of ip exists.
func waitNoAnnouncement(t *testing.T, ip string, within time.Duration) {
	t.Helper()
	var last []framework.Announcement
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, within, true, func(ctx context.Context) (bool, error) {
		anns, err := env.Announcements(ctx, ip)
		last = anns
		return err == nil && len(anns) == 0, nil
	})
	if err != nil {
		t.Fatalf("announcements of %s still there after %v: %+v", ip, within, last)
	}
}

// arpMACs asks for ip from lanclient (count requests) and returns the MACs
// that answered.
func arpMACs(t *testing.T, ip string, count int) []string {
	t.Helper()
	macs, err := env.Lab.ARPing(t.Context(), lab.HostLANClient, netip.MustParseAddr(ip), count)
	if err != nil {
		t.Fatal(err)
	}
	return macs
}

// ndpMACs asks for ip from lanclient by Neighbor Solicitation.
func ndpMACs(t *testing.T, ip string, count int) []string {
	t.Helper()
	macs, err := env.NDPing(t.Context(), lab.HostLANClient, netip.MustParseAddr(ip), count)
	if err != nil {
		t.Fatal(err)
	}
	return macs
}

// curlBackends sends up to tries requests (one connection each) to url from
// host until every name in want answered, and returns the names seen.
// Failed requests are retried for up to 15s and do not count as tries.
func curlBackends(t *testing.T, from, url string, want []string, tries int) []string {
	t.Helper()
	seen := map[string]bool{}
	var errs []string
	// Errors are retried for a while (kube-proxy may program a new Service a
	// moment after the speaker announces it); tries counts answers.
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < tries && len(seen) < len(want); i++ {
		body, err := env.Lab.HTTPGet(t.Context(), from, url, 3*time.Second)
		if err != nil {
			errs = append(errs, err.Error())
			if len(errs) > 5 {
				errs = errs[1:]
			}
			if time.Now().Before(deadline) {
				i--
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		if f := strings.Fields(body); len(f) > 0 {
			seen[f[0]] = true
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, w := range want {
		if !seen[w] {
			t.Fatalf("%s from %s: backends %v answered, want all of %v (errors: %v)", url, from, names, want, errs)
		}
	}
	return names
}

func backendNames(bs []framework.Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Name)
	}
	return out
}

// speakerMetric reads one series of a speaker's metrics.
func speakerMetric(t *testing.T, sp *framework.Speaker, series string) float64 {
	t.Helper()
	text, err := env.SpeakerMetrics(t.Context(), sp)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := framework.MetricValue(text, series)
	if !ok {
		t.Fatalf("speaker %s: no series %s", sp.Name, series)
	}
	return v
}

func urlFor(ip string, port int) string {
	a := netip.MustParseAddr(ip)
	return fmt.Sprintf("http://%s/", netip.AddrPortFrom(a, uint16(port)))
}
