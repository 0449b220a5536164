package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnouncementMode says how an address is announced.
// +kubebuilder:validation:Enum=L2;BGP
type AnnouncementMode string

// Announcement modes.
const (
	// AnnouncementL2: the node answers ARP (IPv4) or NDP (IPv6) for the address.
	AnnouncementL2 AnnouncementMode = "L2"
	// AnnouncementBGP: the node advertises the address to its BGP peers.
	AnnouncementBGP AnnouncementMode = "BGP"
)

// ServiceAnnouncementStatus is what one speaker announces for one address.
type ServiceAnnouncementStatus struct {
	// Address is the announced LoadBalancer address.
	// +kubebuilder:validation:MaxLength=45
	Address string `json:"address"`
	// Mode is L2 (ARP/NDP) or BGP.
	Mode AnnouncementMode `json:"mode"`
	// Node is the node whose speaker announces the address.
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// Pool is the IPPool the address was allocated from.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Pool string `json:"pool,omitempty"`
	// Services are the Services (namespace/name) that use the address.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Services []string `json:"services,omitempty"`
	// Interfaces are the links that answer for the address (L2).
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Interfaces []string `json:"interfaces,omitempty"`
	// Prefix is the advertised prefix (BGP): the address as /32 or /128, or its
	// aggregate.
	// +kubebuilder:validation:MaxLength=49
	// +optional
	Prefix string `json:"prefix,omitempty"`
	// Peers are the addresses of the BGP peers the prefix is advertised to (BGP).
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Peers []string `json:"peers,omitempty"`
	// Since is when this node started announcing the address.
	// +optional
	Since metav1.Time `json:"since,omitempty"`
}

// ServiceAnnouncement records that one node announces one LoadBalancer address
// by L2 (exactly one node per address: the elected owner). In BGP mode every
// eligible node advertises every address, so per-address objects would cost
// addresses x nodes objects and writes; the node's BGPSessions list its
// prefixes instead (Mode BGP is kept for objects written by older speakers,
// which a speaker of this version deletes). The announcing speaker creates it
// when it starts, updates it
// when where or how it announces changes, and deletes it when it stops; it
// writes nothing while nothing changes. Objects of a speaker that died are
// removed by another speaker. Names are "<mode>.<address>.<node>" with the
// address's dots and colons written as dashes (l2.192-0-2-200.node1).
//
//	kubectl get serviceannouncements
//	kubectl get svcann --field-selector status.node=node1
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=svcann,categories=ironlb
// +kubebuilder:selectablefield:JSONPath=".status.node"
// +kubebuilder:selectablefield:JSONPath=".status.address"
// +kubebuilder:printcolumn:name="Services",type=string,JSONPath=".status.services"
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=".status.address"
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=".status.node"
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=".status.interfaces"
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=".status.mode"
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=".status.peers",priority=1
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=".status.pool",priority=1
// +kubebuilder:printcolumn:name="Since",type=date,JSONPath=".status.since"
type ServiceAnnouncement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Status is written by the announcing speaker (there is no spec: nothing
	// here is a request).
	Status ServiceAnnouncementStatus `json:"status"`
}

// ServiceAnnouncementList is a list of ServiceAnnouncements.
//
// +kubebuilder:object:root=true
type ServiceAnnouncementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceAnnouncement `json:"items"`
}
