package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// Addresses used by the unit tests (documentation ranges, as in the lab).
var (
	nodeIP   = netip.MustParseAddr("192.0.2.11")
	nodeIP6  = netip.MustParseAddr("2001:db8::11")
	podCIDR  = netip.MustParsePrefix("198.18.0.0/16")
	podCIDR6 = netip.MustParsePrefix("2001:db8:42::/64")
	extIP    = netip.MustParseAddr("198.51.100.10") // a client behind the router
	extIP6   = netip.MustParseAddr("2001:db8:99::10")
	localPod = netip.MustParseAddr("198.18.1.5") // a pod on this node (not an endpoint)
)

// env is a Proxier programming two in-memory iptables (IPv4 and IPv6).
type env struct {
	t      testing.TB
	p      *Proxier
	m4, m6 *iptables.Model
	ct     *fakeConntrack
	hc     *memNet
}

type fakeConntrack struct {
	mu    sync.Mutex
	flows map[iptables.Family][]Flow
	calls int
}

func (f *fakeConntrack) DeleteFlows(family iptables.Family, stale func(Flow) bool) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	kept := f.flows[family][:0]
	n := 0
	for _, fl := range f.flows[family] {
		if stale(fl) {
			n++
			continue
		}
		kept = append(kept, fl)
	}
	f.flows[family] = kept
	return n, nil
}

func newEnv(t testing.TB, mods ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, m4: iptables.NewModel(iptables.IPv4), m6: iptables.NewModel(iptables.IPv6),
		ct: &fakeConntrack{flows: map[iptables.Family][]Flow{}}, hc: newMemNet()}
	cfg := Config{
		NodeName:     "node1",
		IPTables:     []iptables.Interface{e.m4, e.m6},
		ClusterCIDRs: []netip.Prefix{podCIDR, podCIDR6},
		NodeIPs:      []netip.Addr{nodeIP, nodeIP6},
		Conntrack:    e.ct,
		// Health check servers listen in memory: unit tests open no sockets.
		HealthCheckListen: e.hc.listen,
	}
	for _, m := range mods {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	t.Cleanup(p.health.close)
	return e
}

func (e *env) sync() {
	e.t.Helper()
	if err := e.p.syncOnce(context.Background()); err != nil {
		e.t.Fatalf("sync: %v", err)
	}
}

func (e *env) model(a netip.Addr) *iptables.Model {
	if a.Is4() {
		return e.m4
	}
	return e.m6
}

// trace sends the first packet of a connection and returns every outcome.
func (e *env) trace(p iptables.Packet) []iptables.Outcome {
	e.t.Helper()
	local := []netip.Addr{nodeIP, nodeIP6}
	tr := iptables.Tracer{Model: e.model(p.Dst), LocalAddrs: local}
	if p.Protocol == "" {
		p.Protocol = "tcp"
	}
	if !p.FromLocal && p.InInterface == "" {
		p.InInterface = "eth0"
	}
	out, err := tr.Trace(p)
	if err != nil {
		e.t.Fatalf("trace %+v: %v", p, err)
	}
	return out
}

func pkt(src, dst string, port uint16) iptables.Packet {
	return iptables.Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), DstPort: port, Protocol: "tcp"}
}

func fromNode(dst string, port uint16) iptables.Packet {
	d := netip.MustParseAddr(dst)
	src := nodeIP
	if d.Is6() {
		src = nodeIP6
	}
	return iptables.Packet{Src: src, Dst: d, DstPort: port, Protocol: "tcp", FromLocal: true}
}

// verdict summarises outcomes: the set of endpoints reached (DNAT then
// ACCEPT), and what else happened.
type verdict struct {
	endpoints []string
	masq      string // "all", "none" or "mixed" (over DNATed outcomes)
	other     []string
}

func summarize(outs []iptables.Outcome) verdict {
	var v verdict
	eps := map[string]bool{}
	other := map[string]bool{}
	nm, nn := 0, 0
	for _, o := range outs {
		switch {
		case o.Verdict == iptables.Accept && o.DNAT:
			eps[o.Dst.String()] = true
			if o.Masquerade {
				nm++
			} else {
				nn++
			}
		case o.Verdict == iptables.Accept && o.Local:
			other["LOCAL"] = true
		case o.Verdict == iptables.Accept:
			other["FORWARD"] = true
		default:
			other[string(o.Verdict)] = true
		}
	}
	for k := range eps {
		v.endpoints = append(v.endpoints, k)
	}
	sort.Strings(v.endpoints)
	for k := range other {
		v.other = append(v.other, k)
	}
	sort.Strings(v.other)
	switch {
	case nm > 0 && nn > 0:
		v.masq = "mixed"
	case nm > 0:
		v.masq = "all"
	case nn > 0:
		v.masq = "none"
	}
	return v
}

func (v verdict) String() string {
	return fmt.Sprintf("endpoints=%v masq=%s other=%v", v.endpoints, v.masq, v.other)
}

// Object builders.

type svcOpt func(*v1.Service)

func service(ns, name, clusterIP string, opts ...svcOpt) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeClusterIP,
			ClusterIP:  clusterIP,
			ClusterIPs: []string{clusterIP},
			Ports:      []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func withPorts(ports ...v1.ServicePort) svcOpt { return func(s *v1.Service) { s.Spec.Ports = ports } }

func nodePort(np int32) svcOpt {
	return func(s *v1.Service) {
		if s.Spec.Type == v1.ServiceTypeClusterIP {
			s.Spec.Type = v1.ServiceTypeNodePort
		}
		s.Spec.Ports[0].NodePort = np
	}
}

