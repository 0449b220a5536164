package l2_test

import (
	"context"
	"log"
	"net/netip"

	"github.com/ironlb/ironlb/l2"
	"github.com/prometheus/client_golang/prometheus"
)

// The speaker's side: answer for what the election gave this node, and
// resolve conflicts by the documented rule.
func Example() {
	ctx := context.Background()
	var a *l2.Announcer
	ownsVIP := func(netip.Addr) bool { return true } // the speaker's election
	a, err := l2.New(l2.Config{
		Registerer: prometheus.NewRegistry(),
		OnConflict: func(c l2.Conflict) {
			log.Printf("%s on %s is also claimed by %s", c.VIP, c.Interface, c.TheirMAC)
			if ownsVIP(c.VIP) {
				_ = a.Reannounce(c.VIP)
			}
		},
		OnPlacement: func(p l2.Placement) {
			log.Printf("%s answered on %v %s", p.VIP, p.Interfaces, p.Reason)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = a.Run(ctx) }()
	defer a.Close()

	err = a.SetOwned(ctx, []l2.Announcement{
		{VIP: netip.MustParseAddr("192.0.2.200")},
		{VIP: netip.MustParseAddr("2001:db8::200"), Interfaces: []string{"eth1"}},
	})
	if err != nil {
		log.Print(err)
	}
}
