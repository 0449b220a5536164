package l2

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
)

// Announcement is one VIP this node owns and where to answer for it.
type Announcement struct {
	// VIP is the address to answer for: IPv4 (ARP) or IPv6 (NDP), unicast.
	VIP netip.Addr
	// Interfaces names the links to answer on (an IPPool's
	// spec.advertise.l2.interfaces). Empty means the one link whose
	// configured subnet holds VIP.
	Interfaces []string
}

// Placement is where an owned VIP is answered.
type Placement struct {
	VIP netip.Addr
	// Interfaces are the links answering for VIP, sorted; empty when none
	// can (Reason says why) or when VIP was released.
	Interfaces []string
	// Reason says why no interface answers; empty when some do.
	Reason string
}

// Conflict reports another MAC claiming a VIP this node owns: an ARP packet
// with the VIP as sender address, a Neighbor Advertisement for it, or a
// Neighbor Solicitation sent from it. See the package documentation for what
// to do with it.
type Conflict struct {
	VIP       netip.Addr
	Interface string
	// OurMAC is the MAC this node announces VIP with on Interface;
	// TheirMAC the one that claimed it.
	OurMAC, TheirMAC net.HardwareAddr
	// Packet is the kind of the latest claim ("gratuitous ARP",
	// "ARP reply", "ARP request", "Neighbor Advertisement",
	// "Neighbor Solicitation").
	Packet string
	// Seen counts the claims since the previous report of the same VIP,
	// interface and MAC.
	Seen int
}

// Config configures an Announcer. The zero value is usable.
type Config struct {
	// Registerer receives the ironlb_l2_* metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger is used for structured logs; zero means klog's default logger.
	Logger klog.Logger
	// GratuitousCount is the number of rounds in the burst sent on every
	// takeover or Reannounce; a round is an ARP request and an ARP reply
	// (IPv4) or one unsolicited Neighbor Advertisement (IPv6). Default 3.
	GratuitousCount int
	// GratuitousInterval separates the rounds of a burst. Default 500ms.
	GratuitousInterval time.Duration
	// RefreshInterval, when positive, sends one more round for every
	// announced VIP this often after its burst. Default 0: off.
	RefreshInterval time.Duration
	// RescanInterval is how often links are re-read even without a netlink
	// notification (a safety net for lost notifications). Default 1m.
	RescanInterval time.Duration
	// ConflictInterval is the least time between two Conflict reports for
	// the same VIP, interface and MAC. Default 500ms.
	ConflictInterval time.Duration
	// OnConflict, if set, receives conflicts (see the package
	// documentation). It is called from Run's goroutine, one call at a
	// time; it must not block for long and may call the Announcer.
	OnConflict func(Conflict)
	// OnPlacement, if set, receives the new Placement of a VIP whenever
	// the interfaces answering for it change: after SetOwned, when links
	// appear, disappear or go down, and on release (Interfaces empty,
	// Reason "released"). Called like OnConflict.
	OnPlacement func(Placement)
}

func (c Config) withDefaults() Config {
	if c.GratuitousCount <= 0 {
		c.GratuitousCount = 3
	}
	if c.GratuitousInterval <= 0 {
		c.GratuitousInterval = 500 * time.Millisecond
	}
	c.RefreshInterval = max(c.RefreshInterval, 0)
	if c.RescanInterval <= 0 {
		c.RescanInterval = time.Minute
	}
	if c.ConflictInterval <= 0 {
		c.ConflictInterval = 500 * time.Millisecond
	}
	if c.Logger.GetSink() == nil {
		c.Logger = klog.LoggerWithName(klog.Background(), "l2")
	}
	return c
}

// ErrClosed is returned by the methods of a closed Announcer.
var ErrClosed = errors.New("l2: announcer closed")

// releasedReason is the Placement.Reason of a VIP that is no longer owned.
const releasedReason = "released"

// maxConflictKeys bounds the memory a flood of forged claims can take; beyond
// it new (VIP, interface, MAC) triples are counted in the metric only.
const maxConflictKeys = 4096

// readBufferSize holds any ARP or NDP frame (NDP messages are small; jumbo
// frames carrying other data are cut, which the parsers reject).
const readBufferSize = 2048

