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
// namespace, in one address family (labFamilies):
//
//	old 192.0.2.11   2001:db8::11 --+
//	                                +-- br0 192.0.2.100  2001:db8::100 cli
//	new 192.0.2.12   2001:db8::12 --+
//
// Each node DNATs VIP:8000 (from a KUBE-SERVICES chain at the top of nat
// PREROUTING, as kube-proxy) to its own echo server on port 9000, which
// prefixes every line with the node's name: a connection that reaches the
// other node's server mid-stream is reset, as by an endpoint that does not
// know it. Which node the client sends VIP packets to is its neighbour entry
// (what gratuitous ARP or an unsolicited NA changes).
type handoverLab struct {
	t                 *testing.T
	fam               labFamily
	cli, oldNS, newNS string
	oldMAC, newMAC    string
	newNetlink        *netlink.Handle
	newIPT            iptables.Interface
}

// labFamily is the addresses of the lab in one family.
type labFamily struct {
	ipt                       iptables.Family
	cliAddr, oldAddr, newAddr string
	vip                       string
	bits                      int // of the LAN's prefix
}

var labFamilies = []labFamily{
	{ipt: iptables.IPv4, cliAddr: "192.0.2.100", oldAddr: "192.0.2.11", newAddr: "192.0.2.12", vip: "192.0.2.200", bits: 24},
	{ipt: iptables.IPv6, cliAddr: "2001:db8::100", oldAddr: "2001:db8::11", newAddr: "2001:db8::12", vip: "2001:db8::200", bits: 64},
}

// forEachFamily runs test as a subtest ("IPv4", "IPv6") on a lab of each
// family.
func forEachFamily(t *testing.T, test func(t *testing.T, l *handoverLab)) {
	for _, fam := range labFamilies {
		t.Run(fam.ipt.String(), func(t *testing.T) { test(t, newHandoverLab(t, fam)) })
	}
}

func (f labFamily) v4() bool { return f.ipt == iptables.IPv4 }

