//go:build linux

package handover

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ironlb/ironlb/internal/netnstest"
	"github.com/ironlb/ironlb/proxy/iptables"
)

// handoverLab is a LAN of a client and two nodes on a bridge in the client's
// namespace:
//
//	old 192.0.2.11 --+
//	                 +-- br0 192.0.2.100 cli
//	new 192.0.2.12 --+
//
// Each node DNATs VIP:8000 (from a KUBE-SERVICES chain at the top of nat
// PREROUTING, as kube-proxy) to its own echo server on port 9000, which
// prefixes every line with the node's name: a connection that reaches the
// other node's server mid-stream is reset, as by an endpoint that does not
// know it. Which node the client sends VIP packets to is its neighbour entry
// (what gratuitous ARP changes).
type handoverLab struct {
	t                 *testing.T
	cli, oldNS, newNS string
	oldMAC, newMAC    string
	oldAddr, newAddr  string
	vip               string
	newNetlink        *netlink.Handle
	newIPT            iptables.Interface
	listeners         []net.Listener
}

func newHandoverLab(t *testing.T) *handoverLab {
	netnstest.RequireRoot(t, "ip", "iptables", "iptables-restore", "iptables-save")
	id := netnstest.Name()
	l := &handoverLab{t: t, cli: id + "-cli", oldNS: id + "-old", newNS: id + "-new",
		oldAddr: "192.0.2.11", newAddr: "192.0.2.12", vip: "192.0.2.200"}
	for _, ns := range []string{l.cli, l.oldNS, l.newNS} {
		netnstest.Sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		netnstest.Sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	netnstest.Sh(t, "ip", "-n", l.cli, "link", "add", "br0", "type", "bridge")
	for _, n := range []struct{ ns, port, addr string }{{l.oldNS, "vold", l.oldAddr}, {l.newNS, "vnew", l.newAddr}} {
		netnstest.Sh(t, "ip", "-n", l.cli, "link", "add", n.port, "type", "veth", "peer", "name", "eth0", "netns", n.ns)
		netnstest.Sh(t, "ip", "-n", l.cli, "link", "set", n.port, "master", "br0", "up")
		netnstest.Sh(t, "ip", "-n", n.ns, "addr", "add", n.addr+"/24", "dev", "eth0")
		netnstest.Sh(t, "ip", "-n", n.ns, "link", "set", "eth0", "up")
		// As a node's kube-proxy: VIP:8000 to the node's endpoint.
		in := fmt.Sprintf("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d %s/32 -p tcp --dport 8000 -j DNAT --to-destination %s:9000\n-I PREROUTING 1 -j KUBE-SERVICES\nCOMMIT\n", l.vip, n.addr)
		cmd := exec.Command("ip", "netns", "exec", n.ns, "iptables-restore", "--noflush", "-w", "5")
		cmd.Stdin = strings.NewReader(in)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kube-proxy rules in %s: %v: %s", n.ns, err, out)
		}
		l.serve(n.ns, n.addr+":9000", n.ns[len(id)+1:])
	}
	netnstest.Sh(t, "ip", "-n", l.cli, "addr", "add", "192.0.2.100/24", "dev", "br0")
	netnstest.Sh(t, "ip", "-n", l.cli, "link", "set", "br0", "up")
	netnstest.Sh(t, "ip", "netns", "exec", l.newNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	l.oldMAC = mac(t, l.oldNS)
	l.newMAC = mac(t, l.newNS)
	h, err := netns.GetFromName(l.newNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if l.newNetlink, err = netlink.NewHandleAt(h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.newNetlink.Close)
	l.newIPT = iptables.NewExec(iptables.IPv4, "ip", "netns", "exec", l.newNS)
	l.point(l.oldMAC)
	return l
}

func mac(t *testing.T, ns string) string {
	out := netnstest.Sh(t, "ip", "-n", ns, "-br", "link", "show", "eth0")
	f := strings.Fields(out)
	if len(f) < 3 {
		t.Fatalf("no MAC in %q", out)
	}
	return f[2]
}

// point makes the client send the VIP's packets to mac (a gratuitous ARP's
// effect).
func (l *handoverLab) point(mac string) {
	netnstest.Sh(l.t, "ip", "-n", l.cli, "neigh", "replace", l.vip, "lladdr", mac, "dev", "br0", "nud", "permanent")
}

// serve answers each line of each connection with "name:line".
func (l *handoverLab) serve(ns, addr, name string) {
	netnstest.ServeTCP(l.t, ns, addr, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(c, "%s:%s", name, line); err != nil {
				return
			}
		}
	})
}

// conn is the client's connection to VIP:8000.
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func (l *handoverLab) dial() *conn {
	var c net.Conn
	if err := netnstest.InNS(l.cli, func() (err error) {
		c, err = net.DialTimeout("tcp4", l.vip+":8000", 3*time.Second)
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { c.Close() })
	return &conn{c: c, r: bufio.NewReader(c)}
}

// ask sends line and returns the answer ("old:line" or "new:line").
func (c *conn) ask(line string) (string, error) {
	_ = c.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c.c, "%s\n", line); err != nil {
		return "", err
	}
	s, err := c.r.ReadString('\n')
	return strings.TrimSpace(s), err
}

