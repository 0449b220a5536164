package handover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// Defaults of Config.
const (
	// DefaultWindow is how long a takeover forwards unknown connections to the
	// previous owner. A connection that sends nothing for longer than this
	// through a handover is reset afterwards, as without forwarding; longer
	// only costs that mid-stream packets of unknown connections to the address
	// (normally none) go to the old node, where its kernel either knows them
	// or resets them as this node would have.
	DefaultWindow = 60 * time.Second
	// DefaultMarkBit is the packet and connection mark bit (0x1000): outside
	// kube-proxy's (0x4000, 0x8000), Calico's (0xffff0000), Cilium's
	// (0x0f00) and Weave's (0x20000, 0x40000).
	DefaultMarkBit = 12
	// DefaultTable is the routing table holding the routes to previous owners.
	DefaultTable = 7327
	// DefaultRulePriority is the priority of the "fwmark lookup" rule: before
	// the main table's (32766).
	DefaultRulePriority = 7327
)

// Config configures a Forwarder; the zero value uses the defaults.
type Config struct {
	// Window is how long each handover forwards; default DefaultWindow.
	Window time.Duration
	// MarkBit is the fwmark and connmark bit (0-31); nil means DefaultMarkBit.
	MarkBit *int
	// Table and RulePriority place the policy route; default DefaultTable and
	// DefaultRulePriority.
	Table, RulePriority int
	// IPTables are the iptables of each family. Default: iptables.NewExec for
	// IPv4 and, when ip6tables-restore exists, IPv6.
	IPTables []iptables.Interface
	// Registerer receives ironlb_l2_handover_forwards and
	// ironlb_l2_handover_started_total; nil registers none.
	Registerer prometheus.Registerer

	// netlink is where routes and rules go; nil: this process's namespace
	// (tests point it at a lab namespace).
	netlink *netlink.Handle
}

func (c *Config) defaults() error {
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.MarkBit == nil {
		b := DefaultMarkBit
		c.MarkBit = &b
	}
	if *c.MarkBit < 0 || *c.MarkBit > 31 {
		return fmt.Errorf("handover: mark bit %d is not in 0-31", *c.MarkBit)
	}
	if c.Table == 0 {
		c.Table = DefaultTable
	}
	if c.RulePriority == 0 {
		c.RulePriority = DefaultRulePriority
	}
	if c.netlink == nil {
		c.netlink = &netlink.Handle{}
	}
	if len(c.IPTables) == 0 {
		c.IPTables = []iptables.Interface{iptables.NewExec(iptables.IPv4)}
		if _, err := os.Stat("/usr/sbin/ip6tables-restore"); err == nil {
			c.IPTables = append(c.IPTables, iptables.NewExec(iptables.IPv6))
		}
	}
	return nil
}

// Forwarder installs and removes the forwards of one node. Its methods are
// safe for concurrent use.
type Forwarder struct {
	cfg      Config
	route    routing
	forwards prometheus.Gauge
	started  prometheus.Counter

	mu       sync.Mutex
	plan     Plan
	prepared map[iptables.Family]bool
	timer    *time.Timer
	closed   bool
	checking atomic.Bool // recheckOrder running
}

// New returns a Forwarder; it touches nothing on the node until Prepare.
func New(cfg Config) (*Forwarder, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	f := &Forwarder{
		cfg:   cfg,
		route: routing{nl: cfg.netlink, table: cfg.Table, priority: cfg.RulePriority, mark: uint32(1) << uint(*cfg.MarkBit)},
		forwards: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ironlb_l2_handover_forwards",
			Help: "Addresses taken over from a node that left whose unknown TCP connections are forwarded to it."}),
		started: prometheus.NewCounter(prometheus.CounterOpts{Name: "ironlb_l2_handover_started_total",
			Help: "Handover forwards started (addresses taken over from a node that left)."}),
		prepared: map[iptables.Family]bool{},
	}
	if r := cfg.Registerer; r != nil {
		for _, c := range []prometheus.Collector{f.forwards, f.started} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("handover: registering metrics: %w", err)
			}
		}
	}
	return f, nil
}

// Window is the configured forwarding time.
func (f *Forwarder) Window() time.Duration { return f.cfg.Window }

