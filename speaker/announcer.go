package speaker

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/ironlb/ironlb/l2"
)

// announcer is what the event loop needs of *l2.Announcer (an interface so
// the loop is tested without packet sockets).
type announcer interface {
	SetOwned(ctx context.Context, owned []l2.Announcement) error
	Reannounce(vip netip.Addr) error
	Status() []l2.Placement
	Close() error
}

// forwarder is what the event loop needs of *handover.Forwarder.
type forwarder interface {
	Forward(ctx context.Context, vias map[netip.Addr]netip.Addr) error
	Stop(ctx context.Context, vip netip.Addr) error
}

// peerSetter is what the event loop needs of *membership.Cluster.
type peerSetter interface {
	SetPeers(peers []netip.AddrPort)
}

// claimPublisher is what the event loop needs of *publisher.
type claimPublisher interface {
	publish(claims []netip.Addr, force bool)
	stop()
}

// newAnnouncer creates the ARP/NDP announcer whose callbacks feed the event
// loop (through mailboxes: the latest placement and conflict per address).
func (s *Speaker) newAnnouncer() (*l2.Announcer, error) {
	cfg := s.cfg.L2
	cfg.Registerer = s.cfg.Registerer
	cfg.OnPlacement = func(p l2.Placement) {
		s.mail.mu.Lock()
		s.mail.placements[p.VIP] = p
		s.mail.mu.Unlock()
		s.queue.Add(item{kind: kPlacement, ip: p.VIP})
	}
	cfg.OnConflict = func(c l2.Conflict) {
		s.mail.mu.Lock()
		s.mail.conflicts[c.VIP] = c
		s.mail.mu.Unlock()
		s.queue.Add(item{kind: kConflict, ip: c.VIP})
	}
	a, err := l2.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("speaker: starting the L2 announcer: %w", err)
	}
	return a, nil
}
