// Package lab builds the network lab of /work/shared/LAB.md out of Linux
// network namespaces: a switch (Linux bridge) joining a LAN 192.0.2.0/24 with
// a control-plane host cp, nodes node1..N (each with a pod bridge
// 198.18.<i>.0/24 and pod namespaces behind it), an FRR router and two client
// hosts. The only link into the root namespace is a management /30 to cp.
//
// Safety: every address configured or probed is checked against the
// documentation ranges (CheckAddr), every probe runs inside a lab namespace
// with bounded counts and timeouts, and Close (or CleanupPrefix for leftovers)
// removes every namespace, root-namespace link and process the lab made.
//
// Addresses (IPv4; IPv6 when Spec.IPv6):
//
//	router     lan0 192.0.2.1/24      2001:db8::1/64
//	           wan0 198.51.100.1/24   2001:db8:100::1/64
//	cp         lan0 192.0.2.2/24      2001:db8::2/64
//	           mgmt0 198.18.255.2/30 (or the next free /30 in 198.18.252.0/22)
//	node<i>    lan0 192.0.2.(10+i)/24 2001:db8::(10+i)/64  (10+i written in decimal, read as hex: node1 = 2001:db8::11)
//	           pods 198.18.<i>.1/24   2001:db8:18:<i>::1/64 (i in decimal digits)
//	pod-<i>-<k> eth0 198.18.<i>.<k>/24 2001:db8:18:<i>::<k>/64
//	lanclient  lan0 192.0.2.100/24    2001:db8::100/64
//	client     wan0 198.51.100.10/24  2001:db8:100::10/64
//
// Interfaces: every LAN host's uplink is lan0 (its peer in the switch
// namespace is named after the host and enslaved to bridge br0); the
// router-client link is wan0 on both sides.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host names.
const (
	HostSwitch    = "switch"
	HostCP        = "cp"
	HostRouter    = "router"
	HostClient    = "client"
	HostLANClient = "lanclient"
)

// Interface names.
const (
	LANIf  = "lan0"  // uplink of every LAN host
	WANIf  = "wan0"  // router <-> client link, both sides
	MgmtIf = "mgmt0" // cp side of the management link
	PodsIf = "pods"  // pod bridge in each node
	PodIf  = "eth0"  // interface inside a pod namespace
	Bridge = "br0"   // the LAN bridge in the switch namespace
)

// ASNs of LAB.md.
const (
	RouterASN = 64512
	NodeASN   = 64600
)

// MaxNodes is the largest Spec.Nodes accepted (keeps node IPv6 addresses below
// lanclient's 2001:db8::100 and pod /24s clear of the management range).
const MaxNodes = 50

// Spec describes the lab to build.
type Spec struct {
	Nodes  int  // node1..nodeN (default 3, at most MaxNodes)
	IPv6   bool // also configure the IPv6 addresses (nodad, usable at once)
	Router bool // router + client namespaces; nodes get a default route via the router
	// LANClient is ignored: the lanclient namespace is always created.
	LANClient bool
	// Prefix of every namespace name (Prefix+"-"+host) and root link name.
	// Default "ilb" + 4 random hex characters. 3-12 of [a-z0-9], starting with
	// a letter; must not be in use.
	Prefix string
	// Dir holds logs and configuration files; it is kept after Close. Default:
	// a temporary directory removed by Close.
	Dir string
	Log io.Writer // progress messages; nil discards
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	spec   Spec
	prefix string
	dir    string
	ownDir bool
	log    io.Writer

	mgmtLink string
	mgmtRoot netip.Addr
	mgmtCP   netip.Addr

	mu         sync.Mutex
	hosts      map[string]bool // host -> namespace created
	namespaces []string        // in creation order
	procs      []*Process
	pods       map[string]Pod
	frr        []*Process
	closed     bool
	closeErr   error
	reaper     *reaper
}

