package speaker

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/bgp"
)

// planBGP (event loop) computes the node's BGP desired state, hands it to the
// applier, and records Events for the addresses whose advertisement started,
// stopped or changed. What the node advertises is shown by its BGPSessions
// (their prefixes, written by the applier at most once a second), not by an
// object per address: in BGP mode every node advertises every address, and a
// ServiceAnnouncement per address and node made a burst of n Services cost
// n x nodes creates (and as many deletes later) and n x nodes objects in etcd.
func (s *Speaker) planBGP() {
	objs, _ := s.peers.List(everything)
	peers := make([]*v1alpha1.BGPPeer, 0, len(objs))
	for _, o := range objs {
		if p, err := fromUnstructured[v1alpha1.BGPPeer](o); err == nil {
			peers = append(peers, p)
		}
	}
	adv := make(map[netip.Addr]string, len(s.ls.advertised))
	for ip := range s.ls.advertised {
		adv[ip] = s.ls.vipPool[ip]
	}
	plan := planBGP(bgpInputs{
		node: s.self, nodeLabels: s.ls.nodeLabels, namespace: s.cfg.Namespace, peers: peers,
		secret: func(name string) *corev1.Secret {
			sec, err := s.secrets.Secrets(s.cfg.Namespace).Get(name)
			if err != nil {
				return nil
			}
			return sec
		},
		pools: s.ls.pools, advertised: adv,
	})
	s.bgp.set(plan)
	s.metrics.vipsAdvert.Set(float64(len(plan.paths)))

	for ip, pp := range plan.paths {
		old, had := s.ls.paths[ip]
		if !had || old.prefix != pp.prefix || !slices.Equal(old.peers, pp.peers) {
			s.addressEvent(ip, corev1.EventTypeNormal, "Advertising", "advertising %s from %s by BGP to %s", pp.prefix, s.self, peerList(pp.peers))
		}
	}
	for ip, old := range s.ls.paths {
		if _, ok := plan.paths[ip]; !ok {
			s.addressEvent(ip, corev1.EventTypeNormal, "Withdrawn", "withdrew %s from %s (BGP)", old.prefix, s.self)
		}
	}
	s.ls.paths = plan.paths
	for name, why := range plan.refused {
		if s.ls.refused[name] == why {
			continue
		}
		klog.ErrorS(nil, "BGPPeer not opened", "bgppeer", name, "node", s.self, "why", why)
		if obj, err := s.peers.Get(name); err == nil {
			if p, err := fromUnstructured[v1alpha1.BGPPeer](obj); err == nil {
				s.recorder.Eventf(p, corev1.EventTypeWarning, "PeerNotConfigured", "%s does not open this session: %s", s.self, why)
			}
		}
	}
	s.ls.refused = plan.refused
}

