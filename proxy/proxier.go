package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// Config configures a Proxier. NodeName is required; everything else has a default.
type Config struct {
	// NodeName is this node's name: endpoints on it are local.
	NodeName string
	// IPTables are the iptables implementations to program, one per family.
	// Default: iptables.NewExec for IPv4 and, when ip6tables-restore exists, IPv6.
	IPTables []iptables.Interface
	// ClusterCIDRs are the pod networks (at most one per family). Traffic to a
	// ClusterIP from outside them is masqueraded, and pod traffic to an external
	// destination of a Local Service short-circuits to all endpoints, as with
	// kube-proxy's --cluster-cidr. None: no such rules.
	ClusterCIDRs []netip.Prefix
	// MasqueradeAll masquerades all traffic to ClusterIPs.
	MasqueradeAll bool
	// MasqueradeBit is the fwmark bit (0-31) that marks packets for
	// masquerade. Default (nil): 14, as kube-proxy.
	MasqueradeBit *int
	// NodePortAddresses limits NodePorts to local addresses in these prefixes.
	// None: every local address except loopback.
	NodePortAddresses []netip.Prefix
	// NodeIPs are this node's addresses; a loadBalancerSourceRanges entry that
	// contains one also admits traffic from the node to the VIP.
	NodeIPs []netip.Addr
	// MinSyncPeriod is the least time between two syncs; changes in between are
	// batched (kube-proxy's --iptables-min-sync-period). Default 1s.
	MinSyncPeriod time.Duration
	// SyncPeriod is how often the canary rules are checked; a missing one (an
	// external flush) triggers a full sync. It is also how often the proxy
	// looks whether a relayout (a full sync once partial syncs have rewritten
	// half of the Service chains; see the package doc) is due. Default 30s.
	SyncPeriod time.Duration
	// FullSyncPeriod is how often everything is rewritten. Default 1h.
	FullSyncPeriod time.Duration
	// RandomFully forces MASQUERADE --random-fully on or off. Default: probed.
	RandomFully *bool
	// ConntrackTCPLiberal says nf_conntrack_tcp_be_liberal is set, so INVALID
	// packets need not be dropped. Default: read from /proc.
	ConntrackTCPLiberal *bool
	// Conntrack deletes stale UDP flows. Default: NetlinkConntrack{} on Linux.
	Conntrack ConntrackCleaner
	// HealthCheckListen opens health check node port listeners. Default:
	// net.ListenConfig.Listen ("tcp", ":PORT").
	HealthCheckListen func(ctx context.Context, network, addr string) (net.Listener, error)
	// Registerer receives the proxy's metrics (ironlb_proxy_*). Default: none.
	Registerer prometheus.Registerer
}

// Proxier programs iptables from Services and EndpointSlices. Make one with
// New and run it with Run.
type Proxier struct {
	cfg      Config
	tracker  *changeTracker
	families []*familySyncer
	health   *healthServer
	metrics  *metrics

	// syncMu serialises syncs (the loop and Cleanup).
	syncMu   sync.Mutex
	needFull []bool
	lastFull time.Time

	stateMu      sync.Mutex
	lastSyncOK   bool
	lastSyncTime time.Time
	syncedOnce   bool
}

// New validates cfg and returns a Proxier. It does not touch iptables.
func New(cfg Config) (*Proxier, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("proxy: NodeName is required")
	}
	bit := 14
	if cfg.MasqueradeBit != nil {
		bit = *cfg.MasqueradeBit
	}
	if bit < 0 || bit > 31 {
		return nil, fmt.Errorf("proxy: MasqueradeBit %d is not in 0-31", bit)
	}
	if cfg.MinSyncPeriod <= 0 {
		cfg.MinSyncPeriod = time.Second
	}
	if cfg.SyncPeriod <= 0 {
		cfg.SyncPeriod = 30 * time.Second
	}
	if cfg.FullSyncPeriod <= 0 {
		cfg.FullSyncPeriod = time.Hour
	}
	if cfg.Conntrack == nil {
		cfg.Conntrack = defaultConntrack()
	}
	if len(cfg.IPTables) == 0 {
		cfg.IPTables = []iptables.Interface{iptables.NewExec(iptables.IPv4)}
		if _, err := os.Stat("/usr/sbin/ip6tables-restore"); err == nil {
			cfg.IPTables = append(cfg.IPTables, iptables.NewExec(iptables.IPv6))
		}
	}
	liberal := false
	if cfg.ConntrackTCPLiberal != nil {
		liberal = *cfg.ConntrackTCPLiberal
	} else if b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal"); err == nil {
		liberal = strings.TrimSpace(string(b)) != "0"
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("proxy: metrics: %w", err)
	}
	p := &Proxier{cfg: cfg, tracker: newChangeTracker(cfg.NodeName), metrics: m}
	seen := map[iptables.Family]bool{}
	for _, ipt := range cfg.IPTables {
		fam := ipt.Family()
		if seen[fam] {
			return nil, fmt.Errorf("proxy: two iptables for %s", fam)
		}
		seen[fam] = true
		g := &generator{
			family:     fam,
			masqMark:   fmt.Sprintf("%#x", 1<<uint(bit)),
			tcpLiberal: liberal,
			nodeName:   cfg.NodeName,
		}
		g.masqueradeAll = cfg.MasqueradeAll
		for _, c := range cfg.ClusterCIDRs {
			if addrFamily(c.Addr()) == fam && !g.clusterCIDR.IsValid() {
				g.clusterCIDR = c.Masked()
			}
		}
		for _, c := range cfg.NodePortAddresses {
			if addrFamily(c.Addr()) == fam {
				g.nodePortCIDRs = append(g.nodePortCIDRs, c.Masked())
			}
		}
		for _, a := range cfg.NodeIPs {
			if addrFamily(a) == fam {
				g.nodeIPs = append(g.nodeIPs, a)
			}
		}
		p.families = append(p.families, newFamilySyncer(ipt, g))
		p.needFull = append(p.needFull, true)
	}
	p.health = newHealthServer(cfg.HealthCheckListen, p.Healthy)
	return p, nil
}

// Healthy reports whether the proxy keeps up: the last sync succeeded and no
// change has waited longer than two sync periods.
func (p *Proxier) Healthy() bool {
	p.stateMu.Lock()
	ok := p.lastSyncOK
	p.stateMu.Unlock()
	if !ok {
		return false
	}
	p.tracker.mu.Lock()
	queued := p.tracker.queuedAt
	p.tracker.mu.Unlock()
	return queued.IsZero() || time.Since(queued) < 2*p.cfg.SyncPeriod
}

// Informers are the shared informers Run reads. Obtain them (call Informer()
// on each) before starting their factory: a factory starts only the informers
// asked for before Start. The Node informer may be
// limited to this node (field selector metadata.name); the others may exclude
// objects labelled service.kubernetes.io/service-proxy-name, which the proxy
// ignores anyway.
type Informers struct {
	Services       coreinformers.ServiceInformer
	EndpointSlices discoveryinformers.EndpointSliceInformer
	Nodes          coreinformers.NodeInformer
}

// Run registers event handlers on the informers (which the caller starts),
// waits until they have delivered their initial lists, then programs iptables
// and keeps it in step until ctx ends. It returns nil when ctx ends, or an
// error if the informers never sync.
func (p *Proxier) Run(ctx context.Context, inf Informers) error {
	if inf.Services == nil || inf.EndpointSlices == nil || inf.Nodes == nil {
		return errors.New("proxy: Run needs Service, EndpointSlice and Node informers")
	}
	regs, err := p.register(inf)
	if err != nil {
		return err
	}
	defer func() {
		_ = inf.Services.Informer().RemoveEventHandler(regs[0])
		_ = inf.EndpointSlices.Informer().RemoveEventHandler(regs[1])
		_ = inf.Nodes.Informer().RemoveEventHandler(regs[2])
	}()
	if !cache.WaitForCacheSync(ctx.Done(), regs[0].HasSynced, regs[1].HasSynced, regs[2].HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("proxy: informers did not sync")
	}
	klog.InfoS("Proxy informers synced; starting to program iptables", "node", p.cfg.NodeName)
	defer p.health.close()
	p.loop(ctx)
	return nil
}

func (p *Proxier) register(inf Informers) ([]cache.ResourceEventHandlerRegistration, error) {
	svcH := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onService(o) },
		UpdateFunc: func(_, o any) { p.onService(o) },
		DeleteFunc: func(o any) { p.onServiceDelete(o) },
	}
	esH := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onSlice(o, false) },
		UpdateFunc: func(_, o any) { p.onSlice(o, false) },
		DeleteFunc: func(o any) { p.onSlice(o, true) },
	}
	nodeH := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onNode(o) },
		UpdateFunc: func(_, o any) { p.onNode(o) },
	}
	var regs []cache.ResourceEventHandlerRegistration
	for _, x := range []struct {
		i cache.SharedIndexInformer
		h cache.ResourceEventHandler
	}{{inf.Services.Informer(), svcH}, {inf.EndpointSlices.Informer(), esH}, {inf.Nodes.Informer(), nodeH}} {
		r, err := x.i.AddEventHandler(x.h)
		if err != nil {
			return nil, fmt.Errorf("proxy: add event handler: %w", err)
		}
		regs = append(regs, r)
	}
	return regs, nil
}

func unwrapTombstone(o any) any {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return o
}

func (p *Proxier) onService(o any) {
	if svc, ok := o.(*v1.Service); ok {
		p.tracker.setService(svc)
	}
}

func (p *Proxier) onServiceDelete(o any) {
	if svc, ok := unwrapTombstone(o).(*v1.Service); ok {
		p.tracker.deleteService(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name})
	}
}

func (p *Proxier) onSlice(o any, deleted bool) {
	es, ok := unwrapTombstone(o).(*discovery.EndpointSlice)
	if !ok {
		return
	}
	if deleted {
		p.tracker.deleteSlice(es)
	} else {
		p.tracker.setSlice(es)
	}
}

func (p *Proxier) onNode(o any) {
	if n, ok := o.(*v1.Node); ok {
		p.tracker.setNode(n)
	}
}

