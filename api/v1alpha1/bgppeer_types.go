package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BGPPeerSpec describes one BGP session that matching speakers open toward a router.
//
// +kubebuilder:validation:XValidation:rule="!has(self.holdTime) || !has(self.keepaliveTime) || duration(self.keepaliveTime) < duration(self.holdTime)",message="keepaliveTime must be lower than holdTime"
// +kubebuilder:validation:XValidation:rule="!has(self.sourceAddress) || ip(self.sourceAddress).family() == ip(self.peerAddress).family()",message="sourceAddress and peerAddress must be of one family"
// +kubebuilder:validation:XValidation:rule="!has(self.bfd) || !has(self.ebgpMultiHop) || !self.ebgpMultiHop",message="bfd is single-hop: it cannot be combined with ebgpMultiHop"
type BGPPeerSpec struct {
	// PeerAddress is the router's address.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip.isCanonical(self)",message="must be an IP address in canonical form"
	PeerAddress string `json:"peerAddress"`

	// PeerASN is the router's autonomous system number (1-4294967295).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	PeerASN int64 `json:"peerASN"`

	// MyASN is the speakers' autonomous system number (1-4294967295).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4294967295
	MyASN int64 `json:"myASN"`

	// PeerPort is the router's TCP port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +kubebuilder:default=179
	// +optional
	PeerPort int32 `json:"peerPort,omitempty"`

	// SourceAddress is the local address of the session; default: chosen by routing.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="must be an IP address"
	// +optional
	SourceAddress string `json:"sourceAddress,omitempty"`

	// HoldTime is the proposed BGP hold time, whole seconds from 3s to 65535s;
	// default 90s. (A hold time of 0, no keepalives at all, is not offered: the
	// embedded GoBGP cannot negotiate it.)
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('3s') && duration(self) <= duration('65535s')",message="must be between 3s and 65535s"
	// +optional
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`

	// KeepaliveTime is the keepalive interval, whole seconds; it must be lower
	// than HoldTime. Default: a third of the hold time.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="must be at least 1s"
	// +optional
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`

	// EBGPMultiHop allows the router to be more than one hop away (eBGP; the
	// session's TTL is 255).
	// +optional
	EBGPMultiHop bool `json:"ebgpMultiHop,omitempty"`

	// PasswordSecretRef names a Secret (e.g. of type kubernetes.io/basic-auth)
	// whose "password" key holds the TCP MD5 password of the session. The Secret
	// must be in the namespace the speakers run in (ironlb-system): speakers read
	// Secrets nowhere else, and a peer naming another namespace is not opened
	// (an Event on the BGPPeer says why).
	// +optional
	PasswordSecretRef *SecretReference `json:"passwordSecretRef,omitempty"`

	// NodeSelector limits the nodes that open this session; empty means all.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// GracefulRestart enables BGP graceful restart (RFC 4724) so routes survive a
	// speaker restart.
	// +optional
	GracefulRestart bool `json:"gracefulRestart,omitempty"`

	// BFD runs a single-hop BFD session (RFC 5880/5881) beside the BGP session,
	// so the router drops a dead node's routes within minRx x multiplier instead
	// of the hold time. The router needs BFD configured for this neighbor too.
	// +optional
	BFD *BFDSettings `json:"bfd,omitempty"`
}

// BFDSettings are the timers of a BFD session. Empty fields take the defaults
// (300ms, 300ms, 3).
type BFDSettings struct {
	// MinTx is the desired interval between BFD packets sent, 10ms-60s.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('60s')",message="must be between 10ms and 60s"
	// +optional
	MinTx *metav1.Duration `json:"minTx,omitempty"`
	// MinRx is the shortest interval between received BFD packets this side
	// accepts, 10ms-60s.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10ms') && duration(self) <= duration('60s')",message="must be between 10ms and 60s"
	// +optional
	MinRx *metav1.Duration `json:"minRx,omitempty"`
	// Multiplier is the number of missed packets after which a side declares the
	// session down, 2-255.
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=255
	// +optional
	Multiplier *int32 `json:"multiplier,omitempty"`
}

// SecretReference names a Secret.
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the Secret; default: the namespace the speakers run in.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// BGPPeerStatus reports the sessions of a peer.
type BGPPeerStatus struct {
	// Conditions of the peer.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BGPPeer is a BGP router that speakers peer with to advertise Service addresses.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=bgpp,categories=ironlb
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Peer",type=string,JSONPath=".spec.peerAddress"
// +kubebuilder:printcolumn:name="Peer ASN",type=integer,JSONPath=".spec.peerASN"
// +kubebuilder:printcolumn:name="My ASN",type=integer,JSONPath=".spec.myASN"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPPeerSpec   `json:"spec"`
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}