// A connection made through the old owner survives the client's switch to
// the new owner while the new owner forwards it; without forwarding it is
// reset (the control). New connections go to the new owner either way, and
// Close leaves nothing behind.
func TestRealHandoverKeepsConnections(t *testing.T) {
	l := newHandoverLab(t)
	ctx := context.Background()

	// Control: without forwarding the new owner resets the connection.
	if got, ok := l.survivesSwitch(); ok {
		t.Fatalf("control: the connection survived the switch without forwarding (%q): the test cannot tell", got)
	}
	l.point(l.oldMAC)

	c1 := l.dial()
	if got, err := c1.ask("a"); err != nil || got != "old:a" {
		t.Fatalf("through the old owner: %q, %v", got, err)
	}
	f := l.forward(time.Hour)
	l.point(l.newMAC)
	for i := range 20 {
		line := fmt.Sprint("after-", i)
		if got, err := c1.ask(line); err != nil || got != "old:"+line {
			t.Fatalf("after the switch, exchange %d: %q, %v: want the old owner's answer", i, got, err)
		}
	}
	if got, err := l.dial().ask("x"); err != nil || got != "new:x" {
		t.Fatalf("a new connection after the switch: %q, %v: want the new owner's", got, err)
	}
	// The new owner sent the client an ICMP redirect (it routed the packets
	// back out of the link they came in on), which the client ignored: its
	// new connection above went to the new owner, and its route to the
	// address is still on-link.
	if got := netnstest.Sh(t, "ip", "-n", l.cli, "route", "get", l.vip); strings.Contains(got, " via ") {
		t.Fatalf("the client took the redirect: %s", got)
	}
	if n := icmpCounter(t, l.cli, "InRedirects"); n == 0 {
		t.Logf("the client received no ICMP redirect (the new owner sent %d)", icmpCounter(t, l.newNS, "OutRedirects"))
	} else {
		t.Logf("the client received %d ICMP redirects and ignored them", n)
	}

	// Stop: the route and the per-address rule go.
	if err := f.Stop(ctx, mustAddr(l.vip)); err != nil {
		t.Fatal(err)
	}
	if rs, _ := l.newNetlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: DefaultTable}, netlink.RT_FILTER_TABLE); len(rs) != 0 {
		t.Fatalf("routes left after Stop: %v", rs)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l.assertClean()
}

// assertClean checks that the new owner has no chain, rule or route of the
// package left.
func (l *handoverLab) assertClean() {
	l.t.Helper()
	for _, tbl := range []string{"mangle", "nat", "filter"} {
		if out := netnstest.Sh(l.t, "ip", "netns", "exec", l.newNS, "iptables-save", "-t", tbl); strings.Contains(out, Chain) {
			l.t.Fatalf("%s still has %s:\n%s", tbl, Chain, out)
		}
	}
	if rules, _ := l.newNetlink.RuleList(netlink.FAMILY_V4); containsTable(rules, DefaultTable) {
		l.t.Fatalf("ip rule to table %d left", DefaultTable)
	}
	if rs, _ := l.newNetlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: DefaultTable}, netlink.RT_FILTER_TABLE); len(rs) != 0 {
		l.t.Fatalf("routes left in table %d: %v", DefaultTable, rs)
	}
}

// --cleanup (Cleanup) removes what a detached speaker left.
func TestRealHandoverCleanup(t *testing.T) {
	l := newHandoverLab(t)
	l.forward(time.Hour).Detach()
	if err := Cleanup(context.Background(), Config{IPTables: []iptables.Interface{l.newIPT}, netlink: l.newNetlink}); err != nil {
		t.Fatal(err)
	}
	l.assertClean()
}

// The window ends by itself: the route and the rule of the address go.
func TestRealHandoverWindowEnds(t *testing.T) {
	l := newHandoverLab(t)
	f := l.forward(300 * time.Millisecond)
	if out := netnstest.Sh(t, "ip", "netns", "exec", l.newNS, "iptables-save", "-t", "mangle"); !strings.Contains(out, l.vip) {
		t.Fatalf("no rule for %s while forwarding:\n%s", l.vip, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(f.Forwards()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(f.Forwards()) > 0 {
		t.Fatal("the window did not end within 20s")
	}
	if rs, _ := l.newNetlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: DefaultTable}, netlink.RT_FILTER_TABLE); len(rs) != 0 {
		t.Fatalf("routes left after the window: %v", rs)
	}
	if out := netnstest.Sh(t, "ip", "netns", "exec", l.newNS, "iptables-save", "-t", "mangle"); strings.Contains(out, l.vip) {
		t.Fatalf("rule for %s left after the window:\n%s", l.vip, out)
	}
	// And a connection through the old owner is reset again after it.
	if got, ok := l.survivesSwitch(); ok {
		t.Fatalf("forwarded after the window ended: %q", got)
	}
}

// forward makes the new owner forward the VIP's unknown connections to the
// old owner for window; between Prepare and Forward it runs between.
func (l *handoverLab) forward(window time.Duration, between ...func()) *Forwarder {
	l.t.Helper()
	ctx := context.Background()
	f, err := New(Config{Window: window, IPTables: []iptables.Interface{l.newIPT}, netlink: l.newNetlink})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = f.Close(ctx) })
	if err := f.Prepare(ctx); err != nil {
		l.t.Fatal(err)
	}
	for _, fn := range between {
		fn()
	}
	if err := f.Forward(ctx, map[netip.Addr]netip.Addr{mustAddr(l.vip): mustAddr(l.oldAddr)}); err != nil {
		l.t.Fatal(err)
	}
	return f
}

