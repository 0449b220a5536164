package allocator

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
)

// Sharing: which Services may hold the same address.

// shareMeta is what decides whether two Services may share an address. It is
// only filled in when the Service has a sharing key.
type shareMeta struct {
	key      string
	ports    []portProto
	local    bool
	selector map[string]string
}

type portProto struct {
	port  int32
	proto v1.Protocol
}

// conflict returns a holder of ip, other than st, that a Service with meta may
// not share ip with, and why.
func (a *Allocator) conflict(ip netip.Addr, st *svcState, meta shareMeta) (*svcState, string) {
	u := a.owners[ip]
	if u == nil {
		return nil, ""
	}
	for _, h := range u.holders {
		if h == st {
			continue
		}
		if why := incompatible(meta, h.share); why != "" {
			return h, why
		}
	}
	return nil, ""
}

// incompatible says why two Services may not share an address ("" if they may).
func incompatible(a, b shareMeta) string {
	switch {
	case a.key == "" || b.key == "":
		return "sharing needs the same allow-shared-ip key on both Services"
	case a.key != b.key:
		return "sharing keys differ (" + a.key + " vs " + b.key + ")"
	}
	for _, p := range a.ports {
		if slices.Contains(b.ports, p) {
			return sprintfPort(p) + " is used by both"
		}
	}
	if a.local || b.local {
		if !(a.local && b.local) {
			return "externalTrafficPolicy differs (a Local Service can only share with Local Services)"
		}
		if !maps.Equal(a.selector, b.selector) {
			return "both are externalTrafficPolicy Local but their selectors differ"
		}
	}
	return ""
}

func sprintfPort(p portProto) string { return fmt.Sprintf("port %d/%s", p.port, p.proto) }

// metaFor extracts what sharing depends on; without a key nothing is needed.
func metaFor(svc *v1.Service, key string) shareMeta {
	if key == "" {
		return shareMeta{}
	}
	m := shareMeta{
		key:   key,
		local: svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal,
	}
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		m.ports = append(m.ports, portProto{p.Port, proto})
	}
	if m.local {
		m.selector = maps.Clone(svc.Spec.Selector)
	}
	return m
}
