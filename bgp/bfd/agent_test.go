package bfd

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/ironlb/ironlb/bgp/internal/nslab"
)

// TestMain runs the agent instead of the tests when the lab re-executes this
// binary inside a namespace.
func TestMain(m *testing.M) { nslab.Main(m, serveAgent()) }

// rawSend is a datagram the agent sends from an ad hoc socket.
type rawSend struct {
	From, To netip.AddrPort
	TTL      int
	Packets  [][]byte
}

// serveAgent returns the handler of an agent that runs a Server in its
// namespace: "set" (SessionConfig), "remove" (peer address), "sessions",
// "close"; "send" (rawSend, for crafted packets) and "recv" (the first
// datagram to port 3784, see received); state changes are sent as events.
func serveAgent() func(ctx context.Context, c *nslab.AgentConn, op string, body json.RawMessage) (any, error) {
	var srv *Server
	return func(ctx context.Context, c *nslab.AgentConn, op string, body json.RawMessage) (any, error) {
		if srv == nil {
			srv = NewServer(ServerConfig{OnChange: func(ch Change) { c.Emit(ch) }})
		}
		switch op {
		case "set":
			var sc SessionConfig
			if err := json.Unmarshal(body, &sc); err != nil {
				return nil, err
			}
			return nil, srv.Set(sc)
		case "remove":
			var a netip.Addr
			if err := json.Unmarshal(body, &a); err != nil {
				return nil, err
			}
			srv.Remove(a)
			return nil, nil
		case "sessions":
			return srv.Sessions(), nil
		case "close":
			return nil, srv.Close()
		case "recv":
			return recvOne()
		case "send":
			var r rawSend
			if err := json.Unmarshal(body, &r); err != nil {
				return nil, err
			}
			conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(r.From))
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			if err := ipv4.NewConn(conn).SetTTL(r.TTL); err != nil {
				return nil, err
			}
			for _, p := range r.Packets {
				if _, err := conn.WriteToUDPAddrPort(p, r.To); err != nil {
					return nil, err
				}
			}
			return nil, nil
		}
		return nil, fmt.Errorf("unknown op %q", op)
	}
}

// datagram is a packet "recv" caught, with its TTL as received.
type datagram struct {
	From netip.AddrPort
	TTL  int
	Data []byte
}

// recvOne listens on the BFD port (IPv4) and returns the first datagram,
// waiting 5s at most.
func recvOne() (datagram, error) {
	c, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", Port))
	if err != nil {
		return datagram{}, err
	}
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		return datagram{}, err
	}
	if err := pc.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return datagram{}, err
	}
	buf := make([]byte, 512)
	n, cm, src, err := pc.ReadFrom(buf)
	if err != nil {
		return datagram{}, err
	}
	return datagram{From: src.(*net.UDPAddr).AddrPort(), TTL: cm.TTL, Data: buf[:n]}, nil
}

type agent struct {
	*nslab.Agent
	t testing.TB
}

func startAgent(t testing.TB, l *nslab.Lab, name, ns string) *agent {
	t.Helper()
	a, err := l.StartAgent(name, ns)
	if err != nil {
		t.Fatal(err)
	}
	return &agent{Agent: a, t: t}
}

func (a *agent) call(op string, body, res any) { a.t.Helper(); a.MustCall(a.t, op, body, res) }

func (a *agent) session(peer netip.Addr) SessionStatus {
	a.t.Helper()
	var ss []SessionStatus
	a.call("sessions", nil, &ss)
	for _, s := range ss {
		if s.Peer == peer {
			return s
		}
	}
	a.t.Fatalf("no session with %s", peer)
	return SessionStatus{}
}

// waitChange waits for a state change of peer to state, received at or after
// index from; it returns the change and its index.
func (a *agent) waitChange(from int, timeout time.Duration, peer netip.Addr, state State) (Change, int) {
	a.t.Helper()
	var c Change
	i, err := a.WaitEvent(from, timeout, func(raw json.RawMessage) bool {
		return json.Unmarshal(raw, &c) == nil && c.Peer == peer && c.State == state
	})
	if err != nil {
		a.t.Fatalf("waiting for %s to go %s: %v\n%s", peer, state, err, a.Tail())
	}
	return c, i
}