func peerList(peers []netip.Addr) string {
	if len(peers) == 0 {
		return "every peer of its family"
	}
	return strings.Join(addrStrings(peers), ",")
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// bgpApplier applies the latest plan to a bgp.Manager on its own goroutine
// (GoBGP calls must not hold up the event loop) and keeps the node's
// BGPSession objects current. The Manager starts with the first plan that has
// a session, so a node without BGPPeers runs no GoBGP and binds no BFD port.
type bgpApplier struct {
	s        *Speaker
	routerID netip.Addr

	mu     sync.Mutex
	plan   *bgpPlan
	events []bgp.Event
	kick   chan struct{}
	halt   chan struct{}
	once   sync.Once

	applied atomic.Bool // the latest plan took effect
	ready   atomic.Bool // a plan took effect once (readiness)
	mgr     *bgp.Manager
	names   map[netip.Addr]string // sessions written, by peer address -> BGPPeer
	written map[string]bool       // BGPSession names written
	// refusedSince keeps when each BGPPeer was first refused for its reason,
	// so its BGPSession is not rewritten while nothing changes.
	refusedSince map[string]refusal
}

type refusal struct {
	why   string
	since metav1.Time
}

// retryApply is the pause before applying again after an error.
const retryApply = time.Second

// sessionRefresh bounds how often applies alone refresh the BGPSession
// objects from the Manager's Status: counting a session's advertised prefixes
// runs GoBGP's export policy over its whole RIB (O(prefixes) per session), and
// doing that after every apply made a burst of n Services cost O(n²). Session
// and BFD state changes, and sessions that come or go, are written at once.
const sessionRefresh = time.Second

// newBGPApplier returns an applier; set routerID before run.
func newBGPApplier(s *Speaker) *bgpApplier {
	return &bgpApplier{s: s, kick: make(chan struct{}, 1), halt: make(chan struct{}),
		written: map[string]bool{}, refusedSince: map[string]refusal{}}
}

func (a *bgpApplier) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// set hands over a new plan (the previous one, if not applied yet, is dropped).
func (a *bgpApplier) set(p bgpPlan) {
	a.mu.Lock()
	a.plan = &p
	a.applied.Store(false)
	a.mu.Unlock()
	a.poke()
}

// configured reports whether a plan took effect once since start: readiness
// must not flap with every change that is being applied.
func (a *bgpApplier) configured() bool { return a.ready.Load() }

// stop withdraws everything and closes the sessions; run returns after.
func (a *bgpApplier) stop() { a.once.Do(func() { close(a.halt) }) }

func (a *bgpApplier) run(ctx context.Context) {
	var retry, refresh <-chan time.Time
	var current *bgpPlan
	var refreshed time.Time
	for {
		select {
		case <-a.halt:
			if a.mgr != nil {
				sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				err := a.mgr.Stop(sctx)
				cancel()
				klog.InfoS("BGP stopped: routes withdrawn, sessions closed", "err", err)
			}
			return
		case <-ctx.Done():
			return
		case <-a.kick:
		case <-retry:
			retry = nil
		case <-refresh:
			refresh = nil
		}
		a.mu.Lock()
		if a.plan != nil {
			current = a.plan
		}
		events := a.events
		a.events = nil
		a.mu.Unlock()
		for _, ev := range events {
			a.event(ev)
		}
		if current == nil {
			continue
		}
		if !a.applied.Load() {
			if err := a.apply(ctx, current); err != nil {
				a.s.metrics.bgpApplies.WithLabelValues("error").Inc()
				klog.ErrorS(err, "Applying the BGP state; retrying", "in", retryApply)
				retry = time.After(retryApply)
			} else {
				a.s.metrics.bgpApplies.WithLabelValues("ok").Inc()
				a.mu.Lock()
				a.applied.Store(a.plan == current)
				a.mu.Unlock()
				a.ready.Store(true)
			}
		}
		a.names = maps.Clone(current.peerNames)
		switch {
		case len(events) > 0 || time.Since(refreshed) >= sessionRefresh || a.sessionsChanged(current):
			a.writeSessions(ctx, current)
			refreshed, refresh = time.Now(), nil
		case refresh == nil:
			refresh = time.After(sessionRefresh - time.Since(refreshed))
		}
	}
}

// sessionsChanged reports whether p has sessions or refusals that the
// BGPSession objects written last do not show.
func (a *bgpApplier) sessionsChanged(p *bgpPlan) bool {
	if len(p.peerNames)+len(p.refused) != len(a.written) {
		return true
	}
	for _, name := range p.peerNames {
		if !a.written[sessionName(a.s.self, name)] {
			return true
		}
	}
	for name, why := range p.refused {
		if r, ok := a.refusedSince[name]; !ok || r.why != why {
			return true
		}
	}
	return false
}

func (a *bgpApplier) apply(ctx context.Context, p *bgpPlan) error {
	if a.mgr == nil {
		if len(p.desired.Peers) == 0 {
			return nil // nothing to run GoBGP for
		}
		m, err := bgp.New(ctx, bgp.Config{
			RouterID:   a.routerID,
			Registerer: a.s.cfg.Registerer,
			OnEvent: func(e bgp.Event) {
				a.mu.Lock()
				a.events = append(a.events, e)
				a.mu.Unlock()
				a.poke()
			},
		})
		if err != nil {
			return fmt.Errorf("starting GoBGP: %w", err)
		}
		a.mgr = m
		klog.InfoS("GoBGP started", "routerID", a.routerID)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return a.mgr.Apply(actx, p.desired)
}

// event turns a session change into an Event on its BGPPeer.
func (a *bgpApplier) event(e bgp.Event) {
	name := a.names[e.Peer]
	klog.InfoS("BGP session change", "peer", e.Peer, "bgppeer", name, "event", e.Type, "detail", e.Detail)
	if name == "" {
		return
	}
	obj, err := a.s.peers.Get(name)
	if err != nil {
		return
	}
	p, err := fromUnstructured[v1alpha1.BGPPeer](obj)
	if err != nil {
		return
	}
	typ, reason, what := corev1.EventTypeNormal, "SessionUp", "BGP session up"
	switch e.Type {
	case bgp.EventSessionDown:
		typ, reason, what = corev1.EventTypeWarning, "SessionDown", "BGP session down"
	case bgp.EventBFDUp:
		reason, what = "BFDUp", "BFD up"
	case bgp.EventBFDDown:
		typ, reason, what = corev1.EventTypeWarning, "BFDDown", "BFD down"
	}
	if e.Detail != "" {
		what += " (" + e.Detail + ")"
	}
	a.s.recorder.Eventf(p, typ, reason, "%s: %s with %s", a.s.self, what, e.Peer)
}

// writeSessions sets the desired BGPSession of every session of the plan
// (state from the Manager) and of every refused BGPPeer, and drops the rest.
func (a *bgpApplier) writeSessions(ctx context.Context, p *bgpPlan) {
	var sts []bgp.PeerStatus
	if a.mgr != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		sts, err = a.mgr.Status(sctx)
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			klog.V(2).InfoS("Reading BGP status", "err", err)
		}
	}
	want := sessionStatuses(a.s.self, sts, p)
	for name, why := range p.refused {
		r, ok := a.refusedSince[name]
		if !ok || r.why != why {
			r = refusal{why: why, since: metav1.Now()}
			a.refusedSince[name] = r
		}
		want[sessionName(a.s.self, name)] = &v1alpha1.BGPSessionStatus{
			Node: a.s.self, Peer: name, State: "NotConfigured", Message: why, Since: r.since,
		}
	}
	for name := range a.refusedSince {
		if _, ok := p.refused[name]; !ok {
			delete(a.refusedSince, name)
		}
	}
	for name, st := range want {
		a.s.sessions.set(name, st)
		a.written[name] = true
	}
	for name := range a.written {
		if _, ok := want[name]; !ok {
			a.s.sessions.set(name, nil)
			delete(a.written, name)
		}
	}
}

