//go:build linux

package proxy

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ironlb/ironlb/internal/netnstest"
	"github.com/ironlb/ironlb/proxy/iptables"
)

// restoreCost is what one iptables-restore run cost: wall time and the CPU
// time the process used, in user space and in the kernel.
type restoreCost struct {
	bytes           int
	wall, user, sys time.Duration
}

func (c restoreCost) String() string {
	return fmt.Sprintf("%d B: %.1f ms wall, %.1f ms user, %.1f ms sys", c.bytes,
		ms64(c.wall), ms64(c.user), ms64(c.sys))
}

func ms64(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timedIPT is nsIPT that also records the cost of every restore. With
// perTable, each table of an input is sent as its own restore (one commit
// each, as iptables-nft-restore does anyway), so the cost of each is seen.
type timedIPT struct {
	nsIPT
	perTable bool
	costs    *[]restoreCost
}

func (t timedIPT) Restore(ctx context.Context, data []byte) error {
	parts := [][]byte{data}
	if t.perTable {
		parts = splitTables(data)
	}
	for _, p := range parts {
		err := inNS(t.ns, func() error {
			cmd := exec.CommandContext(ctx, "iptables-restore", "-w", "5", "--noflush")
			cmd.Stdin = bytes.NewReader(p)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			err := cmd.Run()
			wall := time.Since(start)
			if err != nil {
				return fmt.Errorf("iptables-restore: %w: %s", err, out.String())
			}
			*t.costs = append(*t.costs, restoreCost{bytes: len(p), wall: wall,
				user: cmd.ProcessState.UserTime(), sys: cmd.ProcessState.SystemTime()})
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// splitTables cuts restore input after every COMMIT line.
func splitTables(data []byte) [][]byte {
	var parts [][]byte
	for len(data) > 0 {
		i := bytes.Index(data, []byte("\nCOMMIT\n"))
		if i < 0 {
			parts = append(parts, data)
			break
		}
		parts = append(parts, data[:i+len("\nCOMMIT\n")])
		data = data[i+len("\nCOMMIT\n"):]
	}
	return parts
}

// BenchmarkRealLabChange10k builds what benchproxy's node1 holds when it
// measures (b), with the proxy's own code and the system's iptables-nft in a
// network namespace, and times the change (b) measures: a Service that had
// no endpoints (a REJECT rule in filter) gets an EndpointSlice of 10.
//
// As in the lab, the 10,000 Services (10 endpoints each) have ClusterIPs
// picked at random in 198.19.0.0/16 and arrive while the proxy runs: each
// sync takes the next IRONLB_BENCH_BATCH Services (default 64) and the
// EndpointSlices of the batch before, so the Service chains are made over
// about 160 restores in arrival order, not address order. 32 Services never
// get endpoints until they are measured. Then the change is measured 8
// times; each sample logs every restore it ran (bytes, wall, user and system
// time). IRONLB_BENCH_PER_TABLE=1 sends each table of a restore as its own
// iptables-restore, to see what each table's commit costs. After the
// samples, the relayout the sync loop would run (Proxier.relayout: a full
// sync, since partial syncs wrote every chain) rewrites the table in walk
// order and the change is measured again ("after-relayout"); then every
// Service's endpoints change once, in random order, a batch per sync (as
// rolling updates do over time), and the change is measured a third time
// ("after-churn"), and once more after the next relayout
// ("after-churn-relayout"). IRONLB_BENCH_SAVE=DIR writes the iptables-save
// of both tables, as built, to DIR/nat.save and DIR/filter.save.
//
// It needs root; run it alone (it takes about a minute and a core; -benchtime 1x only):
//
//	go test -run XXX -bench RealLabChange10k -benchtime 1x ./proxy/
func BenchmarkRealLabChange10k(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipped: needs root (network namespace and real iptables)")
	}
	batch := 64
	if v := os.Getenv("IRONLB_BENCH_BATCH"); v != "" {
		if _, err := fmt.Sscan(v, &batch); err != nil || batch < 1 {
			b.Fatalf("IRONLB_BENCH_BATCH=%q: want a positive number", v)
		}
	}
	perTable := os.Getenv("IRONLB_BENCH_PER_TABLE") == "1"
	ns := netnstest.Name() + "-bench"
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	var costs []restoreCost
	p := benchProxier(b, timedIPT{nsIPT: nsIPT{exec: iptables.NewExec(iptables.IPv4), ns: ns}, perTable: perTable, costs: &costs})
	ctx := context.Background()

	const n, k, waiting = 10000, 10, 32
	rng := rand.New(rand.NewPCG(7, 7))
	seen := map[netip.Addr]bool{}
	ips := make([]netip.Addr, 0, n+waiting)
	for len(ips) < n+waiting {
		a := netip.AddrFrom4([4]byte{198, 19, byte(rng.IntN(256)), byte(rng.IntN(256))})
		if a.As4()[2] == 0 && a.As4()[3] < 2 || seen[a] {
			continue
		}
		seen[a] = true
		ips = append(ips, a)
	}
	addService := func(i int) {
		p.tracker.setService(service("bench", fmt.Sprint("s", i), ips[i].String()))
	}
	gen := 0 // bumped to give every Service other endpoints
	addSlice := func(i int) {
		var eps []ep
		for j := range k {
			e := i*k + j + gen
			eps = append(eps, ep{ip: fmt.Sprintf("198.18.%d.%d", e/250%250, 1+e%250), node: fmt.Sprint("node", 2+j%2)})
		}
		name := fmt.Sprint("s", i)
		p.tracker.setSlice(slice("bench", name, name+"-a", httpPort(8080), eps...))
	}
	sync := func() {
		if err := p.syncOnce(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// The waiting Services and the first 100 exist before the proxy starts
	// (its first sync is a full one); the rest arrive in batches.
	for i := n; i < n+waiting; i++ {
		addService(i)
	}
	for i := range 100 {
		addService(i)
		addSlice(i)
	}
	sync()
	start := time.Now()
	prev := []int{}
	for from := 100; from < n; from += batch {
		for _, i := range prev {
			addSlice(i)
		}
		prev = prev[:0]
		for i := from; i < min(from+batch, n); i++ {
			addService(i)
			prev = append(prev, i)
		}
		sync()
	}
	for _, i := range prev {
		addSlice(i)
	}
	sync()
	b.Logf("built %d Services in %d incremental syncs in %v", n, len(costs), time.Since(start).Round(time.Millisecond))
	if dir := os.Getenv("IRONLB_BENCH_SAVE"); dir != "" {
		for _, t := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
			out, err := p.families[0].ipt.Save(ctx, t)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, string(t)+".save"), out, 0o644)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}

	next := n
	measure := func(name string, count int) {
		var d []time.Duration
		for range count {
			costs = costs[:0]
			addSlice(next)
			next++
			t0 := time.Now()
			sync()
			d = append(d, time.Since(t0))
			var parts []string
			for _, c := range costs {
				parts = append(parts, c.String())
			}
			b.Logf("%s: sync %.1f ms; restores: %s", name, ms64(d[len(d)-1]), strings.Join(parts, "; "))
		}
		slices.Sort(d)
		b.ReportMetric(ms64(d[len(d)/2]), name+"-ms-median")
		b.ReportMetric(ms64(d[len(d)-1]), name+"-ms-worst")
	}
	// relayout is what the loop does on a SyncPeriod tick without pending
	// changes (Proxier.relayout), timed.
	relayout := func(when string) {
		if !p.relayout() {
			b.Fatalf("%s: no relayout due", when)
		}
		t0 := time.Now()
		sync()
		b.Logf("%s: relayout (a full sync) %v", when, time.Since(t0).Round(time.Millisecond))
	}
	for range b.N {
		measure("lab-order", 8)
		relayout("after the build")
		measure("after-relayout", 8)
		// Churn: every Service's endpoints change once, in random order,
		// a batch per sync, as rolling updates would do over time.
		gen++
		order := rng.Perm(n)
		for len(order) > 0 {
			m := min(batch, len(order))
			for _, i := range order[:m] {
				addSlice(i)
			}
			order = order[m:]
			sync()
		}
		measure("after-churn", 8)
		relayout("after the churn")
		measure("after-churn-relayout", 8)
	}
}
