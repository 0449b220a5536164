package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/ironlb/ironlb/bgp/bfd"
)

// Config configures a Manager.
type Config struct {
	// RouterID is the BGP identifier, an IPv4 address (required); usually
	// the node's IPv4 address.
	RouterID netip.Addr
	// ASN is the local AS of peers that do not set Peer.LocalASN; zero
	// means every peer must set it.
	ASN uint32
	// ListenPort, if not zero, makes GoBGP accept sessions on this TCP port
	// (all addresses) as well as open them; zero means sessions are only
	// opened from this side, which is what routers expect of a speaker and
	// leaves port 179 free.
	ListenPort uint16
	// Logger receives the logs of the manager and of GoBGP; zero means
	// klog.Background().
	Logger klog.Logger
	// Registerer, if set, gets the ironlb_bgp_* and ironlb_bfd_* metrics.
	Registerer prometheus.Registerer
	// OnEvent, if set, is called for every session and BFD state change, in
	// order, from one goroutine of the Manager. It must not call Stop.
	OnEvent func(Event)
}

// privateASN stands in for GoBGP's global AS when Config.ASN is zero; every
// peer then has its own local AS, so it never appears on the wire.
const privateASN = 4294967294

// ErrStopped is returned by Apply after Stop.
var ErrStopped = errors.New("bgp: manager stopped")

// Manager keeps an embedded GoBGP server in line with a desired state. Its
// methods are safe for concurrent use; Apply and Stop are serialised.
type Manager struct {
	cfg Config
	log klog.Logger
	srv *server.BgpServer

	mu      sync.Mutex // serialises Apply and Stop; guards the fields below
	applied state      // what GoBGP holds
	// ids are the tag ids of peer addresses, assigned on first sight and
	// never reused, so a path's tags stay right whatever happens to its
	// peers; policies are the ids whose export policy is installed.
	ids      map[netip.Addr]uint32
	policies map[uint32]bool
	bfd      *bfd.Server // created with the first BFD peer
	stopped  bool

	smu     sync.Mutex // guards status and changed
	status  map[netip.Addr]*peerRuntime
	changed chan struct{} // closed and replaced whenever status changes

	events      *eventQueue
	cancelWatch context.CancelFunc
	metrics     *collector
}

// peerRuntime is what the manager tracks about a configured peer.
type peerRuntime struct {
	state      SessionState
	since      time.Time
	bfdEnabled bool
	bfdState   bfd.State
}

// New starts an embedded GoBGP server (no gRPC API) with no peers and no
// paths, and registers the metrics. Call Apply to configure it and Stop to
// end it.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if !cfg.RouterID.Is4() || cfg.RouterID.IsUnspecified() {
		return nil, fmt.Errorf("bgp: router ID %v must be an IPv4 address", cfg.RouterID)
	}
	log := cfg.Logger
	if log.GetSink() == nil {
		log = klog.Background()
	}
	log = log.WithName("bgp")
	m := &Manager{
		cfg:      cfg,
		log:      log,
		ids:      map[netip.Addr]uint32{},
		policies: map[uint32]bool{},
		status:   map[netip.Addr]*peerRuntime{},
		changed:  make(chan struct{}),
		applied:  state{peers: map[netip.Addr]peerConf{}, routes: map[netip.Prefix]route{}},
	}
	m.srv = server.NewBgpServer(server.LoggerOption(gobgpLogger{log.WithName("gobgp")}))
	// Serve never returns (a GoBGP limitation): one idle goroutine stays
	// behind after Stop.
	go m.srv.Serve()
	asn := cfg.ASN
	if asn == 0 {
		asn = privateASN
	}
	port := int32(-1)
	if cfg.ListenPort != 0 {
		port = int32(cfg.ListenPort)
	}
	if err := m.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: asn, RouterId: cfg.RouterID.String(), ListenPort: port,
	}}); err != nil {
		return nil, fmt.Errorf("bgp: start GoBGP: %w", err)
	}
	// Nothing is exported unless a peer's policy accepts it.
	if err := m.setExportPolicies(ctx); err != nil {
		m.srv.Stop()
		return nil, err
	}
	m.events = newEventQueue()
	watchCtx, cancel := context.WithCancel(context.Background())
	m.cancelWatch = cancel
	if err := m.srv.WatchEvent(watchCtx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, m.onPeerEvent); err != nil {
		cancel()
		m.srv.Stop()
		m.events.close()
		return nil, fmt.Errorf("bgp: watch GoBGP: %w", err)
	}
	if cfg.Registerer != nil {
		m.metrics = newCollector(m)
		if err := cfg.Registerer.Register(m.metrics); err != nil {
			cancel()
			m.srv.Stop()
			m.events.close()
			return nil, fmt.Errorf("bgp: register metrics: %w", err)
		}
	}
	return m, nil
}