// New builds the lab. On error it removes whatever it had made.
func New(ctx context.Context, spec Spec) (_ *Lab, err error) {
	if spec.Nodes == 0 {
		spec.Nodes = 3
	}
	if spec.Nodes < 1 || spec.Nodes > MaxNodes {
		return nil, fmt.Errorf("lab: Nodes=%d, want 1..%d", spec.Nodes, MaxNodes)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("lab: iproute2 missing: %w", err)
	}
	prefix, err := pickPrefix(ctx, spec.Prefix)
	if err != nil {
		return nil, err
	}
	l := &Lab{
		spec:   spec,
		prefix: prefix,
		log:    spec.Log,
		hosts:  map[string]bool{},
		pods:   map[string]Pod{},
	}
	if l.log == nil {
		l.log = io.Discard
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
		}
	}()
	start := time.Now()
	if spec.Dir != "" {
		if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
			return nil, err
		}
		l.dir = spec.Dir
	} else {
		d, err := os.MkdirTemp("", prefix+"-")
		if err != nil {
			return nil, err
		}
		l.dir, l.ownDir = d, true
	}
	// FRR drops privileges to user frr and must reach its config below dir.
	if err := os.Chmod(l.dir, 0o755); err != nil {
		return nil, err
	}
	ownDir := ""
	if l.ownDir {
		ownDir = l.dir
	}
	if l.reaper, err = startReaper(prefix, ownDir); err != nil {
		return nil, err
	}
	if err := l.build(ctx); err != nil {
		return nil, err
	}
	l.logf("lab %s: built in %s (%d nodes, router=%v, ipv6=%v, mgmt %s<->%s, dir %s)",
		prefix, time.Since(start).Round(time.Millisecond), spec.Nodes, spec.Router, spec.IPv6,
		l.mgmtRoot, l.mgmtCP, l.dir)
	return l, nil
}

// pickPrefix validates a given prefix or draws a random unused one.
func pickPrefix(ctx context.Context, want string) (string, error) {
	inUse := func(p string) (bool, error) {
		names, err := listNetns(ctx)
		if err != nil {
			return false, err
		}
		for _, n := range names {
			if strings.HasPrefix(n, p+"-") {
				return true, nil
			}
		}
		links, err := rootLinks(ctx)
		if err != nil {
			return false, err
		}
		for _, n := range links {
			if strings.HasPrefix(n, p+"-") {
				return true, nil
			}
		}
		return false, nil
	}
	if want != "" {
		if !prefixRE.MatchString(want) {
			return "", fmt.Errorf("lab: bad prefix %q (want 3-12 of [a-z0-9], starting with a letter)", want)
		}
		used, err := inUse(want)
		if err != nil {
			return "", err
		}
		if used {
			return "", fmt.Errorf("lab: prefix %q is in use (run CleanupPrefix / make lab-clean?)", want)
		}
		return want, nil
	}
	for range 10 {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		p := "ilb" + hex.EncodeToString(b[:])
		used, err := inUse(p)
		if err != nil {
			return "", err
		}
		if !used {
			return p, nil
		}
	}
	return "", errors.New("lab: no free random prefix")
}

func (l *Lab) logf(format string, args ...any) {
	fmt.Fprintf(l.log, format+"\n", args...)
}

// Prefix returns the namespace name prefix of this lab.
func (l *Lab) Prefix() string { return l.prefix }

// Dir returns the directory with logs and configuration files.
func (l *Lab) Dir() string { return l.dir }

// Spec returns the spec the lab was built from (with defaults filled in).
func (l *Lab) Spec() Spec { return l.spec }

// Netns returns the namespace name of host ("cp" -> "<prefix>-cp").
func (l *Lab) Netns(host string) string { return l.prefix + "-" + host }

// Wrap returns the command prefix that runs a command in host's namespace.
func (l *Lab) Wrap(host string) []string {
	return []string{"ip", "netns", "exec", l.Netns(host)}
}

// Hosts returns the hosts (namespaces) of the lab, in creation order.
func (l *Lab) Hosts() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.namespaces))
	for _, ns := range l.namespaces {
		out = append(out, strings.TrimPrefix(ns, l.prefix+"-"))
	}
	return out
}

