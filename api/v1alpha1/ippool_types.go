package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// How the CEL rules on AddressRange work: the order rule finds the first bit where the
// two ends differ (the longest prefix /p of first that still contains last) and checks
// that first has a 0 there. Prefix lengths are spelled out as a literal list because CRD
// CEL has no cel.bind or integer ranges, and string sizes must stay bounded for the API
// server's cost estimate.

// AddressRange is one block of addresses of a pool: a CIDR with no host bits set
// ("192.0.2.0/24", "2001:db8:1::/64") or an inclusive range "first-last"
// ("192.0.2.200-192.0.2.250", "2001:db8::200-2001:db8::2ff"). Both ends of a range
// are of one family and first <= last.
//
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=100
// +kubebuilder:validation:XValidation:rule="isCIDR(self) ? cidr(self).masked() == cidr(self) : (size(self.split('-')) == 2 && isIP(self.split('-')[0].trim()) && isIP(self.split('-')[1].trim()) && ip(self.split('-')[0].trim()).family() == ip(self.split('-')[1].trim()).family())",message="must be a CIDR without host bits (192.0.2.0/24) or a range of one family (192.0.2.10-192.0.2.20)"
// +kubebuilder:validation:XValidation:rule="isCIDR(self) || self.indexOf('-') < 0 || !isIP(self.substring(0, self.indexOf('-')).trim()) || !isIP(self.substring(self.indexOf('-') + 1).trim()) || [self.substring(0, self.indexOf('-')).trim()].all(a, [self.substring(self.indexOf('-') + 1).trim()].all(b, ip(a).family() != ip(b).family() || ip(a) == ip(b) || ['/0','/1','/2','/3','/4','/5','/6','/7','/8','/9','/10','/11','/12','/13','/14','/15','/16','/17','/18','/19','/20','/21','/22','/23','/24','/25','/26','/27','/28','/29','/30','/31','/32','/33','/34','/35','/36','/37','/38','/39','/40','/41','/42','/43','/44','/45','/46','/47','/48','/49','/50','/51','/52','/53','/54','/55','/56','/57','/58','/59','/60','/61','/62','/63','/64','/65','/66','/67','/68','/69','/70','/71','/72','/73','/74','/75','/76','/77','/78','/79','/80','/81','/82','/83','/84','/85','/86','/87','/88','/89','/90','/91','/92','/93','/94','/95','/96','/97','/98','/99','/100','/101','/102','/103','/104','/105','/106','/107','/108','/109','/110','/111','/112','/113','/114','/115','/116','/117','/118','/119','/120','/121','/122','/123','/124','/125','/126','/127','/128'].exists(i, s, i < (ip(a).family() == 4 ? 32 : 128) && cidr(a + s).containsIP(b) && !cidr(a + ['/0','/1','/2','/3','/4','/5','/6','/7','/8','/9','/10','/11','/12','/13','/14','/15','/16','/17','/18','/19','/20','/21','/22','/23','/24','/25','/26','/27','/28','/29','/30','/31','/32','/33','/34','/35','/36','/37','/38','/39','/40','/41','/42','/43','/44','/45','/46','/47','/48','/49','/50','/51','/52','/53','/54','/55','/56','/57','/58','/59','/60','/61','/62','/63','/64','/65','/66','/67','/68','/69','/70','/71','/72','/73','/74','/75','/76','/77','/78','/79','/80','/81','/82','/83','/84','/85','/86','/87','/88','/89','/90','/91','/92','/93','/94','/95','/96','/97','/98','/99','/100','/101','/102','/103','/104','/105','/106','/107','/108','/109','/110','/111','/112','/113','/114','/115','/116','/117','/118','/119','/120','/121','/122','/123','/124','/125','/126','/127','/128'][i + 1]).containsIP(b) && cidr(a + ['/0','/1','/2','/3','/4','/5','/6','/7','/8','/9','/10','/11','/12','/13','/14','/15','/16','/17','/18','/19','/20','/21','/22','/23','/24','/25','/26','/27','/28','/29','/30','/31','/32','/33','/34','/35','/36','/37','/38','/39','/40','/41','/42','/43','/44','/45','/46','/47','/48','/49','/50','/51','/52','/53','/54','/55','/56','/57','/58','/59','/60','/61','/62','/63','/64','/65','/66','/67','/68','/69','/70','/71','/72','/73','/74','/75','/76','/77','/78','/79','/80','/81','/82','/83','/84','/85','/86','/87','/88','/89','/90','/91','/92','/93','/94','/95','/96','/97','/98','/99','/100','/101','/102','/103','/104','/105','/106','/107','/108','/109','/110','/111','/112','/113','/114','/115','/116','/117','/118','/119','/120','/121','/122','/123','/124','/125','/126','/127','/128'][i + 1]).masked().ip() == cidr(a + s).masked().ip())))",message="range is inverted: first must not be greater than last"
type AddressRange string

// IPPoolSpec says which addresses a pool holds, who may get them and how they are announced.
type IPPoolSpec struct {
	// Addresses are the blocks of the pool, IPv4 and IPv6 in any mix.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Addresses []AddressRange `json:"addresses"`

	// AutoAssign lets Services without an explicit request get addresses from this
	// pool. When false, only Services naming the pool or one of its addresses do.
	// +kubebuilder:default=true
	// +optional
	AutoAssign *bool `json:"autoAssign,omitempty"`

	// AvoidBuggyIPs skips IPv4 addresses ending in .0 and .255, which some old
	// client stacks treat as network or broadcast addresses.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`

	// Allocation scopes the pool to some Services and orders it among pools.
	// +optional
	Allocation *AllocationSpec `json:"allocation,omitempty"`

	// Advertise says how the speakers announce addresses of this pool.
	// +optional
	Advertise *AdvertiseSpec `json:"advertise,omitempty"`
}

