package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPSessionStatus is the state of one node's session with one BGPPeer.
type BGPSessionStatus struct {
	// Node is the node whose speaker runs the session.
	// +kubebuilder:validation:MaxLength=253
	Node string `json:"node"`
	// Peer is the name of the BGPPeer.
	// +kubebuilder:validation:MaxLength=253
	Peer string `json:"peer"`
	// PeerAddress is the router's address.
	// +kubebuilder:validation:MaxLength=45
	PeerAddress string `json:"peerAddress"`
	// State is the BGP session state (RFC 4271): Idle, Connect, Active,
	// OpenSent, OpenConfirm or Established.
	// +kubebuilder:validation:MaxLength=16
	State string `json:"state"`
	// BFD is the BFD session state (AdminDown, Down, Init, Up); empty when the
	// peer does not use BFD.
	// +kubebuilder:validation:MaxLength=16
	// +optional
	BFD string `json:"bfd,omitempty"`
	// PrefixesAdvertised is how many prefixes the session carries now (0
	// unless Established).
	// +optional
	PrefixesAdvertised int32 `json:"prefixesAdvertised"`
	// Prefixes are the prefixes the speaker advertises on this session (its
	// desired state, in address order; the session carries them while
	// Established): which LoadBalancer addresses this node advertises to this
	// peer. Beyond 10,000 only the first 10,000 are listed (PrefixesTruncated).
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10000
	// +kubebuilder:validation:items:MaxLength=49
	// +optional
	Prefixes []string `json:"prefixes,omitempty"`
	// PrefixesTruncated says Prefixes lists only the first 10,000.
	// +optional
	PrefixesTruncated bool `json:"prefixesTruncated,omitempty"`
	// Since is when the session entered State.
	// +optional
	Since metav1.Time `json:"since,omitempty"`
	// Message says why the session is not configured (e.g. its password Secret
	// is missing); empty otherwise.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
}

// MaxSessionPrefixes is how many prefixes a BGPSession lists at most.
const MaxSessionPrefixes = 10000

// BGPSession is one node's BGP session with one BGPPeer, as its speaker sees it:
// the session and BFD state and the prefixes advertised. In BGP mode it is the
// record of what a node advertises (there is no ServiceAnnouncement per
// address and node). Its speaker writes a change of the session or BFD state
// at once, and a change of the prefixes at most once a second
// (a burst of Services costs a few writes per session, not one per address),
// and deletes it when the peer no longer applies to the node; a speaker that
// died has its sessions removed by another speaker. Names are
// "<node>.<bgppeer>".
//
//	kubectl get bgpsessions
//	kubectl get bgps --field-selector status.node=node1
//	kubectl get bgps -o custom-columns=NODE:.status.node,PEER:.status.peer,PREFIXES:.status.prefixes
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgps,categories=ironlb
// +kubebuilder:selectablefield:JSONPath=".status.node"
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=".status.node"
// +kubebuilder:printcolumn:name="Peer",type=string,JSONPath=".status.peer"
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=".status.peerAddress"
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=".status.state"
// +kubebuilder:printcolumn:name="BFD",type=string,JSONPath=".status.bfd"
// +kubebuilder:printcolumn:name="Prefixes",type=integer,JSONPath=".status.prefixesAdvertised"
// +kubebuilder:printcolumn:name="Since",type=date,JSONPath=".status.since"
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=".status.message",priority=1
// +kubebuilder:printcolumn:name="Advertised",type=string,JSONPath=".status.prefixes",priority=1
type BGPSession struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Status is written by the node's speaker.
	Status BGPSessionStatus `json:"status"`
}

// BGPSessionList is a list of BGPSessions.
//
// +kubebuilder:object:root=true
type BGPSessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPSession `json:"items"`
}
