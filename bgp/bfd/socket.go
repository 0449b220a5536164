package bfd

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Port is the UDP port of single-hop BFD Control packets (RFC 5881 section 4).
const Port = 3784

// ttlSingleHop is the TTL (hop limit) every single-hop packet is sent with and
// every received packet must carry (RFC 5881 section 5, GTSM, RFC 5082): a
// packet from farther away arrives with less.
const ttlSingleHop = 255

// tosNetworkControl marks BFD packets as network control (DSCP CS6) so queues
// under load drop them last.
const tosNetworkControl = 0xc0

// receiver reads Control packets of one address family from the BFD port.
type receiver struct {
	conn net.PacketConn
	read func(b []byte) (n, ttl int, src netip.Addr, err error)
}

// listen opens the receive socket of a family on the BFD port (all local
// addresses) with the TTL / hop limit of every datagram reported.
func listen(v6 bool, port int) (*receiver, error) {
	if v6 {
		c, err := net.ListenPacket("udp6", fmt.Sprintf("[::]:%d", port))
		if err != nil {
			return nil, fmt.Errorf("bfd: listen udp6 port %d: %w", port, err)
		}
		pc := ipv6.NewPacketConn(c)
		if err := pc.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
			c.Close()
			return nil, fmt.Errorf("bfd: receive hop limit: %w", err)
		}
		return &receiver{conn: c, read: func(b []byte) (int, int, netip.Addr, error) {
			n, cm, src, err := pc.ReadFrom(b)
			ttl := -1
			if cm != nil {
				ttl = cm.HopLimit
			}
			return n, ttl, udpSource(src), err
		}}, nil
	}
	c, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("bfd: listen udp4 port %d: %w", port, err)
	}
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		c.Close()
		return nil, fmt.Errorf("bfd: receive TTL: %w", err)
	}
	return &receiver{conn: c, read: func(b []byte) (int, int, netip.Addr, error) {
		n, cm, src, err := pc.ReadFrom(b)
		ttl := -1
		if cm != nil {
			ttl = cm.TTL
		}
		return n, ttl, udpSource(src), err
	}}, nil
}

func udpSource(a net.Addr) netip.Addr {
	if u, ok := a.(*net.UDPAddr); ok {
		if ap := u.AddrPort(); ap.IsValid() {
			return ap.Addr().Unmap()
		}
	}
	return netip.Addr{}
}

// sourcePorts is the range single-hop packets must be sent from (RFC 5881
// section 4); one port per session, kept for the session's life.
const (
	sourcePortFirst = 49152
	sourcePortLast  = 65535
)

// dialSession opens the sending socket of a session: bound to local and a
// free source port in 49152-65535, TTL 255, DSCP CS6.
func dialSession(local netip.Addr) (*net.UDPConn, error) {
	network := "udp4"
	if local.Is6() {
		network = "udp6"
	}
	var lastErr error
	for range 64 {
		port := sourcePortFirst + rand.IntN(sourcePortLast-sourcePortFirst+1)
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, uint16(port))))
		if err != nil {
			lastErr = err
			if errors.Is(err, syscall.EADDRINUSE) {
				continue
			}
			return nil, fmt.Errorf("bfd: bind %s: %w", local, err)
		}
		if local.Is6() {
			p := ipv6.NewConn(c)
			err = errors.Join(p.SetHopLimit(ttlSingleHop), p.SetTrafficClass(tosNetworkControl))
		} else {
			p := ipv4.NewConn(c)
			err = errors.Join(p.SetTTL(ttlSingleHop), p.SetTOS(tosNetworkControl))
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("bfd: socket options: %w", err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("bfd: no free source port for %s: %w", local, lastErr)
}

// localAddrFor returns the source address the kernel would use toward peer
// (connecting a UDP socket sends nothing).
func localAddrFor(peer netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(peer, Port)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bfd: no route to %s: %w", peer, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