// Apply makes the sessions and announcements match d: it opens sessions
// with new peers, closes those of removed peers, restarts sessions whose
// settings changed, and announces or withdraws only the prefixes that
// changed. Applying the same Desired again does nothing. An invalid d is
// refused as a whole, before anything changes; errors while applying are
// returned together, and the next Apply retries what did not take effect.
func (m *Manager) Apply(ctx context.Context, d Desired) error {
	want, err := compile(m.cfg, d)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return ErrStopped
	}
	p := diff(m.applied, want)
	if p.empty() {
		return nil
	}
	start := time.Now()
	// Order matters: new peers' policies must exist before paths are tagged
	// for them, and a removed peer must still have its policy while paths
	// are re-tagged without it, so that GoBGP withdraws them from it.
	var errs []error
	steps := []func() error{}
	for _, a := range p.addPeers {
		steps = append(steps, func() error { return m.addPeer(ctx, want.peers[a]) })
	}
	for _, a := range p.restartPeers {
		steps = append(steps, func() error {
			if err := m.removePeer(ctx, a); err != nil {
				return err
			}
			return m.addPeer(ctx, want.peers[a])
		})
	}
	for _, a := range p.bfdPeers {
		steps = append(steps, func() error { return m.setBFD(want.peers[a]) })
	}
	for _, prefix := range p.withdraw {
		steps = append(steps, func() error { return m.withdraw(ctx, prefix) })
	}
	for _, prefix := range p.announce {
		steps = append(steps, func() error { return m.announce(ctx, prefix, want.routes[prefix]) })
	}
	for _, a := range p.removePeers {
		steps = append(steps, func() error { return m.removePeer(ctx, a) })
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			// What was done is recorded; the next Apply does the rest.
			errs = append(errs, fmt.Errorf("bgp: apply interrupted: %w", err))
			break
		}
		errs = append(errs, step())
	}
	m.log.V(2).Info("BGP desired state applied", "addedPeers", len(p.addPeers), "removedPeers", len(p.removePeers),
		"restartedPeers", len(p.restartPeers), "announced", len(p.announce), "withdrawn", len(p.withdraw), "took", time.Since(start))
	return errors.Join(errs...)
}

// Stop shuts down gracefully: it withdraws every path, waits until the
// withdrawals have been written to each established session and the session
// closed with a NOTIFICATION (Cease, administrative shutdown), or ctx ends,
// then stops GoBGP and BFD (the router sees BFD AdminDown, not a failure).
// Routers therefore move traffic away before this node is gone, also with
// graceful restart. Stop is idempotent.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return nil
	}
	m.stopped = true
	var errs []error
	if len(m.applied.routes) > 0 {
		// Without a path, GoBGP withdraws every locally originated one.
		if err := m.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: withdraw all: %w", err))
		}
	}
	// GoBGP queues the NOTIFICATION behind the withdrawals on each
	// session, so a session that has closed has sent them.
	var open []netip.Addr
	for a := range m.applied.peers {
		if m.peerState(a) == StateEstablished {
			open = append(open, a)
			if err := m.srv.ShutdownPeer(ctx, &api.ShutdownPeerRequest{Address: a.String(), Communication: "ironlb speaker stopping"}); err != nil {
				errs = append(errs, fmt.Errorf("bgp: shut down session with %s: %w", a, err))
			}
		}
	}
	if err := m.waitClosed(ctx, open); err != nil {
		errs = append(errs, fmt.Errorf("bgp: waiting for sessions to close: %w", err))
	}
	m.srv.Stop()
	if m.bfd != nil {
		errs = append(errs, m.bfd.Close())
	}
	m.smu.Lock()
	clear(m.status)
	m.broadcastLocked()
	m.smu.Unlock()
	m.cancelWatch()
	m.events.close()
	if m.metrics != nil {
		m.cfg.Registerer.Unregister(m.metrics)
	}
	m.log.V(1).Info("BGP manager stopped", "peers", len(m.applied.peers), "withdrawn", len(m.applied.routes))
	return errors.Join(errs...)
}