// sessionStatuses is the BGPSession status of every session of plan p that
// the Manager reports in sts, by object name: its state, BFD state, count of
// prefixes carried, and the prefixes the plan advertises on it.
func sessionStatuses(node string, sts []bgp.PeerStatus, p *bgpPlan) map[string]*v1alpha1.BGPSessionStatus {
	want := map[string]*v1alpha1.BGPSessionStatus{}
	prefixes := sessionPrefixes(p.paths)
	for _, st := range sts {
		name, ok := p.peerNames[st.Address]
		if !ok {
			continue
		}
		bs := &v1alpha1.BGPSessionStatus{
			Node: node, Peer: name, PeerAddress: st.Address.String(), State: st.State.String(),
			PrefixesAdvertised: int32(min(st.PrefixesAdvertised, 1<<31-1)), Since: metav1.NewTime(st.Since),
			Prefixes: prefixes[st.Address],
		}
		if st.BFD != nil {
			bs.BFD = st.BFD.String()
		}
		if len(bs.Prefixes) > v1alpha1.MaxSessionPrefixes {
			bs.Prefixes, bs.PrefixesTruncated = bs.Prefixes[:v1alpha1.MaxSessionPrefixes], true
		}
		want[sessionName(node, name)] = bs
	}
	return want
}

// sessionPrefixes lists, per session, the prefixes the plan advertises on it,
// in address order without repeats (addresses aggregated into one prefix list
// it once). O(A log A) for A addresses; the applier calls it at most once per
// sessionRefresh while only the paths change.
func sessionPrefixes(paths map[netip.Addr]pathPlan) map[netip.Addr][]string {
	by := map[netip.Addr]sets.Set[netip.Prefix]{}
	for _, pp := range paths {
		for _, peer := range pp.peers {
			if by[peer] == nil {
				by[peer] = sets.New[netip.Prefix]()
			}
			by[peer].Insert(pp.prefix)
		}
	}
	out := make(map[netip.Addr][]string, len(by))
	for peer, set := range by {
		ps := set.UnsortedList()
		slices.SortFunc(ps, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		strs := make([]string, len(ps))
		for i, p := range ps {
			strs[i] = p.String()
		}
		out[peer] = strs
	}
	return out
}
