package speaker

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/api/v1alpha1"
	"github.com/ironlb/ironlb/l2"
	"github.com/ironlb/ironlb/speaker/election"
	"github.com/ironlb/ironlb/speaker/membership"
)

var everything = labels.Everything()

// flushEvery bounds how long a busy queue defers the batched work (BGP desired
// state, claim publication) behind a stream of inputs.
const flushEvery = 50 * time.Millisecond

// planBGPEvery spaces the BGP plans of a burst. A plan costs O(advertised
// addresses) on the loop and again in the applier (GoBGP's desired-state
// diff), and a burst of Services arrives as a stream of single changes, one
// flush each: planning at every flush made a burst of n Services cost O(n²)
// (a third of a speaker's CPU in a 1,000-Service burst, and most of its
// garbage). A change after a quiet spell is planned at once; changes that
// follow within planBGPEvery wait for its end, together.
const planBGPEvery = 100 * time.Millisecond

// loopState is the event loop's view beyond the election. Only the loop
// goroutine touches it.
type loopState struct {
	svcAddrs    map[string][]election.Address // Service -> its attributed addresses
	svcProblems map[string]string             // Service -> last reported problem
	vipSvcs     map[netip.Addr][]string       // address -> Services using it (sorted)
	vipPool     map[netip.Addr]string         // address -> pool
	pools       map[string]poolConfig         // usable pools
	poolErr     map[string]string             // pools that cannot be used, with why
	nodeLabels  labels.Set                    // this node's labels
	peerAddrs   map[string]netip.Addr         // node -> memberlist address
	alive       map[string]bool               // memberlist members
	acting      bool                          // settled: announce and publish
	owned       map[netip.Addr]bool           // layer 2: what the announcer answers for
	placed      map[netip.Addr][]string       // layer 2: interfaces answering, per owned address
	advertised  map[netip.Addr]bool           // BGP: what the election has this node advertise
	paths       map[netip.Addr]pathPlan       // BGP: what the last plan advertises
	refused     map[string]string             // BGPPeers not opened, with why (last reported)
	unannounced []netip.Addr                  // released by this node with no successor
	handoffs    map[netip.Addr]netip.Addr     // taken over from a node that left: its address, until forwarded
	dirty       struct{ claims, republish, l2, bgp bool }
	lastFlush   time.Time
	lastPlan    time.Time     // BGP: when the last plan was made
	planDue     bool          // BGP: a kPlanDue wake-up is pending
	planEvery   time.Duration // planBGPEvery; tests change it
}

func newLoopState() loopState {
	ls := loopState{
		svcAddrs: map[string][]election.Address{}, svcProblems: map[string]string{},
		vipSvcs: map[netip.Addr][]string{}, vipPool: map[netip.Addr]string{},
		pools: map[string]poolConfig{}, poolErr: map[string]string{},
		peerAddrs: map[string]netip.Addr{}, alive: map[string]bool{},
		owned: map[netip.Addr]bool{}, placed: map[netip.Addr][]string{},
		advertised: map[netip.Addr]bool{}, paths: map[netip.Addr]pathPlan{},
		refused: map[string]string{}, handoffs: map[netip.Addr]netip.Addr{},
	}
	ls.dirty.bgp = true // one plan once synced, even with nothing to advertise
	ls.planEvery = planBGPEvery
	return ls
}

// loop is the speaker's single event loop: it owns the election.
func (s *Speaker) loop() {
	for {
		it, quit := s.queue.Get()
		if quit {
			return
		}
		if it.kind != kPlanDue {
			s.metrics.events.WithLabelValues(kindNames[it.kind]).Inc()
		}
		s.process(it)
		s.queue.Done(it)
		if s.queue.Len() == 0 || time.Since(s.ls.lastFlush) > flushEvery {
			s.flush()
		}
	}
}

