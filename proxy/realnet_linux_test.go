//go:build linux

package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/ironlb/ironlb/internal/netnstest"
	"github.com/ironlb/ironlb/proxy/iptables"
)

// lab is a node namespace with a pod namespace and a client namespace:
//
//	cli 192.0.2.100 --- 192.0.2.11 node 198.18.1.1 --- 198.18.1.10 pod
//
// The client routes ClusterIPs (198.19.0.0/16) and VIPs (203.0.113.0/24) to
// the node, as a router would.
type lab struct {
	t                 *testing.T
	node, pod, client string
}

func requireRoot(t *testing.T) {
	t.Helper()
	netnstest.RequireRoot(t, "ip", "iptables-restore", "iptables-save", "ip6tables-restore")
}

// sh and inNS: see package netnstest.
var (
	sh   = netnstest.Sh
	inNS = netnstest.InNS
)

func newLab(t *testing.T) *lab {
	requireRoot(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := "ilb" + hex.EncodeToString(b)
	l := &lab{t: t, node: id + "-node", pod: id + "-pod", client: id + "-cli"}
	for _, ns := range []string{l.node, l.pod, l.client} {
		sh(t, "ip", "netns", "add", ns)
		ns := ns
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	// Interface names are short and unique per run: veths live in the lab's
	// namespaces only, created there directly.
	sh(t, "ip", "-n", l.node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", l.client)
	sh(t, "ip", "-n", l.node, "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", l.pod)
	for _, c := range [][]string{
		{"-n", l.node, "addr", "add", "192.0.2.11/24", "dev", "eth0"},
		{"-n", l.node, "addr", "add", "198.18.1.1/24", "dev", "vpod"},
		{"-n", l.client, "addr", "add", "192.0.2.100/24", "dev", "eth0"},
		{"-n", l.pod, "addr", "add", "198.18.1.10/24", "dev", "eth0"},
		{"-n", l.node, "link", "set", "eth0", "up"},
		{"-n", l.node, "link", "set", "vpod", "up"},
		{"-n", l.client, "link", "set", "eth0", "up"},
		{"-n", l.pod, "link", "set", "eth0", "up"},
		{"-n", l.pod, "route", "add", "default", "via", "198.18.1.1"},
		{"-n", l.client, "route", "add", "198.19.0.0/16", "via", "192.0.2.11"},
		// The node's way out is the client namespace (as a router would be), so
		// a ClusterIP the rules do not catch is forwarded, not unroutable.
		{"-n", l.node, "route", "add", "default", "via", "192.0.2.100"},
		{"-n", l.client, "route", "add", "203.0.113.0/24", "via", "192.0.2.11"},
	} {
		sh(t, append([]string{"ip"}, c...)...)
	}
	// The node forwards; it sends no ICMP redirects, which a packet routed
	// back out of eth0 (a rejected ClusterIP) would otherwise trigger.
	sh(t, "ip", "netns", "exec", l.node, "sysctl", "-qw", "net.ipv4.ip_forward=1",
		"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0")
	return l
}

// serve runs a TCP server in ns that answers every connection with the
// client address it sees, until the test ends.
func (l *lab) serve(ns, addr string) {
	netnstest.ServeTCP(l.t, ns, addr, func(c net.Conn) {
		_, _ = fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP)
		c.Close()
	})
}

// dial connects from ns and returns the source address the server saw.
func (l *lab) dial(ns, addr string) (string, error) {
	var seen string
	err := inNS(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		seen = strings.TrimSpace(line)
		return err
	})
	return seen, err
}

func (l *lab) save(family string, table string) string {
	bin := "iptables-save"
	if family == "6" {
		bin = "ip6tables-save"
	}
	return sh(l.t, "ip", "netns", "exec", l.node, bin, "-t", table)
}

// serveLocal runs a TCP server in ns that answers with its own address.
func (l *lab) serveLocal(ns, addr string) {
	var ln net.Listener
	if err := inNS(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "%s\n", c.LocalAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

func TestRealIptablesInNamespace(t *testing.T) {
	l := newLab(t)
	l.serve(l.pod, "198.18.1.10:8080")
	sh(t, "ip", "-n", l.pod, "addr", "add", "198.18.1.11/24", "dev", "eth0")
	l.serveLocal(l.pod, "198.18.1.10:8081")
	l.serveLocal(l.pod, "198.18.1.11:8081")

	nodeNS, err := netns.GetFromName(l.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nodeNS.Close()
	h, err := netlink.NewHandleAt(nodeNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ipt4 := iptables.NewExec(iptables.IPv4, "ip", "netns", "exec", l.node)
	ipt6 := iptables.NewExec(iptables.IPv6, "ip", "netns", "exec", l.node)
	// Someone else's rule, which must survive syncs.
	foreign := func() {
		sh(t, "ip", "netns", "exec", l.node, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "198.18.99.0/24", "-j", "RETURN")
	}
	foreign()

	p, err := New(Config{
		NodeName:     "node1",
		IPTables:     []iptables.Interface{ipt4, ipt6},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")},
		Conntrack:    NetlinkConntrack{Handle: h},
		HealthCheckListen: func(ctx context.Context, network, addr string) (ln net.Listener, err error) {
			err = inNS(l.node, func() error { ln, err = net.Listen(network, addr); return err })
			return ln, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.health.close)
	ctx := context.Background()
	pod := ep{ip: "198.18.1.10", node: "node1"}
	p.tracker.setService(nginx(nodePort(30080)))
	p.tracker.setSlice(nginxSlice(pod))
	p.tracker.setService(service("web", "lb", "198.19.0.20", nodePort(30081), loadBalancer("203.0.113.7"), etpLocal(32000)))
	p.tracker.setSlice(slice("web", "lb", "lb-a", httpPort(8080), pod))
	p.tracker.setService(service("web", "empty", "198.19.0.99"))
	// Every other kind of rule, so the real iptables-restore sees each form.
	p.tracker.setService(service("web", "sticky", "198.19.0.30", affinity(600)))
	p.tracker.setSlice(slice("web", "sticky", "sticky-a", httpPort(8081), ep{ip: "198.18.1.10", node: "node1"}, ep{ip: "198.18.1.11", node: "node1"}))
	p.tracker.setService(service("web", "fw", "198.19.0.40", nodePort(30083), loadBalancer("203.0.113.8"), sourceRanges("192.0.2.0/25"), externalIPs("192.0.2.201"), itpLocal()))
	p.tracker.setSlice(slice("web", "fw", "fw-a", httpPort(8080), pod))
	p.tracker.setService(service("tel", "sig", "198.19.0.60", withPorts(v1.ServicePort{Name: "s", Port: 3868, Protocol: v1.ProtocolSCTP, NodePort: 31868}),
		func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeNodePort }))
	p.tracker.setSlice(slice("tel", "sig", "sig-a", []discovery.EndpointPort{epPort("s", 3868, v1.ProtocolSCTP)}, ep{ip: "198.18.1.10", node: "node1"}))
	p.tracker.setService(service("web", "v6", "2001:db8:1::10", nodePort(30082)))
	p.tracker.setSlice(slice("web", "v6", "v6-a", httpPort(8080), ep{ip: "2001:db8:42::10", node: "node2"}))
	if err := p.syncOnce(ctx); err != nil {
		t.Fatal(err)
	}

	if p.checkCanaries(ctx) {
		t.Fatal("canary or jump rules reported missing right after a sync: every check would force a full sync")
	}
	nat := l.save("4", "nat")
	for _, want := range []string{":IRONLB-SERVICES", "-A PREROUTING -m comment --comment \"ironlb service portals\" -j IRONLB-SERVICES",
		"-j DNAT --to-destination 198.18.1.10:8080", "-s 198.18.99.0/24 -j RETURN", "--random-fully"} {
		if !strings.Contains(nat, want) {
			t.Errorf("iptables-save -t nat lacks %q:\n%s", want, nat)
		}
	}
	if nat6 := l.save("6", "nat"); !strings.Contains(nat6, "--to-destination [2001:db8:42::10]:8080") {
		t.Errorf("ip6tables-save -t nat lacks the IPv6 endpoint:\n%s", nat6)
	}

	type probe struct {
		name, from, addr string
		wantSrc          string // what the pod sees; "" for a refused connection
	}
	probes := []probe{
		{"ClusterIP from outside the cluster (masqueraded)", l.client, "198.19.0.10:80", "198.18.1.1"},
		{"NodePort (masqueraded)", l.client, "192.0.2.11:30080", "198.18.1.1"},
		{"ClusterIP from the node itself", l.node, "198.19.0.10:80", "198.18.1.1"},
		{"VIP with externalTrafficPolicy Local (client address kept)", l.client, "203.0.113.7:80", "192.0.2.100"},
		{"ClusterIP from the pod itself (hairpin, masqueraded)", l.pod, "198.19.0.10:80", "198.18.1.1"},
		{"Service without endpoints (rejected)", l.client, "198.19.0.99:80", ""},
		{"VIP with loadBalancerSourceRanges, client inside", l.client, "203.0.113.8:80", "198.18.1.1"},
	}
	check := func(when string) {
		t.Helper()
		for _, pr := range probes {
			src, err := l.dial(pr.from, pr.addr)
			switch {
			case pr.wantSrc == "" && !errors.Is(err, syscall.ECONNREFUSED):
				t.Errorf("%s: %s: got %q, %v; want connection refused", when, pr.name, src, err)
			case pr.wantSrc != "" && (err != nil || src != pr.wantSrc):
				t.Errorf("%s: %s: pod saw %q (%v), want %s", when, pr.name, src, err, pr.wantSrc)
			}
		}
	}
	check("after the first sync")

	// ClientIP affinity: every connection of the client reaches the same endpoint.
	first, err := l.dial(l.client, "198.19.0.30:80")
	if err != nil {
		t.Fatal(err)
	}
	for range 8 {
		if got, err := l.dial(l.client, "198.19.0.30:80"); err != nil || got != first {
			t.Fatalf("sticky Service: answered by %q (%v), the first connection by %s", got, err, first)
		}
	}

	// The health check node port answers from the node, seen from the client.
	var body string
	// The HTTP client dials on goroutines of its own: each dial is switched
	// into the client namespace.
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = inNS(l.client, func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
	if resp, err := hc.Get("http://192.0.2.11:32000/"); err != nil {
		t.Errorf("health check: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = fmt.Sprint(resp.StatusCode, " ", strings.TrimSpace(string(b)))
	}
	if want := `200 {"service":{"namespace":"web","name":"lb"},"localEndpoints":1,"serviceProxyHealthy":true}`; body != want {
		t.Errorf("health check answered %s, want %s", body, want)
	}

	// An external flush of the nat table is noticed and repaired.
	sh(t, "ip", "netns", "exec", l.node, "iptables", "-t", "nat", "-F")
	if _, err := l.dial(l.client, "198.19.0.10:80"); err == nil {
		t.Fatal("the flush did not break the Service: the test proves nothing")
	}
	if !p.checkCanaries(ctx) {
		t.Fatal("nat flush not detected")
	}
	if err := p.syncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the repair of a nat flush")
	sh(t, "ip", "netns", "exec", l.node, "iptables", "-t", "filter", "-F")
	if !p.checkCanaries(ctx) {
		t.Fatal("filter flush not detected")
	}
	if err := p.syncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the repair of a filter flush")

	// A partial sync through the real iptables-restore: the endpoint goes.
	p.tracker.setSlice(nginxSlice())
	if err := p.syncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.dial(l.client, "198.19.0.10:80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("Service whose endpoint went: %v, want connection refused", err)
	}

	foreign() // the flushes above took it; cleanup must leave it
	if err := p.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []string{"4", "6"} {
		for _, tb := range []string{"nat", "filter"} {
			if s := l.save(fam, tb); strings.Contains(s, "IRONLB") {
				t.Errorf("IPv%s %s after cleanup:\n%s", fam, tb, s)
			}
		}
	}
	if !strings.Contains(l.save("4", "nat"), "-s 198.18.99.0/24 -j RETURN") {
		t.Error("cleanup removed someone else's rule")
	}
}

// nsIPT runs the system's iptables binaries in a network namespace entered
// by the calling thread (not under "ip netns exec", which costs a few
// milliseconds of its own per command): what a proxy in that namespace pays.
type nsIPT struct {
	exec *iptables.Exec
	ns   string
}

func (n nsIPT) Family() iptables.Family { return n.exec.Family() }
func (n nsIPT) Restore(ctx context.Context, data []byte) error {
	return inNS(n.ns, func() error { return n.exec.Restore(ctx, data) })
}
func (n nsIPT) Save(ctx context.Context, t iptables.Table) (out []byte, err error) {
	err = inNS(n.ns, func() error { out, err = n.exec.Save(ctx, t); return err })
	return out, err
}
func (n nsIPT) EnsureRule(ctx context.Context, t iptables.Table, chain string, args ...string) error {
	return inNS(n.ns, func() error { return n.exec.EnsureRule(ctx, t, chain, args...) })
}
func (n nsIPT) HasRule(ctx context.Context, t iptables.Table, chain string, args ...string) (ok bool, err error) {
	err = inNS(n.ns, func() error { ok, err = n.exec.HasRule(ctx, t, chain, args...); return err })
	return ok, err
}
func (n nsIPT) DeleteRule(ctx context.Context, t iptables.Table, chain string, args ...string) error {
	return inNS(n.ns, func() error { return n.exec.DeleteRule(ctx, t, chain, args...) })
}
func (n nsIPT) RandomFully(ctx context.Context) (ok bool) {
	_ = inNS(n.ns, func() error { ok = n.exec.RandomFully(ctx); return nil })
	return ok
}

// BenchmarkRealRestore10kServices programs 10,000 Services x 10 endpoints
// into a fresh network namespace with the system's iptables-restore (nft
// backend on Debian), for two mixes: every Service a ClusterIP, and every
// tenth one a LoadBalancer with a NodePort. It reports the full sync (one
// run), then the median and worst of 10 syncs of one Service's endpoints
// changing and of one Service added or removed. Run with -benchtime 1x; it
// needs root.
func BenchmarkRealRestore10kServices(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("skipped: needs root (network namespace and real iptables)")
	}
	for _, mix := range []struct {
		name string
		lb   bool
	}{{"clusterip", false}, {"tenth-loadbalancer", true}} {
		b.Run(mix.name, func(b *testing.B) {
			rb := make([]byte, 3)
			_, _ = rand.Read(rb)
			ns := "ilb" + hex.EncodeToString(rb) + "-bench"
			if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			b.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
			p := benchProxier(b, nsIPT{exec: iptables.NewExec(iptables.IPv4), ns: ns})
			benchServices(p, 10000, 10, mix.lb)
			ctx := context.Background()
			b.Run("full", func(b *testing.B) {
				for range b.N {
					p.markFull()
					if err := p.syncOnce(ctx); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(p.families[0].lastBytes), "restore-bytes")
			})
			samples := func(b *testing.B, change func(i int)) {
				var d []time.Duration
				for range b.N {
					d = d[:0]
					for i := range 10 {
						change(i)
						start := time.Now()
						if err := p.syncOnce(ctx); err != nil {
							b.Fatal(err)
						}
						d = append(d, time.Since(start))
					}
				}
				slices.Sort(d)
				b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "ms-median")
				b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, "ms-worst")
			}
			b.Run("one-service-endpoints", func(b *testing.B) {
				samples(b, func(i int) {
					var eps []ep
					for j := range 10 {
						eps = append(eps, ep{ip: fmt.Sprintf("198.18.251.%d", 1+(i%2)*100+j), node: "node2"})
					}
					p.tracker.setSlice(slice("bench", "s4242", "s4242-a", httpPort(8080), eps...))
				})
			})
			b.Run("one-service-add-delete", func(b *testing.B) {
				samples(b, func(i int) {
					if i%2 == 0 {
						p.tracker.setService(service("bench", "extra", "198.19.200.77"))
						p.tracker.setSlice(slice("bench", "extra", "extra-a", httpPort(8080), ep{ip: "198.18.252.1", node: "node2"}))
					} else {
						p.tracker.deleteService(typesName("bench", "extra"))
					}
				})
			})
		})
	}
}

// udpServe answers every datagram to addr (in ns) with addr's IP.
func (l *lab) udpServe(ns, addr string) {
	var pc net.PacketConn
	if err := inNS(ns, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { pc.Close() })
	ip := strings.Split(addr, ":")[0]
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(ip), from)
		}
	}()
}

// TestRealUDPConntrackCleanup: a UDP client keeps its source port; when the
// endpoint its flow was DNATed to leaves the Service, the conntrack entry is
// deleted, so its next datagram goes to an endpoint that is still there.
func TestRealUDPConntrackCleanup(t *testing.T) {
	l := newLab(t)
	sh(t, "ip", "-n", l.pod, "addr", "add", "198.18.1.11/24", "dev", "eth0")
	l.udpServe(l.pod, "198.18.1.10:5353")
	l.udpServe(l.pod, "198.18.1.11:5353")
	nodeNS, err := netns.GetFromName(l.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nodeNS.Close()
	h, err := netlink.NewHandleAt(nodeNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rf := true
	p, err := New(Config{
		NodeName:          "node1",
		IPTables:          []iptables.Interface{iptables.NewExec(iptables.IPv4, "ip", "netns", "exec", l.node)},
		ClusterCIDRs:      []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")},
		Conntrack:         NetlinkConntrack{Handle: h},
		RandomFully:       &rf,
		HealthCheckListen: newMemNet().listen,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Cleanup(context.Background()) })
	dns := service("kube-system", "dns", "198.19.0.53", withPorts(v1ServicePortUDP("dns", 53)))
	dnsSlice := func(ips ...string) *discovery.EndpointSlice {
		var eps []ep
		for _, ip := range ips {
			eps = append(eps, ep{ip: ip, node: "node1"})
		}
		return slice("kube-system", "dns", "dns-a", []discovery.EndpointPort{epPort("dns", 5353, v1.ProtocolUDP)}, eps...)
	}
	p.tracker.setService(dns)
	p.tracker.setSlice(dnsSlice("198.18.1.10", "198.18.1.11"))
	ctx := context.Background()
	if err := p.syncOnce(ctx); err != nil {
		t.Fatal(err)
	}

	// One client socket with a fixed source port: one conntrack flow.
	var conn net.Conn
	if err := inNS(l.client, func() (err error) {
		d := net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP("192.0.2.100"), Port: 40053}}
		conn, err = d.Dial("udp4", "198.19.0.53:53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func() string {
		t.Helper()
		buf := make([]byte, 64)
		for range 5 { // UDP: a few tries, bounded
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			if _, err := conn.Write([]byte("q")); err != nil {
				t.Fatal(err)
			}
			if n, err := conn.Read(buf); err == nil {
				return string(buf[:n])
			}
		}
		t.Fatal("no answer over UDP")
		return ""
	}
	first := ask()
	for range 3 {
		if got := ask(); got != first {
			t.Fatalf("the flow moved from %s to %s while both endpoints were there", first, got)
		}
	}
	other := map[string]string{"198.18.1.10": "198.18.1.11", "198.18.1.11": "198.18.1.10"}[first]
	p.tracker.setSlice(dnsSlice(other))
	if err := p.syncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// The old endpoint still answers if asked: only the deleted flow moves the client.
	if got := ask(); got != other {
		t.Errorf("after %s left the Service, the client's flow still reaches %s (want %s)", first, got, other)
	}
}

func v1ServicePortUDP(name string, port int32) v1.ServicePort {
	return v1.ServicePort{Name: name, Port: port, Protocol: v1.ProtocolUDP}
}

// TestRealAffinityFollowsTheKernel: with ClientIP affinity of 1 s the real
// xt_recent keeps a client on one endpoint while it opens a connection every
// 0.4 s (each new connection renews the entry, as kube-proxy's endpoint chain
// does; a rule that only checked would let go after 1 s), and lets go once
// the client is quiet for longer than the timeout.
func TestRealAffinityFollowsTheKernel(t *testing.T) {
	l := newLab(t)
	for _, a := range []string{"198.18.1.11", "198.18.1.12"} {
		sh(t, "ip", "-n", l.pod, "addr", "add", a+"/24", "dev", "eth0")
	}
	for _, a := range []string{"198.18.1.10", "198.18.1.11", "198.18.1.12"} {
		l.serveLocal(l.pod, a+":8081")
	}
	p, err := New(Config{
		NodeName:          "node1",
		IPTables:          []iptables.Interface{iptables.NewExec(iptables.IPv4, "ip", "netns", "exec", l.node)},
		ClusterCIDRs:      []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16")},
		Conntrack:         &fakeConntrack{flows: map[iptables.Family][]Flow{}},
		HealthCheckListen: newMemNet().listen,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Cleanup(context.Background()) })
	p.tracker.setService(service("web", "sticky", "198.19.0.30", affinity(1)))
	p.tracker.setSlice(slice("web", "sticky", "sticky-a", httpPort(8081),
		ep{ip: "198.18.1.10", node: "node1"}, ep{ip: "198.18.1.11", node: "node1"}, ep{ip: "198.18.1.12", node: "node1"}))
	if err := p.syncOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	dial := func() string {
		t.Helper()
		got, err := l.dial(l.client, "198.19.0.30:80")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	first := dial()
	for i := range 8 { // 3.2 s, three times the timeout
		time.Sleep(400 * time.Millisecond)
		if got := dial(); got != first {
			t.Fatalf("connection %d, %v after the first: answered by %s, the first by %s", i+2, time.Duration(i+1)*400*time.Millisecond, got, first)
		}
	}
	// Quiet for longer than the timeout: the next connection picks at random
	// again (1 in 3 the same endpoint), and sticks to that.
	last := first
	for cycle := range 12 {
		time.Sleep(1500 * time.Millisecond)
		got := dial()
		if got != last {
			return
		}
		t.Logf("after quiet period %d: %s again", cycle+1, got)
	}
	t.Errorf("12 quiet periods of 1.5 s and every connection still reached %s: affinity does not expire", last)
}