// Announcer answers ARP and NDP for the VIPs this node owns and announces
// them gratuitously on takeover. Create it with New, start Run, and call
// SetOwned with the desired state. All methods are safe for concurrent use.
type Announcer struct {
	cfg    Config
	timing timing
	log    klog.Logger
	sys    system
	m      *metrics
	now    func() time.Time

	wake      chan struct{} // wakes Run; one buffered slot
	done      chan struct{} // closed by Close
	running   atomic.Bool
	dirty     atomic.Bool // links must be re-read
	closeOnce sync.Once

	// mu guards the state below. Receivers hold it for reading while they
	// decide and write an answer, so once a writer has swapped the table no
	// answer from an older table can still go out.
	mu         sync.RWMutex
	closed     bool
	owned      []Announcement
	links      []link
	linksKnown bool
	tbl        *table
	placements map[netip.Addr]placement
	conns      map[int]*linkConns
	slots      map[slotKey]*slot

	// nmu guards the notifications waiting for Run to deliver them.
	nmu        sync.Mutex
	notified   map[netip.Addr]Placement // last queued per owned VIP
	placeQueue map[netip.Addr]Placement
	conflicts  map[conflictKey]*conflictState
}

// linkConns are the open sockets of one answering link.
type linkConns struct {
	arp, ndp *conn
	groups   map[netip.Addr]bool // joined solicited-node groups
}

type conn struct {
	fc      frameConn
	nd      ndpConn // set for NDP sockets
	closing atomic.Bool
	dead    atomic.Bool
}

// New returns an Announcer that answers for nothing until SetOwned. It fails
// only when the metrics cannot be registered.
func New(cfg Config) (*Announcer, error) {
	return newAnnouncer(cfg, newKernel())
}

func newAnnouncer(cfg Config, sys system) (*Announcer, error) {
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Announcer{
		cfg:        cfg,
		timing:     timing{count: cfg.GratuitousCount, interval: cfg.GratuitousInterval, refresh: cfg.RefreshInterval},
		log:        cfg.Logger,
		sys:        sys,
		m:          m,
		now:        time.Now,
		wake:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		placements: map[netip.Addr]placement{},
		conns:      map[int]*linkConns{},
		slots:      map[slotKey]*slot{},
		notified:   map[netip.Addr]Placement{},
		placeQueue: map[netip.Addr]Placement{},
		conflicts:  map[conflictKey]*conflictState{},
	}, nil
}

// SetOwned makes owned the complete set of VIPs this node answers for,
// replacing the previous set; calling it again with the same set does
// nothing. VIPs that are new, or whose interface changed, get a gratuitous
// burst (its first round before SetOwned returns, the rest from Run). When
// SetOwned returns, no answer is sent any more for a VIP it dropped.
//
// Invalid entries (not a unicast address, a VIP listed twice with different
// interfaces) are left out and reported in the returned error; the valid ones
// are applied regardless. An error reading the links is returned too; the
// owned set is kept and applied by Run once the links can be read.
func (a *Announcer) SetOwned(ctx context.Context, owned []Announcement) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	valid, invalid := normalise(owned)
	a.mu.Lock()
	known := a.linksKnown
	a.mu.Unlock()
	var links []link
	var scanErr error
	if !known {
		links, scanErr = a.sys.links()
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.owned = valid
	if scanErr == nil && !a.linksKnown {
		a.links, a.linksKnown = links, true
	}
	if a.linksKnown {
		a.reconcileLocked()
	}
	a.mu.Unlock()
	a.kick()
	if scanErr != nil {
		a.dirty.Store(true)
		return errors.Join(invalid, fmt.Errorf("l2: read links: %w", scanErr))
	}
	return invalid
}

// Reannounce sends a new gratuitous burst for vip on every interface that
// answers for it. It returns an error when vip is not answered anywhere.
func (a *Announcer) Reannounce(vip netip.Addr) error {
	vip = vip.Unmap()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	now := a.now()
	n := 0
	for k, s := range a.slots {
		if k.vip == vip {
			s.start(now, a.timing)
			a.sendRoundLocked(k, s, now)
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("l2: %s is not announced on any interface", vip)
	}
	a.kick()
	return nil
}

// Status returns the placement of every owned VIP, sorted by VIP.
func (a *Announcer) Status() []Placement {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]Placement, 0, len(a.placements))
	for vip, p := range a.placements {
		out = append(out, a.placementLocked(vip, p))
	}
	slices.SortFunc(out, func(x, y Placement) int { return x.VIP.Compare(y.VIP) })
	return out
}