func (l *Lab) checkHost(host string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	if !l.hosts[host] {
		return fmt.Errorf("lab: unknown host %q", host)
	}
	return nil
}

// Exec runs args in host's namespace and returns the combined output; the
// error includes the output. Without a deadline in ctx it is bounded by 2m.
func (l *Lab) Exec(ctx context.Context, host string, args ...string) (string, error) {
	if err := l.checkHost(host); err != nil {
		return "", err
	}
	if len(args) == 0 {
		return "", errors.New("lab: Exec without a command")
	}
	return run(ctx, append(l.Wrap(host), args...)...)
}

// Start runs args in host's namespace in the background, in its own process
// group, with stdout and stderr appended to logPath (default: a file in
// Dir()). The process is stopped by Close.
func (l *Lab) Start(host string, logPath string, args ...string) (*Process, error) {
	if err := l.checkHost(host); err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, errors.New("lab: Start without a command")
	}
	if logPath == "" {
		l.mu.Lock()
		n := len(l.procs)
		l.mu.Unlock()
		logPath = filepath.Join(l.dir, fmt.Sprintf("%s-%s-%d.log", host, filepath.Base(args[0]), n))
	}
	p, err := startProcess(host+":"+filepath.Base(args[0]), append(l.Wrap(host), args...), logPath)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.procs = append(l.procs, p)
	}
	l.mu.Unlock()
	if closed {
		_ = p.Stop()
		return nil, errors.New("lab: closed")
	}
	return p, nil
}

// Addresses.

// MgmtRootAddr is the root-namespace side of the management /30.
func (l *Lab) MgmtRootAddr() netip.Addr { return l.mgmtRoot }

// MgmtCPAddr is cp's side of the management /30, where the test process
// reaches services in cp (the API server).
func (l *Lab) MgmtCPAddr() netip.Addr { return l.mgmtCP }

// MgmtLink is the name of the root-namespace side of the management veth.
func (l *Lab) MgmtLink() string { return l.mgmtLink }

// NodeName returns "node<i>".
func (l *Lab) NodeName(i int) string { return "node" + strconv.Itoa(i) }

// Nodes returns the number of nodes.
func (l *Lab) Nodes() int { return l.spec.Nodes }

// NodeIP returns node i's LAN address 192.0.2.(10+i).
func (l *Lab) NodeIP(i int) netip.Addr { return mustAddr(fmt.Sprintf("192.0.2.%d", 10+i)) }

// NodeIPv6 returns node i's IPv6 LAN address: the decimal digits of 10+i
// read as hex, so node1 is 2001:db8::11 (mirrors 192.0.2.11).
func (l *Lab) NodeIPv6(i int) netip.Addr { return mustAddr(fmt.Sprintf("2001:db8::%d", 10+i)) }

// PodCIDR returns node i's pod network 198.18.i.0/24.
func (l *Lab) PodCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(mustAddr(fmt.Sprintf("198.18.%d.0", i)), 24)
}

// PodCIDRv6 returns node i's IPv6 pod network 2001:db8:18:<i>::/64.
func (l *Lab) PodCIDRv6(i int) netip.Prefix {
	return netip.PrefixFrom(mustAddr(fmt.Sprintf("2001:db8:18:%d::", i)), 64)
}

// PodGateway returns node i's address on its pod bridge, 198.18.i.1.
func (l *Lab) PodGateway(i int) netip.Addr { return mustAddr(fmt.Sprintf("198.18.%d.1", i)) }

// PodGatewayv6 returns node i's IPv6 address on its pod bridge.
func (l *Lab) PodGatewayv6(i int) netip.Addr { return mustAddr(fmt.Sprintf("2001:db8:18:%d::1", i)) }

// CPAddr returns cp's LAN address 192.0.2.2.
func (l *Lab) CPAddr() netip.Addr { return mustAddr("192.0.2.2") }

// CPAddr6 returns cp's IPv6 LAN address 2001:db8::2.
func (l *Lab) CPAddr6() netip.Addr { return mustAddr("2001:db8::2") }

