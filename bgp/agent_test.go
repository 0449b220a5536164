package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ironlb/ironlb/bgp/internal/nslab"
)

// TestMain runs the agent instead of the tests when the lab re-executes this
// binary inside a namespace (see nslab.StartAgent).
func TestMain(m *testing.M) { nslab.Main(m, serveAgent()) }

// agentConfig is the part of Config the tests choose.
type agentConfig struct {
	RouterID netip.Addr
	ASN      uint32
}

// metricSample is one series of the agent's registry.
type metricSample struct {
	Name, Peer string
	Value      float64
}

// serveAgent returns the handler of an agent that runs a Manager in its
// namespace for the test that started it: "new" (agentConfig), "apply"
// (Desired), "status", "stop" (returns how long Stop took) and "metrics";
// Manager events are sent as they happen.
func serveAgent() func(ctx context.Context, c *nslab.AgentConn, op string, body json.RawMessage) (any, error) {
	var (
		m   *Manager
		reg *prometheus.Registry
	)
	return func(ctx context.Context, c *nslab.AgentConn, op string, body json.RawMessage) (any, error) {
		if op != "new" && m == nil {
			return nil, fmt.Errorf("no manager: call new first")
		}
		switch op {
		case "new":
			var ac agentConfig
			if err := json.Unmarshal(body, &ac); err != nil {
				return nil, err
			}
			reg = prometheus.NewRegistry()
			var err error
			m, err = New(ctx, Config{RouterID: ac.RouterID, ASN: ac.ASN, Registerer: reg, OnEvent: func(e Event) { c.Emit(e) }})
			return nil, err
		case "apply":
			var d Desired
			if err := json.Unmarshal(body, &d); err != nil {
				return nil, err
			}
			return nil, m.Apply(ctx, d)
		case "status":
			return m.Status(ctx)
		case "stop":
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			start := time.Now()
			err := m.Stop(ctx)
			return time.Since(start), err
		case "metrics":
			mfs, err := reg.Gather()
			if err != nil {
				return nil, err
			}
			var out []metricSample
			for _, mf := range mfs {
				for _, mt := range mf.GetMetric() {
					s := metricSample{Name: mf.GetName()}
					for _, l := range mt.GetLabel() {
						if l.GetName() == "peer" {
							s.Peer = l.GetValue()
						}
					}
					switch {
					case mt.GetGauge() != nil:
						s.Value = mt.GetGauge().GetValue()
					case mt.GetCounter() != nil:
						s.Value = mt.GetCounter().GetValue()
					}
					out = append(out, s)
				}
			}
			return out, nil
		}
		return nil, fmt.Errorf("unknown op %q", op)
	}
}

// node is the test side of a Manager running in the lab's node namespace.
type node struct {
	*nslab.Agent
	t testing.TB
}

// startNode starts an agent in the node namespace with a Manager (router ID
// 192.0.2.11, AS 64600).
func startNode(t testing.TB, l *nslab.Lab, name string) *node {
	t.Helper()
	a, err := l.StartAgent(name, l.Node)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{Agent: a, t: t}
	n.call("new", agentConfig{RouterID: nslab.NodeIP, ASN: 64600}, nil)
	return n
}

func (n *node) call(op string, body, res any) { n.t.Helper(); n.MustCall(n.t, op, body, res) }

func (n *node) apply(d Desired) { n.t.Helper(); n.call("apply", d, nil) }

func (n *node) status() map[netip.Addr]PeerStatus {
	n.t.Helper()
	var st []PeerStatus
	n.call("status", nil, &st)
	out := map[netip.Addr]PeerStatus{}
	for _, s := range st {
		out[s.Address] = s
	}
	return out
}

func (n *node) metrics() []metricSample {
	n.t.Helper()
	var out []metricSample
	n.call("metrics", nil, &out)
	return out
}

// waitEvent waits for an event of type typ for peer, received at or after
// index from, and returns its index.
func (n *node) waitEvent(from int, timeout time.Duration, peer netip.Addr, typ EventType) int {
	n.t.Helper()
	i, err := n.WaitEvent(from, timeout, func(raw json.RawMessage) bool {
		var e Event
		return json.Unmarshal(raw, &e) == nil && e.Peer == peer && e.Type == typ
	})
	if err != nil {
		n.t.Fatalf("waiting for %s of %s: %v\n%s", typ, peer, err, n.Tail())
	}
	return i
}