// Run tracks link changes (netlink, plus a rescan every RescanInterval),
// sends the repeats of gratuitous bursts and the periodic refresh, and
// delivers OnConflict and OnPlacement calls. Without it, SetOwned still
// answers and sends the first round of each burst, but on the links as they
// were when first read. Run returns when Close is called (nil) or when ctx
// ends, after closing the Announcer (Close's error). Call it once.
func (a *Announcer) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("l2: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.watchLinks(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	rescan := time.NewTicker(a.cfg.RescanInterval)
	defer rescan.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	a.dirty.Store(true)
	for {
		if a.dirty.Swap(false) {
			a.rescan()
		}
		now := a.now()
		a.sendDue(now)
		a.deliver(now)
		if next := a.nextWake(now); !next.IsZero() {
			timer.Reset(max(next.Sub(a.now()), 0))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return a.Close()
		case <-a.done:
			return nil
		case <-a.wake:
		case <-timer.C:
		case <-rescan.C:
			a.dirty.Store(true)
		}
	}
}

// Close stops answering at once: it closes every socket (leaving the
// multicast groups) and makes Run return. Later calls do nothing.
func (a *Announcer) Close() error {
	var err error
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		a.tbl = nil
		for _, lc := range a.conns {
			err = errors.Join(err, closeConn(lc.arp), closeConn(lc.ndp))
		}
		a.conns = map[int]*linkConns{}
		a.slots = map[slotKey]*slot{}
		a.placements = map[netip.Addr]placement{}
		a.m.setOwned(nil)
		a.mu.Unlock()
		close(a.done)
	})
	return err
}

// kick wakes Run without blocking.
func (a *Announcer) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Announcer) markDirty() {
	a.dirty.Store(true)
	a.kick()
}

// watchLinks runs the netlink watch, restarting it after failures (netlink
// drops notifications when its buffer overflows; the rescan that follows a
// restart catches up).
func (a *Announcer) watchLinks(ctx context.Context) {
	for {
		err := a.sys.watch(ctx, a.markDirty)
		if ctx.Err() != nil {
			return
		}
		a.log.Error(err, "Watching links failed; retrying", "retryIn", a.cfg.RescanInterval)
		a.markDirty()
		select {
		case <-ctx.Done():
			return
		case <-time.After(a.cfg.RescanInterval):
		}
	}
}