// waitClosed waits until none of peers is Established.
func (m *Manager) waitClosed(ctx context.Context, peers []netip.Addr) error {
	for {
		m.smu.Lock()
		changed := m.changed
		open := 0
		for _, a := range peers {
			if rt := m.status[a]; rt != nil && rt.state == StateEstablished {
				open++
			}
		}
		m.smu.Unlock()
		if open == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Manager) peerState(a netip.Addr) SessionState {
	m.smu.Lock()
	defer m.smu.Unlock()
	if rt := m.status[a]; rt != nil {
		return rt.state
	}
	return StateIdle
}

// addPeer configures a peer: its export policy, the GoBGP neighbor and, if
// asked, its BFD session. On failure nothing of the peer is left behind.
func (m *Manager) addPeer(ctx context.Context, c peerConf) (err error) {
	id, ok := m.ids[c.addr]
	if !ok {
		id = uint32(len(m.ids) + 1) // 0 is tagAll
		m.ids[c.addr] = id
	}
	defer func() {
		if err != nil {
			_ = m.dropPolicy(ctx, id)
			err = fmt.Errorf("bgp: add peer %s: %w", c.addr, err)
		}
	}()
	sets, pol := peerPolicy(id, c)
	for _, s := range sets {
		if err := m.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: s, Replace: true}); err != nil {
			return err
		}
	}
	if err := m.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: pol}); err != nil {
		return err
	}
	m.policies[id] = true
	if err := m.setExportPolicies(ctx); err != nil {
		return err
	}
	m.smu.Lock()
	m.status[c.addr] = &peerRuntime{state: StateIdle, since: time.Now()}
	m.smu.Unlock()
	if err := m.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(c)}); err != nil {
		m.smu.Lock()
		delete(m.status, c.addr)
		m.smu.Unlock()
		return err
	}
	applied := c
	applied.bfd = bfdConf{}
	m.applied.peers[c.addr] = applied
	m.log.V(1).Info("BGP peer added", "peer", c.addr, "asn", c.asn, "localASN", c.localASN)
	// A BFD failure leaves the BGP session up without BFD; the next Apply
	// tries again because the applied state says BFD is off.
	return m.setBFD(c)
}

// removePeer closes the session with a (GoBGP sends a NOTIFICATION) and
// removes the peer's BFD session and export policy.
func (m *Manager) removePeer(ctx context.Context, a netip.Addr) error {
	err := m.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()})
	if err != nil {
		return fmt.Errorf("bgp: remove peer %s: %w", a, err)
	}
	if m.bfd != nil {
		m.bfd.Remove(a)
	}
	delete(m.applied.peers, a)
	m.smu.Lock()
	// Deleting the entry in the same critical section as reading the state
	// makes this the only SessionDown event: later GoBGP events for the
	// peer find no entry.
	wasUp := m.status[a] != nil && m.status[a].state == StateEstablished
	delete(m.status, a)
	m.broadcastLocked()
	m.smu.Unlock()
	if wasUp {
		m.emit(Event{Time: time.Now(), Peer: a, Type: EventSessionDown, Detail: "peer removed"})
	}
	m.log.V(1).Info("BGP peer removed", "peer", a)
	if err := m.dropPolicy(ctx, m.ids[a]); err != nil {
		return fmt.Errorf("bgp: remove peer %s: %w", a, err)
	}
	return nil
}

// dropPolicy removes the export policy of tag id and its defined sets,
// whatever of them exists.
func (m *Manager) dropPolicy(ctx context.Context, id uint32) error {
	var errs []error
	if m.policies[id] {
		delete(m.policies, id)
		errs = append(errs, m.setExportPolicies(ctx))
		errs = append(errs, m.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: policyName(id)}, All: true}))
	}
	for _, t := range []api.DefinedType{api.DefinedType_NEIGHBOR, api.DefinedType_LARGE_COMMUNITY} {
		set := &api.DefinedSet{DefinedType: t, Name: policyName(id)}
		var found bool
		_ = m.srv.ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: t, Name: set.Name}, func(*api.DefinedSet) { found = true })
		if found {
			errs = append(errs, m.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: set, All: true}))
		}
	}
	return errors.Join(errs...)
}

