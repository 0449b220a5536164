package l2

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// waitLimit bounds every wait for something that must happen. It is generous:
// the tests assert that things happen, not how fast.
const waitLimit = 10 * time.Second

// memSystem is an in-memory system: links are set by the test, and every
// socket is a memConn the test feeds frames into and reads answers from.
type memSystem struct {
	mu        sync.Mutex
	ls        []link
	conns     map[connKey]*memConn
	opened    map[connKey]int
	listenErr error
	changed   chan struct{}
}

type connKey struct {
	link int
	arp  bool
}

func newMemSystem(ls ...link) *memSystem {
	return &memSystem{ls: ls, conns: map[connKey]*memConn{}, opened: map[connKey]int{}, changed: make(chan struct{}, 1)}
}

func (s *memSystem) links() ([]link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ls), nil
}

// setLinks replaces the links and notifies watchers, as netlink would.
func (s *memSystem) setLinks(ls ...link) {
	s.mu.Lock()
	s.ls = ls
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *memSystem) watch(ctx context.Context, changed func()) error {
	changed()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
			changed()
		}
	}
}

func (s *memSystem) listen(l link, arp bool) (*memConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listenErr != nil {
		return nil, s.listenErr
	}
	c := newMemConn()
	k := connKey{l.index, arp}
	s.conns[k] = c
	s.opened[k]++
	return c, nil
}

func (s *memSystem) listenARP(l link) (frameConn, error) { return s.listen(l, true) }
func (s *memSystem) listenNDP(l link) (ndpConn, error)   { return s.listen(l, false) }

// conn returns the latest socket opened on link for the family, or nil.
func (s *memSystem) conn(link int, arp bool) *memConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[connKey{link, arp}]
}

// openCount is how many sockets were opened on link for the family.
func (s *memSystem) openCount(link int, arp bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened[connKey{link, arp}]
}

// memConn is one in-memory packet socket.
type memConn struct {
	in     chan frameReq
	out    chan []byte
	closed chan struct{}
	once   sync.Once

	mu      sync.Mutex
	groups  map[netip.Addr]bool
	pending chan struct{} // processed signal of the frame being handled
}

// frameReq is a frame (or a read error) handed to the reader; processed
// closes when the reader asks for the next frame, which it does only after
// handling this one (answer written, conflict noted), or at once for an error.
type frameReq struct {
	frame     []byte
	err       error
	processed chan struct{}
}

func newMemConn() *memConn {
	return &memConn{in: make(chan frameReq), out: make(chan []byte, 1024), closed: make(chan struct{}), groups: map[netip.Addr]bool{}}
}

func (c *memConn) readFrame(b []byte) (int, error) {
	c.mu.Lock()
	if c.pending != nil {
		close(c.pending)
		c.pending = nil
	}
	c.mu.Unlock()
	select {
	case r := <-c.in:
		if r.err != nil {
			close(r.processed)
			return 0, r.err
		}
		c.mu.Lock()
		c.pending = r.processed
		c.mu.Unlock()
		return copy(b, r.frame), nil
	case <-c.closed:
		return 0, net.ErrClosed
	}
}

func (c *memConn) writeFrame(b []byte) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	default:
	}
	select {
	case c.out <- slices.Clone(b):
		return nil
	default:
		return errors.New("memConn: output full")
	}
}

func (c *memConn) close() error {
	c.once.Do(func() {
		close(c.closed)
		c.mu.Lock()
		if c.pending != nil {
			close(c.pending)
			c.pending = nil
		}
		c.mu.Unlock()
	})
	return nil
}

func (c *memConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *memConn) joinGroup(g netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups[g] = true
	return nil
}

func (c *memConn) leaveGroup(g netip.Addr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.groups, g)
	return nil
}

func (c *memConn) joined() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	var g []netip.Addr
	for a := range c.groups {
		g = append(g, a)
	}
	slices.SortFunc(g, netip.Addr.Compare)
	return g
}

// feed hands frame to the reader and returns once it was fully handled.
func (c *memConn) feed(t *testing.T, frame []byte) {
	t.Helper()
	c.hand(t, frameReq{frame: frame, processed: make(chan struct{})})
}

// failRead makes the reader's next read fail with err.
func (c *memConn) failRead(t *testing.T, err error) {
	t.Helper()
	c.hand(t, frameReq{err: err, processed: make(chan struct{})})
}

func (c *memConn) hand(t *testing.T, r frameReq) {
	t.Helper()
	select {
	case c.in <- r:
	case <-c.closed:
		t.Fatalf("feed: socket is closed")
	case <-time.After(waitLimit):
		t.Fatalf("feed: nobody reads the socket")
	}
	select {
	case <-r.processed:
	case <-time.After(waitLimit):
		t.Fatalf("feed: frame not handled")
	}
}

// next returns the next frame written, failing the test after waitLimit.
func (c *memConn) next(t *testing.T) []byte {
	t.Helper()
	return receive(t, c.out, "frame sent")
}

// none fails the test if a frame was written. Call it only after a positive
// signal that whatever could have written one is done (feed returned,
// SetOwned returned).
func (c *memConn) none(t *testing.T) {
	t.Helper()
	select {
	case f := <-c.out:
		t.Fatalf("unexpected frame sent: % x", f)
	default:
	}
}

// drain discards the frames written so far.
func (c *memConn) drain() {
	for {
		select {
		case <-c.out:
		default:
			return
		}
	}
}