// rescan re-reads the links and re-applies the owned set to them.
func (a *Announcer) rescan() {
	links, err := a.sys.links()
	if err != nil {
		a.log.Error(err, "Reading links failed")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.links, a.linksKnown = links, true
	a.reconcileLocked()
}

// reconcileLocked applies a.owned to a.links: it places the VIPs, opens the
// sockets and joins the groups the new table needs, swaps the table in,
// closes what is no longer needed, starts bursts for takeovers and queues
// placement notifications.
func (a *Announcer) reconcileLocked() {
	placements := place(a.links, a.owned)
	tbl := buildTable(a.links, placements)
	if failed := a.openLocked(tbl); len(failed) > 0 {
		for vip, p := range placements {
			p.links = slices.DeleteFunc(p.links, func(idx int) bool { return failed[slotKey{vip, idx}] != nil })
			if len(p.links) == 0 && p.reason == "" {
				var errs []error
				for k, err := range failed {
					if k.vip == vip {
						errs = append(errs, err)
					}
				}
				p.reason = errors.Join(errs...).Error()
			}
			placements[vip] = p
		}
		tbl = buildTable(a.links, placements)
	}

	a.tbl = tbl
	a.closeUnusedLocked(tbl)

	now := a.now()
	live := map[slotKey]bool{}
	for idx, al := range tbl.links {
		for vip := range al.vips {
			k := slotKey{vip, idx}
			live[k] = true
			s := a.slots[k]
			if s != nil && s.mac == al.link.mac {
				continue
			}
			s = &slot{mac: al.link.mac}
			a.slots[k] = s
			a.log.Info("Taking over VIP", "vip", vip, "interface", al.link.name, "mac", al.link.mac)
			s.start(now, a.timing)
			a.sendRoundLocked(k, s, now)
		}
	}
	for k := range a.slots {
		if !live[k] {
			delete(a.slots, k)
		}
	}

	a.queuePlacementsLocked(placements)
	a.placements = placements
	a.m.setOwned(placements)
}

// openLocked makes sure every link of tbl has the sockets and group
// memberships it needs. It returns the slots that cannot be served, with the
// error.
func (a *Announcer) openLocked(tbl *table) map[slotKey]error {
	failed := map[slotKey]error{}
	fail := func(al *answeringLink, v4 bool, err error) {
		for vip := range al.vips {
			if vip.Is4() == v4 {
				failed[slotKey{vip, al.link.index}] = err
			}
		}
	}
	for idx, al := range tbl.links {
		lc := a.conns[idx]
		if lc == nil {
			lc = &linkConns{groups: map[netip.Addr]bool{}}
			a.conns[idx] = lc
		}
		v4, v6 := al.families()
		if v4 {
			if _, err := a.ensureConn(&lc.arp, al, true); err != nil {
				fail(al, true, err)
			}
		}
		if v6 {
			opened, err := a.ensureConn(&lc.ndp, al, false)
			if err != nil {
				fail(al, false, err)
			}
			if opened || err != nil {
				clear(lc.groups) // memberships ended with the old socket
			}
		}
		if lc.ndp != nil {
			for g := range al.solicitedGroups() {
				if lc.groups[g] {
					continue
				}
				// Without the membership, solicitations to the group may
				// not reach this node on a real NIC or behind an MLD
				// snooping switch; unicast probes still do, so the VIP
				// stays placed and the failure is logged.
				if err := lc.ndp.nd.joinGroup(g); err != nil {
					a.log.Error(err, "Joining solicited-node multicast group failed", "interface", al.link.name, "group", g)
					continue
				}
				lc.groups[g] = true
			}
		}
	}
	return failed
}

// ensureConn opens *c (ARP or NDP) on al's link unless it is open and
// healthy, and starts its reader. It reports whether it opened one.
func (a *Announcer) ensureConn(c **conn, al *answeringLink, isARP bool) (bool, error) {
	if *c != nil && !(*c).dead.Load() {
		return false, nil
	}
	_ = closeConn(*c)
	*c = nil
	kind := "NDP"
	var nc *conn
	var err error
	if isARP {
		kind = "ARP"
		var fc frameConn
		if fc, err = a.sys.listenARP(al.link); err == nil {
			nc = &conn{fc: fc}
		}
	} else {
		var nd ndpConn
		if nd, err = a.sys.listenNDP(al.link); err == nil {
			nc = &conn{fc: nd, nd: nd}
		}
	}
	if err != nil {
		err = fmt.Errorf("open %s socket on %s: %w", kind, al.link.name, err)
		a.log.Error(err, "Cannot answer "+kind, "interface", al.link.name)
		return false, err
	}
	*c = nc
	go a.serve(nc, al.link.index, isARP)
	return true, nil
}

// closeUnusedLocked closes the sockets and leaves the groups tbl does not
// need. It runs after tbl is in place, so nothing answers from them any more.
func (a *Announcer) closeUnusedLocked(tbl *table) {
	for idx, lc := range a.conns {
		al := tbl.links[idx]
		var v4, v6 bool
		var groups map[netip.Addr]bool
		if al != nil {
			v4, v6 = al.families()
			groups = al.solicitedGroups()
		}
		if !v4 && lc.arp != nil {
			a.logCloseErr(closeConn(lc.arp), idx)
			lc.arp = nil
		}
		if !v6 && lc.ndp != nil {
			a.logCloseErr(closeConn(lc.ndp), idx)
			lc.ndp = nil
			clear(lc.groups)
		}
		if lc.ndp != nil {
			for g := range lc.groups {
				if !groups[g] {
					if err := lc.ndp.nd.leaveGroup(g); err != nil {
						a.log.Error(err, "Leaving solicited-node multicast group failed", "linkIndex", idx, "group", g)
					}
					delete(lc.groups, g)
				}
			}
		}
		if lc.arp == nil && lc.ndp == nil {
			delete(a.conns, idx)
		}
	}
}

func (a *Announcer) logCloseErr(err error, idx int) {
	if err != nil {
		a.log.V(2).Info("Closing socket failed", "linkIndex", idx, "err", err)
	}
}

func closeConn(c *conn) error {
	if c == nil {
		return nil
	}
	c.closing.Store(true)
	return c.fc.close()
}

// serve reads frames from c until it is closed and answers them.
func (a *Announcer) serve(c *conn, ifindex int, isARP bool) {
	buf := make([]byte, readBufferSize)
	for {
		n, err := c.fc.readFrame(buf)
		if err != nil {
			if c.closing.Load() {
				return
			}
			a.log.Error(err, "Reading frames failed; reopening", "linkIndex", ifindex, "arp", isARP)
			c.dead.Store(true)
			a.markDirty()
			return
		}
		a.handle(c, ifindex, isARP, buf[:n])
	}
}

// handle answers one received frame.
func (a *Announcer) handle(c *conn, ifindex int, isARP bool, frame []byte) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.tbl == nil || c.closing.Load() {
		return
	}
	var r response
	family := familyIPv6
	if isARP {
		family = familyIPv4
		r = a.tbl.answerARP(ifindex, frame)
	} else {
		r = a.tbl.answerNDP(ifindex, frame)
	}
	if r.request {
		a.m.requests.WithLabelValues(family).Inc()
	}
	if r.reply != nil {
		if err := c.fc.writeFrame(r.reply); err != nil {
			a.log.V(2).Info("Sending an answer failed", "linkIndex", ifindex, "err", err)
		} else {
			a.m.answers.WithLabelValues(family).Inc()
		}
	}
	if r.conflict != nil {
		a.m.conflicts.WithLabelValues(family).Inc()
		a.noteConflict(*r.conflict, a.tbl.links[ifindex].link.name)
	}
}

