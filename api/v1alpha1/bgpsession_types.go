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
	// PrefixesAdvertised is how many prefixes the session carries.
	// +optional
	PrefixesAdvertised int32 `json:"prefixesAdvertised"`
	// Since is when the session entered State.
	// +optional
	Since metav1.Time `json:"since,omitempty"`
	// Message says why the session is not configured (e.g. its password Secret
	// is missing); empty otherwise.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
}

// BGPSession is one node's BGP session with one BGPPeer, as its speaker sees it.
// The speaker writes it when the session state, the BFD state or the number of
// advertised prefixes changes, and deletes it when the peer no longer applies
// to the node; a speaker that died has its sessions removed by another speaker.
// Names are "<node>.<bgppeer>".
//
//	kubectl get bgpsessions
//	kubectl get bgps --field-selector status.node=node1
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
