package proxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ironlb/ironlb/proxy/iptables"
)

// FuzzCleanupInput feeds arbitrary iptables-save text to the cleanup parser:
// it never panics, deletes only IRONLB- chains, and deletes rules only from
// other chains and only rules that jump into IRONLB- chains.
func FuzzCleanupInput(f *testing.F) {
	f.Add([]byte("*nat\n:PREROUTING ACCEPT [0:0]\n:IRONLB-SERVICES - [0:0]\n-A PREROUTING -m comment --comment \"ironlb service portals\" -j IRONLB-SERVICES\n-A PREROUTING -j DOCKER\nCOMMIT\n"))
	f.Add([]byte(":IRONLB-X\n-A \n-A IRONLB-X -g IRONLB-Y\n:OTHER - [0:0]\n"))
	f.Fuzz(func(t *testing.T, save []byte) {
		var out bytes.Buffer
		cleanupInput(&out, iptables.TableNAT, save)
		for _, l := range strings.Split(out.String(), "\n") {
			switch {
			case strings.HasPrefix(l, "-X "), strings.HasPrefix(l, ":"):
				name := strings.Fields(strings.TrimPrefix(strings.TrimPrefix(l, "-X "), ":"))
				if len(name) == 0 || !strings.HasPrefix(name[0], chainPrefix) {
					t.Fatalf("cleanup touches a chain that is not ironlb's: %q", l)
				}
			case strings.HasPrefix(l, "-D "):
				chain, rest, _ := strings.Cut(l[3:], " ")
				if strings.HasPrefix(chain, chainPrefix) || !(strings.Contains(rest, "-j "+chainPrefix) || strings.Contains(rest, "-g "+chainPrefix)) {
					t.Fatalf("cleanup deletes a rule it should leave: %q", l)
				}
			case l == "", l == "COMMIT", l == "*nat":
			default:
				t.Fatalf("unexpected cleanup line %q", l)
			}
		}
	})
}