// A kube-proxy that starts after Prepare puts its jump above the handover's;
// the takeover moves the handover's back to the top.
func TestRealHandoverJumpStaysFirst(t *testing.T) {
	l := newHandoverLab(t)
	l.forward(time.Hour, func() {
		netnstest.Sh(t, "ip", "netns", "exec", l.newNS, "iptables", "-t", "nat", "-D", "PREROUTING", "-j", "KUBE-SERVICES")
		netnstest.Sh(t, "ip", "netns", "exec", l.newNS, "iptables", "-t", "nat", "-I", "PREROUTING", "1", "-j", "KUBE-SERVICES")
	})
	want := "-A PREROUTING " + strings.Join(quoted(jumpArgs()), " ")
	deadline := time.Now().Add(20 * time.Second)
	for {
		save := netnstest.Sh(t, "ip", "netns", "exec", l.newNS, "iptables-save", "-t", "nat")
		if firstRule([]byte(save), "PREROUTING") == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the handover jump is not first in nat PREROUTING 20s after the takeover:\n%s", save)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got, ok := l.survivesSwitch(); !ok || got != "old:b" {
		t.Fatalf("the connection through the old owner: %q, survived %v", got, ok)
	}
}

// A speaker that stops leaves its forwards in the kernel (Detach): the
// connection keeps working without a process, and the next process adopts
// the forward, rewriting the chains without a gap, then ends it.
func TestRealHandoverSurvivesRestart(t *testing.T) {
	l := newHandoverLab(t)
	ctx := context.Background()
	c := l.dial()
	if got, err := c.ask("a"); err != nil || got != "old:a" {
		t.Fatalf("through the old owner: %q, %v", got, err)
	}
	first := l.forward(time.Hour)
	l.point(l.newMAC)
	first.Detach()
	if got, err := c.ask("b"); err != nil || got != "old:b" {
		t.Fatalf("after the first process detached: %q, %v", got, err)
	}
	next, err := New(Config{Window: time.Hour, IPTables: []iptables.Interface{l.newIPT}, netlink: l.newNetlink})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Close(ctx) })
	// The connection exchanges data while the next process prepares.
	errc := make(chan error, 1)
	go func() {
		for i := range 50 {
			line := fmt.Sprint("during-", i)
			if got, err := c.ask(line); err != nil || got != "old:"+line {
				errc <- fmt.Errorf("exchange %d while the next process prepared: %q, %v", i, got, err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		errc <- nil
	}()
	if err := next.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	fw := next.Forwards()
	if len(fw) != 1 || fw[0].VIP != mustAddr(l.vip) || fw[0].Via != mustAddr(l.oldAddr) || time.Until(fw[0].Until) < 58*time.Minute {
		t.Fatalf("adopted %v: want %s to %s for the first process's window", fw, l.vip, l.oldAddr)
	}
	if got, err := c.ask("c"); err != nil || got != "old:c" {
		t.Fatalf("after the next process adopted the forward: %q, %v", got, err)
	}
	if err := next.Stop(ctx, mustAddr(l.vip)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ask("d"); err == nil {
		t.Fatal("the connection still reaches the old owner after Stop")
	}
}

// survivesSwitch opens a connection through the old owner, points the client
// at the new owner and reports whether the connection still answers (and
// what).
func (l *handoverLab) survivesSwitch() (string, bool) {
	l.t.Helper()
	c := l.dial()
	if got, err := c.ask("a"); err != nil || got != "old:a" {
		l.t.Fatalf("through the old owner: %q, %v", got, err)
	}
	l.point(l.newMAC)
	got, err := c.ask("b")
	return got, err == nil
}

// icmpCounter reads one counter of the Icmp line of /proc/net/snmp in ns.
func icmpCounter(t *testing.T, ns, name string) int {
	out := netnstest.Sh(t, "ip", "netns", "exec", ns, "cat", "/proc/net/snmp")
	var names []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == name && i < len(f) {
				var v int
				fmt.Sscan(f[i], &v)
				return v
			}
		}
	}
	t.Fatalf("no Icmp %s in /proc/net/snmp", name)
	return 0
}

func containsTable(rules []netlink.Rule, table int) bool {
	for _, r := range rules {
		if r.Table == table {
			return true
		}
	}
	return false
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