func loadBalancer(ips ...string) svcOpt {
	return func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
		}
	}
}

func externalIPs(ips ...string) svcOpt {
	return func(s *v1.Service) { s.Spec.ExternalIPs = ips }
}

func etpLocal(hcPort int32) svcOpt {
	return func(s *v1.Service) {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		s.Spec.HealthCheckNodePort = hcPort
	}
}

func itpLocal() svcOpt {
	return func(s *v1.Service) {
		p := v1.ServiceInternalTrafficPolicyLocal
		s.Spec.InternalTrafficPolicy = &p
	}
}

func affinity(seconds int32) svcOpt {
	return func(s *v1.Service) {
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: &seconds}}
	}
}

func sourceRanges(r ...string) svcOpt {
	return func(s *v1.Service) { s.Spec.LoadBalancerSourceRanges = r }
}

func dualStack(ip6 string) svcOpt {
	return func(s *v1.Service) {
		s.Spec.ClusterIPs = append(s.Spec.ClusterIPs, ip6)
		s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
	}
}

// ep describes one endpoint of a slice.
type ep struct {
	ip          string
	node        string
	notReady    bool
	terminating bool
	notServing  bool
	zones       []string
}

func slice(ns, svcName, sliceName string, ports []discovery.EndpointPort, eps ...ep) *discovery.EndpointSlice {
	es := &discovery.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: sliceName, Labels: map[string]string{discovery.LabelServiceName: svcName}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, e := range eps {
		if strings.Contains(e.ip, ":") {
			es.AddressType = discovery.AddressTypeIPv6
		}
		ready, serving, term := !e.notReady, !e.notServing, e.terminating
		d := discovery.Endpoint{Addresses: []string{e.ip},
			Conditions: discovery.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &term}}
		if e.node != "" {
			n := e.node
			d.NodeName = &n
		}
		if len(e.zones) > 0 {
			d.Hints = &discovery.EndpointHints{}
			for _, z := range e.zones {
				d.Hints.ForZones = append(d.Hints.ForZones, discovery.ForZone{Name: z})
			}
		}
		es.Endpoints = append(es.Endpoints, d)
	}
	return es
}

func epPort(name string, port int32, proto v1.Protocol) discovery.EndpointPort {
	return discovery.EndpointPort{Name: &name, Port: &port, Protocol: &proto}
}

func httpPort(port int32) []discovery.EndpointPort {
	return []discovery.EndpointPort{epPort("http", port, v1.ProtocolTCP)}
}

func (e *env) add(objs ...any) {
	for _, o := range objs {
		switch x := o.(type) {
		case *v1.Service:
			e.p.tracker.setService(x)
		case *discovery.EndpointSlice:
			e.p.tracker.setSlice(x)
		case *v1.Node:
			e.p.tracker.setNode(x)
		default:
			e.t.Fatalf("cannot add %T", o)
		}
	}
}

func (e *env) deleteService(ns, name string) {
	e.p.tracker.deleteService(types.NamespacedName{Namespace: ns, Name: name})
}

// checkConsistent asserts the invariants that must hold after every sync:
// every IRONLB chain is referenced (except the canary), the jump rules are in
// place, and no rule jumps to a missing chain (the model refuses those, so a
// sync that succeeded cannot have made one).
func checkConsistent(t testing.TB, m *iptables.Model) {
	t.Helper()
	for _, tb := range []iptables.Table{iptables.TableNAT, iptables.TableFilter} {
		for _, c := range m.Chains(tb) {
			// The canary is never jumped to; the mark chain only when a rule needs it.
			if !strings.HasPrefix(c, chainPrefix) || c == chainCanary || c == chainMarkMasq {
				continue
			}
			if m.References(tb, c) == 0 {
				t.Errorf("%s %s: chain %s is an orphan (no rule jumps to it)", m.Family(), tb, c)
			}
		}
	}
	for _, j := range jumpRules() {
		ok, err := m.HasRule(context.Background(), j.table, j.chain, j.args...)
		if err != nil || !ok {
			t.Errorf("%s: jump rule %s %s %v missing (%v)", m.Family(), j.table, j.chain, j.args, err)
		}
	}
}

func ironlbChains(m *iptables.Model, tb iptables.Table) []string {
	var out []string
	for _, c := range m.Chains(tb) {
		if strings.HasPrefix(c, chainPrefix) {
			out = append(out, c)
		}
	}
	return slices.Clip(out)
}

// memNet is an in-memory network for health check servers: listen registers
// an address, dial connects to it through net.Pipe.
type memNet struct {
	mu  sync.Mutex
	lns map[string]*memListener
}

func newMemNet() *memNet { return &memNet{lns: map[string]*memListener{}} }

type memListener struct {
	addr   string
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	net    *memNet
}

func (m *memNet) listen(_ context.Context, _, addr string) (net.Listener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.lns[addr]; ok {
		return nil, fmt.Errorf("listen %s: address already in use", addr)
	}
	l := &memListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{}), net: m}
	m.lns[addr] = l
	return l, nil
}

func (m *memNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	_, port, _ := net.SplitHostPort(addr)
	m.mu.Lock()
	l := m.lns[":"+port]
	m.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	}
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("dial %s: connection refused", addr)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *memListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *memListener) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.net.mu.Lock()
		delete(l.net.lns, l.addr)
		l.net.mu.Unlock()
	})
	return nil
}

func (l *memListener) Addr() net.Addr { return memAddr(l.addr) }

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }
