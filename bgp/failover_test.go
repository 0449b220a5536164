package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/bgp/bfd"
	"github.com/ironlb/ironlb/bgp/internal/nslab"
)

// The failover lab: FRR has the node twice, once with BFD (100ms x 3) and
// once without; both sessions use a 3s hold time. A third session, for the
// reset test, has a 90s hold time and BFD only in bfdd (bgpd does not know
// of it), so that only this package's reaction can reset it.
const (
	failoverBGPConf = `frr defaults datacenter
hostname router
!
router bgp 64512
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor 192.0.2.11 remote-as 64600
 neighbor 192.0.2.11 timers 1 3
 neighbor 192.0.2.11 bfd profile fast
 neighbor 192.0.2.12 remote-as 64600
 neighbor 192.0.2.12 timers 1 3
 neighbor 192.0.2.13 remote-as 64600
 neighbor 192.0.2.13 timers 30 90
 !
 address-family ipv4 unicast
  neighbor 192.0.2.11 activate
  neighbor 192.0.2.12 activate
  neighbor 192.0.2.13 activate
 exit-address-family
!
`
	failoverBFDConf = `bfd
 profile fast
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 !
 peer 192.0.2.13 local-address 192.0.2.3
  profile fast
 !
!
`
)

var failoverVIP = pfx("203.0.113.10/32")

// failoverLab is a lab with FRR for failover trials and a route monitor.
type failoverLab struct {
	l   *nslab.Lab
	f   *nslab.FRR
	mon *nslab.RouteMonitor
}

func newFailoverLab(t testing.TB) *failoverLab {
	l := nslab.New(t)
	f := l.StartFRR(t, map[string]string{"bgpd": failoverBGPConf, "bfdd": failoverBFDConf})
	mon, err := l.MonitorRoutes()
	if err != nil {
		t.Fatal(err)
	}
	return &failoverLab{l: l, f: f, mon: mon}
}