// setExportPolicies makes the global export policy list the installed peer
// policies, with reject as the default.
func (m *Manager) setExportPolicies(ctx context.Context) error {
	ids := make([]uint32, 0, len(m.policies))
	for id := range m.policies {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	pols := make([]*api.Policy, len(ids))
	for i, id := range ids {
		pols[i] = &api.Policy{Name: policyName(id)}
	}
	err := m.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_EXPORT, Policies: pols, DefaultAction: api.RouteAction_REJECT,
	}})
	if err != nil {
		return fmt.Errorf("bgp: set export policies: %w", err)
	}
	return nil
}

// setBFD starts, changes or stops the BFD session of c.
func (m *Manager) setBFD(c peerConf) error {
	cur := m.applied.peers[c.addr]
	if !c.bfd.on {
		if m.bfd != nil {
			m.bfd.Remove(c.addr)
		}
	} else {
		if m.bfd == nil {
			m.bfd = bfd.NewServer(bfd.ServerConfig{Logger: m.log, OnChange: m.onBFDChange})
		}
		err := m.bfd.Set(bfd.SessionConfig{
			Peer: c.addr, Local: c.source,
			DesiredMinTx: c.bfd.minTx, RequiredMinRx: c.bfd.minRx, DetectMult: c.bfd.multiplier,
		})
		if err != nil {
			return fmt.Errorf("bgp: BFD with %s: %w", c.addr, err)
		}
	}
	cur.bfd = c.bfd
	m.applied.peers[c.addr] = cur
	m.smu.Lock()
	if rt := m.status[c.addr]; rt != nil {
		rt.bfdEnabled = c.bfd.on
		if !c.bfd.on {
			rt.bfdState = bfd.StateAdminDown
		}
	}
	m.smu.Unlock()
	return nil
}

// tagIDs are the tags that send r to its peers.
func (m *Manager) tagIDs(r route) ([]uint32, error) {
	if r.peers == nil {
		return []uint32{tagAll}, nil
	}
	ids := make([]uint32, len(r.peers))
	for i, a := range r.peers {
		id, ok := m.ids[a]
		if !ok {
			return nil, fmt.Errorf("peer %s is not configured", a)
		}
		ids[i] = id
	}
	return ids, nil
}

func (m *Manager) announce(ctx context.Context, prefix netip.Prefix, r route) error {
	ids, err := m.tagIDs(r)
	if err != nil {
		return fmt.Errorf("bgp: announce %s: %w", prefix, err)
	}
	p, err := apiPath(prefix, r, ids, false)
	if err != nil {
		return err
	}
	if _, err := m.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: p}); err != nil {
		return fmt.Errorf("bgp: announce %s: %w", prefix, err)
	}
	m.applied.routes[prefix] = r
	return nil
}

func (m *Manager) withdraw(ctx context.Context, prefix netip.Prefix) error {
	p, err := apiPath(prefix, route{}, nil, true)
	if err != nil {
		return err
	}
	if err := m.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Path: p}); err != nil {
		return fmt.Errorf("bgp: withdraw %s: %w", prefix, err)
	}
	delete(m.applied.routes, prefix)
	return nil
}

// onPeerEvent records GoBGP's session state changes (called by GoBGP's
// watcher goroutine).
func (m *Manager) onPeerEvent(r *api.WatchEventResponse) {
	pe := r.GetPeer()
	if pe == nil || pe.Type != api.WatchEventResponse_PeerEvent_STATE || pe.Peer.GetState() == nil {
		return
	}
	addr, err := netip.ParseAddr(pe.Peer.State.NeighborAddress)
	if err != nil {
		return
	}
	addr = addr.Unmap()
	st := sessionState(pe.Peer.State.SessionState)
	now := time.Now()
	m.smu.Lock()
	rt := m.status[addr]
	if rt == nil || rt.state == st {
		m.smu.Unlock()
		return
	}
	old := rt.state
	rt.state, rt.since = st, now
	m.broadcastLocked()
	m.smu.Unlock()
	m.log.V(2).Info("BGP session state changed", "peer", addr, "from", old, "to", st)
	switch {
	case st == StateEstablished:
		m.emit(Event{Time: now, Peer: addr, Type: EventSessionUp})
	case old == StateEstablished:
		m.emit(Event{Time: now, Peer: addr, Type: EventSessionDown, Detail: "now " + st.String()})
	}
}

