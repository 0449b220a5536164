package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of every ironlb resource.
const GroupName = "ironlb.io"

// SchemeGroupVersion is the group and version of the types in this package.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resources of this group, for dynamic clients and informers.
var (
	IPPoolsResource              = SchemeGroupVersion.WithResource("ippools")
	BGPPeersResource             = SchemeGroupVersion.WithResource("bgppeers")
	ServiceAnnouncementsResource = SchemeGroupVersion.WithResource("serviceannouncements")
	BGPSessionsResource          = SchemeGroupVersion.WithResource("bgpsessions")
	IPPoolKind                   = SchemeGroupVersion.WithKind("IPPool")
	BGPPeerKind                  = SchemeGroupVersion.WithKind("BGPPeer")
	ServiceAnnouncementKind      = SchemeGroupVersion.WithKind("ServiceAnnouncement")
	BGPSessionKind               = SchemeGroupVersion.WithKind("BGPSession")
)

var (
	// SchemeBuilder registers the types of this package into a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion,
		&IPPool{}, &IPPoolList{},
		&BGPPeer{}, &BGPPeerList{},
		&ServiceAnnouncement{}, &ServiceAnnouncementList{},
		&BGPSession{}, &BGPSessionList{},
	)
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}
