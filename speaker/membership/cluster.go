package membership

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// DefaultPort is memberlist's port (--memberlist-port).
const DefaultPort = 7946

// Config configures a Cluster.
type Config struct {
	// NodeName is this member's name: the Kubernetes Node name.
	NodeName string
	// Addr is the address memberlist binds to and advertises: the Node's
	// InternalIP (--node-ip). It must be an address of this host.
	Addr netip.Addr
	// Port is the UDP and TCP port, DefaultPort if 0. Every speaker uses the
	// same one.
	Port int
	// Key encrypts and authenticates all gossip (AES-256-GCM); use
	// ReadKeyFile. Without a key gossip is plain text and anyone on the network
	// can join: New logs a warning.
	Key []byte
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Cluster is this speaker's membership in the cluster of speakers.
type Cluster struct {
	ml      *memberlist.Memberlist
	self    netip.AddrPort
	name    string
	queue   *eventQueue
	metrics *metrics

	metaMu sync.Mutex
	meta   []byte
	claims Meta // what meta holds

	// members are the alive members as the event callbacks last saw them:
	// memberlist.Members returns pointers into state it rewrites in place
	// (hashicorp/memberlist#306), so its fields are read only in the callbacks,
	// which run under memberlist's lock.
	membersMu sync.Mutex
	members   map[string]Member

	peersMu  sync.Mutex
	peers    []netip.AddrPort
	rejoin   chan struct{}
	stop     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	leaving  sync.Once
	stopped  sync.Once
	shut     atomic.Bool
}

// New starts memberlist on cfg.Addr (it listens but contacts nobody: call
// Join, then SetPeers). Events are delivered from now on; read Events.
func New(cfg Config) (*Cluster, error) {
	if cfg.NodeName == "" || !cfg.Addr.IsValid() {
		return nil, errors.New("membership: NodeName and Addr are required")
	}
	if cfg.Key != nil && len(cfg.Key) != 32 {
		return nil, fmt.Errorf("membership: key is %d bytes, want 32 (use ReadKeyFile)", len(cfg.Key))
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("membership: registering metrics: %w", err)
	}
	c := &Cluster{
		name:    cfg.NodeName,
		self:    netip.AddrPortFrom(cfg.Addr.Unmap(), uint16(cfg.Port)),
		queue:   newEventQueue(),
		metrics: m,
		rejoin:  make(chan struct{}, 1),
		stop:    make(chan struct{}),
		members: map[string]Member{},
	}
	c.meta, _ = Meta{}.Encode(MaxMetaSize)

	mc := tunedConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr = c.self.Addr().String()
	mc.BindPort = cfg.Port
	mc.AdvertiseAddr = c.self.Addr().String()
	mc.AdvertisePort = cfg.Port
	mc.Delegate = (*delegate)(c)
	mc.Events = (*delegate)(c)
	mc.Ping = (*delegate)(c)
	mc.Logger = log.New(&logWriter{node: cfg.NodeName, metrics: m}, "", 0)
	mc.LogOutput = nil
	if cfg.Key != nil {
		mc.SecretKey = slices.Clone(cfg.Key)
	} else {
		klog.InfoS("Memberlist gossip is not encrypted: any host that reaches the port can join; set --memberlist-secret-file", "node", cfg.NodeName)
	}
	go c.queue.run()
	ml, err := memberlist.Create(mc)
	if err != nil {
		c.queue.stop()
		m.unregister(cfg.Registerer)
		return nil, fmt.Errorf("membership: starting memberlist on %s: %w", c.self, err)
	}
	c.ml = ml
	c.wg.Add(1)
	go c.rejoinLoop()
	return c, nil
}

// Events delivers member changes, this node's own included (its Join at
// start and an Update after each SetMeta), without ever blocking memberlist
// (see Event for how a slow reader is served). It is closed by Shutdown.
func (c *Cluster) Events() <-chan Event { return c.queue.out }

// Join contacts peers that are not already alive members, eight at a time, and
// merges their state (members and their metadata) into this node's: when it
// returns, this node knows what those peers knew. It returns how many answered;
// the error joins the failures and is non-nil only if none answered. Joining
// no one (an empty list, or only this node's address) is not an error. ctx
// stops waiting for the peers not contacted yet; a join in progress ends
// within 2 s (the TCP timeout).
func (c *Cluster) Join(ctx context.Context, peers []netip.AddrPort) (int, error) {
	targets := c.notMembers(peers)
	if len(targets) == 0 {
		return 0, nil
	}
	type result struct {
		peer netip.AddrPort
		err  error
	}
	results := make(chan result, len(targets))
	sem := make(chan struct{}, 8)
	for _, p := range targets {
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results <- result{p, ctx.Err()}
				return
			}
			defer func() { <-sem }()
			_, err := c.ml.Join([]string{p.String()})
			if err != nil {
				c.metrics.joins.WithLabelValues("failed").Inc()
			} else {
				c.metrics.joins.WithLabelValues("ok").Inc()
			}
			results <- result{p, err}
		}()
	}
	var errs []error
	joined := 0
	for range targets {
		r := <-results
		if r.err != nil {
			errs = append(errs, fmt.Errorf("joining %s: %w", r.peer, r.err))
			continue
		}
		joined++
	}
	if joined > 0 {
		return joined, nil
	}
	return 0, errors.Join(errs...)
}