// AllocationSpec scopes a pool. Every set field must match for a Service to use the pool.
type AllocationSpec struct {
	// Priority orders pools for automatic assignment: lower values first; pools
	// without a priority come after all pools with one; ties are broken by name.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Priority *int32 `json:"priority,omitempty"`

	// Namespaces limits the pool to Services in these namespaces.
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	// +optional
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceSelector limits the pool to Services in namespaces with matching labels.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// ServiceSelector limits the pool to Services with matching labels.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
}

// AdvertiseSpec says how a pool's addresses are announced. With neither L2 nor BGP
// set, addresses are allocated but not announced (useful with an external router).
type AdvertiseSpec struct {
	// L2 announces addresses by ARP (IPv4) and NDP (IPv6) from one elected node.
	// +optional
	L2 *L2Advertisement `json:"l2,omitempty"`
	// BGP announces addresses as host routes from every eligible node.
	// +optional
	BGP *BGPAdvertisement `json:"bgp,omitempty"`
}

// L2Advertisement scopes layer-2 announcements.
type L2Advertisement struct {
	// NodeSelector limits the nodes that may answer for the addresses.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	// Interfaces limits the interfaces that answer; empty means all.
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=15
	// +listType=set
	// +optional
	Interfaces []string `json:"interfaces,omitempty"`
}

// Community is a BGP community "ASN:value" (each 0-65535) or a well-known name.
// +kubebuilder:validation:XValidation:rule="self in ['no-export', 'no-advertise', 'no-export-subconfed', 'no-peer', 'blackhole', 'graceful-shutdown'] || (self.matches('^[0-9]{1,5}:[0-9]{1,5}$') && int(self.split(':')[0]) <= 65535 && int(self.split(':')[1]) <= 65535)",message="must be ASN:value with both parts 0-65535, or a well-known community name"
// +kubebuilder:validation:MaxLength=32
type Community string

// LargeCommunity is an RFC 8092 large community "global:local1:local2", each 0-4294967295.
// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]{1,10}:[0-9]{1,10}:[0-9]{1,10}$') && self.split(':').all(x, int(x) <= 4294967295)",message="must be three colon-separated numbers, each 0-4294967295"
// +kubebuilder:validation:MaxLength=32
type LargeCommunity string

// BGPAdvertisement scopes and decorates BGP announcements.
type BGPAdvertisement struct {
	// NodeSelector limits the nodes that advertise the addresses.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	// PeerSelector limits the BGPPeers the addresses are advertised to.
	// +optional
	PeerSelector *metav1.LabelSelector `json:"peerSelector,omitempty"`
	// AggregationLength is the prefix length advertised for IPv4 addresses (default 32).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	// +optional
	AggregationLength *int32 `json:"aggregationLength,omitempty"`
	// AggregationLengthV6 is the prefix length advertised for IPv6 addresses (default 128).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	// +optional
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
	// LocalPref sets the LOCAL_PREF attribute (iBGP only).
	// +optional
	LocalPref *uint32 `json:"localPref,omitempty"`
	// Communities are attached to every advertised route.
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	// +optional
	Communities []Community `json:"communities,omitempty"`
	// LargeCommunities are attached to every advertised route.
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	// +optional
	LargeCommunities []LargeCommunity `json:"largeCommunities,omitempty"`
}

// Condition types of an IPPool.
const (
	// ConditionOverlapping is true when the pool shares addresses with another pool.
	ConditionOverlapping = "Overlapping"
	// ConditionExhausted is true when an address family of the pool has no free address.
	ConditionExhausted = "Exhausted"
	// ConditionValid is false when the controller could not use the spec.
	ConditionValid = "Valid"
	// ConditionOrphanedAddresses is true when live Services hold addresses the
	// pool no longer covers (they keep them: a pool edit never re-IPs a Service).
	ConditionOrphanedAddresses = "OrphanedAddresses"
)

// IPPoolStatus reports use of a pool. Counts saturate at the largest int64.
type IPPoolStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Assigned is the number of addresses held by Services (both families).
	Assigned int64 `json:"assigned"`
	// Available is the number of free addresses (both families).
	Available int64 `json:"available"`
	// TotalIPv4, AssignedIPv4 and AvailableIPv4 count the IPv4 addresses.
	TotalIPv4     int64 `json:"totalIPv4"`
	AssignedIPv4  int64 `json:"assignedIPv4"`
	AvailableIPv4 int64 `json:"availableIPv4"`
	// TotalIPv6, AssignedIPv6 and AvailableIPv6 count the IPv6 addresses.
	TotalIPv6     int64 `json:"totalIPv6"`
	AssignedIPv6  int64 `json:"assignedIPv6"`
	AvailableIPv6 int64 `json:"availableIPv6"`
	// Conditions: Valid, Overlapping, Exhausted, OrphanedAddresses.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// IPPool is a set of addresses that LoadBalancer Services get their external IPs from.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=ipp;ippool,categories=ironlb
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Addresses",type=string,JSONPath=".spec.addresses"
// +kubebuilder:printcolumn:name="Assigned",type=integer,JSONPath=".status.assigned"
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=".status.available"
// +kubebuilder:printcolumn:name="Auto",type=boolean,JSONPath=".spec.autoAssign",priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPPoolSpec   `json:"spec"`
	Status IPPoolStatus `json:"status,omitempty"`
}

// IPPoolList is a list of IPPools.
//
// +kubebuilder:object:root=true
type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}