// RouterLANAddr returns the router's LAN address 192.0.2.1.
func (l *Lab) RouterLANAddr() netip.Addr { return mustAddr("192.0.2.1") }

// RouterLANAddr6 returns the router's IPv6 LAN address 2001:db8::1.
func (l *Lab) RouterLANAddr6() netip.Addr { return mustAddr("2001:db8::1") }

// RouterWANAddr returns the router's address toward client, 198.51.100.1.
func (l *Lab) RouterWANAddr() netip.Addr { return mustAddr("198.51.100.1") }

// RouterWANAddr6 returns the router's IPv6 address toward client.
func (l *Lab) RouterWANAddr6() netip.Addr { return mustAddr("2001:db8:100::1") }

// ClientAddr returns client's address 198.51.100.10.
func (l *Lab) ClientAddr() netip.Addr { return mustAddr("198.51.100.10") }

// ClientAddr6 returns client's IPv6 address 2001:db8:100::10.
func (l *Lab) ClientAddr6() netip.Addr { return mustAddr("2001:db8:100::10") }

// LANClientAddr returns lanclient's address 192.0.2.100.
func (l *Lab) LANClientAddr() netip.Addr { return mustAddr("192.0.2.100") }

// LANClientAddr6 returns lanclient's IPv6 address 2001:db8::100.
func (l *Lab) LANClientAddr6() netip.Addr { return mustAddr("2001:db8::100") }

// uplink returns the interface of host facing its neighbours (lan0, or wan0
// for client).
func uplink(host string) string {
	if host == HostClient {
		return WANIf
	}
	if strings.HasPrefix(host, "pod-") {
		return PodIf
	}
	return LANIf
}

// Building.

func (l *Lab) ip(ctx context.Context, host string, args ...string) error {
	_, err := run(ctx, append([]string{"ip", "-n", l.Netns(host)}, args...)...)
	return err
}

func (l *Lab) sysctl(ctx context.Context, host string, kv ...string) error {
	_, err := run(ctx, append(append(l.Wrap(host), "sysctl", "-q", "-w"), kv...)...)
	return err
}

var errHostExists = errors.New("lab: host exists")

// addNetns creates host's namespace (registered for cleanup at once), brings
// up lo and applies the common sysctls.
func (l *Lab) addNetns(ctx context.Context, host string) error {
	ns := l.Netns(host)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errors.New("lab: closed")
	}
	if l.hosts[host] {
		l.mu.Unlock()
		return fmt.Errorf("%w: %q", errHostExists, host)
	}
	l.hosts[host] = true
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
	if _, err := run(ctx, "ip", "netns", "add", ns); err != nil {
		return err
	}
	if err := l.ip(ctx, host, "link", "set", "lo", "up"); err != nil {
		return err
	}
	kv := []string{
		// No DAD, no SLAAC: addresses are usable at once and only what we set.
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
		// Loose reverse-path filter: VIP traffic may take asymmetric paths.
		"net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.default.rp_filter=2",
	}
	if host == HostSwitch {
		// The switch is layer 2 only.
		kv = append(kv, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	return l.sysctl(ctx, host, kv...)
}

// forget removes a host's bookkeeping after its namespace was deleted.
func (l *Lab) forget(host string) {
	ns := l.Netns(host)
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.hosts, host)
	for i, n := range l.namespaces {
		if n == ns {
			l.namespaces = append(l.namespaces[:i], l.namespaces[i+1:]...)
			break
		}
	}
}

// addAddr configures addr/bits on dev in host after checking the range.
func (l *Lab) addAddr(ctx context.Context, host, dev string, addr netip.Addr, bits int) error {
	if err := CheckAddr(addr); err != nil {
		return err
	}
	p := netip.PrefixFrom(addr, bits)
	if !p.IsValid() {
		return fmt.Errorf("lab: bad prefix length %d for %s", bits, addr)
	}
	args := []string{"addr", "add", p.String(), "dev", dev}
	if addr.Is6() {
		args = append(args, "nodad")
	}
	return l.ip(ctx, host, args...)
}

