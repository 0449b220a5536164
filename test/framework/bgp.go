package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/ironlb/ironlb/test/lab"
)

// RouterPath is one BGP path the router received for a prefix.
type RouterPath struct {
	From             netip.Addr // the neighbour that sent it
	NextHop          netip.Addr
	LocalPref        uint32 // as received on iBGP; FRR's default 100 on eBGP
	Communities      string // FRR's notation, e.g. "64600:100 no-export"
	LargeCommunities string // e.g. "64600:1:2"
	Internal         bool   // received on an iBGP session
	Best, Multipath  bool
}

// RouterPaths returns the paths the router's bgpd holds for prefix ("show bgp
// ipv4|ipv6 unicast PREFIX json"), sorted by neighbour; none is nil.
func (e *Env) RouterPaths(ctx context.Context, prefix netip.Prefix) ([]RouterPath, error) {
	af := "ipv4"
	if prefix.Addr().Is6() {
		af = "ipv6"
	}
	out, err := e.Lab.Vtysh(ctx, fmt.Sprintf("show bgp %s unicast %s json", af, prefix))
	if err != nil {
		return nil, err
	}
	var detail struct {
		Paths []struct {
			LocPrf         uint32 `json:"locPrf"`
			Community      struct{ String string }
			LargeCommunity struct{ String string } `json:"largeCommunity"`
			Nexthops       []struct {
				IP   string `json:"ip"`
				Used bool   `json:"used"`
			} `json:"nexthops"`
			Peer struct {
				PeerID string `json:"peerId"`
				Type   string `json:"type"`
			} `json:"peer"`
			Bestpath struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			Multipath bool `json:"multipath"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &detail); err != nil {
		return nil, fmt.Errorf("router: show bgp %s: %w: %q", prefix, err, out)
	}
	var paths []RouterPath
	for _, p := range detail.Paths {
		rp := RouterPath{LocalPref: p.LocPrf, Communities: p.Community.String, LargeCommunities: p.LargeCommunity.String,
			Internal: p.Peer.Type == "internal", Best: p.Bestpath.Overall, Multipath: p.Multipath}
		rp.From, _ = netip.ParseAddr(p.Peer.PeerID)
		for _, nh := range p.Nexthops {
			// An IPv6 path may carry a link-local next hop beside the
			// global one: the global one is what the route uses.
			if a, err := netip.ParseAddr(nh.IP); err == nil && !a.IsLinkLocalUnicast() {
				rp.NextHop = a
				break
			}
		}
		paths = append(paths, rp)
	}
	sort.Slice(paths, func(i, j int) bool { return paths[i].From.Less(paths[j].From) })
	return paths, nil
}

// RouterBFDPeers returns the state of each of the router's bfdd sessions by
// peer address ("up", "down", "init", ...; "show bfd peers json").
func (e *Env) RouterBFDPeers(ctx context.Context) (map[netip.Addr]string, error) {
	out, err := e.Lab.Vtysh(ctx, "show bfd peers json")
	if err != nil {
		return nil, err
	}
	var list []struct {
		Peer   string `json:"peer"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("router: show bfd peers: %w: %q", err, out)
	}
	peers := map[netip.Addr]string{}
	for _, p := range list {
		if a, err := netip.ParseAddr(p.Peer); err == nil {
			peers[a] = p.Status
		}
	}
	return peers, nil
}

// KernelNextHops returns the sorted gateways of host's kernel route to prefix
// (exact match, main table; several for an ECMP route), nil when there is no
// such route. It reads the kernel, so it works whichever routing daemon (FRR,
// BIRD) installed the route.
func (e *Env) KernelNextHops(ctx context.Context, host string, prefix netip.Prefix) ([]string, error) {
	fam := "-4"
	if prefix.Addr().Is6() {
		fam = "-6"
	}
	out, err := e.Lab.Exec(ctx, host, "ip", "-j", fam, "route", "show", prefix.String())
	if err != nil {
		return nil, err
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if strings.TrimSpace(out) == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		return nil, fmt.Errorf("%s: ip route show %s: %w: %q", host, prefix, err, out)
	}
	var hops []string
	for _, r := range routes {
		if r.Gateway != "" {
			hops = append(hops, r.Gateway)
		}
		for _, nh := range r.Nexthops {
			if nh.Gateway != "" {
				hops = append(hops, nh.Gateway)
			}
		}
	}
	sort.Strings(hops)
	return hops, nil
}

// TCPMD5Failures returns host's count of TCP segments dropped because their
// MD5 signature was wrong (TcpExt TCPMD5Failure of the host's namespace):
// the kernel's own evidence that a peer used another password.
func (e *Env) TCPMD5Failures(ctx context.Context, host string) (uint64, error) {
	out, err := e.Lab.Exec(ctx, host, "cat", "/proc/net/netstat")
	if err != nil {
		return 0, err
	}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for k, n := range names {
			if n == "TCPMD5Failure" {
				return strconv.ParseUint(values[k], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no TcpExt TCPMD5Failure in /proc/net/netstat", host)
}

// SetSwitchPort sets host's port on the LAN switch down or up: with it down
// the host is cut off the LAN, as when its cable is pulled, while its
// neighbours keep their carrier and hear nothing more from it.
func (e *Env) SetSwitchPort(ctx context.Context, host string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	_, err := e.Lab.Exec(ctx, lab.HostSwitch, "ip", "link", "set", host, state)
	return err
}
