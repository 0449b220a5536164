package handover

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Forward is one address whose unknown TCP connections this node sends to
// the address's previous owner until Until.
type Forward struct {
	// VIP is the address this node took over.
	VIP netip.Addr
	// Via is the previous owner's node address, of VIP's family.
	Via netip.Addr
	// Until is when forwarding stops.
	Until time.Time
}

// Plan is the set of forwards in effect: the pure decision of which address
// goes to which node for how long. It has no clock; the caller passes the
// time. The zero Plan is empty and ready to use.
type Plan struct {
	m map[netip.Addr]Forward
}

// Add starts (or restarts) forwarding vip to via for window from now. An
// address already forwarded elsewhere is redirected: only the latest previous
// owner holds the connections made since the one before left (and a node
// forwards to one place per address). via must be of vip's family and not
// vip itself.
func (p *Plan) Add(vip, via netip.Addr, now time.Time, window time.Duration) error {
	switch {
	case !vip.IsValid() || !via.IsValid():
		return errors.New("handover: address and previous owner are required")
	case vip.Is4() != via.Is4():
		return fmt.Errorf("handover: %s and previous owner %s are of different families", vip, via)
	case vip == via:
		return fmt.Errorf("handover: %s cannot be forwarded to itself", vip)
	case window <= 0:
		return fmt.Errorf("handover: window %v is not positive", window)
	}
	if p.m == nil {
		p.m = map[netip.Addr]Forward{}
	}
	p.m[vip] = Forward{VIP: vip, Via: via, Until: now.Add(window)}
	return nil
}

// Adopt takes over a forward an earlier process left (parseForwards), with
// its own end; one that has ended at now is refused (false).
func (p *Plan) Adopt(f Forward, now time.Time) bool {
	if !f.Until.After(now) || !f.VIP.IsValid() || f.VIP.Is4() != f.Via.Is4() || f.VIP == f.Via {
		return false
	}
	if p.m == nil {
		p.m = map[netip.Addr]Forward{}
	}
	p.m[f.VIP] = f
	return true
}

// Remove stops forwarding vip (this node released it: whoever owns it now
// receives its packets). It reports whether vip was forwarded.
func (p *Plan) Remove(vip netip.Addr) bool {
	_, ok := p.m[vip]
	delete(p.m, vip)
	return ok
}

// Expire removes the forwards whose window has ended at now and returns their
// addresses, sorted.
func (p *Plan) Expire(now time.Time) []netip.Addr {
	var out []netip.Addr
	for vip, f := range p.m {
		if !now.Before(f.Until) {
			out = append(out, vip)
			delete(p.m, vip)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Next returns when the earliest forward ends; false when none is in effect.
func (p *Plan) Next() (time.Time, bool) {
	var next time.Time
	for _, f := range p.m {
		if next.IsZero() || f.Until.Before(next) {
			next = f.Until
		}
	}
	return next, !next.IsZero()
}

// Forwards returns the forwards in effect for one family (IPv4 when v4 is
// true), sorted by address.
func (p *Plan) Forwards(v4 bool) []Forward {
	var out []Forward
	for _, f := range p.m {
		if f.VIP.Is4() == v4 {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b Forward) int { return a.VIP.Compare(b.VIP) })
	return out
}

// Len is the number of forwards in effect.
func (p *Plan) Len() int { return len(p.m) }
