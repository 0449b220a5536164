//go:build linux

package l2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// kernel is the Linux system: netlink for links, addresses and their
// changes, AF_PACKET sockets for frames, and an ICMPv6 socket per link that
// holds the solicited-node group memberships (so the kernel sends the MLD
// reports snooping switches need).
type kernel struct{}

func newKernel() system { return kernel{} }

// links dumps links and addresses over netlink: two requests whose cost grows
// with the number of links and addresses on the node.
func (kernel) links() ([]link, error) {
	nls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	kinds := make(map[int]string, len(nls))
	for _, nl := range nls {
		kinds[nl.Attrs().Index] = nl.Type()
	}
	out := make([]link, 0, len(nls))
	pos := make(map[int]int, len(nls))
	for _, nl := range nls {
		at := nl.Attrs()
		l := link{
			index:    at.Index,
			name:     at.Name,
			up:       at.RawFlags&unix.IFF_UP != 0,
			running:  at.RawFlags&unix.IFF_RUNNING != 0,
			loopback: at.RawFlags&unix.IFF_LOOPBACK != 0,
			noARP:    at.RawFlags&unix.IFF_NOARP != 0,
		}
		l.mac, _ = hwAddrFrom(at.HardwareAddr)
		if at.MasterIndex != 0 {
			l.masterKind = kinds[at.MasterIndex]
			if l.masterKind == "" {
				l.masterKind = "master device"
			}
		}
		pos[l.index] = len(out)
		out = append(out, l)
	}
	// The link-local source: the first one that passed duplicate address
	// detection, else the first at all.
	settled := map[int]bool{}
	for _, ad := range addrs {
		i, ok := pos[ad.LinkIndex]
		if !ok || ad.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		ones, _ := ad.Mask.Size()
		l := &out[i]
		l.prefixes = append(l.prefixes, netip.PrefixFrom(ip, ones))
		if ip.Is6() && ip.IsLinkLocalUnicast() && !settled[l.index] {
			tentative := ad.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0
			if !l.linkLocal.IsValid() || !tentative {
				l.linkLocal = ip
			}
			settled[l.index] = !tentative
		}
	}
	return out, nil
}

// watch subscribes to link and address notifications.
func (kernel) watch(ctx context.Context, changed func()) error {
	done := make(chan struct{})
	var subscribed []func()
	defer func() {
		close(done)
		// The subscriptions close their channels once done closes their
		// sockets; drain them so their goroutines can finish.
		for _, drain := range subscribed {
			go drain()
		}
	}()
	errc := make(chan error, 1)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	lu := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(lu, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	subscribed = append(subscribed, func() {
		for range lu {
		}
	})
	au := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(au, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to address changes: %w", err)
	}
	subscribed = append(subscribed, func() {
		for range au {
		}
	})
	changed()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-lu:
			if !ok {
				return errors.New("link notifications ended")
			}
			changed()
		case _, ok := <-au:
			if !ok {
				return errors.New("address notifications ended")
			}
			changed()
		case err := <-errc:
			return fmt.Errorf("netlink notifications: %w", err)
		}
	}
}

func (l link) netInterface() *net.Interface {
	return &net.Interface{Index: l.index, Name: l.name, HardwareAddr: net.HardwareAddr(l.mac[:])}
}

// listenARP opens a packet socket bound to ETH_P_ARP: it receives every ARP
// frame arriving on the link (not those the node sends).
func (kernel) listenARP(l link) (frameConn, error) {
	c, err := packet.Listen(l.netInterface(), packet.Raw, unix.ETH_P_ARP, nil)
	if err != nil {
		return nil, err
	}
	return &packetConn{c: c}, nil
}

// ndpFilter passes only IPv6 frames carrying ICMPv6 Neighbor Solicitations
// or Advertisements without extension headers, so the kernel copies no other
// IPv6 traffic to the socket.
var ndpFilter = func() []bpf.RawInstruction {
	const nextHeaderOff, icmpTypeOff = ethHeaderLen + 6, ethHeaderLen + ipv6HeaderLen
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 5},
		bpf.LoadAbsolute{Off: nextHeaderOff, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
		bpf.LoadAbsolute{Off: icmpTypeOff, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTypeNS, SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: icmpTypeNA, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: readBufferSize},
	})
	if err != nil {
		panic(fmt.Sprintf("l2: assemble NDP filter: %v", err))
	}
	return raw
}()

// listenNDP opens a packet socket for IPv6 frames with ndpFilter, and an
// ICMPv6 socket that receives nothing (its filter blocks every type) but
// holds the multicast memberships.
func (kernel) listenNDP(l link) (ndpConn, error) {
	ifi := l.netInterface()
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_IPV6, &packet.Config{Filter: ndpFilter})
	if err != nil {
		return nil, err
	}
	mc, _, err := ndp.Listen(ifi, ndp.Unspecified)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("open ICMPv6 socket for multicast groups: %w", err)
	}
	var none ipv6.ICMPFilter
	none.SetAll(true)
	if err := mc.SetICMPFilter(&none); err != nil {
		c.Close()
		mc.Close()
		return nil, fmt.Errorf("filter ICMPv6 socket: %w", err)
	}
	return &ndpPacketConn{packetConn: packetConn{c: c}, groups: mc}, nil
}

type packetConn struct{ c *packet.Conn }

func (p *packetConn) readFrame(b []byte) (int, error) {
	for {
		n, _, err := p.c.ReadFrom(b)
		// A packet socket reports ENETDOWN once when its link goes
		// down and keeps working when it comes back up.
		if errors.Is(err, unix.ENETDOWN) {
			continue
		}
		return n, err
	}
}

func (p *packetConn) writeFrame(b []byte) error {
	if len(b) < ethHeaderLen {
		return errShortFrame
	}
	_, err := p.c.WriteTo(b, &packet.Addr{HardwareAddr: net.HardwareAddr(b[0:6])})
	return err
}

func (p *packetConn) close() error { return p.c.Close() }

type ndpPacketConn struct {
	packetConn
	groups *ndp.Conn
}

func (n *ndpPacketConn) joinGroup(g netip.Addr) error  { return n.groups.JoinGroup(g) }
func (n *ndpPacketConn) leaveGroup(g netip.Addr) error { return n.groups.LeaveGroup(g) }
func (n *ndpPacketConn) close() error {
	return errors.Join(n.packetConn.close(), n.groups.Close())
}