// sendRoundLocked sends one round of gratuitous announcements for k and
// schedules the next.
func (a *Announcer) sendRoundLocked(k slotKey, s *slot, now time.Time) {
	defer s.sent(now, a.timing)
	al := a.tbl.links[k.link]
	lc := a.conns[k.link]
	if al == nil || lc == nil {
		return
	}
	var c *conn
	var frames [][]byte
	if k.vip.Is4() {
		req, rep := gratuitousARP(s.mac, k.vip)
		c, frames = lc.arp, [][]byte{req, rep}
	} else {
		na, err := unsolicitedNA(s.mac, al.source(k.vip), k.vip)
		if err != nil {
			a.log.Error(err, "Building a Neighbor Advertisement failed", "vip", k.vip)
			return
		}
		c, frames = lc.ndp, [][]byte{na}
	}
	if c == nil {
		return
	}
	for _, f := range frames {
		if err := c.fc.writeFrame(f); err != nil {
			a.log.V(2).Info("Sending a gratuitous announcement failed", "vip", k.vip, "interface", al.link.name, "err", err)
			continue
		}
		a.m.gratuitous.WithLabelValues(familyOf(k.vip)).Inc()
	}
}

// sendDue sends the rounds that are due at now.
func (a *Announcer) sendDue(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	for k, s := range a.slots {
		if s.due(now) {
			a.sendRoundLocked(k, s, now)
		}
	}
}

// nextWake is the earliest time a round or a conflict report is due; zero
// when nothing is scheduled. It costs O(VIPs + conflicts).
func (a *Announcer) nextWake(now time.Time) time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	a.mu.RLock()
	for _, s := range a.slots {
		if !s.next.IsZero() {
			earlier(s.next)
		}
	}
	a.mu.RUnlock()
	a.nmu.Lock()
	for _, c := range a.conflicts {
		if c.pending > 0 {
			due := c.dueAt(a.cfg.ConflictInterval)
			if due.Before(now) {
				due = now
			}
			earlier(due)
		}
	}
	a.nmu.Unlock()
	return next
}

// noteConflict records a sighting for the next conflict report.
func (a *Announcer) noteConflict(s sighting, ifname string) {
	a.nmu.Lock()
	defer a.nmu.Unlock()
	k := conflictKey{vip: s.vip, link: s.link, theirs: s.theirs}
	c := a.conflicts[k]
	if c == nil {
		if len(a.conflicts) >= maxConflictKeys {
			return
		}
		c = &conflictState{}
		a.conflicts[k] = c
	}
	c.latest, c.ifname = s, ifname
	c.pending++
	a.kick()
}

// placementLocked converts a placement to its exported form.
func (a *Announcer) placementLocked(vip netip.Addr, p placement) Placement {
	out := Placement{VIP: vip, Reason: p.reason}
	for _, idx := range p.links {
		for _, l := range a.links {
			if l.index == idx {
				out.Interfaces = append(out.Interfaces, l.name)
			}
		}
	}
	slices.Sort(out.Interfaces)
	return out
}