// SetPeers sets the addresses of every speaker there may be (the Nodes'
// InternalIPs and the memberlist port; this node's own is ignored). Those that
// are not alive members are joined now in the background, and again every
// 10 s while they are not: a Node added later, a speaker that was down, or a
// partition that memberlist gave up on. "Now" holds even while an earlier join
// still waits (up to the TCP timeout) for a peer that does not answer: up to four
// joins run at once. Call it from the Node informer, and again whenever there is
// reason to think a peer is back (the speaker does on an ARP conflict); it does
// not block.
func (c *Cluster) SetPeers(peers []netip.AddrPort) {
	c.peersMu.Lock()
	c.peers = slices.Clone(peers)
	c.peersMu.Unlock()
	select {
	case c.rejoin <- struct{}{}:
	default:
	}
}

func (c *Cluster) rejoinLoop() {
	defer c.wg.Done()
	t := time.NewTicker(rejoinInterval)
	defer t.Stop()
	// Joins run concurrently, at most maxRejoins at a time: a join toward a
	// peer that is still unreachable waits up to tcpTimeout, and a trigger
	// arriving meanwhile (the network healed) must not wait for it.
	done := make(chan struct{}, maxRejoins)
	inFlight, pending := 0, false
	for {
		select {
		case <-c.stop:
			return
		case <-c.rejoin:
			pending = true
		case <-t.C:
			pending = true
		case <-done:
			inFlight--
		}
		if !pending || inFlight == maxRejoins {
			continue
		}
		pending = false
		inFlight++
		c.peersMu.Lock()
		peers := c.peers
		c.peersMu.Unlock()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer func() { done <- struct{}{} }()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-c.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			if n, err := c.Join(ctx, peers); err != nil {
				klog.V(2).InfoS("Joining speakers that are not members", "node", c.name, "joined", n, "err", err)
			}
		}()
	}
}

// notMembers returns the peers that are neither this node nor an alive member.
func (c *Cluster) notMembers(peers []netip.AddrPort) []netip.AddrPort {
	known := map[netip.AddrPort]bool{c.self: true}
	for _, m := range c.Members() {
		known[m.Addr] = true
	}
	var out []netip.AddrPort
	for _, p := range peers {
		p = netip.AddrPortFrom(p.Addr().Unmap(), p.Port())
		if !known[p] {
			known[p] = true
			out = append(out, p)
		}
	}
	return out
}

// SetMeta publishes m as this node's metadata and returns how many of
// m.Claims fit (see Meta.Encode; the rest are counted in
// ironlb_memberlist_meta_unpublished_claims). It returns once the update was
// handed to at least one peer or ctx ends; the update stands either way.
func (c *Cluster) SetMeta(ctx context.Context, m Meta) (int, error) {
	b, n := m.Encode(MaxMetaSize)
	c.metaMu.Lock()
	c.meta = b
	c.claims = Meta{Claims: slices.Clone(m.Claims[:n]), Leaving: m.Leaving}
	c.metaMu.Unlock()
	c.metrics.unpublished.Set(float64(len(m.Claims) - n))
	timeout := time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	if err := c.ml.UpdateNode(timeout); err != nil {
		return n, fmt.Errorf("membership: publishing metadata: %w", err)
	}
	return n, nil
}

