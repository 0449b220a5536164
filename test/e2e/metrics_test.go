package e2e

import (
	"bufio"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ironlb/ironlb/test/lab"
)

// metricsDoc is the metrics reference this test holds the binaries to.
const metricsDoc = "../../docs/metrics.md"

// thisTest is how docs/metrics.md names this test in its "moved by" column.
const thisTest = "TestMetricsDocumentedAndMoving"

// docMetric is one row of docs/metrics.md.
type docMetric struct {
	binary, family, movedBy string
}

// TestMetricsDocumentedAndMoving runs real actions against the controller and
// three speakers (L2, ironlb's proxy) and then scrapes them: every ironlb_
// family a binary serves must be in docs/metrics.md under that binary, and
// every family the document says this test moves must have a series above 0.
// The actions: a dual-stack Service with endpoints (allocation, announcement,
// status objects, memberlist traffic, proxy syncs), ARP and NDP requests and
// HTTP through the VIP from the LAN, another host's forged ARP claim for the
// VIP, an external flush of one node's nat table, and an address no pool holds.
func TestMetricsDocumentedAndMoving(t *testing.T) {
	docs := readMetricsDoc(t)
	speakers := speakersWith(t, dataPathIronlb)
	ctx := t.Context()

	mustCreatePool(t, `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: mtr}, spec: {addresses: ["192.0.2.251-192.0.2.253", "2001:db8::260-2001:db8::26f"], advertise: {l2: {}}}}`)
	ns := namespace(t, "mtr")
	createService(t, ns, "web", 8000, withDualStack)
	t.Cleanup(func() { deleteService(t, ns, "web") })
	backends, err := env.StartDualStackBackends(ctx, ns, "web", "mtr", 3, 80)
	if err != nil {
		t.Fatal(err)
	}
	var v4, v6 string
	eventually(t, ns+"/web gets two addresses", 20*time.Second, func() bool {
		ensureController(t)
		s, err := env.Cluster.Client.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) != 2 {
			return false
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			if strings.Contains(in.IP, ":") {
				v6 = in.IP
			} else {
				v4 = in.IP
			}
		}
		return true
	})
	owner := waitL2Owner(t, v4, 10*time.Second).Node
	waitL2Owner(t, v6, 10*time.Second)
	if macs := arpMACs(t, v4, 2); len(macs) != 1 {
		t.Fatalf("ARP for %s answered by %v", v4, macs)
	}
	if macs := ndpMACs(t, v6, 2); len(macs) != 1 {
		t.Fatalf("NDP for %s answered by %v", v6, macs)
	}
	curlBackends(t, lab.HostLANClient, urlFor(v4, 8000), backendNames(backends), 60)
	ownerSpeaker := speakers[nodeIndex(t, owner)]

	// Another host claims the VIP (split brain, or a misconfigured host): the
	// owner sees the claim and announces itself again.
	if _, err := env.Lab.Exec(ctx, lab.HostLANClient, "arping", "-q", "-c", "1", "-i", "lan0", "-S", v4, env.Lab.NodeIP(1).String()); err != nil {
		t.Fatalf("forging an ARP claim for %s: %v", v4, err)
	}
	eventually(t, owner+" handles the forged claim for "+v4, 15*time.Second, func() bool {
		text, err := env.SpeakerMetrics(ctx, ownerSpeaker)
		return err == nil && seriesSum(text, "ironlb_speaker_l2_conflicts_handled_total") > 0
	})
	eventually(t, "ARP for "+v4+" answered by "+owner+" again", 15*time.Second, func() bool {
		macs, err := env.Lab.ARPing(ctx, lab.HostLANClient, netip.MustParseAddr(v4), 1)
		return err == nil && slices.Equal(macs, []string{nodeMAC(t, owner)})
	})

	// An external flush of one node's nat table is noticed and repaired.
	flushed := speakers[env.Lab.Nodes()]
	if _, err := env.Lab.Exec(ctx, flushed.Name, "iptables", "-t", "nat", "-F"); err != nil {
		t.Fatal(err)
	}
	eventually(t, flushed.Name+" repairs its flushed nat table", 30*time.Second, func() bool {
		text, err := env.SpeakerMetrics(ctx, flushed)
		if err != nil || seriesSum(text, "ironlb_proxy_canary_lost_total") == 0 {
			return false
		}
		out, err := env.Lab.Exec(ctx, flushed.Name, "iptables", "-t", "nat", "-S", "PREROUTING")
		return err == nil && strings.Contains(out, "-j IRONLB-SERVICES")
	})

	// An address no pool holds is refused, with an Event.
	createService(t, ns, "nowhere", 8001, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "203.0.113.254" })
	t.Cleanup(func() { deleteService(t, ns, "nowhere") })
	eventually(t, ns+"/nowhere refused with an Event", 20*time.Second, func() bool {
		ensureController(t)
		return strings.Contains(events(t, ns, "nowhere"), "Warning/")
	})

	// Scrape every binary.
	served := map[string]map[string]float64{"ironlb-controller": {}, "ironlb-speaker": {}}
	text, err := env.Metrics(ctx, ctrl)
	if err != nil {
		t.Fatal(err)
	}
	addFamilies(served["ironlb-controller"], text)
	for _, sp := range speakers {
		text, err := env.SpeakerMetrics(ctx, sp)
		if err != nil {
			t.Fatal(err)
		}
		addFamilies(served["ironlb-speaker"], text)
	}

	documented := map[string]map[string]docMetric{}
	for _, d := range docs {
		if documented[d.binary] == nil {
			documented[d.binary] = map[string]docMetric{}
		}
		documented[d.binary][d.family] = d
	}
	for binary, families := range served {
		for f := range families {
			if _, ok := documented[binary][f]; !ok {
				t.Errorf("%s serves %s, which docs/metrics.md does not list under %s", binary, f, binary)
			}
		}
	}
	moved := 0
	for _, d := range docs {
		if !strings.Contains(d.movedBy, thisTest) {
			continue
		}
		moved++
		v, ok := served[d.binary][d.family]
		switch {
		case !ok:
			t.Errorf("%s: docs/metrics.md says %s moves it, but the %s does not serve it", d.family, thisTest, d.binary)
		case v <= 0:
			t.Errorf("%s: docs/metrics.md says %s moves it, but its series sum to %v on every %s", d.family, thisTest, v, d.binary)
		}
	}
	if moved < 20 {
		t.Errorf("docs/metrics.md names %s for only %d families; the table was not parsed?", thisTest, moved)
	}
	t.Logf("%d families checked to move; %d served by the controller, %d by the speakers", moved, len(served["ironlb-controller"]), len(served["ironlb-speaker"]))
}

