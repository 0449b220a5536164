package election

import (
	"net/netip"

	"k8s.io/apimachinery/pkg/labels"
)

// Node is what the election needs to know about a Kubernetes Node.
type Node struct {
	// Labels are the Node's labels, matched against pool node selectors. A Node
	// labelled node.kubernetes.io/exclude-from-external-load-balancers (any value)
	// never announces.
	Labels map[string]string
	// Ready is the Node's Ready condition (status True).
	Ready bool
}

// Pool is the announcement part of an IPPool.
type Pool struct {
	// L2 selects the nodes that may answer ARP/NDP for the pool's addresses; nil
	// means the pool is not announced by layer 2. Use labels.Everything() for
	// "all nodes".
	L2 labels.Selector
	// BGP selects the nodes that advertise the pool's addresses by BGP; nil means
	// the pool is not advertised by BGP.
	BGP labels.Selector
}

// Address is one LoadBalancer address of a Service and the pool it was allocated
// from (the Service's ironlb.io/ip-allocated-from-pool annotation).
type Address struct {
	IP   netip.Addr
	Pool string
}

// Service is what the election needs to know about a LoadBalancer Service.
type Service struct {
	// Addresses are the Service's LoadBalancer addresses
	// (status.loadBalancer.ingress) with their pools.
	Addresses []Address
	// Local is true for externalTrafficPolicy: Local.
	Local bool
	// EndpointNodes are the names of the nodes that host at least one ready
	// endpoint of the Service (see ReadyEndpointNodes). A ready endpoint with no
	// node name is listed as "": it makes a Cluster Service announced but no node
	// eligible under Local.
	EndpointNodes []string
}

// Move is a change of the layer-2 owner of one address.
type Move struct {
	IP netip.Addr
	// From is the previous owner, "" if the address was not announced.
	From string
	// To is the new owner, "" if the address is no longer announced.
	To string
}

// Changes is what one input changed. Slices are sorted by address.
type Changes struct {
	// Moves are the layer-2 owner changes, on any node. The speaker acquires the
	// addresses moved to its own node and releases those moved away from it.
	Moves []Move
	// Contested are addresses that another candidate still claims while its owner
	// holds them by claim: the claimant has not yet seen the owner's claim. When
	// the owner is the local node it should republish its claims (see the package
	// documentation, "Protocol").
	Contested []netip.Addr
	// Advertise are the addresses the local node starts advertising by BGP.
	Advertise []netip.Addr
	// Withdraw are the addresses the local node stops advertising by BGP.
	Withdraw []netip.Addr
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.Moves) == 0 && len(c.Contested) == 0 && len(c.Advertise) == 0 && len(c.Withdraw) == 0
}

func excluded(l labels.Set) bool {
	_, ok := l[excludeLabel]
	return ok
}
