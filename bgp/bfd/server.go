package bfd

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Defaults applied to zero fields of SessionConfig.
const (
	DefaultMinTx      = 300 * time.Millisecond
	DefaultMinRx      = 300 * time.Millisecond
	DefaultDetectMult = 3
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Logger receives the server's logs; zero means klog.Background().
	Logger klog.Logger
	// OnChange, if set, is called on every session state change, from the
	// session's goroutine, in order per session. It must return quickly.
	OnChange func(Change)
	// Port is the UDP port to listen on and send to; zero means Port (3784).
	// Only tests need another one.
	Port int
}

// Change reports a session's new state.
type Change struct {
	Peer  netip.Addr
	State State
	// Old is the state before the change.
	Old State
	// Remote is the state the remote side last reported; a session taken
	// Down by a remote AdminDown is an administrative act, not a failure
	// (RFC 5882 section 3.2).
	Remote State
	// Diag says why the session left Up (or "none").
	Diag Diag
	// RemoteDiag is the diagnostic in the remote side's last packet: with
	// Diag DiagNeighborSignaledDown it says why the remote side went down
	// (DiagNone: its session was only started again, e.g. a daemon restart
	// or a router replacing a session, and the path works).
	RemoteDiag Diag
	Time       time.Time
}

// SessionConfig describes one single-hop session.
type SessionConfig struct {
	// Peer is the remote system's address (required; one session per peer).
	Peer netip.Addr
	// Local is the address to send from; zero means the address the kernel
	// uses toward Peer. Packets are sent from it with TTL 255.
	Local netip.Addr
	// DesiredMinTx, RequiredMinRx and DetectMult are this side's timers;
	// zero means DefaultMinTx, DefaultMinRx, DefaultDetectMult. The remote
	// side detects a failure after about DetectMult x max(its RequiredMinRx,
	// DesiredMinTx).
	DesiredMinTx  time.Duration
	RequiredMinRx time.Duration
	DetectMult    uint8
}

func (c SessionConfig) timers() params {
	t := params{DesiredMinTx: c.DesiredMinTx, RequiredMinRx: c.RequiredMinRx, DetectMult: c.DetectMult}
	if t.DesiredMinTx == 0 {
		t.DesiredMinTx = DefaultMinTx
	}
	if t.RequiredMinRx == 0 {
		t.RequiredMinRx = DefaultMinRx
	}
	if t.DetectMult == 0 {
		t.DetectMult = DefaultDetectMult
	}
	return t
}

// validate refuses what the wire format or the protocol cannot do.
func (c SessionConfig) validate() error {
	if !c.Peer.IsValid() || c.Peer.IsUnspecified() || c.Peer.IsMulticast() {
		return fmt.Errorf("bfd: invalid peer address %v", c.Peer)
	}
	if c.Local.IsValid() && c.Local.Is4() != c.Peer.Unmap().Is4() {
		return fmt.Errorf("bfd: local address %v and peer %v are of different families", c.Local, c.Peer)
	}
	t := c.timers()
	for _, d := range []time.Duration{t.DesiredMinTx, t.RequiredMinRx} {
		if d < time.Millisecond || d > maxInterval {
			return fmt.Errorf("bfd: interval %v outside 1ms..%v", d, maxInterval)
		}
	}
	return nil
}

// SessionStatus is a snapshot of one session.
type SessionStatus struct {
	Peer, Local netip.Addr
	State       State
	RemoteState State
	Diag        Diag
	LocalDiscr  uint32
	RemoteDiscr uint32
	// TxInterval is the current interval between periodic packets (before
	// jitter); DetectTime the time after which silence takes the session down.
	TxInterval time.Duration
	DetectTime time.Duration
	// Since is when the session entered State.
	Since          time.Time
	Sent, Received uint64
}

// Server runs BFD sessions: one UDP socket per address family receives on
// port 3784 for all sessions, and each session sends from its own socket. It
// is safe for concurrent use.
type Server struct {
	cfg ServerConfig
	log klog.Logger

	mu       sync.Mutex
	sessions map[netip.Addr]*session
	byDiscr  map[uint32]*session
	rx       [2]*receiver // by family: 0 IPv4, 1 IPv6
	closed   bool
	wg       sync.WaitGroup
}

// NewServer returns a Server without sessions; sockets are opened when the
// first session of a family is added.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Port == 0 {
		cfg.Port = Port
	}
	log := cfg.Logger
	if log.GetSink() == nil {
		log = klog.Background()
	}
	return &Server{
		cfg:      cfg,
		log:      log.WithName("bfd"),
		sessions: map[netip.Addr]*session{},
		byDiscr:  map[uint32]*session{},
	}
}

