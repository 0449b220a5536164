package bgp

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/ironlb/ironlb/bgp/bfd"
)

// SessionState is the state of a BGP session (RFC 4271 section 8).
type SessionState uint8

// The BGP finite state machine's states.
const (
	StateIdle SessionState = iota
	StateConnect
	StateActive
	StateOpenSent
	StateOpenConfirm
	StateEstablished
)

// String returns the RFC 4271 name of the state.
func (s SessionState) String() string {
	switch s {
	case StateIdle:
		return "Idle"
	case StateConnect:
		return "Connect"
	case StateActive:
		return "Active"
	case StateOpenSent:
		return "OpenSent"
	case StateOpenConfirm:
		return "OpenConfirm"
	case StateEstablished:
		return "Established"
	}
	return fmt.Sprintf("SessionState(%d)", uint8(s))
}

// PeerStatus is the state of one configured peer.
type PeerStatus struct {
	Address netip.Addr
	State   SessionState
	// Since is when the session entered State (or the peer was configured).
	Since time.Time
	// BFD is the BFD session state; nil when the peer does not use BFD.
	BFD *bfd.State
	// PrefixesAdvertised is how many prefixes the session carries now (0
	// unless Established).
	PrefixesAdvertised int
	// UpdatesSent counts the UPDATE messages sent on the session since the
	// peer was configured.
	UpdatesSent uint64
}

// EventType says what changed.
type EventType uint8

// Event types.
const (
	EventSessionUp EventType = iota + 1
	EventSessionDown
	EventBFDUp
	EventBFDDown
)

// String returns a short name of the event type.
func (t EventType) String() string {
	switch t {
	case EventSessionUp:
		return "SessionUp"
	case EventSessionDown:
		return "SessionDown"
	case EventBFDUp:
		return "BFDUp"
	case EventBFDDown:
		return "BFDDown"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event is a session or BFD state change of a peer.
type Event struct {
	Time time.Time
	Peer netip.Addr
	Type EventType
	// Detail is a human-readable reason when one is known (the BFD
	// diagnostic, the state a session fell to).
	Detail string
}

// eventQueue runs callbacks in order on one goroutine without ever blocking
// the producer (GoBGP's and BFD's goroutines): it is unbounded, which is safe
// because state changes are rare and each is small.
type eventQueue struct {
	mu     sync.Mutex
	items  []func()
	wake   chan struct{}
	closed bool
	done   chan struct{}
}

func newEventQueue() *eventQueue {
	q := &eventQueue{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *eventQueue) push(f func()) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, f)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) run() {
	defer close(q.done)
	for range q.wake {
		for {
			q.mu.Lock()
			if len(q.items) == 0 {
				closed := q.closed
				q.mu.Unlock()
				if closed {
					return
				}
				break
			}
			f := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			f()
		}
	}
}

// close delivers what is queued, then stops the goroutine and waits for it.
func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	<-q.done
}
