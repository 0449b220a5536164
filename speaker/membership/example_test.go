package membership_test

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/ironlb/ironlb/speaker/election"
	"github.com/ironlb/ironlb/speaker/membership"
)

// The speaker's membership loop (compiled, not run: it needs a network).
func Example() {
	ctx := context.Background()
	self := "node-a"
	key, err := membership.ReadKeyFile("/etc/ironlb/memberlist/secretkey")
	if err != nil {
		panic(err)
	}
	c, err := membership.New(membership.Config{NodeName: self, Addr: netip.MustParseAddr("192.0.2.11"), Key: key})
	if err != nil {
		panic(err)
	}
	defer c.Shutdown()

	e := election.New(self)
	// ... the informers have synced and fed e.SetNode, e.SetPool, e.SetService.
	peers := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.12:7946"), netip.MustParseAddrPort("192.0.2.13:7946")}
	c.Join(ctx, peers) // an error only says no peer answered: maybe the first speaker
	c.SetPeers(peers)

	settled := time.After(300 * time.Millisecond)
	acting := false
	var published []netip.Addr
	for {
		var ch election.Changes
		select {
		case ev := <-c.Events():
			if ev.Type == membership.Leave {
				ch = e.DeleteMember(ev.Member.Name)
			} else {
				ch = e.SetMember(ev.Member.Name, ev.Member.Meta.Claims)
			}
		case <-settled:
			acting = true
		}
		if !acting {
			continue
		}
		// ... announce ch.Moves to self, stop those away from self.
		claims := e.Claims(self)
		republish := slices.ContainsFunc(ch.Contested, func(ip netip.Addr) bool { o, _ := e.Owner(ip); return o == self })
		if !slices.Equal(claims, published) || republish {
			n, _ := c.SetMeta(ctx, membership.Meta{Claims: claims})
			published = claims[:n]
		}
	}
}