// addRoute adds a route to dst (the default route when dst is the zero
// Prefix) via gw in host, after checking both and refusing any gateway in the
// management range.
func (l *Lab) addRoute(ctx context.Context, host string, dst netip.Prefix, gw netip.Addr) error {
	if err := CheckAddr(gw); err != nil {
		return err
	}
	if mgmtRange.Contains(gw) {
		return fmt.Errorf("lab: refusing a route via %s (management range)", gw)
	}
	fam := "-4"
	if gw.Is6() {
		fam = "-6"
	}
	to := "default"
	if dst.IsValid() {
		if err := CheckPrefix(dst); err != nil {
			return err
		}
		to = dst.Masked().String()
	}
	return l.ip(ctx, host, fam, "route", "add", to, "via", gw.String())
}

// connectLAN plugs host into the switch with a veth (lan0 in host).
func (l *Lab) connectLAN(ctx context.Context, host string) error {
	if err := l.ip(ctx, host, "link", "add", LANIf, "type", "veth", "peer", "name", host, "netns", l.Netns(HostSwitch)); err != nil {
		return err
	}
	if err := l.ip(ctx, HostSwitch, "link", "set", host, "master", Bridge, "up"); err != nil {
		return err
	}
	return l.ip(ctx, host, "link", "set", LANIf, "up")
}