// Set adds the session for c.Peer, or changes its timers if it exists (with a
// Poll Sequence when it is Up; a changed Local address restarts it). The
// session starts Down and comes Up when the remote side answers.
func (s *Server) Set(c SessionConfig) error {
	if err := c.validate(); err != nil {
		return err
	}
	c.Peer = c.Peer.Unmap()
	local := c.Local
	if !local.IsValid() {
		var err error
		if local, err = localAddrFor(c.Peer); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("bfd: server closed")
	}
	if old, ok := s.sessions[c.Peer]; ok {
		if old.local == local {
			old.setTimers(c.timers())
			return nil
		}
		s.removeLocked(old)
	}
	fam := 0
	if c.Peer.Is6() {
		fam = 1
	}
	if s.rx[fam] == nil {
		r, err := listen(fam == 1, s.cfg.Port)
		if err != nil {
			return err
		}
		s.rx[fam] = r
		s.wg.Add(1)
		go s.receive(r)
	}
	conn, err := dialSession(local)
	if err != nil {
		return err
	}
	var discr uint32
	for discr == 0 || s.byDiscr[discr] != nil {
		discr = rand.Uint32()
	}
	sess := newSession(s, c.Peer, local, discr, c.timers(), conn)
	s.sessions[c.Peer] = sess
	s.byDiscr[discr] = sess
	s.wg.Add(1)
	go sess.run()
	s.log.V(2).Info("BFD session added", "peer", c.Peer, "local", local, "discriminator", discr)
	return nil
}

// Remove ends the session with peer: it sends AdminDown, so the remote side
// takes the session down without treating it as a failure, and closes the
// session's socket. Removing an unknown peer does nothing.
func (s *Server) Remove(peer netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.sessions[peer.Unmap()]; ok {
		s.removeLocked(sess)
	}
}

func (s *Server) removeLocked(sess *session) {
	delete(s.sessions, sess.peer)
	delete(s.byDiscr, sess.discr)
	sess.stop()
}

// Sessions returns a snapshot of every session, in no particular order.
func (s *Server) Sessions() []SessionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SessionStatus, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess.status())
	}
	return out
}

// Session returns the snapshot of the session with peer.
func (s *Server) Session(peer netip.Addr) (SessionStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[peer.Unmap()]
	if !ok {
		return SessionStatus{}, false
	}
	return sess.status(), true
}

// Close ends every session as Remove does, closes the sockets and waits for
// the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, sess := range s.sessions {
		s.removeLocked(sess)
	}
	var errs []error
	for _, r := range s.rx {
		if r != nil {
			errs = append(errs, r.conn.Close())
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return errors.Join(errs...)
}

// receive reads one family's socket until it is closed and hands each valid
// packet to its session: by Your Discriminator when set, else by source
// address (RFC 5880 section 6.8.6). Packets with a TTL other than 255 are
// dropped (RFC 5881 section 5).
func (s *Server) receive(r *receiver) {
	defer s.wg.Done()
	buf := make([]byte, 512)
	for {
		n, ttl, src, err := r.read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.V(2).Info("BFD receive failed", "err", err)
			continue
		}
		if ttl != ttlSingleHop {
			s.log.V(4).Info("BFD packet dropped: TTL is not 255", "from", src, "ttl", ttl)
			continue
		}
		p, err := Unmarshal(buf[:n])
		if err != nil {
			s.log.V(4).Info("BFD packet dropped", "from", src, "err", err)
			continue
		}
		s.mu.Lock()
		var sess *session
		if p.YourDiscriminator != 0 {
			sess = s.byDiscr[p.YourDiscriminator]
			if sess != nil && sess.peer != src {
				sess = nil
			}
		} else {
			sess = s.sessions[src]
		}
		s.mu.Unlock()
		if sess == nil {
			s.log.V(4).Info("BFD packet dropped: no session", "from", src, "yourDiscriminator", p.YourDiscriminator)
			continue
		}
		sess.deliver(received{p: p, at: time.Now()})
	}
}

type received struct {
	p  ControlPacket
	at time.Time
}

// session is the shell around one machine: its goroutine owns the machine,
// the timers and the sending socket.
type session struct {
	srv   *Server
	peer  netip.Addr
	local netip.Addr
	conn  *net.UDPConn
	discr uint32
	m     *machine // owned by run; read under mu for status

	rx      chan received
	timers  chan params
	done    chan struct{}
	stopped sync.Once

	mu    sync.Mutex
	since time.Time
	sent  uint64
	recvd uint64
	snap  SessionStatus
}

func newSession(srv *Server, peer, local netip.Addr, discr uint32, t params, conn *net.UDPConn) *session {
	s := &session{
		srv: srv, peer: peer, local: local, conn: conn, discr: discr,
		m:      newMachine(discr, t),
		rx:     make(chan received, 16),
		timers: make(chan params, 1),
		done:   make(chan struct{}),
		since:  time.Now(),
	}
	s.snapshot()
	return s
}

func (s *session) deliver(r received) {
	select {
	case s.rx <- r:
	default: // a backlog this deep means we are too slow anyway; BFD tolerates loss
	}
}