// loop syncs when changes arrive, at most once per MinSyncPeriod, checks the
// canaries every SyncPeriod and rewrites everything every FullSyncPeriod, or
// on a SyncPeriod tick when no change has arrived for relayoutQuiet, once
// partial syncs have rewritten half of the Service chains (relayout).
//
// The canary check runs beside the loop, not in it: it is one iptables
// command per rule looked for, and at 10,000 Services each took 0.25-0.45 s
// in the lab (iptables-nft reads the table for -C), so a change arriving
// during a check in the loop waited seconds for it.
func (p *Proxier) loop(ctx context.Context) {
	canary := time.NewTicker(p.cfg.SyncPeriod)
	defer canary.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastStart, lastChange time.Time
	pending := true
	sweeping := false
	checked := make(chan []string, 1) // what a canary check found missing, per family
	checking := false
	for {
		if pending {
			wait := time.Until(lastStart.Add(p.cfg.MinSyncPeriod))
			if wait <= 0 {
				lastStart = time.Now()
				pending = false
				if err := p.syncOnce(ctx); err != nil {
					klog.ErrorS(err, "Proxy sync failed; retrying with a full sync")
					pending = true
				} else if !sweeping {
					// Leftovers of an earlier run are looked for once, after the
					// first sync, off the loop: iptables-save of a big table is slow.
					sweeping = true
					go func() {
						if err := p.sweepLeftovers(ctx); err != nil {
							klog.ErrorS(err, "Cannot remove chains left by an earlier run")
						}
					}()
				}
				continue
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.tracker.changed:
			pending = true
			lastChange = time.Now()
		case <-timer.C:
		case missing := <-checked:
			checking = false
			if p.canariesLost(missing) {
				pending = true
			}
		case <-canary.C:
			if !checking {
				checking = true
				go func() { checked <- p.missingCanaries(ctx) }()
			}
			if time.Since(p.lastFullTime()) >= p.cfg.FullSyncPeriod {
				p.markFull()
				pending = true
			} else if !pending && time.Since(lastChange) >= relayoutQuiet && p.relayout() {
				pending = true
			}
		}
	}
}

// relayoutQuiet is how long no change may have arrived before a relayout
// starts. A relayout (a full sync, 3-4 s at 10,000 x 10) makes a change that
// arrives meanwhile wait for it; most changes come in bursts, and the end of
// a burst is when half of the chains have just been rewritten, so without
// this a relayout often started right before a burst's last change (benchproxy
// (a): 2.8 s instead of 0.2-0.9 s).
var relayoutQuiet = 10 * time.Second

// relayout marks for a full sync every family whose chains partial syncs
// have mostly rewritten (familySyncer.relayoutDue) and reports whether any
// was. It runs on the canary tick once no change has arrived for
// relayoutQuiet, so it happens at most once per SyncPeriod and never ahead of
// a change that is waiting.
func (p *Proxier) relayout() bool {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	due := false
	for i, f := range p.families {
		if p.needFull[i] || !f.relayoutDue() {
			continue
		}
		klog.InfoS("Proxy chains rewritten since the last full sync are scattered in kernel memory; rewriting everything in the order the kernel walks it",
			"family", f.gen.family, "moved", len(f.moved), "chains", f.chains)
		p.needFull[i] = true
		due = true
	}
	return due
}

func (p *Proxier) lastFullTime() time.Time {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	return p.lastFull
}

func (p *Proxier) markFull() {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	for i := range p.needFull {
		p.needFull[i] = true
	}
}

// checkCanaries looks for the canary rule in every table and for the jump
// rules; anything missing marks that family for a full sync. It reports
// whether a sync is needed.
func (p *Proxier) checkCanaries(ctx context.Context) bool {
	return p.canariesLost(p.missingCanaries(ctx))
}

// missingCanaries runs the commands of a canary check without the sync lock
// (the rules it looks for are only rewritten by full syncs, each table in one
// atomic restore) and returns per family what it found missing, "" for
// nothing.
func (p *Proxier) missingCanaries(ctx context.Context) []string {
	missing := make([]string, len(p.families))
	for i, f := range p.families {
		for _, t := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
			ok, err := f.ipt.HasRule(ctx, t, chainCanary, "-j", "RETURN")
			if err != nil || !ok {
				missing[i] = string(t) + " " + chainCanary
				break
			}
		}
		if missing[i] == "" {
			for _, j := range jumpRules() {
				ok, err := f.ipt.HasRule(ctx, j.table, j.chain, j.args...)
				if err != nil || !ok {
					missing[i] = string(j.table) + " " + j.chain + " jump"
					break
				}
			}
		}
	}
	return missing
}

// canariesLost marks each family missingCanaries found incomplete for a full
// sync and reports whether any was. A family already waiting for one is left
// alone: the check may have run while it was rewritten.
func (p *Proxier) canariesLost(missing []string) bool {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	lost := false
	for i, f := range p.families {
		if missing[i] == "" || p.needFull[i] {
			continue
		}
		klog.InfoS("Proxy rules were removed from outside; rewriting everything", "family", f.gen.family, "missing", missing[i])
		p.metrics.canaryLost.WithLabelValues(f.gen.family.String()).Inc()
		p.needFull[i] = true
		lost = true
	}
	return lost
}

// sweepLeftovers deletes IRONLB-* chains that exist but were not made by
// this process (an earlier run or version left them; nothing of ours
// references them). iptables-save runs without holding the sync lock.
func (p *Proxier) sweepLeftovers(ctx context.Context) error {
	var errs []error
	for i, f := range p.families {
		saves := map[iptables.Table][]byte{}
		for _, t := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
			b, err := f.ipt.Save(ctx, t)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s save %s: %w", f.gen.family, t, err))
				continue
			}
			saves[t] = b
		}
		if len(saves) < 2 {
			continue
		}
		p.syncMu.Lock()
		in := f.leftovers(saves)
		var err error
		if len(in) > 0 {
			err = f.ipt.Restore(ctx, in)
			if err != nil {
				p.needFull[i] = true
			}
		}
		p.syncMu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.gen.family, err))
		} else {
			klog.V(2).InfoS("Looked for chains left by an earlier run", "family", f.gen.family, "restoreBytes", len(in))
		}
	}
	return errors.Join(errs...)
}