// Members returns the alive members (memberlist's suspects included), this
// node too, sorted by name.
func (c *Cluster) Members() []Member {
	c.membersMu.Lock()
	out := make([]Member, 0, len(c.members))
	for _, m := range c.members {
		m.Meta.Claims = slices.Clone(m.Meta.Claims)
		out = append(out, m)
	}
	c.membersMu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Leave tells the cluster this node is leaving, so peers take over at once
// instead of after failure detection: it publishes Meta.Leaving, then
// memberlist's leave message, and returns when that was sent or after
// timeout. The node keeps listening (and should keep answering for its
// addresses) until Shutdown; see the package documentation for the handover.
// It stops the rejoin loop.
func (c *Cluster) Leave(timeout time.Duration) error {
	if c.shut.Load() {
		return errors.New("membership: leave after shutdown")
	}
	var err error
	c.leaving.Do(func() {
		c.stopRejoin()
		deadline := time.Now().Add(timeout)
		c.metaMu.Lock()
		m := c.claims
		c.metaMu.Unlock()
		m.Leaving = true
		// Half the time for the flag: the leave itself matters more.
		ctx, cancel := context.WithTimeout(context.Background(), timeout/2)
		_, metaErr := c.SetMeta(ctx, m)
		cancel()
		if leaveErr := c.ml.Leave(max(time.Until(deadline), time.Millisecond)); leaveErr != nil {
			err = fmt.Errorf("membership: leave: %w", leaveErr)
		} else if metaErr != nil {
			err = fmt.Errorf("membership: leave: peers may take it for a failure: %w", metaErr)
		}
	})
	return err
}

// Shutdown stops memberlist without telling anyone (peers detect the failure:
// call Leave first for a planned stop), stops the rejoin loop and closes
// Events.
func (c *Cluster) Shutdown() error {
	var err error
	c.stopped.Do(func() {
		c.shut.Store(true)
		c.stopRejoin()
		err = c.ml.Shutdown()
		c.wg.Wait()
		c.queue.stop()
	})
	return err
}

// stopRejoin ends the rejoin loop without waiting for a join in flight
// (bounded by tcpTimeout), so Leave is not delayed by an unreachable peer.
func (c *Cluster) stopRejoin() { c.stopOnce.Do(func() { close(c.stop) }) }

// member copies n; call it only from the event callbacks (see members).
func (c *Cluster) member(n *memberlist.Node) Member {
	m := Member{Name: n.Name}
	if a, ok := netip.AddrFromSlice(n.Addr); ok {
		m.Addr = netip.AddrPortFrom(a.Unmap(), n.Port)
	}
	meta, err := DecodeMeta(n.Meta)
	if err != nil {
		klog.ErrorS(err, "Ignoring a member's metadata (another speaker version?)", "node", c.name, "member", n.Name)
	}
	m.Meta = meta
	return m
}

// delegate holds memberlist's callbacks. They run with memberlist's locks
// held: they must not block nor call back into memberlist.
type delegate Cluster

var _ memberlist.Delegate = (*delegate)(nil)
var _ memberlist.EventDelegate = (*delegate)(nil)
var _ memberlist.PingDelegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	if len(d.meta) > limit {
		b, _ := Meta{}.Encode(limit)
		return b
	}
	return slices.Clone(d.meta)
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *delegate) setMember(m Member, alive bool) {
	d.membersMu.Lock()
	if alive {
		d.members[m.Name] = m
	} else {
		delete(d.members, m.Name)
	}
	d.membersMu.Unlock()
}

func (d *delegate) NotifyJoin(n *memberlist.Node) {
	m := (*Cluster)(d).member(n)
	d.setMember(m, true)
	d.metrics.memberAlive(n.Name, true)
	d.queue.push(memberState{member: m, alive: true})
}

func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	m := (*Cluster)(d).member(n)
	d.setMember(m, true)
	d.metrics.memberAlive(n.Name, false)
	d.queue.push(memberState{member: m, alive: true})
}

// NotifyLeave: memberlist does not say whether the member left or was
// declared dead; its last metadata does (Leave sets Meta.Leaving first).
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	m := (*Cluster)(d).member(n)
	d.setMember(m, false)
	d.metrics.memberGone(n.Name, m.Meta.Leaving)
	d.queue.push(memberState{member: m, left: m.Meta.Leaving})
}

func (d *delegate) AckPayload() []byte { return nil }

func (d *delegate) NotifyPingComplete(_ *memberlist.Node, rtt time.Duration, _ []byte) {
	d.metrics.rtt.Observe(rtt.Seconds())
}
