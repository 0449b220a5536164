package proxy

import (
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// Flow is the part of a conntrack entry that decides whether it is stale: the
// original destination (what the client sent to) and the reply source (the
// endpoint that answers after DNAT).
type Flow struct {
	Protocol    uint8 // unix.IPPROTO_UDP, ...
	OrigDst     netip.AddrPort
	ReplySource netip.AddrPort
}

// ConntrackCleaner deletes conntrack entries for which stale returns true.
// The proxy calls it after a sync in which UDP endpoints went away, so that
// clients do not keep sending to an endpoint that is gone.
type ConntrackCleaner interface {
	DeleteFlows(family iptables.Family, stale func(Flow) bool) (int, error)
}

// staleMatcher says which UDP flows point at an endpoint that no longer serves
// their Service: the original destination is a frontend of the Service (or its
// NodePort, when the Service still has serving endpoints) and the reply
// source is not one of the serving endpoints.
type staleMatcher struct {
	frontends map[netip.AddrPort]map[netip.AddrPort]bool
	nodePorts map[uint16]map[netip.AddrPort]bool
}

func newStaleMatcher(svcs []staleService) *staleMatcher {
	m := &staleMatcher{frontends: map[netip.AddrPort]map[netip.AddrPort]bool{}, nodePorts: map[uint16]map[netip.AddrPort]bool{}}
	for _, s := range svcs {
		serving := map[netip.AddrPort]bool{}
		for _, e := range s.serving {
			serving[e] = true
		}
		for _, f := range s.frontends {
			m.frontends[f] = serving
		}
		// NodePort flows are matched by port only; with no serving endpoint
		// at all that would hit unrelated traffic to the same port.
		if s.nodePort != 0 && len(serving) > 0 {
			m.nodePorts[s.nodePort] = serving
		}
	}
	return m
}

func (m *staleMatcher) stale(f Flow) bool {
	if f.Protocol != unix.IPPROTO_UDP {
		return false
	}
	if serving, ok := m.frontends[f.OrigDst]; ok {
		return !serving[f.ReplySource]
	}
	if serving, ok := m.nodePorts[f.OrigDst.Port()]; ok {
		return !serving[f.ReplySource]
	}
	return false
}
