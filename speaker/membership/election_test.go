package membership

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/speaker/election"
)

// speaker is the speaker's membership loop around a real Cluster: events feed
// an Election, and after settling it publishes its claims whenever they change
// (the protocol of package election).
type speaker struct {
	i    int
	name string
	c    *Cluster

	mu        sync.Mutex
	e         *election.Election
	published []netip.Addr
	acting    bool
}

const settle = 300 * time.Millisecond

func startSpeaker(t *testing.T, i int, vips []netip.Addr, join []netip.AddrPort) *speaker {
	t.Helper()
	c, err := New(Config{NodeName: fmt.Sprintf("node-%d", i), Addr: memberAddr(i), Key: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown() })
	s := &speaker{i: i, name: c.name, c: c, e: election.New(c.name)}
	// The informers' view, the same on every speaker.
	s.e.SetPool("lan", election.Pool{L2: labels.Everything()})
	for n := 1; n <= testMembers; n++ {
		s.e.SetNode(fmt.Sprintf("node-%d", n), election.Node{Ready: true})
	}
	for k, ip := range vips {
		s.e.SetService(fmt.Sprintf("ns/svc-%d", k), election.Service{
			Addresses: []election.Address{{IP: ip, Pool: "lan"}}, EndpointNodes: []string{"node-1"}})
	}
	if _, err := c.Join(context.Background(), join); err != nil {
		t.Fatal(err)
	}
	settled := time.After(settle)
	go func() {
		for {
			var ch election.Changes
			select {
			case ev, ok := <-c.Events():
				if !ok {
					return
				}
				s.mu.Lock()
				if ev.Type == Leave {
					ch = s.e.DeleteMember(ev.Member.Name)
				} else {
					ch = s.e.SetMember(ev.Member.Name, ev.Member.Meta.Claims)
				}
			case <-settled:
				s.mu.Lock()
				s.acting = true
			}
			claims := s.e.Claims(s.name)
			republish := slices.ContainsFunc(ch.Contested, func(ip netip.Addr) bool { o, _ := s.e.Owner(ip); return o == s.name })
			publish := s.acting && (!slices.Equal(claims, s.published) || republish)
			s.mu.Unlock()
			if publish {
				if n, err := c.SetMeta(context.Background(), Meta{Claims: claims}); err == nil {
					s.mu.Lock()
					s.published = claims[:n]
					s.mu.Unlock()
				}
			}
		}
	}()
	return s
}

// agreed returns the owner of every address if all speakers agree, announce
// exactly their own addresses and have published them.
func agreed(speakers []*speaker, vips []netip.Addr) (map[netip.Addr]string, bool) {
	var owners map[netip.Addr]string
	for _, s := range speakers {
		s.mu.Lock()
		mine := map[netip.Addr]string{}
		for _, ip := range vips {
			if o, ok := s.e.Owner(ip); ok {
				mine[ip] = o
			}
		}
		ok := s.acting && slices.Equal(s.e.Claims(s.name), s.published)
		s.mu.Unlock()
		if !ok || (owners != nil && !maps.Equal(owners, mine)) || len(mine) != len(vips) {
			return nil, false
		}
		owners = mine
	}
	return owners, true
}

// describe is each speaker's view, for a failure message.
func describe(speakers []*speaker, vips []netip.Addr) string {
	out := ""
	for _, s := range speakers {
		s.mu.Lock()
		owners := map[string]int{}
		for _, ip := range vips {
			o, _ := s.e.Owner(ip)
			owners[o]++
		}
		var members []string
		for _, m := range s.c.Members() {
			members = append(members, fmt.Sprintf("%s(%d claims)", m.Name, len(m.Meta.Claims)))
		}
		out += fmt.Sprintf("\n  %s: acting %v, claims %d, published %d, owners %v, members %v",
			s.name, s.acting, len(s.e.Claims(s.name)), len(s.published), owners, members)
		s.mu.Unlock()
	}
	return out
}

// waitAgreed waits until the speakers agree on owners that satisfy want.
func waitAgreed(t *testing.T, speakers []*speaker, vips []netip.Addr, timeout time.Duration, want func(map[netip.Addr]string) bool) map[netip.Addr]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if owners, ok := agreed(speakers, vips); ok && want(owners) {
			return owners
		}
		if time.Now().After(deadline) {
			t.Fatalf("speakers did not agree on owners within %v:%s", timeout, describe(speakers, vips))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestElectionOverMemberlist runs the election protocol over real memberlist
// clusters: four speakers agree on one owner per address, a killed owner's
// addresses move to survivors, and the restarted node takes nothing back.
func TestElectionOverMemberlist(t *testing.T) {
	if !inNetns(t) {
		return
	}
	var vips []netip.Addr
	for k := range 24 {
		vips = append(vips, netip.AddrFrom4([4]byte{192, 0, 2, byte(200 + k)}))
	}
	var speakers []*speaker
	for i := 1; i <= 4; i++ {
		speakers = append(speakers, startSpeaker(t, i, vips, []netip.AddrPort{peer(1)}))
	}
	anything := func(map[netip.Addr]string) bool { return true }
	owners := waitAgreed(t, speakers, vips, 10*time.Second, anything)
	count := map[string]int{}
	for _, o := range owners {
		count[o]++
	}
	t.Logf("owners after start: %v", count)

	victim := owners[vips[0]]
	var vi int
	for k, s := range speakers {
		if s.name == victim {
			vi = k
		}
	}
	t0 := time.Now()
	speakers[vi].c.Shutdown()
	survivors := slices.Delete(slices.Clone(speakers), vi, vi+1)
	after := waitAgreed(t, survivors, vips, 10*time.Second, func(o map[netip.Addr]string) bool {
		return !slices.Contains(slices.Collect(maps.Values(o)), victim)
	})
	t.Logf("%s killed: survivors agreed on new owners after %v", victim, time.Since(t0).Round(time.Millisecond))
	for ip, o := range owners {
		switch {
		case o == victim && after[ip] == victim:
			t.Fatalf("%s still owned by the dead %s", ip, victim)
		case o != victim && after[ip] != o:
			t.Fatalf("%s moved from the healthy %s to %s", ip, o, after[ip])
		}
	}

	// A generous bound: the agreement after the rejoin took over 10 s twice in
	// about 40 runs (once in CI); the cause is not established yet, and a
	// timeout prints every speaker's view to find it.
	speakers[vi] = startSpeaker(t, speakers[vi].i, vips, []netip.AddrPort{peer(survivors[0].i)})
	back := waitAgreed(t, speakers, vips, 30*time.Second, anything)
	if !maps.Equal(back, after) {
		t.Fatalf("the restarted %s changed owners (failback): %v -> %v", victim, after, back)
	}
	if got := speakers[vi].e.Claims(victim); len(got) != 0 {
		t.Fatalf("the restarted %s owns %v", victim, got)
	}
}