// onBFDChange handles a BFD state change (called by the BFD session's
// goroutine): it records it and, when the session failed, resets the BGP
// session from the event goroutine so that its routes go at once.
func (m *Manager) onBFDChange(c bfd.Change) {
	m.smu.Lock()
	if rt := m.status[c.Peer]; rt != nil {
		rt.bfdState = c.State
		m.broadcastLocked()
	}
	m.smu.Unlock()
	switch {
	case c.State == bfd.StateUp:
		m.emit(Event{Time: c.Time, Peer: c.Peer, Type: EventBFDUp})
	case c.Old == bfd.StateUp:
		m.emit(Event{Time: c.Time, Peer: c.Peer, Type: EventBFDDown, Detail: c.Diag.String()})
		if pathFailed(c) {
			m.events.push(func() { m.resetPeer(c.Peer, c.Diag) })
		}
	}
}

// pathFailed reports whether a BFD session that left Up says the forwarding
// path failed, so the BGP session must go: this side's detection time
// expired, or the remote side went down for a failure it diagnosed. A remote
// side that signals Down without a diagnostic only started its session again
// (FRR does so when it replaces a session at every BGP session start, and a
// restarted bfdd does too), and one that signals AdminDown is an
// administrative act (RFC 5882 section 3.2): its packets arrive, the path
// works, and resetting BGP would withdraw every route for nothing.
func pathFailed(c bfd.Change) bool {
	if c.State != bfd.StateDown {
		return false
	}
	switch c.Diag {
	case bfd.DiagControlDetectExpired:
		return true
	case bfd.DiagNeighborSignaledDown:
		return c.Remote != bfd.StateAdminDown && c.RemoteDiag != bfd.DiagNone && c.RemoteDiag != bfd.DiagAdministrativelyDown
	}
	return false
}

func (m *Manager) resetPeer(a netip.Addr, d bfd.Diag) {
	if m.peerState(a) != StateEstablished {
		return
	}
	err := m.srv.ResetPeer(context.Background(), &api.ResetPeerRequest{Address: a.String(), Communication: "BFD down: " + d.String()})
	if err != nil {
		m.log.V(2).Info("BGP reset after BFD down failed", "peer", a, "err", err)
		return
	}
	m.log.Info("BGP session reset: BFD went down", "peer", a, "diag", d)
}

func (m *Manager) emit(e Event) {
	if m.cfg.OnEvent != nil {
		m.events.push(func() { m.cfg.OnEvent(e) })
	}
}

func (m *Manager) broadcastLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// Status returns every configured peer's state, sorted by address. Counting
// the prefixes advertised costs O(paths) per established session inside
// GoBGP.
func (m *Manager) Status(ctx context.Context) ([]PeerStatus, error) {
	m.smu.Lock()
	out := make([]PeerStatus, 0, len(m.status))
	for a, rt := range m.status {
		ps := PeerStatus{Address: a, State: rt.state, Since: rt.since}
		if rt.bfdEnabled {
			s := rt.bfdState
			ps.BFD = &s
		}
		out = append(out, ps)
	}
	m.smu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Address.Less(out[j].Address) })
	sent := map[netip.Addr]uint64{}
	err := m.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
			sent[a.Unmap()] = p.GetState().GetMessages().GetSent().GetUpdate()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: list peers: %w", err)
	}
	for i := range out {
		ps := &out[i]
		ps.UpdatesSent = sent[ps.Address]
		if ps.State != StateEstablished {
			continue
		}
		for _, f := range []*api.Family{familyIPv4, familyIPv6} {
			t, err := m.srv.GetTable(ctx, &api.GetTableRequest{TableType: api.TableType_ADJ_OUT, Family: f, Name: ps.Address.String()})
			if err != nil {
				continue // the peer went away meanwhile, or does not carry f
			}
			ps.PrefixesAdvertised += int(t.NumDestination)
		}
	}
	return out, nil
}
