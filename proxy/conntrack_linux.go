//go:build linux

package proxy

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ironlb/ironlb/proxy/iptables"
)

func defaultConntrack() ConntrackCleaner { return NetlinkConntrack{} }

// NetlinkConntrack deletes conntrack entries over netlink in the network
// namespace of the calling process (or of the Handle it was made with).
type NetlinkConntrack struct {
	// Handle, when set, is used instead of the default netlink socket (e.g. one
	// made with netlink.NewHandleAt for another network namespace).
	Handle *netlink.Handle
}

type flowFilter func(*netlink.ConntrackFlow) bool

func (f flowFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool { return f(flow) }

// DeleteFlows implements ConntrackCleaner.
func (n NetlinkConntrack) DeleteFlows(family iptables.Family, stale func(Flow) bool) (int, error) {
	fam := netlink.InetFamily(unix.AF_INET)
	if family == iptables.IPv6 {
		fam = unix.AF_INET6
	}
	filter := flowFilter(func(c *netlink.ConntrackFlow) bool {
		return stale(Flow{
			Protocol:    c.Forward.Protocol,
			OrigDst:     addrPort(c.Forward.DstIP, c.Forward.DstPort),
			ReplySource: addrPort(c.Reverse.SrcIP, c.Reverse.SrcPort),
		})
	})
	var deleted uint
	var err error
	if n.Handle != nil {
		deleted, err = n.Handle.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filter)
	} else {
		deleted, err = netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, filter)
	}
	if err != nil {
		return int(deleted), fmt.Errorf("conntrack delete (%s): %w", family, err)
	}
	return int(deleted), nil
}

func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}
