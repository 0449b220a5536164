package bgp_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironlb/ironlb/bgp"
)

// A speaker configures one session per router and one path per VIP. This
// example is not run: it would open a BGP session.
func Example() {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m, err := bgp.New(ctx, bgp.Config{
		RouterID:   netip.MustParseAddr("192.0.2.11"),
		ASN:        64600,
		Registerer: reg,
		OnEvent:    func(e bgp.Event) { fmt.Println(e.Peer, e.Type, e.Detail) },
	})
	if err != nil {
		panic(err)
	}
	defer m.Stop(ctx)

	community, _ := bgp.ParseCommunity("65000:100")
	prefix, _ := bgp.VIPPrefix(netip.MustParseAddr("203.0.113.10"), 0, 0)
	err = m.Apply(ctx, bgp.Desired{
		Peers: []bgp.Peer{{
			Address:  netip.MustParseAddr("192.0.2.1"),
			ASN:      64512,
			HoldTime: 3 * time.Second,
			BFD:      &bgp.BFD{MinTx: 100 * time.Millisecond, MinRx: 100 * time.Millisecond, Multiplier: 3},
		}},
		Paths: []bgp.Path{{Prefix: prefix, Communities: []bgp.Community{community, bgp.CommunityNoExport}}},
	})
	if err != nil {
		fmt.Println(err) // nothing changed if the desired state was invalid
	}
	status, _ := m.Status(ctx)
	for _, s := range status {
		fmt.Println(s.Address, s.State, s.PrefixesAdvertised)
	}
}

func ExampleParseCommunity() {
	for _, s := range []string{"65000:100", "no-export", "65535:666", "70000:1"} {
		c, err := bgp.ParseCommunity(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s = %#08x\n", c, uint32(c))
	}
	// Output:
	// 65000:100 = 0xfde80064
	// no-export = 0xffffff01
	// blackhole = 0xffff029a
	// community "70000:1": ASN: "70000" does not fit 16 bits
}

func ExampleVIPPrefix() {
	vip := netip.MustParseAddr("203.0.113.77")
	host, _ := bgp.VIPPrefix(vip, 0, 0)
	aggregated, _ := bgp.VIPPrefix(vip, 24, 64)
	fmt.Println(host, aggregated)
	// Output: 203.0.113.77/32 203.0.113.0/24
}
