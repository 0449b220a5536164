package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ironlb/ironlb/bgp/internal/nslab"
)

// birdConf makes BIRD 2 the router: one IPv4 eBGP session with the node,
// with BFD (100ms x 3), and one IPv6 session; everything received is
// imported and installed in the kernel.
const birdConf = `router id 192.0.2.1;
protocol device {}
protocol bfd {
  interface "*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
}
protocol kernel k4 { ipv4 { export all; }; }
protocol kernel k6 { ipv6 { export all; }; }
protocol bgp node4 {
  local 192.0.2.1 as 64512;
  neighbor 192.0.2.11 as 64600;
  bfd on;
  ipv4 { import all; export none; };
}
protocol bgp node6 {
  local 2001:db8::1 as 64512;
  neighbor 2001:db8::11 as 64600;
  ipv6 { import all; export none; };
}
`

// birdRoute returns "birdc show route all for <prefix>", or "" when BIRD has
// no route for it.
func birdRoute(ctx context.Context, l *nslab.Lab, ctl string, prefix netip.Prefix) (string, error) {
	out, err := l.Birdc(ctx, ctl, "show", "route", "all", "for", prefix.String())
	if strings.Contains(out, "Network not found") { // birdc then exits with 1
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return out, nil
}

// TestBIRD runs a Manager against BIRD 2: sessions over IPv4 (with BFD) and
// IPv6, the VIPs arrive with the right next hops and communities, and are
// withdrawn by Apply and by Stop.
func TestBIRD(t *testing.T) {
	l := nslab.New(t)
	ctl := l.StartBIRD(t, birdConf)
	n := startNode(t, l, "node")
	vip, vip6 := pfx("203.0.113.10/32"), pfx("2001:db8:1::10/128")
	gone := pfx("203.0.113.30/32")
	peers := []Peer{
		{Address: nslab.RouterIP, ASN: routerASN, BFD: &BFD{MinTx: 100 * time.Millisecond, MinRx: 100 * time.Millisecond}},
		{Address: nslab.RouterIP6, ASN: routerASN},
	}
	attrs := Path{Prefix: vip, Communities: []Community{65000<<16 | 100, CommunityNoExport}, LargeCommunities: []LargeCommunity{{nodeASN, 1, 2}}}
	n.apply(Desired{Peers: peers, Paths: []Path{attrs, {Prefix: vip6}, {Prefix: gone}}})

	wait := func(t *testing.T, prefix netip.Prefix, check func(route string) error) {
		t.Helper()
		err := nslab.Eventually(30*time.Second, 100*time.Millisecond, func() error {
			r, err := birdRoute(context.Background(), l, ctl, prefix)
			if err != nil {
				return err
			}
			return check(r)
		})
		if err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
	}
	has := func(parts ...string) func(string) error {
		return func(r string) error {
			for _, p := range parts {
				if !strings.Contains(r, p) {
					return fmt.Errorf("route lacks %q:\n%s", p, r)
				}
			}
			return nil
		}
	}
	absent := func(r string) error {
		if r != "" {
			return fmt.Errorf("still there:\n%s", r)
		}
		return nil
	}

	t.Run("sessions", func(t *testing.T) {
		for _, a := range []netip.Addr{nslab.RouterIP, nslab.RouterIP6} {
			n.waitEvent(0, 30*time.Second, a, EventSessionUp)
		}
		n.waitEvent(0, 30*time.Second, nslab.RouterIP, EventBFDUp)
		err := nslab.Eventually(10*time.Second, 100*time.Millisecond, func() error {
			out, err := l.Birdc(context.Background(), ctl, "show", "bfd", "sessions")
			if err != nil {
				return err
			}
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) >= 3 && f[0] == "192.0.2.11" && f[2] == "Up" {
					return nil
				}
			}
			return fmt.Errorf("BIRD's BFD sessions:\n%s", out)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("routes and attributes", func(t *testing.T) {
		wait(t, vip, has("via 192.0.2.11", "BGP.community: (65000,100) (65535,65281)", "BGP.large_community: (64600, 1, 2)", "BGP.as_path: 64600"))
		wait(t, vip6, has("via 2001:db8::11"))
		out, err := l.Exec(context.Background(), l.Router, "ip", "-6", "route", "show", vip6.String())
		if err != nil || !strings.Contains(out, "via 2001:db8::11") {
			t.Errorf("kernel route %q, %v", out, err)
		}
	})
	t.Run("withdraw by Apply", func(t *testing.T) {
		n.apply(Desired{Peers: peers, Paths: []Path{attrs, {Prefix: vip6}}})
		wait(t, gone, absent)
		wait(t, vip, has("via 192.0.2.11"))
	})
	t.Run("withdraw by Stop", func(t *testing.T) {
		n.call("stop", nil, nil)
		wait(t, vip, absent)
		wait(t, vip6, absent)
	})
}
