package e2e

import (
	"strings"
	"testing"
)

// The API server itself (CEL rules and OpenAPI bounds in the CRDs) refuses malformed
// pools and peers; no webhook runs.
func TestAdmissionRefusesBadObjects(t *testing.T) {
	refused := []struct{ name, gvr, doc, want string }{
		{"malformed address", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bad-1}, spec: {addresses: ["192.0.2.300/24"]}}`, "must be a CIDR"},
		{"host bits", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bad-2}, spec: {addresses: ["192.0.2.7/24"]}}`, "must be a CIDR"},
		{"inverted IPv4 range", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bad-3}, spec: {addresses: ["192.0.2.20-192.0.2.10"]}}`, "inverted"},
		{"inverted IPv6 range", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bad-4}, spec: {addresses: ["2001:db8::2ff-2001:db8::200"]}}`, "inverted"},
		{"mixed-family range", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bad-5}, spec: {addresses: ["192.0.2.1-2001:db8::1"]}}`, "one family"},
		{"no addresses", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bad-6}, spec: {addresses: []}}`, "addresses"},
		{"aggregation length 33", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bad-7}, spec: {addresses: ["203.0.113.0/24"], advertise: {bgp: {aggregationLength: 33}}}}`, "aggregationLength"},
		{"aggregation length v6 129", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bad-8}, spec: {addresses: ["2001:db8:1::/64"], advertise: {bgp: {aggregationLengthV6: 129}}}}`, "aggregationLengthV6"},
		{"bad community", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: bad-9}, spec: {addresses: ["203.0.113.0/24"], advertise: {bgp: {communities: ["70000:1"]}}}}`, "ASN:value"},
		{"ASN 0", "peer", `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: bad-1}, spec: {peerAddress: 192.0.2.1, peerASN: 0, myASN: 64600}}`, "peerASN"},
		{"ASN 2^32", "peer", `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: bad-2}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 4294967296}}`, "myASN"},
		{"bad peer address", "peer", `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: bad-3}, spec: {peerAddress: router.example, peerASN: 64512, myASN: 64600}}`, "IP address"},
		{"keepalive >= hold", "peer", `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: bad-4}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, holdTime: 9s, keepaliveTime: 9s}}`, "keepaliveTime"},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			gvr := ippools
			if tc.gvr == "peer" {
				gvr = bgppeers
			}
			_, err := createYAML(t, gvr, tc.doc)
			if err == nil {
				t.Fatalf("the API server accepted %s", tc.doc)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusal should mention %q: %v", tc.want, err)
			}
		})
	}
	accepted := []struct{ name, gvr, doc string }{
		{"lab pools", "pool", `{apiVersion: ironlb.io/v1alpha1, kind: IPPool, metadata: {name: ok-1}, spec: {autoAssign: false, addresses: ["192.0.2.240-192.0.2.250", "2001:db8::200-2001:db8::2ff", "2001:db8:1::/64", "192.0.2.77-192.0.2.77"], advertise: {bgp: {aggregationLength: 32, communities: ["64512:100", "no-export"], largeCommunities: ["64512:1:2"]}}}}`},
		{"peer", "peer", `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: ok-1}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 4200000000, holdTime: 9s, keepaliveTime: 3s}}`},
	}
	for _, tc := range accepted {
		t.Run("accepted/"+tc.name, func(t *testing.T) {
			gvr := ippools
			if tc.gvr == "peer" {
				gvr = bgppeers
			}
			if _, err := createYAML(t, gvr, tc.doc); err != nil {
				t.Fatalf("valid object refused: %v", err)
			}
		})
	}
}
