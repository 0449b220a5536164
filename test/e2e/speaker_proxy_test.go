package e2e

import (
	"strings"
	"testing"

	"github.com/ironlb/ironlb/test/lab"
)

// The same L2 proofs with ironlb's own data path: the speakers run with
// --proxy=iptables and no kube-proxy runs (its rules were removed with
// kube-proxy --cleanup). ARP and NDP are answered by one node each, and curl
// over both families reaches every backend through the IRONLB-* rules.
func TestSpeakerWithIronlbProxy(t *testing.T) {
	speakersWith(t, dataPathIronlb)
	for i := 1; i <= env.Lab.Nodes(); i++ {
		out, err := env.Lab.Exec(t.Context(), env.Lab.NodeName(i), "iptables-save", "-t", "nat")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "-j KUBE-SERVICES") || !strings.Contains(out, "-j IRONLB-SERVICES") {
			t.Fatalf("%s: want ironlb's rules and no kube-proxy's:\n%s", env.Lab.NodeName(i), out)
		}
	}
	checkDualStackL2(t, "spk-px", `["192.0.2.240-192.0.2.244", "2001:db8::240-2001:db8::24f"]`)
	_ = lab.HostLANClient
}
