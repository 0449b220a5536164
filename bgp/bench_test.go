package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/bgp/internal/nslab"
)

// vips returns n host paths from 198.18.0.0 onward (the benchmark range),
// each with a community.
func vips(n int) []Path {
	out := make([]Path, n)
	base := netip.MustParseAddr("198.18.0.0").As4()
	for i := range out {
		a := netip.AddrFrom4([4]byte{base[0], base[1] + byte(i>>16), byte(i >> 8), byte(i)})
		out[i] = Path{Prefix: netip.PrefixFrom(a, 32), Communities: []Community{65000<<16 | Community(i%100)}}
	}
	return out
}

// BenchmarkDiff measures compiling a desired state of 10,000 paths and two
// peers and diffing it against the applied one: from nothing (all new) and
// with 1% of the paths changed (a steady-state resync).
func BenchmarkDiff(b *testing.B) {
	peers := []Peer{{Address: router4, ASN: 64512}, {Address: router6, ASN: 64512}}
	paths := vips(10000)
	changed := append([]Path(nil), paths...)
	for i := 0; i < len(changed); i += 100 {
		changed[i].Communities = []Community{CommunityNoExport}
	}
	applied, err := compile(cfg, Desired{Peers: peers, Paths: paths})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		cur  state
		want []Path
		n    int // paths announced by the plan
	}{
		{"10000-new", state{}, paths, 10000},
		{"10000-1pct-changed", applied, changed, 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				want, err := compile(cfg, Desired{Peers: peers, Paths: bc.want})
				if err != nil {
					b.Fatal(err)
				}
				if p := diff(bc.cur, want); len(p.announce) != bc.n {
					b.Fatalf("%d announcements, want %d", len(p.announce), bc.n)
				}
			}
		})
	}
}

// bgpPrefixCounts returns FRR's received prefixes from neighbor and the
// number of BGP routes in the router's kernel.
func bgpPrefixCounts(ctx context.Context, l *nslab.Lab, f *nslab.FRR, neighbor netip.Addr) (received, installed int, err error) {
	var sum struct {
		Peers map[string]struct {
			PfxRcd int `json:"pfxRcd"`
		} `json:"peers"`
	}
	if err := f.JSON(ctx, "show bgp ipv4 unicast summary json", &sum); err != nil {
		return 0, 0, err
	}
	out, err := l.Exec(ctx, l.Router, "ip", "-4", "route", "show", "proto", "bgp")
	if err != nil {
		return 0, 0, err
	}
	return sum.Peers[neighbor.String()].PfxRcd, strings.Count(out, "\n"), nil
}

// BenchmarkApplyFRR measures Apply of 1,000 paths to a Manager whose session
// with FRR is up: the time until FRR has received all 1,000 prefixes
// (ms-received) and until its kernel has all 1,000 routes (ms-installed),
// and the same for withdrawing them (ms-withdrawn, all gone from the kernel).
// FRR and the kernel are polled, each poll costing a few milliseconds.
func BenchmarkApplyFRR(b *testing.B) {
	l := nslab.New(b)
	f := l.StartFRR(b, map[string]string{"bgpd": frrSuiteConf})
	n := startNode(b, l, "node")
	peers := []Peer{{Address: ebgpRouter, ASN: routerASN}}
	n.apply(Desired{Peers: peers})
	n.waitEvent(0, 30*time.Second, ebgpRouter, EventSessionUp)
	paths := vips(1000)
	var received, installed, withdrawn time.Duration
	wait := func(want int, kernelToo bool) (rcv, inst time.Duration) {
		start := time.Now()
		err := nslab.Eventually(60*time.Second, 0, func() error {
			r, i, err := bgpPrefixCounts(context.Background(), l, f, nslab.NodeIP)
			if err != nil {
				return err
			}
			if r == want && rcv == 0 {
				rcv = time.Since(start)
			}
			if r != want || (kernelToo && i != want) {
				return fmt.Errorf("received %d, installed %d, want %d", r, i, want)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		return rcv, time.Since(start)
	}
	for b.Loop() {
		n.apply(Desired{Peers: peers, Paths: paths})
		r, i := wait(len(paths), true)
		received += r
		installed += i
		n.apply(Desired{Peers: peers})
		_, w := wait(0, true)
		withdrawn += w
	}
	per := func(d time.Duration) float64 { return float64(d.Milliseconds()) / float64(b.N) }
	b.ReportMetric(per(received), "ms-received")
	b.ReportMetric(per(installed), "ms-installed")
	b.ReportMetric(per(withdrawn), "ms-withdrawn")
	b.ReportMetric(0, "ns/op")
}