// queuePlacementsLocked queues a notification for every VIP whose placement
// differs from the one last queued for it, released VIPs included. The queue
// holds one entry per VIP, so it stays bounded while Run is not running.
func (a *Announcer) queuePlacementsLocked(next map[netip.Addr]placement) {
	a.nmu.Lock()
	defer a.nmu.Unlock()
	for vip, p := range next {
		np := a.placementLocked(vip, p)
		if old, ok := a.notified[vip]; ok && slices.Equal(old.Interfaces, np.Interfaces) && old.Reason == np.Reason {
			continue
		}
		a.notified[vip] = np
		a.placeQueue[vip] = np
	}
	for vip := range a.notified {
		if _, ok := next[vip]; !ok {
			delete(a.notified, vip)
			a.placeQueue[vip] = Placement{VIP: vip, Reason: releasedReason}
		}
	}
}

// deliver makes the OnPlacement and OnConflict calls that are due, without
// holding any lock, and forgets conflicts that went quiet.
func (a *Announcer) deliver(now time.Time) {
	a.nmu.Lock()
	places := make([]Placement, 0, len(a.placeQueue))
	for _, p := range a.placeQueue {
		places = append(places, p)
	}
	clear(a.placeQueue)
	var reports []Conflict
	for k, c := range a.conflicts {
		switch {
		case c.ready(now, a.cfg.ConflictInterval):
			reports = append(reports, Conflict{
				VIP:       c.latest.vip,
				Interface: c.ifname,
				OurMAC:    net.HardwareAddr(c.latest.ours[:]),
				TheirMAC:  net.HardwareAddr(c.latest.theirs[:]),
				Packet:    c.latest.packet,
				Seen:      c.pending,
			})
			c.pending, c.reported = 0, now
		case c.stale(now, a.cfg.ConflictInterval):
			delete(a.conflicts, k)
		}
	}
	a.nmu.Unlock()

	slices.SortFunc(places, func(x, y Placement) int { return x.VIP.Compare(y.VIP) })
	for _, p := range places {
		if len(p.Interfaces) == 0 && p.Reason != releasedReason {
			a.log.Info("VIP is owned but no interface can answer for it", "vip", p.VIP, "reason", p.Reason)
		} else {
			a.log.V(1).Info("VIP placement changed", "vip", p.VIP, "interfaces", p.Interfaces, "reason", p.Reason)
		}
		if a.cfg.OnPlacement != nil {
			a.cfg.OnPlacement(p)
		}
	}
	slices.SortFunc(reports, func(x, y Conflict) int {
		return cmp.Or(x.VIP.Compare(y.VIP), cmp.Compare(x.Interface, y.Interface), cmp.Compare(x.TheirMAC.String(), y.TheirMAC.String()))
	})
	for _, r := range reports {
		a.log.Info("Another MAC claims an owned VIP", "vip", r.VIP, "interface", r.Interface,
			"ourMAC", r.OurMAC, "theirMAC", r.TheirMAC, "packet", r.Packet, "seen", r.Seen)
		if a.cfg.OnConflict != nil {
			a.cfg.OnConflict(r)
		}
	}
}

// normalise validates owned and returns the valid entries sorted by VIP, with
// their interface names sorted and deduplicated, plus an error listing the
// invalid ones.
func normalise(owned []Announcement) ([]Announcement, error) {
	var out []Announcement
	var errs []error
	seen := map[netip.Addr]int{}
	for _, ann := range owned {
		vip := ann.VIP.Unmap()
		if err := checkVIP(vip); err != nil {
			errs = append(errs, err)
			continue
		}
		names := slices.Clone(ann.Interfaces)
		slices.Sort(names)
		names = slices.Compact(names)
		if slices.Contains(names, "") {
			errs = append(errs, fmt.Errorf("l2: VIP %s: empty interface name", vip))
			continue
		}
		if i, dup := seen[vip]; dup {
			if !slices.Equal(out[i].Interfaces, names) {
				errs = append(errs, fmt.Errorf("l2: VIP %s listed twice with different interfaces (%q kept, %q ignored)", vip, out[i].Interfaces, names))
			}
			continue
		}
		seen[vip] = len(out)
		out = append(out, Announcement{VIP: vip, Interfaces: names})
	}
	slices.SortFunc(out, func(x, y Announcement) int { return x.VIP.Compare(y.VIP) })
	return out, errors.Join(errs...)
}

func checkVIP(vip netip.Addr) error {
	switch {
	case !vip.IsValid():
		return errors.New("l2: invalid (zero) VIP")
	case vip.Zone() != "":
		return fmt.Errorf("l2: VIP %s has a zone", vip)
	case vip.IsUnspecified(), vip.IsMulticast(), vip.IsLoopback(), vip.IsLinkLocalUnicast(),
		vip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("l2: VIP %s is not a routable unicast address", vip)
	}
	return nil
}
