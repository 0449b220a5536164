package membership

import (
	"net/netip"
	"testing"
	"time"
)

func state(name string, alive bool, claims ...string) memberState {
	return memberState{member: Member{Name: name, Meta: Meta{Claims: addrs(claims...)}}, alive: alive}
}

func recv(t *testing.T, q *eventQueue) Event {
	t.Helper()
	select {
	case ev := <-q.out:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return Event{}
	}
}

func TestEventQueueNeverBlocksAndKeepsLatestState(t *testing.T) {
	q := newEventQueue()
	defer q.stop()
	// Nobody reads yet: memberlist's callbacks must still return at once, and
	// what is kept is one pending state per member.
	for i := range 10000 {
		q.push(state("a", true, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String()))
		q.push(state("b", i%2 == 0))
	}
	if len(q.pending) != 2 {
		t.Fatalf("%d pending states for 2 members", len(q.pending))
	}
	go q.run()
	a := recv(t, q)
	if a.Type != Join || a.Member.Name != "a" || a.Member.Meta.Claims[0] != netip.MustParseAddr("192.0.2.15") {
		t.Fatalf("first event %+v, want a's join with its latest claims (192.0.2.15)", a)
	}
	if b := recv(t, q); b.Type != Leave || b.Member.Name != "b" {
		t.Fatalf("second event %+v, want b's latest state: gone", b)
	}

	q.push(state("a", true, "192.0.2.99"))
	if ev := recv(t, q); ev.Type != Update || ev.Member.Meta.Claims[0] != netip.MustParseAddr("192.0.2.99") {
		t.Fatalf("%+v, want an Update of a", ev)
	}
	q.push(memberState{member: Member{Name: "a"}, left: true})
	if ev := recv(t, q); ev.Type != Leave || !ev.Left {
		t.Fatalf("%+v, want a's announced leave", ev)
	}
	q.push(state("a", true))
	if ev := recv(t, q); ev.Type != Join {
		t.Fatalf("%+v, want a Join after the leave", ev)
	}
}

func TestEventQueueClosesOnStop(t *testing.T) {
	q := newEventQueue()
	go q.run()
	q.push(state("a", true)) // undelivered: stop must not wait for a reader
	q.stop()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-q.out:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("Events not closed after stop")
		}
	}
}