func (l *Lab) build(ctx context.Context) error {
	v6 := l.spec.IPv6
	lanHosts := []string{HostCP}
	for i := 1; i <= l.spec.Nodes; i++ {
		lanHosts = append(lanHosts, l.NodeName(i))
	}
	if l.spec.Router {
		lanHosts = append(lanHosts, HostRouter)
	}
	lanHosts = append(lanHosts, HostLANClient)
	all := append([]string{HostSwitch}, lanHosts...)
	if l.spec.Router {
		all = append(all, HostClient)
	}
	for _, h := range all {
		if err := l.addNetns(ctx, h); err != nil {
			return err
		}
	}
	// Switch.
	if err := l.ip(ctx, HostSwitch, "link", "add", Bridge, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"); err != nil {
		return err
	}
	if err := l.ip(ctx, HostSwitch, "link", "set", Bridge, "up"); err != nil {
		return err
	}
	for _, h := range lanHosts {
		if err := l.connectLAN(ctx, h); err != nil {
			return err
		}
	}
	type a struct {
		host string
		v4   netip.Addr
		v6   netip.Addr
	}
	lanAddrs := []a{{HostCP, l.CPAddr(), l.CPAddr6()}, {HostLANClient, l.LANClientAddr(), l.LANClientAddr6()}}
	for i := 1; i <= l.spec.Nodes; i++ {
		lanAddrs = append(lanAddrs, a{l.NodeName(i), l.NodeIP(i), l.NodeIPv6(i)})
	}
	if l.spec.Router {
		lanAddrs = append(lanAddrs, a{HostRouter, l.RouterLANAddr(), l.RouterLANAddr6()})
	}
	for _, x := range lanAddrs {
		if err := l.addAddr(ctx, x.host, LANIf, x.v4, 24); err != nil {
			return err
		}
		if v6 {
			if err := l.addAddr(ctx, x.host, LANIf, x.v6, 64); err != nil {
				return err
			}
		}
	}
	// Nodes: pod bridge, flat "CNI" routes, forwarding, default via router.
	for i := 1; i <= l.spec.Nodes; i++ {
		n := l.NodeName(i)
		kv := []string{"net.ipv4.ip_forward=1"}
		if v6 {
			kv = append(kv, "net.ipv6.conf.all.forwarding=1")
		}
		if err := l.sysctl(ctx, n, kv...); err != nil {
			return err
		}
		if err := l.ip(ctx, n, "link", "add", PodsIf, "type", "bridge", "stp_state", "0"); err != nil {
			return err
		}
		if err := l.addAddr(ctx, n, PodsIf, l.PodGateway(i), 24); err != nil {
			return err
		}
		if v6 {
			if err := l.addAddr(ctx, n, PodsIf, l.PodGatewayv6(i), 64); err != nil {
				return err
			}
		}
		if err := l.ip(ctx, n, "link", "set", PodsIf, "up"); err != nil {
			return err
		}
		for j := 1; j <= l.spec.Nodes; j++ {
			if j == i {
				continue
			}
			if err := l.addRoute(ctx, n, l.PodCIDR(j), l.NodeIP(j)); err != nil {
				return err
			}
			if v6 {
				if err := l.addRoute(ctx, n, l.PodCIDRv6(j), l.NodeIPv6(j)); err != nil {
					return err
				}
			}
		}
		if l.spec.Router {
			if err := l.addRoute(ctx, n, netip.Prefix{}, l.RouterLANAddr()); err != nil {
				return err
			}
			if v6 {
				if err := l.addRoute(ctx, n, netip.Prefix{}, l.RouterLANAddr6()); err != nil {
					return err
				}
			}
		}
	}
	// Router and client.
	if l.spec.Router {
		kv := []string{"net.ipv4.ip_forward=1"}
		if v6 {
			kv = append(kv, "net.ipv6.conf.all.forwarding=1")
		}
		if err := l.sysctl(ctx, HostRouter, kv...); err != nil {
			return err
		}
		if err := l.ip(ctx, HostRouter, "link", "add", WANIf, "type", "veth", "peer", "name", WANIf, "netns", l.Netns(HostClient)); err != nil {
			return err
		}
		if err := l.addAddr(ctx, HostRouter, WANIf, l.RouterWANAddr(), 24); err != nil {
			return err
		}
		if err := l.addAddr(ctx, HostClient, WANIf, l.ClientAddr(), 24); err != nil {
			return err
		}
		if v6 {
			if err := l.addAddr(ctx, HostRouter, WANIf, l.RouterWANAddr6(), 64); err != nil {
				return err
			}
			if err := l.addAddr(ctx, HostClient, WANIf, l.ClientAddr6(), 64); err != nil {
				return err
			}
		}
		if err := l.ip(ctx, HostRouter, "link", "set", WANIf, "up"); err != nil {
			return err
		}
		if err := l.ip(ctx, HostClient, "link", "set", WANIf, "up"); err != nil {
			return err
		}
		if err := l.addRoute(ctx, HostClient, netip.Prefix{}, l.RouterWANAddr()); err != nil {
			return err
		}
		if v6 {
			if err := l.addRoute(ctx, HostClient, netip.Prefix{}, l.RouterWANAddr6()); err != nil {
				return err
			}
		}
	}
	if err := l.buildMgmt(ctx); err != nil {
		return err
	}
	if buildHook != nil {
		return buildHook(l)
	}
	return nil
}

// buildHook, when set (by tests), runs at the end of build; an error makes
// New fail and tear down.
var buildHook func(*Lab) error

// buildMgmt creates the management veth root <-> cp on a free /30 of
// 198.18.252.0/22 (198.18.255.0/30 first). A lock file serialises labs built
// at the same time.
func (l *Lab) buildMgmt(ctx context.Context) error {
	_ = os.MkdirAll("/run/lock", 0o755)
	lf, err := os.OpenFile("/run/lock/ironlb-lab.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer func() { _ = syscall.Flock(int(lf.Fd()), syscall.LOCK_UN) }()

	used, err := rootPrefixes(ctx)
	if err != nil {
		return err
	}
	var p netip.Prefix
	for i := range 256 {
		// 198.18.255.0, .4, ... .252, then 198.18.252.0 ... 198.18.254.252.
		n := (255*256 + i*4) % (4 * 256)
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(252 + n/256), byte(n % 256)}), 30)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			p = cand
			break
		}
	}
	if !p.IsValid() {
		return errors.New("lab: no free management /30 in 198.18.252.0/22")
	}
	root := p.Addr().Next()
	cp := root.Next()
	if err := CheckAddr(root); err != nil {
		return err
	}
	link := l.prefix + "-m"
	if _, err := run(ctx, "ip", "link", "add", link, "type", "veth", "peer", "name", MgmtIf, "netns", l.Netns(HostCP)); err != nil {
		return err
	}
	l.mu.Lock()
	l.mgmtLink = link
	l.mu.Unlock()
	// IPv4 only on the management link: no link-local, no ND into the root.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+link+"/disable_ipv6", []byte("1"), 0o644); err != nil {
		return err
	}
	if err := l.sysctl(ctx, HostCP, "net.ipv6.conf."+MgmtIf+".disable_ipv6=1"); err != nil {
		return err
	}
	if _, err := run(ctx, "ip", "addr", "add", netip.PrefixFrom(root, 30).String(), "dev", link); err != nil {
		return err
	}
	if err := l.addAddr(ctx, HostCP, MgmtIf, cp, 30); err != nil {
		return err
	}
	if _, err := run(ctx, "ip", "link", "set", link, "up"); err != nil {
		return err
	}
	if err := l.ip(ctx, HostCP, "link", "set", MgmtIf, "up"); err != nil {
		return err
	}
	l.mgmtRoot, l.mgmtCP = root, cp
	return nil
}

// rootPrefixes returns the IPv4 addresses (as prefixes) and route
// destinations of the root namespace, excluding default routes.
func rootPrefixes(ctx context.Context) ([]netip.Prefix, error) {
	var out []netip.Prefix
	s, err := runSplit(ctx, "ip", "-j", "-4", "addr", "show")
	if err != nil {
		return nil, err
	}
	var ifs []struct {
		Addrs []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(s), &ifs); err != nil {
		return nil, fmt.Errorf("lab: parse ip -j addr: %w", err)
	}
	for _, i := range ifs {
		for _, a := range i.Addrs {
			if ad, err := netip.ParseAddr(a.Local); err == nil {
				out = append(out, netip.PrefixFrom(ad, a.PrefixLen).Masked())
			}
		}
	}
	s, err = runSplit(ctx, "ip", "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal([]byte(s), &routes); err != nil {
		return nil, fmt.Errorf("lab: parse ip -j route: %w", err)
	}
	for _, r := range routes {
		if r.Dst == "" || r.Dst == "default" {
			continue
		}
		if p, err := netip.ParsePrefix(r.Dst); err == nil && p.Bits() > 0 {
			out = append(out, p)
		} else if a, err := netip.ParseAddr(r.Dst); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// Close stops every process the lab started (process groups first, then
// whatever is left in each namespace), deletes the root-namespace link, the
// namespaces and FRR's runtime directories, and the temporary directory. It is
// idempotent; later calls return the first call's result.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.closeErr
	}
	l.closed = true
	procs := append(append([]*Process(nil), l.procs...), l.frr...)
	nss := append([]string(nil), l.namespaces...)
	link := l.mgmtLink
	l.mu.Unlock()

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Stop(); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Backstop: anything still inside a namespace (daemons that detached).
	for i := len(nss) - 1; i >= 0; i-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := killNetns(ctx, nss[i]); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	if link != "" {
		if err := deleteRootLink(ctx, link); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if err := removeNetns(ctx, nss[i]); err != nil {
			errs = append(errs, err)
		}
	}
	// Verify.
	if names, err := listNetns(ctx); err == nil {
		mine := map[string]bool{}
		for _, n := range nss {
			mine[n] = true
		}
		for _, n := range names {
			if mine[n] {
				errs = append(errs, fmt.Errorf("lab: namespace %s still exists after Close", n))
			}
		}
	}
	if l.ownDir && l.dir != "" {
		if err := os.RemoveAll(l.dir); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	l.mu.Lock()
	l.closeErr = err
	l.mu.Unlock()
	l.reaper.stop()
	l.logf("lab %s: closed in %s (err=%v)", l.prefix, time.Since(start).Round(time.Millisecond), err)
	return err
}