// Prepare installs the address-independent parts for every family, so that
// Forward at a takeover writes only one small mangle chain and one route. It
// adopts the forwards an earlier speaker process left (Detach) whose windows
// have not ended, so a connection handed over twice in a rolling restart
// still finds its way (the node in the middle keeps relaying it), and
// removes the rest. A family that fails is left out (Forward then refuses
// its addresses); the error says which.
func (f *Forwarder) Prepare(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("handover: closed")
	}
	var errs []error
	now := time.Now()
	for _, ipt := range f.cfg.IPTables {
		fam := ipt.Family()
		v4 := fam == iptables.IPv4
		err := f.prepare(ctx, ipt, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("handover: preparing %s: %w", fam, err))
			for _, fw := range f.plan.Forwards(v4) {
				f.plan.Remove(fw.VIP)
			}
			continue
		}
		f.prepared[fam] = true
	}
	f.forwards.Set(float64(f.plan.Len()))
	f.schedule()
	f.watchOrder()
	return errors.Join(errs...)
}

func (f *Forwarder) prepare(ctx context.Context, ipt iptables.Interface, now time.Time) error {
	fam := ipt.Family()
	v4 := fam == iptables.IPv4
	save, err := ipt.Save(ctx, iptables.TableMangle)
	if err != nil {
		return err
	}
	for _, fw := range parseForwards(save) {
		if fw.VIP.Is4() == v4 && f.plan.Adopt(fw, now) {
			klog.InfoS("Adopted a handover forward of the previous process", "ip", fw.VIP, "to", fw.Via, "until", fw.Until.Format(time.RFC3339))
		}
	}
	if err := f.route.flushTable(v4); err != nil {
		return err
	}
	for _, fw := range f.plan.Forwards(v4) {
		if err := f.route.replaceRoute(fw); err != nil {
			klog.ErrorS(err, "Dropping an adopted handover forward", "ip", fw.VIP, "to", fw.Via)
			f.plan.Remove(fw.VIP)
		}
	}
	// One restore per table: the chains are rewritten atomically, so
	// adopted forwards never stop working.
	if err := ipt.Restore(ctx, staticRules(fam, *f.cfg.MarkBit, f.plan.Forwards(v4))); err != nil {
		return err
	}
	if err := ensureJumps(ctx, ipt); err != nil {
		return err
	}
	return f.route.ensureRule(v4)
}

// Forward starts forwarding the unknown TCP connections of each address in
// vias to its previous owner's node address for the window, and returns once
// the rules and routes are in place: call it before announcing them.
// Forwarding an address again restarts its window. It writes one
// iptables-restore per family however many addresses a node's leave moved
// here. An address that cannot be forwarded (its family not prepared, the
// previous owner not on a link of this node) is left out and named in the
// error; the others are forwarded.
func (f *Forwarder) Forward(ctx context.Context, vias map[netip.Addr]netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("handover: closed")
	}
	var errs []error
	now := time.Now()
	added := map[iptables.Interface][]netip.Addr{}
	for vip, via := range vias {
		ipt := f.iptables(vip)
		if ipt == nil {
			errs = append(errs, fmt.Errorf("handover: %s: its family is not prepared", vip))
			continue
		}
		old, had := f.plan.m[vip]
		if err := f.plan.Add(vip, via, now, f.cfg.Window); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := f.route.replaceRoute(f.plan.m[vip]); err != nil {
			errs = append(errs, fmt.Errorf("handover: forwarding %s to %s: %w", vip, via, err))
			if had {
				f.plan.m[vip] = old // its route is still the old one
			} else {
				f.plan.Remove(vip)
			}
			continue
		}
		added[ipt] = append(added[ipt], vip)
	}
	for ipt, vips := range added {
		if err := ipt.Restore(ctx, []byte(forwardRules(ipt.Family(), *f.cfg.MarkBit, f.plan.Forwards(ipt.Family() == iptables.IPv4)))); err != nil {
			errs = append(errs, fmt.Errorf("handover: forwarding %v: %w", vips, err))
			for _, vip := range vips {
				f.plan.Remove(vip)
				_ = f.route.deleteRoute(vip)
			}
			continue
		}
		for _, vip := range vips {
			fwd := f.plan.m[vip]
			f.started.Inc()
			klog.InfoS("Forwarding unknown connections to the previous owner", "ip", vip, "to", fwd.Via, "until", fwd.Until.Format(time.RFC3339))
		}
	}
	f.forwards.Set(float64(f.plan.Len()))
	f.schedule()
	if len(added) > 0 {
		f.recheckOrder()
	}
	return errors.Join(errs...)
}