// syncOnce takes the pending changes and applies them to every family.
func (p *Proxier) syncOnce(ctx context.Context) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	anyFull := false
	for _, f := range p.needFull {
		anyFull = anyFull || f
	}
	snaps, zone, queued := p.tracker.take(anyFull)
	var errs []error
	ports := map[types.NamespacedName]uint16{}
	local := map[types.NamespacedName]int{}
	allFull := true
	for i, f := range p.families {
		full := p.needFull[i]
		allFull = allFull && full
		if f.gen.zone != zone {
			f.gen.zone = zone
			full = true
		}
		if f.gen.randomFully != p.randomFully(ctx, f) {
			f.gen.randomFully = !f.gen.randomFully
			full = true
		}
		fam := f.gen.family.String()
		kind := "partial"
		if full {
			kind = "full"
		}
		start := time.Now()
		res, err := f.sync(ctx, snaps, full)
		p.metrics.syncDuration.WithLabelValues(fam, kind).Observe(time.Since(start).Seconds())
		if err != nil {
			p.needFull[i] = true
			p.metrics.syncFailures.WithLabelValues(fam).Inc()
			errs = append(errs, err)
			continue
		}
		p.needFull[i] = false
		p.metrics.syncs.WithLabelValues(fam, kind).Inc()
		p.metrics.restoreBytes.WithLabelValues(fam, kind).Observe(float64(res.restoreBytes))
		p.metrics.rules.WithLabelValues(fam, "nat").Set(float64(res.natRules))
		p.metrics.rules.WithLabelValues(fam, "filter").Set(float64(res.filterRules))
		klog.V(2).InfoS("Proxy sync done", "family", fam, "kind", kind, "services", len(snaps),
			"restoreBytes", res.restoreBytes, "restores", res.restores, "restoreTime", res.restoreTime, "elapsed", time.Since(start))
		if len(res.staleUDP) > 0 {
			m := newStaleMatcher(res.staleUDP)
			n, err := p.cfg.Conntrack.DeleteFlows(f.gen.family, m.stale)
			if err != nil {
				klog.ErrorS(err, "Cannot delete stale UDP conntrack entries", "family", fam)
			}
			p.metrics.conntrackDel.WithLabelValues(fam).Add(float64(n))
		}
		f.healthState(ports, local)
	}
	if allFull && len(errs) == 0 {
		p.lastFull = time.Now()
	}
	if len(errs) > 0 {
		// The changes taken were lost for the failed family; its next sync is full.
		p.setSyncState(false)
		return errors.Join(errs...)
	}
	if !queued.IsZero() {
		p.metrics.programming.Observe(time.Since(queued).Seconds())
	}
	p.setSyncState(true)
	p.health.sync(ctx, ports, local)
	return nil
}

func (p *Proxier) randomFully(ctx context.Context, f *familySyncer) bool {
	if p.cfg.RandomFully != nil {
		return *p.cfg.RandomFully
	}
	return f.ipt.RandomFully(ctx)
}

func (p *Proxier) setSyncState(ok bool) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	p.lastSyncOK = ok
	p.lastSyncTime = time.Now()
	p.syncedOnce = p.syncedOnce || ok
}

// Cleanup removes everything this Proxier's iptables hold that ironlb made;
// see the package function Cleanup.
func (p *Proxier) Cleanup(ctx context.Context) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	var ipts []iptables.Interface
	for i, f := range p.families {
		ipts = append(ipts, f.ipt)
		p.needFull[i] = true
	}
	p.health.close()
	return Cleanup(ctx, ipts...)
}
