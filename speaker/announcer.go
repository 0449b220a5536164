package speaker

import (
	"fmt"

	"github.com/ironlb/ironlb/l2"
)

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
