package bfd

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ironlb/ironlb/bgp/internal/nslab"
)

// bfddConf gives FRR's bfdd one IPv4 and one IPv6 session toward the node,
// 100ms x 3.
const bfddConf = `bfd
 peer 192.0.2.11 local-address 192.0.2.1
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 !
 peer 2001:db8::11 local-address 2001:db8::1
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 !
!
`

// frrPeer is one entry of "show bfd peers json".
type frrPeer struct {
	Peer             string `json:"peer"`
	Status           string `json:"status"`
	Diagnostic       string `json:"diagnostic"`
	RemoteDiagnostic string `json:"remote-diagnostic"`
	ID               uint32 `json:"id"` // FRR's discriminator
	RemoteID         uint32 `json:"remote-id"`
	RemoteTx         int    `json:"remote-transmit-interval"`
	RemoteRx         int    `json:"remote-receive-interval"`
	RemoteDetectMult int    `json:"remote-detect-multiplier"`
}

func frrPeers(ctx context.Context, f *nslab.FRR) (map[netip.Addr]frrPeer, error) {
	var list []frrPeer
	if err := f.JSON(ctx, "show bfd peers json", &list); err != nil {
		return nil, err
	}
	out := map[netip.Addr]frrPeer{}
	for _, p := range list {
		if a, err := netip.ParseAddr(p.Peer); err == nil {
			out[a] = p
		}
	}
	return out, nil
}

// waitFRRPeer waits until FRR's view of peer satisfies ok.
func waitFRRPeer(t *testing.T, f *nslab.FRR, peer netip.Addr, timeout time.Duration, ok func(frrPeer) error) frrPeer {
	t.Helper()
	var p frrPeer
	err := nslab.Eventually(timeout, 20*time.Millisecond, func() error {
		ps, err := frrPeers(context.Background(), f)
		if err != nil {
			return err
		}
		p = ps[peer]
		return ok(p)
	})
	if err != nil {
		t.Fatalf("FRR peer %s: %v", peer, err)
	}
	return p
}

func status(want string) func(frrPeer) error {
	return func(p frrPeer) error {
		if p.Status != want {
			return fmt.Errorf("status %q (diagnostic %q), want %q", p.Status, p.Diagnostic, want)
		}
		return nil
	}
}

