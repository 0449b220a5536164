package handover

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routing is the policy routing shell: one rule "fwmark M/M lookup T" per
// family and one route "VIP via PREVIOUS-OWNER dev LINK" per forward in T.
type routing struct {
	nl              *netlink.Handle // the netlink connection (of the process's namespace unless a test says otherwise)
	table, priority int
	mark            uint32
}

func familyOf(v4 bool) int {
	if v4 {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func (r routing) rule(v4 bool) *netlink.Rule {
	rule := netlink.NewRule()
	rule.Family = familyOf(v4)
	rule.Table = r.table
	rule.Priority = r.priority
	rule.Mark = r.mark
	mask := r.mark
	rule.Mask = &mask
	return rule
}

// ensureRule adds the fwmark rule of one family unless it is there.
func (r routing) ensureRule(v4 bool) error {
	rules, err := r.nl.RuleList(familyOf(v4))
	if err != nil {
		return fmt.Errorf("listing ip rules: %w", err)
	}
	for _, x := range rules {
		if x.Table == r.table && x.Priority == r.priority && x.Mark == r.mark {
			return nil
		}
	}
	if err := r.nl.RuleAdd(r.rule(v4)); err != nil {
		return fmt.Errorf("ip rule add fwmark %#x lookup %d: %w", r.mark, r.table, err)
	}
	return nil
}

// deleteRules removes every rule of one family that looks up the table.
func (r routing) deleteRules(v4 bool) error {
	rules, err := r.nl.RuleList(familyOf(v4))
	if err != nil {
		return fmt.Errorf("listing ip rules: %w", err)
	}
	var errs []error
	for _, x := range rules {
		if x.Table == r.table {
			if err := r.nl.RuleDel(&x); err != nil {
				errs = append(errs, fmt.Errorf("ip rule del lookup %d: %w", r.table, err))
			}
		}
	}
	return errors.Join(errs...)
}

// replaceRoute routes f.VIP to f.Via in the table, on the link through which
// this node reaches f.Via directly. A previous owner reachable only through a
// router is refused: the router would send the packets back here.
func (r routing) replaceRoute(f Forward) error {
	rs, err := r.nl.RouteGet(f.Via.AsSlice())
	if err != nil || len(rs) == 0 {
		return fmt.Errorf("no route to the previous owner %s: %v", f.Via, err)
	}
	if rs[0].Gw != nil || rs[0].LinkIndex == 0 {
		return fmt.Errorf("the previous owner %s is not on a link of this node (reached via %v)", f.Via, rs[0].Gw)
	}
	route := &netlink.Route{
		Dst:       prefixNet(f.VIP),
		Gw:        net.IP(f.Via.AsSlice()),
		LinkIndex: rs[0].LinkIndex,
		Table:     r.table,
	}
	if err := r.nl.RouteReplace(route); err != nil {
		return fmt.Errorf("ip route replace %s via %s table %d: %w", f.VIP, f.Via, r.table, err)
	}
	return nil
}

// deleteRoute removes the route of vip from the table; a missing one is not
// an error.
func (r routing) deleteRoute(vip netip.Addr) error {
	err := r.nl.RouteDel(&netlink.Route{Dst: prefixNet(vip), Table: r.table})
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("ip route del %s table %d: %w", vip, r.table, err)
	}
	return nil
}

// flushTable removes every route of one family from the table.
func (r routing) flushTable(v4 bool) error {
	rs, err := r.nl.RouteListFiltered(familyOf(v4), &netlink.Route{Table: r.table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("listing table %d: %w", r.table, err)
	}
	var errs []error
	for _, x := range rs {
		if err := r.nl.RouteDel(&x); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func prefixNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}