// Stop ends the forwarding of vip (this node released it). It does nothing
// for an address not forwarded.
func (f *Forwarder) Stop(ctx context.Context, vip netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.plan.Remove(vip) {
		return nil
	}
	return f.apply(ctx, []netip.Addr{vip})
}

// Forwards returns the forwards in effect, IPv4 first, each sorted by address.
func (f *Forwarder) Forwards() []Forward {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(f.plan.Forwards(true), f.plan.Forwards(false)...)
}

// Detach stops the Forwarder's timers and leaves the forwards in the kernel
// for the next speaker process to adopt (a planned restart; see Prepare).
// Without a next process they stay until Cleanup ("--cleanup"), like the
// proxy's rules.
func (f *Forwarder) Detach() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.timer != nil {
		f.timer.Stop()
	}
}

// Close ends every forward and removes everything Prepare installed.
func (f *Forwarder) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.timer != nil {
		f.timer.Stop()
	}
	f.plan = Plan{}
	f.forwards.Set(0)
	var errs []error
	for _, ipt := range f.cfg.IPTables {
		if !f.prepared[ipt.Family()] {
			continue
		}
		v4 := ipt.Family() == iptables.IPv4
		errs = append(errs, removeChains(ctx, ipt), f.route.deleteRules(v4), f.route.flushTable(v4))
	}
	return errors.Join(errs...)
}

// Cleanup removes what a Forwarder with cfg left on the node (what
// "ironlb-speaker --cleanup" runs); safe when nothing is there.
func Cleanup(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	r := routing{nl: cfg.netlink, table: cfg.Table, priority: cfg.RulePriority}
	var errs []error
	for _, ipt := range cfg.IPTables {
		v4 := ipt.Family() == iptables.IPv4
		errs = append(errs, removeChains(ctx, ipt), r.deleteRules(v4), r.flushTable(v4))
	}
	return errors.Join(errs...)
}

func (f *Forwarder) iptables(vip netip.Addr) iptables.Interface {
	for _, ipt := range f.cfg.IPTables {
		if (ipt.Family() == iptables.IPv4) == vip.Is4() && f.prepared[ipt.Family()] {
			return ipt
		}
	}
	return nil
}

// apply rewrites the mangle chains of the families of gone and deletes their
// routes. Called with f.mu held.
func (f *Forwarder) apply(ctx context.Context, gone []netip.Addr) error {
	var errs []error
	done := map[bool]bool{}
	for _, vip := range gone {
		if ipt := f.iptables(vip); ipt != nil && !done[vip.Is4()] {
			done[vip.Is4()] = true
			errs = append(errs, ipt.Restore(ctx, []byte(forwardRules(ipt.Family(), *f.cfg.MarkBit, f.plan.Forwards(vip.Is4())))))
		}
		errs = append(errs, f.route.deleteRoute(vip))
		klog.InfoS("Stopped forwarding unknown connections to the previous owner", "ip", vip)
	}
	f.forwards.Set(float64(f.plan.Len()))
	f.schedule()
	return errors.Join(errs...)
}

// schedule arms the timer for the next window end. Called with f.mu held.
func (f *Forwarder) schedule() {
	if f.timer != nil {
		f.timer.Stop()
	}
	next, ok := f.plan.Next()
	if !ok || f.closed {
		return
	}
	f.timer = time.AfterFunc(time.Until(next), func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.closed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if gone := f.plan.Expire(time.Now()); len(gone) > 0 {
			if err := f.apply(ctx, gone); err != nil {
				klog.ErrorS(err, "Ending handover forwards", "ips", gone)
			}
		} else {
			f.schedule()
		}
	})
}

