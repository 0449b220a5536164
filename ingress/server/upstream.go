package server

import (
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"
)

// Balancing is how the proxy spreads requests over the endpoints of a Service port.
type Balancing int

const (
	// RoundRobin takes endpoints in turn.
	RoundRobin Balancing = iota
	// LeastRequests takes the less busy of two endpoints chosen at random ("power of
	// two choices"): close to the least loaded endpoint at O(1) cost per request.
	LeastRequests
)

// endpoint is one backend address. Its state (in-flight requests, consecutive
// connection failures, ejection) is shared by every Table that lists the address, so
// a reconfiguration neither forgets an ejection nor resets the load picture.
type endpoint struct {
	addr     netip.AddrPort
	hostport string // addr formatted once, for request URLs

	inflight atomic.Int64
	fails    atomic.Int32
	ejected  atomic.Int64 // unix nanoseconds until which the endpoint is skipped

	idle idleConns // keep-alive connections of the direct path
}

func newEndpoint(a netip.AddrPort) *endpoint {
	return &endpoint{addr: a, hostport: a.String()}
}

// available: not ejected at now (unix nanoseconds).
func (e *endpoint) available(now int64) bool { return e.ejected.Load() <= now }

// failed records a connection failure and reports whether it ejected the endpoint:
// threshold consecutive failures eject it for ejectFor.
func (e *endpoint) failed(now int64, threshold int, ejectFor time.Duration) bool {
	if int(e.fails.Add(1)) < threshold {
		return false
	}
	e.fails.Store(0)
	e.ejected.Store(now + int64(ejectFor))
	return true
}

func (e *endpoint) succeeded() {
	if e.fails.Load() != 0 {
		e.fails.Store(0)
	}
}

// pool is the endpoints of one Upstream of one Table.
type pool struct {
	eps     []*endpoint
	next    atomic.Uint32
	service string // the Service as "namespace/name", the metrics' label
}

// pick chooses an endpoint that is not in tried. Ejected endpoints are avoided while
// another is available; when every untried endpoint is ejected one of them is used
// anyway (as nginx does when all servers of an upstream are down), so an ejection
// never turns into an outage by itself. Nil means every endpoint was tried.
func (p *pool) pick(lb Balancing, tried []*endpoint, now int64) *endpoint {
	n := len(p.eps)
	if n == 0 {
		return nil
	}
	if lb == LeastRequests && n > 1 {
		a, b := p.eps[rand.IntN(n)], p.eps[rand.IntN(n)]
		okA := !contains(tried, a) && a.available(now)
		okB := a != b && !contains(tried, b) && b.available(now)
		switch {
		case okA && okB:
			if b.inflight.Load() < a.inflight.Load() {
				return b
			}
			return a
		case okA:
			return a
		case okB:
			return b
		}
		return p.leastBusy(tried, now)
	}
	start := int(p.next.Add(1))
	var fallback *endpoint
	for i := range n {
		e := p.eps[(start+i)%n]
		if contains(tried, e) {
			continue
		}
		if e.available(now) {
			return e
		}
		if fallback == nil {
			fallback = e
		}
	}
	return fallback
}

// leastBusy scans for the untried endpoint with the fewest requests in flight,
// preferring available ones.
func (p *pool) leastBusy(tried []*endpoint, now int64) *endpoint {
	var best *endpoint
	bestAvail := false
	for _, e := range p.eps {
		if contains(tried, e) {
			continue
		}
		avail := e.available(now)
		if best == nil || (avail && !bestAvail) || (avail == bestAvail && e.inflight.Load() < best.inflight.Load()) {
			best, bestAvail = e, avail
		}
	}
	return best
}

func contains(es []*endpoint, e *endpoint) bool {
	for _, x := range es {
		if x == e {
			return true
		}
	}
	return false
}
