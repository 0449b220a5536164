package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const frrBin = "/usr/lib/frr"

// StartFRR starts zebra and bgpd in the router namespace with bgpdConf as
// bgpd's configuration (see DefaultFRRConfig) and waits (at most 20s, or ctx)
// until vtysh answers "show bgp summary json". The daemons run in the
// foreground as lab processes (not -d), so Close and StopFRR stop and reap
// them; they use the pathspace -N <router netns>, i.e.
// /var/run/frr/<router netns>/, and their vty is not reachable over TCP.
// Configuration, pid files and logs are in Dir()/frr.
func (l *Lab) StartFRR(ctx context.Context, bgpdConf string) error {
	return l.startFRR(ctx, bgpdConf, "")
}

// StartFRRWithBFD is StartFRR with FRR's bfdd running beside bgpd, with
// bfddConf as its configuration (e.g. a profile that bgpd's "neighbor X bfd
// profile P" names); it also waits until vtysh answers "show bfd peers json".
func (l *Lab) StartFRRWithBFD(ctx context.Context, bgpdConf, bfddConf string) error {
	if bfddConf == "" {
		return errors.New("lab: StartFRRWithBFD without a bfdd configuration")
	}
	return l.startFRR(ctx, bgpdConf, bfddConf)
}

func (l *Lab) startFRR(ctx context.Context, bgpdConf, bfddConf string) (err error) {
	if !l.spec.Router {
		return errors.New("lab: StartFRR needs Spec.Router")
	}
	if err := l.checkHost(HostRouter); err != nil {
		return err
	}
	l.mu.Lock()
	running := len(l.frr) > 0
	l.mu.Unlock()
	if running {
		return errors.New("lab: FRR already running (StopFRR first)")
	}
	ns := l.Netns(HostRouter)
	dir := filepath.Join(l.dir, "frr")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"zebra.conf": "hostname router\n",
		"bgpd.conf":  bgpdConf,
	}
	if bfddConf != "" {
		files["bfdd.conf"] = bfddConf
	}
	uid, gid := -1, -1
	if u, err := user.Lookup("frr"); err == nil {
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
		if uid >= 0 {
			_ = os.Chown(p, uid, gid)
		}
	}
	if uid >= 0 {
		_ = os.Chown(dir, uid, gid)
	}
	runDir := filepath.Join(frrRunDir, ns)
	_ = os.RemoveAll(runDir)

	defer func() {
		if err != nil {
			_ = l.StopFRR()
		}
	}()
	start := func(daemon string) error {
		p, err := l.Start(HostRouter, filepath.Join(dir, daemon+".out"),
			filepath.Join(frrBin, daemon), "-N", ns,
			"-f", filepath.Join(dir, daemon+".conf"),
			"-i", filepath.Join(dir, daemon+".pid"),
			"-P", "0", // no TCP vty; vtysh uses the unix sockets
			"--log", "file:"+filepath.Join(dir, daemon+".log"))
		if err != nil {
			return err
		}
		l.mu.Lock()
		l.frr = append(l.frr, p)
		l.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := start("zebra"); err != nil {
		return err
	}
	if err := l.waitFRR(ctx, func() bool {
		_, err := os.Stat(filepath.Join(runDir, "zserv.api"))
		return err == nil
	}); err != nil {
		return fmt.Errorf("lab: zebra did not come up: %w (%s)", err, tail(filepath.Join(dir, "zebra.out"), 1000))
	}
	var last error
	if bfddConf != "" {
		// Before bgpd, so bgpd's BFD registrations (relayed by zebra) find it.
		if err := start("bfdd"); err != nil {
			return err
		}
		if err := l.waitFRR(ctx, func() bool {
			_, last = l.Vtysh(ctx, "show bfd peers json")
			return last == nil
		}); err != nil {
			return fmt.Errorf("lab: bfdd did not come up: %w (last: %v; %s)", err, last, tail(filepath.Join(dir, "bfdd.out"), 1000))
		}
	}
	if err := start("bgpd"); err != nil {
		return err
	}
	if err := l.waitFRR(ctx, func() bool {
		out, err := l.Vtysh(ctx, "show bgp summary json")
		if err == nil && !json.Valid([]byte(out)) {
			err = fmt.Errorf("not JSON: %q", out)
		}
		last = err
		return err == nil
	}); err != nil {
		return fmt.Errorf("lab: bgpd did not come up: %w (last: %v; %s)", err, last, tail(filepath.Join(dir, "bgpd.out"), 1000))
	}
	l.logf("lab %s: FRR up in %s", l.prefix, ns)
	return nil
}

// waitFRR polls ok every 100ms until it is true, an FRR daemon exits, or ctx
// ends.
func (l *Lab) waitFRR(ctx context.Context, ok func() bool) error {
	for {
		if ok() {
			return nil
		}
		l.mu.Lock()
		daemons := append([]*Process(nil), l.frr...)
		l.mu.Unlock()
		for _, p := range daemons {
			select {
			case <-p.Done():
				return fmt.Errorf("%s exited: %v", p.name, p.Err())
			default:
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StopFRR stops zebra and bgpd (if running) and removes their runtime
// directory, so StartFRR can be called again with another configuration.
func (l *Lab) StopFRR() error {
	l.mu.Lock()
	daemons := l.frr
	l.frr = nil
	l.mu.Unlock()
	var errs []error
	for i := len(daemons) - 1; i >= 0; i-- {
		if err := daemons[i].Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	_ = os.RemoveAll(filepath.Join(frrRunDir, l.Netns(HostRouter)))
	return errors.Join(errs...)
}

// Vtysh runs vtysh -N <router netns> with each of cmds as a -c argument in
// the router namespace and returns its stdout (stderr, e.g. the warning about
// a missing vtysh.conf, only goes into errors). Bounded by 30s.
func (l *Lab) Vtysh(ctx context.Context, cmds ...string) (string, error) {
	if err := l.checkHost(HostRouter); err != nil {
		return "", err
	}
	if len(cmds) == 0 {
		return "", errors.New("lab: Vtysh without commands")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	argv := append(l.Wrap(HostRouter), "vtysh", "-N", l.Netns(HostRouter))
	for _, c := range cmds {
		argv = append(argv, "-c", c)
	}
	return runSplit(ctx, argv...)
}

type frrRoute struct {
	Protocol string `json:"protocol"`
	Selected bool   `json:"selected"`
	Nexthops []struct {
		IP                string `json:"ip"`
		Interface         string `json:"interfaceName"`
		Active            bool   `json:"active"`
		DirectlyConnected bool   `json:"directlyConnected"`
	} `json:"nexthops"`
}

// RouterRoutes returns the router's selected routes from "show ip route
// json" (and "show ipv6 route json" with IPv6): prefix -> the sorted
// addresses of its active next hops. A directly connected route lists its
// interface name instead (e.g. "192.0.2.0/24" -> ["lan0"]). Use
// RouterRoutesDetail for the protocol.
func (l *Lab) RouterRoutes(ctx context.Context) (map[string][]string, error) {
	detail, err := l.RouterRoutesDetail(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(detail))
	for p, r := range detail {
		out[p] = r.NextHops
	}
	return out, nil
}

// Route is one selected route of the router.
type Route struct {
	Protocol string   // "bgp", "connected", "kernel", ...
	NextHops []string // sorted; gateway addresses, or the interface for connected routes
}

// RouterRoutesDetail is RouterRoutes with the protocol of each route.
func (l *Lab) RouterRoutesDetail(ctx context.Context) (map[string]Route, error) {
	cmds := []string{"show ip route json"}
	if l.spec.IPv6 {
		cmds = append(cmds, "show ipv6 route json")
	}
	out := map[string]Route{}
	for _, c := range cmds {
		s, err := l.Vtysh(ctx, c)
		if err != nil {
			return nil, err
		}
		var table map[string][]frrRoute
		if err := json.Unmarshal([]byte(s), &table); err != nil {
			return nil, fmt.Errorf("lab: parse %q: %w", c, err)
		}
		for prefix, routes := range table {
			for _, r := range routes {
				if !r.Selected {
					continue
				}
				var hops []string
				for _, nh := range r.Nexthops {
					if !nh.Active {
						continue
					}
					switch {
					case nh.IP != "":
						hops = append(hops, nh.IP)
					case nh.Interface != "":
						hops = append(hops, nh.Interface)
					}
				}
				sort.Strings(hops)
				out[prefix] = Route{Protocol: r.Protocol, NextHops: hops}
			}
		}
	}
	return out, nil
}

// DefaultFRRConfig renders a bgpd configuration for the router:
// RouterBGP{ASN: asn, Neighbors: neighbors}.Config(l).
func DefaultFRRConfig(l *Lab, asn uint32, neighbors ...netip.Addr) string {
	return RouterBGP{ASN: asn, Neighbors: neighbors}.Config(l)
}

// RouterBGP is bgpd's configuration on the lab router: "frr defaults
// datacenter", router-id 192.0.2.1, one session per neighbour, ECMP over up
// to 8 paths (eBGP and iBGP), no policy needed to accept routes (no bgp
// ebgp-requires-policy).
type RouterBGP struct {
	// ASN is the router's AS; zero means RouterASN (64512).
	ASN uint32
	// NeighborASN is every neighbour's AS; zero means NodeASN (eBGP).
	// Set it to ASN for iBGP.
	NeighborASN uint32
	// Neighbors are the sessions' node addresses; empty means every node's
	// LAN address (and, with Spec.IPv6, every node's IPv6 LAN address).
	// IPv6 neighbours are activated for IPv6 unicast.
	Neighbors []netip.Addr
	// Passwords are TCP MD5 passwords by neighbour ("neighbor X password").
	Passwords map[netip.Addr]string
	// BFD asks for BFD on every session with profile RouterBFDProfile: start
	// FRR with l.StartFRRWithBFD(ctx, conf, RouterBFDConfig).
	BFD bool
	// Keepalive and Hold are "neighbor X timers"; zero keeps FRR's (3s/9s
	// with the datacenter defaults).
	Keepalive, Hold time.Duration
}

// RouterBFDProfile names the bfdd profile of RouterBFDConfig.
const RouterBFDProfile = "ironlb"

// RouterBFDConfig is bfdd's configuration for RouterBGP.BFD: 100 ms in both
// directions, detection after 3 missed packets (300 ms).
const RouterBFDConfig = "bfd\n profile " + RouterBFDProfile + "\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n !\n!\n"

// Config renders bgpd's configuration for lab l.
func (r RouterBGP) Config(l *Lab) string {
	asn, remote := r.ASN, r.NeighborASN
	if asn == 0 {
		asn = RouterASN
	}
	if remote == 0 {
		remote = NodeASN
	}
	neighbors := r.Neighbors
	if len(neighbors) == 0 {
		for i := 1; i <= l.spec.Nodes; i++ {
			neighbors = append(neighbors, l.NodeIP(i))
		}
		if l.spec.IPv6 {
			for i := 1; i <= l.spec.Nodes; i++ {
				neighbors = append(neighbors, l.NodeIPv6(i))
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults datacenter\nhostname router\n!\nrouter bgp %d\n", asn)
	fmt.Fprintf(&b, " bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n", l.RouterLANAddr())
	var v4, v6 []netip.Addr
	for _, n := range neighbors {
		if CheckAddr(n) != nil {
			continue // never configure a peer outside the lab ranges
		}
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n", n, remote)
		if pw := r.Passwords[n]; pw != "" {
			fmt.Fprintf(&b, " neighbor %s password %s\n", n, pw)
		}
		if r.BFD {
			fmt.Fprintf(&b, " neighbor %s bfd profile %s\n", n, RouterBFDProfile)
		}
		if r.Hold > 0 {
			fmt.Fprintf(&b, " neighbor %s timers %d %d\n", n, int(r.Keepalive.Seconds()), int(r.Hold.Seconds()))
		}
		if n.Is4() {
			v4 = append(v4, n)
		} else {
			v6 = append(v6, n)
		}
	}
	for _, af := range []struct {
		name  string
		peers []netip.Addr
	}{{"ipv4", v4}, {"ipv6", v6}} {
		if len(af.peers) == 0 && af.name == "ipv6" {
			continue
		}
		fmt.Fprintf(&b, " !\n address-family %s unicast\n  maximum-paths 8\n  maximum-paths ibgp 8\n", af.name)
		for _, n := range af.peers {
			fmt.Fprintf(&b, "  neighbor %s activate\n", n)
		}
		b.WriteString(" exit-address-family\n")
	}
	b.WriteString("!\n")
	return b.String()
}
