package e2e

import (
	"strings"
	"testing"
)

// The API additions of the speaker issues are validated by the API server:
// BFD timers and their single-hop limit, a hold time GoBGP can negotiate, and
// the status kinds' required fields.
func TestSpeakerAPIAdmission(t *testing.T) {
	refused := []struct{ name, doc, want string }{
		{"bfd with multihop", `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: spk-bad-1}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, ebgpMultiHop: true, bfd: {}}}`, "single-hop"},
		{"bfd interval too short", `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: spk-bad-2}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, bfd: {minTx: 1ms}}}`, "between 10ms and 60s"},
		{"bfd multiplier 1", `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: spk-bad-3}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, bfd: {multiplier: 1}}}`, "multiplier"},
		{"hold time 0", `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: spk-bad-4}, spec: {peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, holdTime: 0s}}`, "between 3s and 65535s"},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			_, err := createYAML(t, bgppeers, tc.doc)
			if err == nil {
				t.Fatalf("the API server accepted %s", tc.doc)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusal should mention %q: %v", tc.want, err)
			}
		})
	}
	if _, err := createYAML(t, bgppeers, `{apiVersion: ironlb.io/v1alpha1, kind: BGPPeer, metadata: {name: spk-ok-1}, spec: {nodeSelector: {matchLabels: {ironlb.io/no-such-node: "true"}}, peerAddress: 192.0.2.1, peerASN: 64512, myASN: 64600, holdTime: 3s, keepaliveTime: 1s, bfd: {minTx: 100ms, minRx: 100ms, multiplier: 3}}}`); err != nil {
		t.Fatalf("valid BGPPeer with BFD refused: %v", err)
	}
}