// ensureJumps puts the jump rules in place; the nat one must come first in
// PREROUTING, so a jump found below another rule is moved to the top.
func ensureJumps(ctx context.Context, ipt iptables.Interface) error {
	for _, j := range jumps {
		args := jumpArgs()
		if j.first {
			if err := ensureFirst(ctx, ipt, j); err != nil {
				return err
			}
			continue
		}
		ok, err := ipt.HasRule(ctx, j.table, j.chain, args...)
		if err != nil {
			return err
		}
		if !ok {
			in := fmt.Sprintf("*%s\n-A %s %s\nCOMMIT\n", j.table, j.chain, strings.Join(quoted(args), " "))
			if err := ipt.Restore(ctx, []byte(in)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ensureFirst moves the jump j to the top of its chain unless it is there.
func ensureFirst(ctx context.Context, ipt iptables.Interface, j jump) error {
	args := jumpArgs()
	save, err := ipt.Save(ctx, j.table)
	if err != nil {
		return err
	}
	if firstRule(save, j.chain) == "-A "+j.chain+" "+strings.Join(quoted(args), " ") {
		return nil
	}
	if err := ipt.DeleteRule(ctx, j.table, j.chain, args...); err != nil {
		return err
	}
	klog.InfoS("Putting the handover jump first", "family", ipt.Family(), "table", j.table, "chain", j.chain)
	return ipt.EnsureRule(ctx, j.table, j.chain, args...)
}

// recheckOrder checks, off the takeover's path, that the jumps are in
// place and the first-rule ones still first: a kube-proxy or proxy that
// started after Prepare (a node booting) inserts its own jump above, and an
// external flush removes them. Between such a change and the fix a
// mid-stream packet would be DNATed here. One check at a time.
func (f *Forwarder) recheckOrder() {
	if !f.checking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer f.checking.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, ipt := range f.cfg.IPTables {
			f.mu.Lock()
			ok := f.prepared[ipt.Family()] && !f.closed
			f.mu.Unlock()
			if !ok {
				continue
			}
			if err := ensureJumps(ctx, ipt); err != nil {
				klog.ErrorS(err, "Checking the handover jumps", "family", ipt.Family())
			}
		}
	}()
}

// orderChecks are when, after Prepare, the jumps are checked again: a
// kube-proxy starting with the node installs its rules within minutes.
var orderChecks = []time.Duration{2 * time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}

// watchOrder runs recheckOrder at orderChecks after Prepare, until Close or
// Detach.
func (f *Forwarder) watchOrder() {
	go func() {
		start := time.Now()
		for _, at := range orderChecks {
			time.Sleep(time.Until(start.Add(at)))
			f.mu.Lock()
			closed := f.closed
			f.mu.Unlock()
			if closed {
				return
			}
			f.recheckOrder()
		}
	}()
}

// quoted writes args as iptables-save does (a comment with spaces in quotes).
func quoted(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.Contains(a, " ") {
			a = `"` + a + `"`
		}
		out[i] = a
	}
	return out
}

// firstRule returns the first "-A chain ..." line of iptables-save output.
func firstRule(save []byte, chain string) string {
	for line := range bytes.Lines(save) {
		if s := strings.TrimSpace(string(line)); strings.HasPrefix(s, "-A "+chain+" ") {
			return s
		}
	}
	return ""
}

// removeChains deletes the jumps to Chain and Chain itself from every table
// of one family.
func removeChains(ctx context.Context, ipt iptables.Interface) error {
	var errs []error
	tables := map[iptables.Table]bool{}
	for _, j := range jumps {
		tables[j.table] = true
		// A jump inserted twice (two processes racing) is deleted twice.
		for range 3 {
			ok, err := ipt.HasRule(ctx, j.table, j.chain, jumpArgs()...)
			if err != nil || !ok {
				errs = append(errs, err)
				break
			}
			errs = append(errs, ipt.DeleteRule(ctx, j.table, j.chain, jumpArgs()...))
		}
	}
	for _, t := range []iptables.Table{iptables.TableMangle, iptables.TableNAT, iptables.TableFilter} {
		if !tables[t] {
			continue
		}
		in := fmt.Sprintf("*%s\n:%s - [0:0]\n-X %s\nCOMMIT\n", t, Chain, Chain)
		if err := ipt.Restore(ctx, []byte(in)); err != nil {
			errs = append(errs, fmt.Errorf("removing %s from %s: %w", Chain, t, err))
		}
	}
	return errors.Join(errs...)
}
