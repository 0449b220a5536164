package l2

import (
	"context"
	"net/netip"
)

// system is the kernel side of the announcer: the link list, change
// notifications and the sockets. The Linux implementation uses netlink and
// packet sockets; tests use an in-memory one.
type system interface {
	// links returns every link with its addresses.
	links() ([]link, error)
	// watch calls changed after it starts watching and on every link or
	// address change, until ctx is done (nil) or watching fails (error).
	watch(ctx context.Context, changed func()) error
	// listenARP opens a socket that receives the ARP frames arriving on l
	// and sends frames on it.
	listenARP(l link) (frameConn, error)
	// listenNDP opens a socket that receives the Neighbor Solicitation and
	// Advertisement frames arriving on l and sends frames on it.
	listenNDP(l link) (ndpConn, error)
}

// frameConn sends and receives whole Ethernet frames on one link.
type frameConn interface {
	readFrame(b []byte) (int, error)
	writeFrame(b []byte) error
	close() error
}

// ndpConn is a frameConn that can also join IPv6 multicast groups on its
// link; memberships end when it is closed.
type ndpConn interface {
	frameConn
	joinGroup(group netip.Addr) error
	leaveGroup(group netip.Addr) error
}