// kernelVia waits until the router's kernel routes the VIP via hop.
func (fl *failoverLab) kernelVia(t testing.TB, hop netip.Addr) {
	t.Helper()
	err := nslab.Eventually(30*time.Second, 50*time.Millisecond, func() error {
		out, err := fl.l.Exec(context.Background(), fl.l.Router, "ip", "-4", "route", "show", failoverVIP.String())
		if err != nil {
			return err
		}
		if f := strings.Fields(out); !slices.Contains(f, hop.String()) {
			return fmt.Errorf("route %q, want via %s", out, hop)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// bfdUp waits until FRR's bfdd has the session with peer Up.
func (fl *failoverLab) bfdUp(t testing.TB, peer netip.Addr) {
	t.Helper()
	err := nslab.Eventually(30*time.Second, 50*time.Millisecond, func() error {
		var list []struct {
			Peer   string `json:"peer"`
			Status string `json:"status"`
		}
		if err := fl.f.JSON(context.Background(), "show bfd peers json", &list); err != nil {
			return err
		}
		for _, p := range list {
			if p.Peer == peer.String() && p.Status == "up" {
				return nil
			}
		}
		return fmt.Errorf("no Up session with %s in %+v", peer, list)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// trial starts a node announcing the VIP (over the BFD session or the plain
// one), waits until the router routes it, then kills the node: with silent,
// as when a node loses power, its switch port goes down first (the router
// keeps its carrier and hears nothing more) and its process gets SIGKILL;
// without, only the process is killed and the node's kernel closes the TCP
// session. It returns the time from the kill until the router's kernel
// deleted the route.
func (fl *failoverLab) trial(t testing.TB, withBFD, silent bool) time.Duration {
	t.Helper()
	peer := Peer{Address: nslab.RouterIP, ASN: routerASN, HoldTime: 3 * time.Second, KeepaliveTime: time.Second,
		BFD: &BFD{MinTx: 100 * time.Millisecond, MinRx: 100 * time.Millisecond, Multiplier: 3}}
	hop := nslab.NodeIP
	if !withBFD {
		peer.Address, peer.SourceAddress, peer.BFD = nslab.RouterExtraIP(1), nslab.NodeExtraIP(1), nil
		hop = nslab.NodeExtraIP(1)
	}
	n := startNode(t, fl.l, "node")
	n.apply(Desired{Peers: []Peer{peer}, Paths: []Path{{Prefix: failoverVIP}}})
	fl.kernelVia(t, hop)
	if withBFD {
		fl.bfdUp(t, hop)
	}
	if silent {
		if err := fl.l.Cut(); err != nil {
			t.Fatal(err)
		}
	}
	cut := time.Now()
	n.Kill()
	ev, err := fl.mon.Wait(cut, 30*time.Second, func(ev nslab.RouteEvent) bool {
		return ev.Deleted && ev.Dst == failoverVIP.Addr().String()
	})
	if err != nil {
		t.Fatal(err)
	}
	if silent {
		if err := fl.l.Mend(); err != nil {
			t.Fatal(err)
		}
	}
	return ev.At.Sub(cut)
}

// TestFailoverFRR: when a node dies silently, FRR removes its route within
// BFD's detection time, well before the 3s hold time that is all it has
// without BFD. Bounds are generous; BenchmarkFailoverFRR gives the figures.
func TestFailoverFRR(t *testing.T) {
	fl := newFailoverLab(t)
	withBFD := fl.trial(t, true, true)
	without := fl.trial(t, false, true)
	t.Logf("route removed %v after the cut with BFD, %v without (hold time 3s)", withBFD, without)
	if withBFD > 1500*time.Millisecond {
		t.Errorf("with BFD the route went after %v, want well under the 3s hold time", withBFD)
	}
	if without < 1500*time.Millisecond {
		t.Errorf("without BFD the route went after %v: something other than the hold timer removed it", without)
	}
}

// BenchmarkFailoverFRR measures, over 10 trials per iteration, the time
// from a node's death to its route leaving the router's kernel: silent death
// with BFD (100ms x 3) and with only the 3s hold time, and, for comparison, a
// killed process on a live node, whose kernel closes the TCP session. Run
// with -benchtime=1x.
func BenchmarkFailoverFRR(b *testing.B) {
	for _, bc := range []struct {
		name            string
		withBFD, silent bool
	}{
		{"silent/bfd-100msx3", true, true},
		{"silent/holdtime-3s", false, true},
		{"sigkill-only/bfd-100msx3", true, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			fl := newFailoverLab(b)
			var all []time.Duration
			for b.Loop() {
				for range 10 {
					all = append(all, fl.trial(b, bc.withBFD, bc.silent))
				}
			}
			slices.Sort(all)
			b.ReportMetric(float64(all[len(all)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(all[len(all)*95/100].Milliseconds()), "p95-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestBFDDownResetsSession: when the node's BFD session fails, the node
// resets the BGP session at once instead of waiting for the 90s hold time.
// FRR's bgpd does not use BFD on this session, so only the node's reaction
// can have reset it.
func TestBFDDownResetsSession(t *testing.T) {
	fl := newFailoverLab(t)
	routerAddr, src := nslab.RouterExtraIP(2), nslab.NodeExtraIP(2)
	n := startNode(t, fl.l, "node")
	n.apply(Desired{Peers: []Peer{{Address: routerAddr, ASN: routerASN, SourceAddress: src, BFD: &BFD{MinTx: 100 * time.Millisecond, MinRx: 100 * time.Millisecond}}},
		Paths: []Path{{Prefix: failoverVIP}}})
	up := n.waitEvent(0, 30*time.Second, routerAddr, EventSessionUp)
	n.waitEvent(0, 30*time.Second, routerAddr, EventBFDUp)
	if st := n.status()[routerAddr]; st.BFD == nil || *st.BFD != bfd.StateUp {
		t.Fatalf("status %+v", st)
	}
	fl.f.Daemon("bfdd").Kill()
	down := n.waitEvent(up, 10*time.Second, routerAddr, EventBFDDown)
	n.waitEvent(down, 10*time.Second, routerAddr, EventSessionDown)
	// FRR received the node's NOTIFICATION (Cease, administrative reset).
	err := nslab.Eventually(10*time.Second, 100*time.Millisecond, func() error {
		var nb map[string]struct {
			LastNotificationReason string `json:"lastNotificationReason"`
		}
		if err := fl.f.JSON(context.Background(), "show bgp neighbors "+src.String()+" json", &nb); err != nil {
			return err
		}
		if got := nb[src.String()].LastNotificationReason; got != "Cease/Administrative Reset" {
			return fmt.Errorf("FRR's last notification was %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
