package membership

import (
	"net/netip"
	"sync"
)

// EventType says what happened to a member.
type EventType int

const (
	// Join: a member is alive (new, back after a failure, or restarted).
	Join EventType = iota + 1
	// Update: an alive member published new metadata.
	Update
	// Leave: a member left (Event.Left) or was declared dead.
	Leave
)

func (t EventType) String() string {
	switch t {
	case Join:
		return "join"
	case Update:
		return "update"
	case Leave:
		return "leave"
	}
	return "unknown"
}

// Member is one speaker in the cluster.
type Member struct {
	// Name is the member's node name.
	Name string
	// Addr is where its memberlist listens.
	Addr netip.AddrPort
	// Meta is its decoded metadata; empty if it could not be decoded (logged).
	Meta Meta
}

// Event is a change of one member. Events of one member arrive in order; when
// the receiver is slower than memberlist, consecutive changes of a member are
// merged into one event that carries its latest state (Join and Update merge,
// a Leave replaces them), so the receiver sees every member's latest state and
// memberlist never waits for it.
type Event struct {
	Type   EventType
	Member Member
	// Left is true for a Leave the member announced (it called Leave), false
	// when the cluster declared it dead. Best effort: memberlist does not tell
	// the two apart, so Left comes from the member's last metadata
	// (Meta.Leaving), and a peer that receives the leave message first
	// reports a death. Both mean the member is gone.
	Left bool
}

// memberState is the latest news of one member, not yet delivered.
type memberState struct {
	member Member
	alive  bool
	left   bool
}

// eventQueue decouples memberlist's callbacks (which run with memberlist's
// locks held and must not block) from the receiver: push records the latest
// state per member and never blocks; run delivers in arrival order.
type eventQueue struct {
	mu      sync.Mutex
	pending map[string]memberState
	order   []string
	wake    chan struct{}
	done    chan struct{}
	out     chan Event
	// delivered are the members the receiver was last told are alive, so a
	// merged change becomes Join or Update correctly.
	delivered map[string]bool
}

func newEventQueue() *eventQueue {
	return &eventQueue{
		pending:   map[string]memberState{},
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		out:       make(chan Event),
		delivered: map[string]bool{},
	}
}

func (q *eventQueue) push(s memberState) {
	q.mu.Lock()
	if _, ok := q.pending[s.member.Name]; !ok {
		q.order = append(q.order, s.member.Name)
	}
	q.pending[s.member.Name] = s
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *eventQueue) next() (memberState, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 {
		return memberState{}, false
	}
	name := q.order[0]
	q.order = q.order[1:]
	s := q.pending[name]
	delete(q.pending, name)
	return s, true
}

// run delivers events until stop is called, then closes the channel.
func (q *eventQueue) run() {
	defer close(q.out)
	for {
		s, ok := q.next()
		if !ok {
			select {
			case <-q.wake:
				continue
			case <-q.done:
				return
			}
		}
		ev := Event{Member: s.member, Left: s.left}
		switch {
		case !s.alive:
			ev.Type = Leave
		case q.delivered[s.member.Name]:
			ev.Type = Update
		default:
			ev.Type = Join
		}
		if s.alive {
			q.delivered[s.member.Name] = true
		} else {
			delete(q.delivered, s.member.Name)
		}
		select {
		case q.out <- ev:
		case <-q.done:
			return
		}
	}
}

func (q *eventQueue) stop() { close(q.done) }