func (s *Speaker) process(it item) {
	switch it.kind {
	case kService:
		s.syncService(it.key)
	case kNode:
		s.syncNode(it.key)
	case kPool:
		s.syncPool(it.key)
	case kPeer, kSecret:
		s.ls.dirty.bgp = true
	case kMember:
		s.mail.mu.Lock()
		ev, ok := s.mail.members[it.key]
		delete(s.mail.members, it.key)
		s.mail.mu.Unlock()
		if ok {
			s.syncMember(ev)
		}
	case kPlacement:
		s.mail.mu.Lock()
		p, ok := s.mail.placements[it.ip]
		delete(s.mail.placements, it.ip)
		s.mail.mu.Unlock()
		if ok {
			s.syncPlacement(p)
		}
	case kConflict:
		s.mail.mu.Lock()
		c, ok := s.mail.conflicts[it.ip]
		delete(s.mail.conflicts, it.ip)
		s.mail.mu.Unlock()
		if ok {
			s.handleConflict(c)
		}
	case kPlanDue:
		s.ls.planDue = false // the flush after it plans
	case kSettled:
		if !s.ls.acting && !s.leaving.Load() {
			s.ls.acting = true
			s.ls.dirty.claims, s.ls.dirty.l2 = true, true
			s.settled.Store(true)
			s.announcements.prune()
			s.sessions.prune()
			s.forgetAbsentNodes()
			klog.InfoS("Settled; announcing", "node", s.self, "members", len(s.ls.alive))
		}
	}
}

// apply records what the election changed.
func (s *Speaker) apply(ch election.Changes) {
	for _, m := range ch.Moves {
		if m.To == s.self {
			s.ls.dirty.claims = true
		}
		if m.From == s.self {
			s.ls.dirty.claims = true
			if m.To == "" {
				s.ls.unannounced = append(s.ls.unannounced, m.IP)
			}
		}
		klog.V(2).InfoS("Owner changed", "ip", m.IP, "from", m.From, "to", m.To)
	}
	for _, ip := range ch.Contested {
		if o, _ := s.e.Owner(ip); o == s.self {
			s.ls.dirty.republish = true
		}
	}
	for _, ip := range ch.Advertise {
		s.ls.advertised[ip] = true
		s.ls.dirty.bgp = true
	}
	for _, ip := range ch.Withdraw {
		delete(s.ls.advertised, ip)
		s.ls.dirty.bgp = true
	}
}

// flush acts on what the inputs since the last flush changed.
func (s *Speaker) flush() {
	s.ls.lastFlush = time.Now()
	if s.ls.acting && !s.leaving.Load() {
		if s.ls.dirty.claims {
			s.ls.dirty.claims = false
			claims := s.e.Claims(s.self)
			owned := make(map[netip.Addr]bool, len(claims))
			for _, ip := range claims {
				owned[ip] = true
			}
			if !maps.Equal(owned, s.ls.owned) {
				for ip := range owned {
					if !s.ls.owned[ip] {
						s.metrics.moves.WithLabelValues("acquired").Inc()
					}
				}
				for ip := range s.ls.owned {
					if !owned[ip] {
						s.metrics.moves.WithLabelValues("released").Inc()
						s.stopForwarding(ip)
					}
				}
				s.ls.owned = owned
				s.ls.dirty.l2 = true
			}
			s.publisher.publish(claims, false)
		}
		if s.ls.dirty.l2 {
			s.ls.dirty.l2 = false
			s.forwardHandoffs()
			s.setOwned()
		}
		if s.ls.dirty.republish {
			s.ls.dirty.republish = false
			s.publisher.publish(nil, true)
		}
		for _, ip := range s.ls.unannounced {
			if o, ok := s.e.Owner(ip); !ok || o == "" {
				s.eventAddress(ip, corev1.EventTypeNormal, "NotAnnounced",
					"%s is no longer announced by L2: no node is eligible (no ready endpoint, or no Ready node selected by pool %s)", ip, s.ls.vipPool[ip])
			}
		}
	}
	s.ls.unannounced = s.ls.unannounced[:0]
	if s.ls.dirty.bgp && s.synced.Load() && !s.leaving.Load() {
		if wait := s.ls.planEvery - time.Since(s.ls.lastPlan); wait > 0 {
			s.planLater(wait)
		} else {
			s.ls.dirty.bgp = false
			s.ls.lastPlan = time.Now()
			s.planBGP()
		}
	}
}

// planLater wakes the loop after wait (once, however many flushes ask) so
// that the BGP changes held back by planBGPEvery are planned.
func (s *Speaker) planLater(wait time.Duration) {
	if s.ls.planDue {
		return
	}
	s.ls.planDue = true
	time.AfterFunc(wait, func() { s.queue.Add(item{kind: kPlanDue}) })
}

