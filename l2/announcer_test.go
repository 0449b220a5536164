package l2

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/prometheus/client_golang/prometheus"
)

// testAnnouncer is an Announcer on a memSystem with its own registry.
type testAnnouncer struct {
	*Announcer
	sys *memSystem
	reg *prometheus.Registry
}

func newTestAnnouncer(t *testing.T, cfg Config, links ...link) *testAnnouncer {
	t.Helper()
	if len(links) == 0 {
		links = node
	}
	sys := newMemSystem(links...)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	a, err := newAnnouncer(cfg, sys)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return &testAnnouncer{Announcer: a, sys: sys, reg: reg}
}

// start runs Run; stop ends its context and waits for it to return.
func (ta *testAnnouncer) start() (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ta.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(waitLimit):
			return errors.New("Run did not return after its context ended")
		}
	}
}

// run starts Run and stops it at the end of the test.
func (ta *testAnnouncer) run(t *testing.T) {
	stop := ta.start()
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func (ta *testAnnouncer) own(t *testing.T, anns ...Announcement) {
	t.Helper()
	if err := ta.SetOwned(context.Background(), anns); err != nil {
		t.Fatalf("SetOwned: %v", err)
	}
}

// arp and ndp return the current sockets of a link, failing if there are none.
func (ta *testAnnouncer) arp(t *testing.T, l link) *memConn {
	t.Helper()
	return ta.openConn(t, l, true)
}

func (ta *testAnnouncer) ndp(t *testing.T, l link) *memConn {
	t.Helper()
	return ta.openConn(t, l, false)
}

func (ta *testAnnouncer) openConn(t *testing.T, l link, arp bool) *memConn {
	t.Helper()
	c := ta.sys.conn(l.index, arp)
	if c == nil || c.isClosed() {
		t.Fatalf("no open socket on %s (arp=%v)", l.name, arp)
	}
	return c
}

// metric returns the value of an ironlb_l2_ series for family.
func (ta *testAnnouncer) metric(t *testing.T, name, family string) float64 {
	t.Helper()
	mfs, err := ta.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "family" && lp.GetValue() == family {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{family=%q} not registered", name, family)
	return 0
}

// receive returns the next value from ch, failing the test after waitLimit.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("no %s within %v", what, waitLimit)
		var zero T
		return zero
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectRound reads one gratuitous round for vip at mac from c.
func expectRound(t *testing.T, c *memConn, vip netip.Addr, mac hwAddr) {
	t.Helper()
	if vip.Is4() {
		req, rep := mustARP(c.next(t)), mustARP(c.next(t))
		if req.op != arp.OperationRequest || rep.op != arp.OperationReply {
			t.Fatalf("round is %v then %v, want a request then a reply", req.op, rep.op)
		}
		for _, m := range []arpMessage{req, rep} {
			if m.eth.dst != broadcastMAC || m.sha != mac || m.spa != vip || m.tpa != vip {
				t.Fatalf("%v announces %s at %s to %s, want %s at %s to broadcast", m.op, m.spa, m.sha, m.eth.dst, vip, mac)
			}
		}
		return
	}
	a := mustNA(c.next(t))
	if a.target != vip || a.tlla != mac || !a.override || a.solicited || a.dst != allNodes {
		t.Fatalf("advertisement %+v, want unsolicited %s at %s with Override to all nodes", a, vip, mac)
	}
}

func TestAnswersOnlyOwnedVIPsOnTheirLink(t *testing.T) {
	ta := newTestAnnouncer(t, Config{})
	ta.own(t, Announcement{VIP: vip4}, Announcement{VIP: vip6})
	a4, a6 := ta.arp(t, eth0), ta.ndp(t, eth0)
	a4.drain()
	a6.drain()
	for _, l := range []link{lo, eth1, bond0, eth2, down, ipvs} {
		if ta.sys.openCount(l.index, true)+ta.sys.openCount(l.index, false) != 0 {
			t.Errorf("a socket was opened on %s, which answers for nothing", l.name)
		}
	}

	a4.feed(t, arpRequest(macClient, client4, vip4))
	rep := mustARP(a4.next(t))
	if rep.op != arp.OperationReply || rep.spa != vip4 || rep.sha != macEth0 || rep.eth.dst != macClient {
		t.Errorf("client learns %s is at %s (op %v, to %s), want %s at %s to %s", rep.spa, rep.sha, rep.op, rep.eth.dst, vip4, macEth0, macClient)
	}
	a4.feed(t, arpRequest(macClient, client4, vip4b))
	a4.none(t)

	a6.feed(t, solicitation(macClient, client6, netip.Addr{}, vip6, true))
	if na := mustNA(a6.next(t)); na.target != vip6 || na.tlla != macEth0 || na.eth.dst != macClient || !na.solicited || !na.override {
		t.Errorf("client learns %+v, want %s at %s, solicited, override", na, vip6, macEth0)
	}
	a6.feed(t, solicitation(macClient, client6, netip.Addr{}, vip6b, true))
	a6.none(t)

	for _, m := range []struct {
		name, family string
		want         float64
	}{
		{"ironlb_l2_requests_total", "ipv4", 2}, {"ironlb_l2_answers_total", "ipv4", 1},
		{"ironlb_l2_requests_total", "ipv6", 2}, {"ironlb_l2_answers_total", "ipv6", 1},
		{"ironlb_l2_vips_owned", "ipv4", 1}, {"ironlb_l2_vips_owned", "ipv6", 1},
		{"ironlb_l2_gratuitous_total", "ipv4", 2}, {"ironlb_l2_gratuitous_total", "ipv6", 1},
	} {
		if got := ta.metric(t, m.name, m.family); got != m.want {
			t.Errorf("%s{family=%q} = %v, want %v", m.name, m.family, got, m.want)
		}
	}
}

func TestNeverOnMembersDownOrLoopback(t *testing.T) {
	ta := newTestAnnouncer(t, Config{})
	nowhere := Announcement{VIP: ma("203.0.113.200"), Interfaces: []string{"eth2", "down0", "lo", "kube-ipvs0"}}
	onBond := Announcement{VIP: ma("203.0.113.201")}
	ta.own(t, nowhere, onBond)

	for _, l := range []link{eth2, down, lo, ipvs} {
		if n := ta.sys.openCount(l.index, true); n != 0 {
			t.Errorf("%d ARP sockets opened on %s", n, l.name)
		}
	}
	st := ta.Status()
	if len(st) != 2 || len(st[0].Interfaces) != 0 || st[0].Reason == "" || !slices.Equal(st[1].Interfaces, []string{"bond0"}) {
		t.Fatalf("status %+v, want %s nowhere with a reason and %s on bond0", st, nowhere.VIP, onBond.VIP)
	}
	if got := ta.metric(t, "ironlb_l2_vips_unplaced", "ipv4"); got != 1 {
		t.Errorf("ironlb_l2_vips_unplaced = %v, want 1", got)
	}
	c := ta.arp(t, bond0)
	c.drain()
	c.feed(t, arpRequest(macClient, ma("203.0.113.100"), onBond.VIP))
	if rep := mustARP(c.next(t)); rep.sha != macBond || rep.eth.src != macBond {
		t.Errorf("answer carries %s (frame from %s), want the bond's MAC %s", rep.sha, rep.eth.src, macBond)
	}
	c.feed(t, arpRequest(macClient, ma("203.0.113.100"), nowhere.VIP))
	c.none(t)
}

func TestGratuitousBurstOnTakeover(t *testing.T) {
	ta := newTestAnnouncer(t, Config{GratuitousCount: 3, GratuitousInterval: 10 * time.Millisecond})
	ta.run(t)
	ta.own(t, Announcement{VIP: vip4}, Announcement{VIP: vip6})
	a4, a6 := ta.arp(t, eth0), ta.ndp(t, eth0)
	for range 3 {
		expectRound(t, a4, vip4, macEth0)
		expectRound(t, a6, vip6, macEth0)
	}
	waitFor(t, "the burst to end", func() bool { return ta.nextWake(time.Now()).IsZero() })
	a4.none(t)
	a6.none(t)
	if g4, g6 := ta.metric(t, "ironlb_l2_gratuitous_total", "ipv4"), ta.metric(t, "ironlb_l2_gratuitous_total", "ipv6"); g4 != 6 || g6 != 3 {
		t.Errorf("gratuitous frames counted %v (ipv4) and %v (ipv6), want 6 and 3", g4, g6)
	}

	// The same state again is no takeover: nothing is sent.
	ta.own(t, Announcement{VIP: vip4}, Announcement{VIP: vip6})
	a4.none(t)
	a6.none(t)

	// The VIP moves to eth1: a burst there, and eth0 stops answering.
	ta.own(t, Announcement{VIP: vip4, Interfaces: []string{"eth1"}}, Announcement{VIP: vip6})
	expectRound(t, ta.arp(t, eth1), vip4, macEth1)
	if !a4.isClosed() {
		t.Error("eth0's ARP socket is still open after its last IPv4 VIP moved away")
	}
}

func TestPeriodicRefresh(t *testing.T) {
	ta := newTestAnnouncer(t, Config{GratuitousCount: 1, RefreshInterval: 10 * time.Millisecond})
	ta.run(t)
	ta.own(t, Announcement{VIP: vip4})
	c := ta.arp(t, eth0)
	for range 4 { // the takeover round, then refreshes
		expectRound(t, c, vip4, macEth0)
	}
}

func TestReleaseStopsAnswersAtOnce(t *testing.T) {
	ta := newTestAnnouncer(t, Config{})
	ta.own(t, Announcement{VIP: vip4}, Announcement{VIP: vip4b}, Announcement{VIP: vip6}, Announcement{VIP: vip6b})
	a4, a6 := ta.arp(t, eth0), ta.ndp(t, eth0)
	snm6, _ := ndp.SolicitedNodeMulticast(vip6)
	snm6b, _ := ndp.SolicitedNodeMulticast(vip6b)
	if g := a6.joined(); !slices.Equal(g, []netip.Addr{snm6, snm6b}) {
		t.Fatalf("joined %v, want %v and %v", g, snm6, snm6b)
	}
	a4.drain()
	a6.drain()

	ta.own(t, Announcement{VIP: vip4}, Announcement{VIP: vip6})
	a4.feed(t, arpRequest(macClient, client4, vip4b))
	a4.none(t)
	a6.feed(t, solicitation(macClient, client6, netip.Addr{}, vip6b, true))
	a6.none(t)
	if g := a6.joined(); !slices.Equal(g, []netip.Addr{snm6}) {
		t.Errorf("after release joined %v, want only %v", g, snm6)
	}
	a4.feed(t, arpRequest(macClient, client4, vip4))
	if rep := mustARP(a4.next(t)); rep.spa != vip4 {
		t.Errorf("answer for %s, want %s", rep.spa, vip4)
	}

	ta.own(t)
	if !a4.isClosed() || !a6.isClosed() {
		t.Error("sockets stay open with nothing owned")
	}
	if st := ta.Status(); len(st) != 0 {
		t.Errorf("status %+v after releasing everything", st)
	}
	if got := ta.metric(t, "ironlb_l2_vips_owned", "ipv4"); got != 0 {
		t.Errorf("ironlb_l2_vips_owned = %v, want 0", got)
	}
}

func TestLinkChanges(t *testing.T) {
	placements := make(chan Placement, 16)
	ta := newTestAnnouncer(t, Config{GratuitousCount: 1, OnPlacement: func(p Placement) { placements <- p }})
	ta.run(t)
	next := func() Placement { t.Helper(); return receive(t, placements, "placement notification") }
	ta.own(t, Announcement{VIP: vip4})
	if p := next(); p.VIP != vip4 || !slices.Equal(p.Interfaces, []string{"eth0"}) {
		t.Fatalf("placement %+v, want %s on eth0", p, vip4)
	}
	first := ta.arp(t, eth0)

	// eth0 loses its carrier: no interface is left for the VIP.
	noCarrier := withLink(eth0, func(l *link) { l.running = false })
	ta.sys.setLinks(lo, noCarrier, eth1)
	if p := next(); len(p.Interfaces) != 0 || !strings.Contains(p.Reason, "eth0") {
		t.Fatalf("placement %+v, want nowhere, naming eth0", p)
	}
	if !first.isClosed() {
		t.Error("the socket of a link without carrier stays open")
	}

	// The carrier comes back, with a new MAC: a takeover there.
	newMAC := withLink(eth0, func(l *link) { l.mac = hwAddr{0x02, 0, 0, 0, 0, 0x20} })
	ta.sys.setLinks(lo, newMAC, eth1)
	if p := next(); !slices.Equal(p.Interfaces, []string{"eth0"}) {
		t.Fatalf("placement %+v, want eth0 again", p)
	}
	expectRound(t, ta.arp(t, eth0), vip4, newMAC.mac)

	// The link disappears.
	ta.sys.setLinks(lo, eth1)
	if p := next(); len(p.Interfaces) != 0 {
		t.Fatalf("placement %+v, want nowhere", p)
	}
	ta.own(t)
	if p := next(); p.Reason != "released" {
		t.Fatalf("placement %+v, want released", p)
	}
}

func TestConflictReportedAndResolvedByReannounce(t *testing.T) {
	conflicts := make(chan Conflict, 16)
	var ta *testAnnouncer
	ta = newTestAnnouncer(t, Config{
		GratuitousCount:  1,
		ConflictInterval: 20 * time.Millisecond,
		OnConflict: func(c Conflict) {
			// The documented rule, with an election that says "mine".
			if err := ta.Reannounce(c.VIP); err != nil {
				t.Errorf("Reannounce: %v", err)
			}
			conflicts <- c
		},
	})
	ta.run(t)
	ta.own(t, Announcement{VIP: vip4}, Announcement{VIP: vip6})
	a4, a6 := ta.arp(t, eth0), ta.ndp(t, eth0)
	expectRound(t, a4, vip4, macEth0)
	expectRound(t, a6, vip6, macEth0)
	next := func() Conflict { t.Helper(); return receive(t, conflicts, "conflict report") }

	a4.feed(t, arpRequest(macOther, vip4, vip4))
	c := next()
	if c.VIP != vip4 || c.Interface != "eth0" || c.TheirMAC.String() != macOther.String() || c.OurMAC.String() != macEth0.String() ||
		c.Packet != "gratuitous ARP" || c.Seen != 1 {
		t.Errorf("conflict %+v, want %s on eth0 claimed by %s by gratuitous ARP", c, vip4, macOther)
	}
	// The owner has the last word on the wire.
	expectRound(t, a4, vip4, macEth0)

	// A storm of claims is reported in coalesced reports, the last one
	// after the last claim.
	for range 5 {
		a4.feed(t, arpFrame(macClient, arp.OperationReply, macOther, vip4, macClient, client4))
	}
	seen := 0
	for seen < 5 {
		c := next()
		if c.Packet != "ARP reply" {
			t.Errorf("conflict %+v, want ARP reply", c)
		}
		seen += c.Seen
		expectRound(t, a4, vip4, macEth0)
	}
	if seen != 5 {
		t.Errorf("reports account for %d claims, want 5", seen)
	}

	a6.feed(t, advertisement(macOther, vip6))
	if c := next(); c.VIP != vip6 || c.Packet != "Neighbor Advertisement" || c.TheirMAC.String() != macOther.String() {
		t.Errorf("conflict %+v, want %s claimed by %s in a Neighbor Advertisement", c, vip6, macOther)
	}
	expectRound(t, a6, vip6, macEth0)

	if c4, c6 := ta.metric(t, "ironlb_l2_conflicts_total", "ipv4"), ta.metric(t, "ironlb_l2_conflicts_total", "ipv6"); c4 != 6 || c6 != 1 {
		t.Errorf("ironlb_l2_conflicts_total = %v (ipv4), %v (ipv6), want 6 and 1", c4, c6)
	}
}

func TestSocketFailures(t *testing.T) {
	ta := newTestAnnouncer(t, Config{GratuitousCount: 1})
	ta.sys.listenErr = errors.New("operation not permitted")
	ta.own(t, Announcement{VIP: vip4})
	if st := ta.Status(); len(st) != 1 || len(st[0].Interfaces) != 0 || !strings.Contains(st[0].Reason, "not permitted") {
		t.Fatalf("status %+v, want nowhere because the socket cannot be opened", st)
	}
	ta.sys.mu.Lock()
	ta.sys.listenErr = nil
	ta.sys.mu.Unlock()
	ta.run(t)
	ta.sys.setLinks(node...) // any netlink event retries
	waitFor(t, "the socket to be opened", func() bool { return ta.sys.openCount(eth0.index, true) == 1 })
	c := ta.arp(t, eth0)
	expectRound(t, c, vip4, macEth0)

	// A socket that fails while reading is reopened.
	c.failRead(t, errors.New("socket went away"))
	waitFor(t, "the socket to be reopened", func() bool { return ta.sys.openCount(eth0.index, true) == 2 })
	c2 := ta.arp(t, eth0)
	c2.feed(t, arpRequest(macClient, client4, vip4))
	if rep := mustARP(c2.next(t)); rep.spa != vip4 {
		t.Errorf("reopened socket answers for %s, want %s", rep.spa, vip4)
	}
}

func TestInvalidInputAndClose(t *testing.T) {
	ta := newTestAnnouncer(t, Config{})
	err := ta.SetOwned(context.Background(), []Announcement{{VIP: vip4}, {VIP: ma("224.0.0.1")}})
	if err == nil || !strings.Contains(err.Error(), "224.0.0.1") {
		t.Errorf("SetOwned error %v, want one naming 224.0.0.1", err)
	}
	if st := ta.Status(); len(st) != 1 || st[0].VIP != vip4 {
		t.Errorf("status %+v, want the valid VIP applied", st)
	}
	if err := ta.Reannounce(vip4b); err == nil {
		t.Error("Reannounce of a VIP not owned succeeded")
	}
	c := ta.arp(t, eth0)
	if err := ta.Close(); err != nil {
		t.Fatal(err)
	}
	if !c.isClosed() {
		t.Error("Close left a socket open")
	}
	if err := ta.SetOwned(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("SetOwned after Close: %v, want ErrClosed", err)
	}
	if err := ta.Reannounce(vip4); !errors.Is(err, ErrClosed) {
		t.Errorf("Reannounce after Close: %v, want ErrClosed", err)
	}
	if err := ta.Run(context.Background()); err != nil {
		t.Errorf("Run after Close: %v", err)
	}
}

func TestRunClosesWhenItsContextEnds(t *testing.T) {
	ta := newTestAnnouncer(t, Config{})
	ta.own(t, Announcement{VIP: vip4})
	c := ta.arp(t, eth0)
	if err := ta.start()(); err != nil {
		t.Fatal(err)
	}
	if !c.isClosed() {
		t.Error("socket still open after Run returned")
	}
	if err := ta.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
}