// TestFRR runs sessions against FRR's bfdd over IPv4 and IPv6: they come Up
// at both ends at the configured rate, a timer change goes through a Poll
// Sequence without a flap, FRR notices the node's silence after its detection
// time, the node notices FRR's, and removing a session is seen as
// administrative.
func TestFRR(t *testing.T) {
	l := nslab.New(t)
	f := l.StartFRR(t, map[string]string{"bfdd": bfddConf})
	n := startAgent(t, l, "node", l.Node)
	for _, peer := range []netip.Addr{nslab.RouterIP, nslab.RouterIP6} {
		n.call("set", SessionConfig{Peer: peer, DesiredMinTx: 100 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3}, nil)
	}

	t.Run("up", func(t *testing.T) {
		for _, pair := range [][2]netip.Addr{{nslab.RouterIP, nslab.NodeIP}, {nslab.RouterIP6, nslab.NodeIP6}} {
			router, node := pair[0], pair[1]
			n.waitChange(0, 20*time.Second, router, StateUp)
			// After the handshake both sides leave the one-second rate:
			// FRR sees our 100ms, which we announce with a Poll Sequence.
			p := waitFRRPeer(t, f, node, 10*time.Second, func(p frrPeer) error {
				if p.Status != "up" || p.RemoteTx != 100 || p.RemoteRx != 100 || p.RemoteDetectMult != 3 {
					return fmt.Errorf("%+v", p)
				}
				return nil
			})
			s := n.session(router)
			if s.State != StateUp || s.RemoteDiscr != p.ID || s.TxInterval != 100*time.Millisecond || s.DetectTime != 300*time.Millisecond {
				t.Errorf("our session with %s: %+v", router, s)
			}
		}
	})

	t.Run("poll sequence", func(t *testing.T) {
		before := n.session(nslab.RouterIP)
		events := len(n.Events())
		n.call("set", SessionConfig{Peer: nslab.RouterIP, DesiredMinTx: 200 * time.Millisecond, RequiredMinRx: 100 * time.Millisecond, DetectMult: 3}, nil)
		waitFRRPeer(t, f, nslab.NodeIP, 10*time.Second, func(p frrPeer) error {
			if p.Status != "up" || p.RemoteTx != 200 {
				return fmt.Errorf("%+v", p)
			}
			return nil
		})
		after := n.session(nslab.RouterIP)
		if after.State != StateUp || !after.Since.Equal(before.Since) || len(n.Events()) != events {
			t.Fatalf("session flapped: before %+v, after %+v", before, after)
		}
	})

	t.Run("node silent", func(t *testing.T) {
		events := len(n.Events())
		if err := l.Cut(); err != nil {
			t.Fatal(err)
		}
		cut := time.Now()
		p := waitFRRPeer(t, f, nslab.NodeIP6, 5*time.Second, status("down"))
		t.Logf("FRR saw the node's IPv6 session down after %v (detection time 300ms, polled every 20ms): %q", time.Since(cut), p.Diagnostic)
		if p.Diagnostic != "control detection time expired" {
			t.Errorf("diagnostic %q", p.Diagnostic)
		}
		pairs := [][2]netip.Addr{{nslab.RouterIP, nslab.NodeIP}, {nslab.RouterIP6, nslab.NodeIP6}}
		for _, pair := range pairs {
			waitFRRPeer(t, f, pair[1], 5*time.Second, status("down"))
			n.waitChange(events, 5*time.Second, pair[0], StateDown)
		}
		events = len(n.Events())
		if err := l.Mend(); err != nil {
			t.Fatal(err)
		}
		for _, pair := range pairs {
			n.waitChange(events, 20*time.Second, pair[0], StateUp)
			waitFRRPeer(t, f, pair[1], 10*time.Second, status("up"))
		}
	})

	t.Run("remove is administrative", func(t *testing.T) {
		n.call("remove", nslab.RouterIP6, nil)
		p := waitFRRPeer(t, f, nslab.NodeIP6, 5*time.Second, status("down"))
		if p.RemoteDiagnostic != "administratively down" {
			t.Errorf("FRR's remote diagnostic %q, want administratively down", p.RemoteDiagnostic)
		}
	})

	t.Run("router silent", func(t *testing.T) {
		events := len(n.Events())
		f.Daemon("bfdd").Kill()
		c, _ := n.waitChange(events, 5*time.Second, nslab.RouterIP, StateDown)
		if c.Diag != DiagControlDetectExpired || c.Old != StateUp {
			t.Errorf("change %+v", c)
		}
	})
}

// TestSingleHop checks both halves of RFC 5881's single-hop rules from the
// router namespace: the node sends from a port in 49152-65535 with TTL 255,
// and of valid packets sent to it with TTL 254 and then with TTL 255 only the
// last is accepted (the GTSM check); it moves the session from Down to Init.
func TestSingleHop(t *testing.T) {
	l := nslab.New(t)
	n := startAgent(t, l, "node", l.Node)
	r := startAgent(t, l, "router", l.Router)
	n.call("set", SessionConfig{Peer: nslab.RouterIP}, nil)

	var d datagram
	r.call("recv", nil, &d)
	p, err := Unmarshal(d.Data)
	if err != nil {
		t.Fatal(err)
	}
	if d.TTL != 255 || d.From.Addr() != nslab.NodeIP || d.From.Port() < 49152 {
		t.Errorf("node's packet came from %s with TTL %d", d.From, d.TTL)
	}
	if p.State != StateDown || p.YourDiscriminator != 0 || p.DesiredMinTxInterval < time.Second || p.DetectMult != DefaultDetectMult {
		t.Errorf("node's first packet %+v: want Down, no remote discriminator, at most one per second", p)
	}

	down, err := ControlPacket{State: StateDown, DetectMult: 3, MyDiscriminator: 77,
		DesiredMinTxInterval: time.Second, RequiredMinRxInterval: time.Second}.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	from := netip.AddrPortFrom(nslab.RouterIP, 49999)
	to := netip.AddrPortFrom(nslab.NodeIP, Port)
	r.call("send", rawSend{From: from, To: to, TTL: 254, Packets: [][]byte{down, down, down, down, down}}, nil)
	r.call("send", rawSend{From: from, To: to, TTL: 255, Packets: [][]byte{down}}, nil)
	// Packets are read in order from one socket: the TTL-255 one being
	// processed means the TTL-254 ones were too.
	n.waitChange(0, 5*time.Second, nslab.RouterIP, StateInit)
	s := n.session(nslab.RouterIP)
	if s.Received != 1 || s.RemoteDiscr != 77 {
		t.Fatalf("session after 5 packets with TTL 254 and 1 with TTL 255: %+v", s)
	}
}