// Every test docs/metrics.md names in its "moved by" column exists, and every
// row says either which tests move the family or that none does yet.
func TestMetricsDocNamesRealTests(t *testing.T) {
	docs := readMetricsDoc(t)
	tests := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			tests[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`\bTest\w+`)
	for _, d := range docs {
		named := name.FindAllString(d.movedBy, -1)
		if len(named) == 0 && !strings.Contains(d.movedBy, "not yet asserted") && !strings.Contains(d.movedBy, "not provoked") {
			t.Errorf("%s: the moved-by column %q names no test and does not say none does", d.family, d.movedBy)
		}
		for _, n := range named {
			if !tests[n] {
				t.Errorf("%s: docs/metrics.md names %s, which no test file declares", d.family, n)
			}
		}
	}
}

// readMetricsDoc parses the tables of docs/metrics.md: a "## <binary>"
// heading, then rows whose first cell is a `family`.
func readMetricsDoc(t *testing.T) []docMetric {
	t.Helper()
	f, err := os.Open(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []docMetric
	binary := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if h, ok := strings.CutPrefix(line, "## "); ok {
			binary = strings.TrimSpace(h)
			continue
		}
		if !strings.HasPrefix(line, "| `ironlb_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 5 {
			t.Fatalf("docs/metrics.md: row with %d cells, want 5: %s", len(cells), line)
		}
		out = append(out, docMetric{
			binary:  binary,
			family:  strings.Trim(strings.TrimSpace(cells[0]), "`"),
			movedBy: strings.TrimSpace(cells[4]),
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("docs/metrics.md lists no families")
	}
	return out
}

// addFamilies adds, for every ironlb_ family in a Prometheus text exposition,
// the sum of its series (a histogram's observation counts) to sums.
func addFamilies(sums map[string]float64, text string) {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if f := strings.Fields(rest); len(f) == 2 && strings.HasPrefix(f[0], "ironlb_") {
				sums[f[0]] += seriesSum(text, f[0])
			}
		}
	}
}

// seriesSum sums the samples of a family (for a histogram or summary, its
// _count samples) in a Prometheus text exposition.
func seriesSum(text, family string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if name != family && name != family+"_count" {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}