// setOwned hands the announcer the complete owned set with each pool's
// interfaces. Where and whether each address is answered comes back through
// OnPlacement.
func (s *Speaker) setOwned() {
	anns := make([]l2.Announcement, 0, len(s.ls.owned))
	for ip := range s.ls.owned {
		anns = append(anns, l2.Announcement{VIP: ip, Interfaces: s.ls.pools[s.ls.vipPool[ip]].interfaces})
	}
	slices.SortFunc(anns, func(a, b l2.Announcement) int { return a.VIP.Compare(b.VIP) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.l2.SetOwned(ctx, anns); err != nil {
		klog.ErrorS(err, "Setting the announced addresses", "count", len(anns))
	}
	for ip := range s.ls.placed {
		if !s.ls.owned[ip] {
			// Released: the status goes now; the placement callback confirms.
			delete(s.ls.placed, ip)
			s.announcements.set(announcementName(v1alpha1.AnnouncementL2, dashed(ip), s.self), nil)
		}
	}
}

func (s *Speaker) syncService(key string) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	svc, err := s.services.Services(ns).Get(name)
	var ch election.Changes
	var addrs []election.Address
	if err != nil || !handled(svc, s.cfg.LoadBalancerClass) || svc.DeletionTimestamp != nil {
		ch = s.e.DeleteService(key)
		delete(s.ls.svcProblems, key)
	} else {
		objs, _ := s.slices.ByIndex(serviceIndex, key)
		eps := make([]*discoveryv1.EndpointSlice, 0, len(objs))
		for _, o := range objs {
			if es, ok := o.(*discoveryv1.EndpointSlice); ok {
				eps = append(eps, es)
			}
		}
		v := viewOf(svc, eps)
		ch = s.e.SetService(key, v.election)
		addrs = v.election.Addresses
		s.reportServiceProblems(svc, key, v)
	}
	s.reindexService(key, addrs)
	s.apply(ch)
}

// reindexService updates the address -> Services index and refreshes the
// status of addresses this node answers for (L2) whose Services changed.
func (s *Speaker) reindexService(key string, addrs []election.Address) {
	old := s.ls.svcAddrs[key]
	touched := map[netip.Addr]bool{}
	for _, a := range old {
		if !slices.ContainsFunc(addrs, func(b election.Address) bool { return b.IP == a.IP }) {
			svcs := slices.DeleteFunc(s.ls.vipSvcs[a.IP], func(k string) bool { return k == key })
			if len(svcs) == 0 {
				delete(s.ls.vipSvcs, a.IP)
				delete(s.ls.vipPool, a.IP)
			} else {
				s.ls.vipSvcs[a.IP] = svcs
			}
			touched[a.IP] = true
		}
	}
	for _, a := range addrs {
		svcs := s.ls.vipSvcs[a.IP]
		if i, found := slices.BinarySearch(svcs, key); !found {
			s.ls.vipSvcs[a.IP] = slices.Insert(svcs, i, key)
			touched[a.IP] = true
		}
		if s.ls.vipPool[a.IP] != a.Pool {
			s.ls.vipPool[a.IP] = a.Pool
			touched[a.IP] = true
			s.ls.dirty.l2 = s.ls.dirty.l2 || s.ls.owned[a.IP]
			s.ls.dirty.bgp = s.ls.dirty.bgp || s.ls.advertised[a.IP] // the path follows its pool
		}
	}
	if len(addrs) == 0 {
		delete(s.ls.svcAddrs, key)
	} else {
		s.ls.svcAddrs[key] = addrs
	}
	for ip := range touched {
		if ifs, ok := s.ls.placed[ip]; ok {
			s.setL2Status(ip, ifs)
		}
	}
}

// reportServiceProblems tells, once per change, why some of a Service's
// addresses are not announced: no pool attribution, or a pool that does not
// exist or cannot be used. Only the reporter (one speaker) writes the Event.
func (s *Speaker) reportServiceProblems(svc *corev1.Service, key string, v serviceView) {
	var probs []string
	for _, ip := range v.unattributed {
		probs = append(probs, fmt.Sprintf("%s has no pool in annotation ironlb.io/ip-allocated-from-pool", ip))
	}
	for _, a := range v.election.Addresses {
		if why, bad := s.ls.poolErr[a.Pool]; bad {
			probs = append(probs, fmt.Sprintf("%s: IPPool %s cannot be used: %s", a.IP, a.Pool, why))
		} else if _, ok := s.ls.pools[a.Pool]; !ok && s.synced.Load() {
			probs = append(probs, fmt.Sprintf("%s: IPPool %s does not exist", a.IP, a.Pool))
		}
	}
	msg := strings.Join(probs, "; ")
	if msg == s.ls.svcProblems[key] {
		return
	}
	if msg == "" {
		delete(s.ls.svcProblems, key)
		return
	}
	s.ls.svcProblems[key] = msg
	klog.V(2).InfoS("Service addresses not announced", "service", key, "why", msg)
	if s.ls.acting && s.reporter() {
		s.recorder.Eventf(svc, corev1.EventTypeWarning, "NotAnnounced", "not announced: %s", msg)
	}
}

func (s *Speaker) syncNode(name string) {
	n, err := s.nodes.Get(name)
	var ch election.Changes
	addr, hadAddr := s.ls.peerAddrs[name]
	var newAddr netip.Addr
	if err != nil {
		ch = s.e.DeleteNode(name)
		if s.ls.acting && s.reporter() {
			s.announcements.forgetNode(name)
			s.sessions.forgetNode(name)
		}
	} else {
		ch = s.e.SetNode(name, election.NodeFromObject(n))
		newAddr, _ = memberAddr(n, s.cfg.NodeIP)
		if name == s.self && !labels.Equals(s.ls.nodeLabels, n.Labels) {
			s.ls.nodeLabels = labels.Set(maps.Clone(n.Labels))
			s.ls.dirty.bgp = true
		}
	}
	if newAddr != addr || hadAddr != newAddr.IsValid() {
		if newAddr.IsValid() {
			s.ls.peerAddrs[name] = newAddr
		} else {
			delete(s.ls.peerAddrs, name)
		}
		s.setPeers()
	}
	s.apply(ch)
}

// setPeers hands memberlist every other Node's address; those that are not
// members are joined at once.
func (s *Speaker) setPeers() {
	peers := make([]netip.AddrPort, 0, len(s.ls.peerAddrs))
	for n, a := range s.ls.peerAddrs {
		if n != s.self {
			peers = append(peers, netip.AddrPortFrom(a, uint16(s.cfg.MemberlistPort)))
		}
	}
	s.gossip.SetPeers(peers)
}

func (s *Speaker) syncPool(name string) {
	obj, err := s.pools.Get(name)
	var ch election.Changes
	if err != nil {
		ch = s.e.DeletePool(name)
		_, had := s.ls.pools[name]
		delete(s.ls.pools, name)
		delete(s.ls.poolErr, name)
		if had {
			s.poolGone(name, "does not exist")
		}
	} else {
		p, err := fromUnstructured[v1alpha1.IPPool](obj)
		var cfg poolConfig
		if err == nil {
			cfg, err = poolOf(p)
		}
		if err != nil {
			ch = s.e.DeletePool(name)
			_, had := s.ls.pools[name]
			delete(s.ls.pools, name)
			if s.ls.poolErr[name] != err.Error() {
				s.ls.poolErr[name] = err.Error()
				klog.ErrorS(err, "IPPool cannot be announced", "ippool", name)
				if s.ls.acting && s.reporter() && p != nil {
					s.recorder.Eventf(p, corev1.EventTypeWarning, "InvalidAdvertisement", "addresses of this pool are not announced: %v", err)
				}
			}
			if had {
				s.poolGone(name, "cannot be used: "+err.Error())
			}
		} else {
			delete(s.ls.poolErr, name)
			if old, ok := s.ls.pools[name]; !ok || !old.equal(cfg) {
				ch = s.e.SetPool(name, cfg.election)
				s.ls.pools[name] = cfg
				s.ls.dirty.l2 = true
				s.ls.dirty.bgp = true
			}
		}
	}
	s.apply(ch)
}

// poolGone reports the addresses of a pool that went away (deleted or
// unusable): they are no longer announced. O(addresses) once per such pool
// change; only the reporter writes the Events.
func (s *Speaker) poolGone(pool, why string) {
	s.ls.dirty.l2, s.ls.dirty.bgp = true, true
	if !s.ls.acting || !s.reporter() {
		return
	}
	for ip, p := range s.ls.vipPool {
		if p == pool {
			s.eventAddress(ip, corev1.EventTypeWarning, "NotAnnounced", "%s is no longer announced: IPPool %s %s", ip, pool, why)
		}
	}
}

func (s *Speaker) syncMember(ev membership.Event) {
	var ch election.Changes
	if ev.Type == membership.Leave {
		if ev.Member.Name == s.self {
			return
		}
		delete(s.ls.alive, ev.Member.Name)
		ch = s.e.DeleteMember(ev.Member.Name)
		if ev.Left && s.forwarder != nil {
			maps.Copy(s.ls.handoffs, handoffs(ch.Moves, s.self, ev.Member.Name, s.nodeAddrOf))
		}
		klog.InfoS("Speaker gone", "node", ev.Member.Name, "left", ev.Left)
		if s.ls.acting && s.reporter() {
			s.announcements.forgetNode(ev.Member.Name)
			s.sessions.forgetNode(ev.Member.Name)
		}
	} else {
		if !s.ls.alive[ev.Member.Name] {
			klog.InfoS("Speaker alive", "node", ev.Member.Name)
		}
		s.ls.alive[ev.Member.Name] = true
		s.announcements.keepNode(ev.Member.Name)
		s.sessions.keepNode(ev.Member.Name)
		ch = s.e.SetMember(ev.Member.Name, ev.Member.Meta.Claims)
	}
	s.apply(ch)
}

// forgetAbsentNodes removes the status objects of nodes without a live
// speaker (once settled, by the reporter).
func (s *Speaker) forgetAbsentNodes() {
	if !s.reporter() {
		return
	}
	for _, w := range []*statusWriter{s.announcements, s.sessions} {
		for _, n := range w.informer.GetIndexer().ListIndexFuncValues(nodeIndex) {
			if !s.ls.alive[n] && n != s.self {
				w.forgetNode(n)
			}
		}
	}
}

// reporter reports whether this speaker writes the cluster-wide Events (a
// pool missing, a Service without attribution) and removes the status objects
// of dead speakers: the alive member with the least name, so one speaker does
// it while the members agree.
func (s *Speaker) reporter() bool {
	for n := range s.ls.alive {
		if n < s.self {
			return false
		}
	}
	return s.ls.alive[s.self]
}

func (s *Speaker) syncPlacement(p l2.Placement) {
	ip := p.VIP
	if !s.ls.owned[ip] {
		return // released since; setOwned removed the status
	}
	if len(p.Interfaces) == 0 {
		delete(s.ls.placed, ip)
		s.announcements.set(announcementName(v1alpha1.AnnouncementL2, dashed(ip), s.self), nil)
		if p.Reason != "released" {
			s.eventAddress(ip, corev1.EventTypeWarning, "AnnounceFailed", "%s owns %s but cannot answer for it: %s", s.self, ip, p.Reason)
		}
		return
	}
	if !slices.Equal(s.ls.placed[ip], p.Interfaces) {
		proto := "ARP"
		if ip.Is6() {
			proto = "NDP"
		}
		s.eventAddress(ip, corev1.EventTypeNormal, "Announcing", "announcing %s from %s on %s (%s)", ip, s.self, strings.Join(p.Interfaces, ","), proto)
	}
	s.ls.placed[ip] = slices.Clone(p.Interfaces)
	s.setL2Status(ip, p.Interfaces)
}

func (s *Speaker) setL2Status(ip netip.Addr, ifs []string) {
	s.announcements.set(announcementName(v1alpha1.AnnouncementL2, dashed(ip), s.self), &v1alpha1.ServiceAnnouncementStatus{
		Address: ip.String(), Mode: v1alpha1.AnnouncementL2, Node: s.self, Pool: s.ls.vipPool[ip],
		Services: s.ls.vipSvcs[ip], Interfaces: ifs, Since: metav1.Now(),
	})
}

// handleConflict applies the l2 package's split-brain rule: the election
// alone decides; the elected owner re-announces, anyone else yields.
//
// Another node answering for an address this one owns also means the two
// speakers' views differ; when that is because memberlist lost the other
// (a partition that has healed), waiting for the next periodic rejoin (10s)
// would leave both answering. So every conflict also rejoins the Nodes that
// are not members now.
func (s *Speaker) handleConflict(c l2.Conflict) {
	s.setPeers()
	o, _ := s.e.Owner(c.VIP)
	if o == s.self && s.ls.owned[c.VIP] && !s.leaving.Load() {
		err := s.l2.Reannounce(c.VIP)
		s.metrics.conflicts.WithLabelValues("reannounced").Inc()
		s.eventAddress(c.VIP, corev1.EventTypeWarning, "L2Conflict",
			"%s on %s of %s also claimed by %s (%s); %s is the elected owner and re-announced it (err: %v)",
			c.VIP, c.Interface, s.self, c.TheirMAC, c.Packet, s.self, err)
		return
	}
	s.metrics.conflicts.WithLabelValues("yielded").Inc()
	klog.InfoS("Another node claims an address this node is releasing", "ip", c.VIP, "interface", c.Interface, "theirMAC", c.TheirMAC, "owner", o, "leaving", s.leaving.Load())
}

// addressEvent records a BGP Event of ip (Advertising, Withdrawn) on the
// Services using it, within the speaker's budget for them
// (Config.AddressEventQPS): a burst of n Services changes n addresses on
// every node, and an Event per address and node is n x nodes writes. Beyond the budget the Event is skipped and counted
// (ironlb_speaker_address_events_skipped_total); the node's BGPSessions still
// list what it advertises.
func (s *Speaker) addressEvent(ip netip.Addr, typ, reason, format string, args ...any) {
	if len(s.ls.vipSvcs[ip]) == 0 {
		return
	}
	if !s.eventBudget.TryAccept() {
		s.metrics.eventsSkipped.WithLabelValues(reason).Inc()
		return
	}
	s.eventAddress(ip, typ, reason, format, args...)
}

// eventAddress records an Event on every Service using ip.
func (s *Speaker) eventAddress(ip netip.Addr, typ, reason, format string, args ...any) {
	for _, key := range s.ls.vipSvcs[ip] {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		if svc, err := s.services.Services(ns).Get(name); err == nil {
			s.recorder.Eventf(svc, typ, reason, format, args...)
		}
	}
}

// handoffs returns the addresses that moved from leaver to self, each with
// leaver's node address of its family (addrOf), to forward the connections
// leaver still carries (package handover). An address without one is left
// out: its connections are reset as without forwarding.
func handoffs(moves []election.Move, self, leaver string, addrOf func(node string, like netip.Addr) (netip.Addr, bool)) map[netip.Addr]netip.Addr {
	out := map[netip.Addr]netip.Addr{}
	for _, m := range moves {
		if m.From != leaver || m.To != self {
			continue
		}
		if via, ok := addrOf(leaver, m.IP); ok && via != m.IP {
			out[m.IP] = via
		}
	}
	return out
}

// nodeAddrOf returns a Node's first InternalIP of like's family.
func (s *Speaker) nodeAddrOf(node string, like netip.Addr) (netip.Addr, bool) {
	n, err := s.nodes.Get(node)
	if err != nil {
		return netip.Addr{}, false
	}
	return memberAddr(n, like)
}

// forwardHandoffs starts forwarding the addresses taken over from a node that
// left, before they are announced: from the gratuitous ARP/NA on, the clients'
// packets of connections made through the previous owner arrive here and must
// find the forwarding in place. It runs in the loop (one iptables-restore of
// the small mangle table per family and one route per address); the
// previous owner answers for its grace period meanwhile.
func (s *Speaker) forwardHandoffs() {
	if len(s.ls.handoffs) == 0 {
		return
	}
	vias := make(map[netip.Addr]netip.Addr, len(s.ls.handoffs))
	for ip, via := range s.ls.handoffs {
		if s.ls.owned[ip] {
			vias[ip] = via
		}
	}
	clear(s.ls.handoffs)
	if len(vias) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.forwarder.Forward(ctx, vias); err != nil {
		klog.ErrorS(err, "Not forwarding some connections of the previous owner; they are reset")
	}
}

// stopForwarding ends the forwarding of an address this node released.
func (s *Speaker) stopForwarding(ip netip.Addr) {
	delete(s.ls.handoffs, ip)
	if s.forwarder == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.forwarder.Stop(ctx, ip); err != nil {
		klog.ErrorS(err, "Ending handover forwarding", "ip", ip)
	}
}