func (f labFamily) netlinkFamily() int {
	if f.v4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func newHandoverLab(t *testing.T, fam labFamily) *handoverLab {
	if fam.v4() {
		netnstest.RequireRoot(t, "ip", "iptables", "iptables-restore", "iptables-save")
	} else {
		netnstest.RequireRoot(t, "ip", "ip6tables", "ip6tables-restore", "ip6tables-save")
	}
	id := netnstest.Name()
	l := &handoverLab{t: t, fam: fam, cli: id + "-cli", oldNS: id + "-old", newNS: id + "-new"}
	for _, ns := range []string{l.cli, l.oldNS, l.newNS} {
		netnstest.Sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		netnstest.Sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
		// No duplicate address detection: a tentative link-local address
		// keeps a node from sending neighbour solicitations, so its first
		// forwarded packets would wait for DAD (a second or more).
		netnstest.Sh(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	netnstest.Sh(t, "ip", "-n", l.cli, "link", "add", "br0", "type", "bridge")
	for _, n := range []struct{ ns, port, addr string }{{l.oldNS, "vold", fam.oldAddr}, {l.newNS, "vnew", fam.newAddr}} {
		netnstest.Sh(t, "ip", "-n", l.cli, "link", "add", n.port, "type", "veth", "peer", "name", "eth0", "netns", n.ns)
		netnstest.Sh(t, "ip", "-n", l.cli, "link", "set", n.port, "master", "br0", "up")
		netnstest.Sh(t, "ip", "-n", n.ns, "addr", "add", fmt.Sprintf("%s/%d", n.addr, fam.bits), "dev", "eth0", "nodad")
		netnstest.Sh(t, "ip", "-n", n.ns, "link", "set", "eth0", "up")
		// As a node's kube-proxy: VIP:8000 to the node's endpoint.
		in := fmt.Sprintf("*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -d %s -p tcp --dport 8000 -j DNAT --to-destination %s\n-I PREROUTING 1 -j KUBE-SERVICES\nCOMMIT\n",
			netip.PrefixFrom(mustAddr(fam.vip), mustAddr(fam.vip).BitLen()), net.JoinHostPort(n.addr, "9000"))
		if err := iptables.NewExec(fam.ipt, "ip", "netns", "exec", n.ns).Restore(context.Background(), []byte(in)); err != nil {
			t.Fatalf("kube-proxy rules in %s: %v", n.ns, err)
		}
		l.serve(n.ns, net.JoinHostPort(n.addr, "9000"), n.ns[len(id)+1:])
	}
	netnstest.Sh(t, "ip", "-n", l.cli, "addr", "add", fmt.Sprintf("%s/%d", fam.cliAddr, fam.bits), "dev", "br0", "nodad")
	netnstest.Sh(t, "ip", "-n", l.cli, "link", "set", "br0", "up")
	if fam.v4() {
		netnstest.Sh(t, "ip", "netns", "exec", l.newNS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	} else {
		netnstest.Sh(t, "ip", "netns", "exec", l.newNS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
		for _, at := range [][2]string{{l.cli, "br0"}, {l.oldNS, "eth0"}, {l.newNS, "eth0"}} {
			waitLinkLocal(t, at[0], at[1])
		}
	}
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
	l.newIPT = iptables.NewExec(fam.ipt, "ip", "netns", "exec", l.newNS)
	l.point(l.oldMAC)
	return l
}

// waitLinkLocal waits until dev in ns has a usable link-local address: IPv6
// is up on it (a bridge gets it when its carrier comes, up to a second after
// "up"), so the first connection does not wait for a SYN retransmit.
func waitLinkLocal(t *testing.T, ns, dev string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(netnstest.Sh(t, "ip", "-n", ns, "-6", "addr", "show", "dev", dev, "scope", "link", "-tentative"), "inet6") {
		if time.Now().After(deadline) {
			t.Fatalf("no link-local address on %s in %s after 10s", dev, ns)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	netnstest.Sh(l.t, "ip", "-n", l.cli, "neigh", "replace", l.fam.vip, "lladdr", mac, "dev", "br0", "nud", "permanent")
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
		c, err = net.DialTimeout("tcp", net.JoinHostPort(l.fam.vip, "8000"), 3*time.Second)
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
	forEachFamily(t, func(t *testing.T, l *handoverLab) {
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
		forwarded := l.snmp(l.newNS, "Ip:ForwDatagrams", "Ip6OutForwDatagrams")
		for i := range 20 {
			line := fmt.Sprint("after-", i)
			if got, err := c1.ask(line); err != nil || got != "old:"+line {
				t.Fatalf("after the switch, exchange %d: %q, %v: want the old owner's answer", i, got, err)
			}
		}
		// The old owner answered because the new owner relayed the
		// client's packets to it.
		if n := l.snmp(l.newNS, "Ip:ForwDatagrams", "Ip6OutForwDatagrams") - forwarded; n < 20 {
			t.Fatalf("the new owner forwarded %d packets for 20 exchanges", n)
		}
		if got, err := l.dial().ask("x"); err != nil || got != "new:x" {
			t.Fatalf("a new connection after the switch: %q, %v: want the new owner's", got, err)
		}
		// An IPv4 new owner sends the client an ICMP redirect (it routes the
		// packets back out of the link they came in on), which the client
		// ignores: its new connection above went to the new owner, and its
		// route to the address is still on-link. (IPv6 sends none: the next
		// hop, the old node's global address, is not link-local.)
		if got := netnstest.Sh(t, "ip", "-n", l.cli, "route", "get", l.fam.vip); strings.Contains(got, " via ") {
			t.Fatalf("the client took the redirect: %s", got)
		}
		if n := l.snmp(l.cli, "Icmp:InRedirects", "Icmp6InRedirects"); n == 0 {
			t.Logf("the client received no ICMP redirect (the new owner sent %d)", l.snmp(l.newNS, "Icmp:OutRedirects", "Icmp6OutRedirects"))
		} else {
			t.Logf("the client received %d ICMP redirects and ignored them", n)
		}

		// Stop: the route and the per-address rule go.
		if err := f.Stop(ctx, mustAddr(l.fam.vip)); err != nil {
			t.Fatal(err)
		}
		if rs, _ := l.newNetlink.RouteListFiltered(l.fam.netlinkFamily(), &netlink.Route{Table: DefaultTable}, netlink.RT_FILTER_TABLE); len(rs) != 0 {
			t.Fatalf("routes left after Stop: %v", rs)
		}
		if err := f.Close(ctx); err != nil {
			t.Fatal(err)
		}
		l.assertClean()
	})
}

// save is the new owner's iptables-save of table, in the lab's family.
func (l *handoverLab) save(table iptables.Table) string {
	l.t.Helper()
	out, err := l.newIPT.Save(context.Background(), table)
	if err != nil {
		l.t.Fatal(err)
	}
	return string(out)
}

// assertClean checks that the new owner has no chain, rule or route of the
// package left.
func (l *handoverLab) assertClean() {
	l.t.Helper()
	for _, tbl := range []iptables.Table{iptables.TableMangle, iptables.TableNAT, iptables.TableFilter} {
		if out := l.save(tbl); strings.Contains(out, Chain) {
			l.t.Fatalf("%s still has %s:\n%s", tbl, Chain, out)
		}
	}
	if rules, _ := l.newNetlink.RuleList(l.fam.netlinkFamily()); containsTable(rules, DefaultTable) {
		l.t.Fatalf("ip rule to table %d left", DefaultTable)
	}
	if rs, _ := l.newNetlink.RouteListFiltered(l.fam.netlinkFamily(), &netlink.Route{Table: DefaultTable}, netlink.RT_FILTER_TABLE); len(rs) != 0 {
		l.t.Fatalf("routes left in table %d: %v", DefaultTable, rs)
	}
}

// --cleanup (Cleanup) removes what a detached speaker left.
func TestRealHandoverCleanup(t *testing.T) {
	forEachFamily(t, func(t *testing.T, l *handoverLab) {
		l.forward(time.Hour).Detach()
		if err := Cleanup(context.Background(), Config{IPTables: []iptables.Interface{l.newIPT}, netlink: l.newNetlink}); err != nil {
			t.Fatal(err)
		}
		l.assertClean()
	})
}

// The window ends by itself: the route and the rule of the address go.
func TestRealHandoverWindowEnds(t *testing.T) {
	forEachFamily(t, func(t *testing.T, l *handoverLab) {
		f := l.forward(300 * time.Millisecond)
		if out := l.save(iptables.TableMangle); !strings.Contains(out, l.fam.vip) {
			t.Fatalf("no rule for %s while forwarding:\n%s", l.fam.vip, out)
		}
		deadline := time.Now().Add(20 * time.Second)
		for len(f.Forwards()) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if len(f.Forwards()) > 0 {
			t.Fatal("the window did not end within 20s")
		}
		if rs, _ := l.newNetlink.RouteListFiltered(l.fam.netlinkFamily(), &netlink.Route{Table: DefaultTable}, netlink.RT_FILTER_TABLE); len(rs) != 0 {
			t.Fatalf("routes left after the window: %v", rs)
		}
		if out := l.save(iptables.TableMangle); strings.Contains(out, l.fam.vip) {
			t.Fatalf("rule for %s left after the window:\n%s", l.fam.vip, out)
		}
		// And a connection through the old owner is reset again after it.
		if got, ok := l.survivesSwitch(); ok {
			t.Fatalf("forwarded after the window ended: %q", got)
		}
	})
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
	if err := f.Forward(ctx, map[netip.Addr]netip.Addr{mustAddr(l.fam.vip): mustAddr(l.fam.oldAddr)}); err != nil {
		l.t.Fatal(err)
	}
	return f
}

// A kube-proxy that starts after Prepare puts its jump above the handover's;
// the takeover moves the handover's back to the top.
func TestRealHandoverJumpStaysFirst(t *testing.T) {
	forEachFamily(t, func(t *testing.T, l *handoverLab) {
		l.forward(time.Hour, func() {
			ctx := context.Background()
			if err := l.newIPT.DeleteRule(ctx, iptables.TableNAT, "PREROUTING", "-j", "KUBE-SERVICES"); err != nil {
				t.Fatal(err)
			}
			if err := l.newIPT.EnsureRule(ctx, iptables.TableNAT, "PREROUTING", "-j", "KUBE-SERVICES"); err != nil { // inserts it first
				t.Fatal(err)
			}
		})
		want := "-A PREROUTING " + strings.Join(quoted(jumpArgs()), " ")
		deadline := time.Now().Add(20 * time.Second)
		for {
			save := l.save(iptables.TableNAT)
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
	})
}

// A speaker that stops leaves its forwards in the kernel (Detach): the
// connection keeps working without a process, and the next process adopts
// the forward, rewriting the chains without a gap, then ends it.
func TestRealHandoverSurvivesRestart(t *testing.T) {
	forEachFamily(t, func(t *testing.T, l *handoverLab) {
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
		if len(fw) != 1 || fw[0].VIP != mustAddr(l.fam.vip) || fw[0].Via != mustAddr(l.fam.oldAddr) || time.Until(fw[0].Until) < 58*time.Minute {
			t.Fatalf("adopted %v: want %s to %s for the first process's window", fw, l.fam.vip, l.fam.oldAddr)
		}
		if got, err := c.ask("c"); err != nil || got != "old:c" {
			t.Fatalf("after the next process adopted the forward: %q, %v", got, err)
		}
		if err := next.Stop(ctx, mustAddr(l.fam.vip)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ask("d"); err == nil {
			t.Fatal("the connection still reaches the old owner after Stop")
		}
	})
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

// snmp reads one counter of ns in the lab's family: for IPv4 v4
// ("Icmp:InRedirects": line Icmp: of /proc/net/snmp), for IPv6 v6
// ("Icmp6InRedirects" of /proc/net/snmp6).
func (l *handoverLab) snmp(ns, v4, v6 string) int {
	t := l.t
	t.Helper()
	file, proto, name := "/proc/net/snmp6", "", v6
	if l.fam.v4() {
		file = "/proc/net/snmp"
		proto, name, _ = strings.Cut(v4, ":")
		proto += ":"
	}
	out := netnstest.Sh(t, "ip", "netns", "exec", ns, "cat", file)
	var names []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		var v int
		switch {
		case !l.fam.v4() && len(f) == 2 && f[0] == name:
			fmt.Sscan(f[1], &v)
			return v
		case !l.fam.v4() || len(f) == 0 || f[0] != proto:
			continue
		case names == nil:
			names = f
			continue
		}
		for i, n := range names {
			if n == name && i < len(f) {
				fmt.Sscan(f[i], &v)
				return v
			}
		}
	}
	t.Fatalf("no counter %s in %s of %s", name, file, ns)
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
