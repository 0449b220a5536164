package l2

import (
	"net/netip"
	"time"
)

// slotKey is one VIP on one link: the unit that gets gratuitous
// announcements.
type slotKey struct {
	vip  netip.Addr
	link int
}

// slot schedules the gratuitous announcements of one VIP on one link: a
// burst of rounds after every takeover, then (optionally) one round every
// refresh interval.
type slot struct {
	// mac is the link MAC the VIP was announced with; a new MAC on the same
	// link is a takeover.
	mac hwAddr
	// left counts the rounds of the current burst still to send.
	left int
	// next is when the next round is due; zero for never.
	next time.Time
}

// timing is the part of Config the schedule needs.
type timing struct {
	count    int
	interval time.Duration
	refresh  time.Duration
}

// start begins a burst: the first round is due now.
func (s *slot) start(now time.Time, t timing) {
	s.left = t.count
	s.next = now
}

// due reports whether a round must be sent at now.
func (s *slot) due(now time.Time) bool {
	return !s.next.IsZero() && !now.Before(s.next)
}

// sent records that a round went out at now and schedules the next one.
func (s *slot) sent(now time.Time, t timing) {
	s.left = max(s.left-1, 0)
	switch {
	case s.left > 0:
		s.next = now.Add(t.interval)
	case t.refresh > 0:
		s.next = now.Add(t.refresh)
	default:
		s.next = time.Time{}
	}
}

// conflictKey is one foreign MAC claiming one VIP on one link.
type conflictKey struct {
	vip    netip.Addr
	link   int
	theirs hwAddr
}

// conflictState coalesces sightings of one conflictKey into reports: at most
// one per interval, and always one after the last sighting, so a caller that
// re-announces on every report speaks after the other claimant's last word.
type conflictState struct {
	latest   sighting
	ifname   string
	pending  int       // sightings not reported yet
	reported time.Time // when the last report was made; zero for never
}

// dueAt is when the pending sightings may be reported.
func (c *conflictState) dueAt(interval time.Duration) time.Time {
	if c.reported.IsZero() {
		return time.Time{}
	}
	return c.reported.Add(interval)
}

// ready reports whether a report is due at now.
func (c *conflictState) ready(now time.Time, interval time.Duration) bool {
	return c.pending > 0 && !now.Before(c.dueAt(interval))
}

// stale reports whether the state can be forgotten: nothing pending and no
// report for long enough that the next sighting is reported at once anyway.
func (c *conflictState) stale(now time.Time, interval time.Duration) bool {
	return c.pending == 0 && now.Sub(c.reported) > interval
}