func (s *session) setTimers(t params) {
	for {
		select {
		case s.timers <- t:
			return
		default:
		}
		select { // replace a pending change nobody has read yet
		case <-s.timers:
		default:
		}
	}
}

func (s *session) stop() { s.stopped.Do(func() { close(s.done) }) }

func (s *session) status() SessionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// snapshot copies the machine's state for status readers; run calls it after
// every event.
func (s *session) snapshot() {
	m := s.m
	s.mu.Lock()
	s.snap = SessionStatus{
		Peer: s.peer, Local: s.local,
		State: m.state, RemoteState: m.remoteState, Diag: m.diag,
		LocalDiscr: m.myDiscr, RemoteDiscr: m.yourDiscr,
		TxInterval: m.txInterval(), DetectTime: m.detectTime(),
		Since: s.since, Sent: s.sent, Received: s.recvd,
	}
	s.mu.Unlock()
}

// A session being removed sends adminDownPackets AdminDown packets at most
// adminDownGap apart (RFC 5880 section 6.8.16 asks for AdminDown to be
// signalled; the repeats make one lost packet harmless without delaying
// Close by a whole detection time).
const (
	adminDownPackets = 3
	adminDownGap     = 50 * time.Millisecond
)

// jitter returns d reduced by a random 0-25% (10-25% with a DetectMult of 1),
// as RFC 5880 section 6.8.7 requires so that sessions do not synchronise.
func jitter(d time.Duration, detectMult uint8) time.Duration {
	lo := 0.75
	hi := 1.0
	if detectMult == 1 {
		hi = 0.9
	}
	return time.Duration(float64(d) * (lo + rand.Float64()*(hi-lo)))
}

func (s *session) run() {
	defer s.srv.wg.Done()
	defer s.conn.Close()
	log := s.srv.log.WithValues("peer", s.peer)
	dst := netip.AddrPortFrom(s.peer, uint16(s.srv.cfg.Port))
	buf := make([]byte, 0, HeaderLen)
	send := func() {
		var err error
		buf, err = s.m.packet().Append(buf[:0])
		if err == nil {
			_, err = s.conn.WriteToUDPAddrPort(buf, dst)
		}
		if err != nil {
			log.V(4).Info("BFD send failed", "err", err)
			return
		}
		s.mu.Lock()
		s.sent++
		s.mu.Unlock()
	}
	// The first packet goes out after a short random delay so that many
	// sessions created at once do not send in lockstep.
	tx := time.NewTimer(time.Duration(rand.Int64N(int64(50 * time.Millisecond))))
	defer tx.Stop()
	detect := time.NewTimer(time.Hour)
	detect.Stop()
	defer detect.Stop()
	interval := s.m.txInterval()
	rearm := func() {
		if next := s.m.txInterval(); next != interval {
			interval = next
			tx.Stop()
			if interval > 0 {
				tx.Reset(jitter(interval, s.m.cfg.DetectMult))
			}
		}
		if d := s.m.detectDeadline; !d.IsZero() {
			detect.Reset(time.Until(d))
		} else {
			detect.Stop()
		}
	}
	changed := func(old State) {
		now := time.Now()
		s.mu.Lock()
		s.since = now
		s.mu.Unlock()
		log.V(1).Info("BFD session state changed", "from", old, "to", s.m.state, "diag", s.m.diag)
		s.snapshot() // a reader told of the change sees it in Sessions
		if s.srv.cfg.OnChange != nil {
			s.srv.cfg.OnChange(Change{Peer: s.peer, State: s.m.state, Old: old, Remote: s.m.remoteState, Diag: s.m.diag, RemoteDiag: s.m.remoteDiag, Time: now})
		}
	}
	for {
		select {
		case <-s.done:
			old, gap := s.m.state, min(interval, adminDownGap)
			if s.m.adminDown() {
				// Tell the remote side this is administrative, not a
				// failure; a few times, as a lost packet would let its
				// detection timer call it a failure after all.
				changed(old)
				for i := range adminDownPackets {
					if i > 0 {
						time.Sleep(gap)
					}
					send()
				}
			}
			s.snapshot()
			return
		case r := <-s.rx:
			old := s.m.state
			s.mu.Lock()
			s.recvd++
			s.mu.Unlock()
			if s.m.receive(r.p, r.at) {
				changed(old)
				send() // let the remote side see the new state without waiting a slow interval
			} else if s.m.final {
				send()
			}
			rearm()
		case <-tx.C:
			if interval > 0 {
				send()
				tx.Reset(jitter(interval, s.m.cfg.DetectMult))
			}
		case <-detect.C:
			old := s.m.state
			if s.m.expire(time.Now()) {
				changed(old)
			}
			rearm()
		case t := <-s.timers:
			s.m.setTimers(t)
			rearm()
		}
		s.snapshot()
	}
}
